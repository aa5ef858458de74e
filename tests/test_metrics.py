"""tierstore.metrics: a store's stats() scraped as Prometheus metrics from a local HTTP endpoint."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest

import tierstore
from tierstore import SparseBatch, TableConfig

prometheus_client = pytest.importorskip(
    "prometheus_client", reason="prometheus-client is the optional extra tierstore[metrics] (.ci/run installs it)")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tierstore.metrics import StoreMetrics  # noqa: E402


def scrape(port: int) -> dict:
    """{(sample name, frozenset(labels)): value} from GET /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    with tierstore.create(tmp_path / "s", [TableConfig("a", 2000, 8), TableConfig("b", 500, 4, "int8")]) as made:
        made.load("a", rng.standard_normal((2000, 8)), progress=False)
        made.load("b", rng.standard_normal((500, 4)), progress=False)
    with tierstore.open(tmp_path / "s", dram_cache_bytes=8 * 4 * 300) as opened:
        yield opened


def test_scraped_metrics_are_the_stats(store):
    registry = prometheus_client.CollectorRegistry()
    metrics = StoreMetrics(store, registry=registry, name="emb")
    server = metrics.serve(port=0)
    try:
        rng = np.random.default_rng(1)
        for _ in range(5):
            batch = SparseBatch.from_tables({"a": (rng.integers(0, 2000, 40), np.arange(0, 41, 4)),
                                             "b": (rng.integers(0, 500, 20), np.arange(0, 21, 2))})
            store.lookup_batch(batch)
        store.lookup("a", np.array([1, 2, 3]), np.array([0, 3]))
        stats = store.stats()
        got = scrape(server.server_port)
    finally:
        server.shutdown()
        metrics.close()

    def value(name, **labels):
        return got[(f"tierstore_{name}", frozenset({"store": "emb", **labels}.items()))]

    assert value("tier_hits_total", tier="dram") == stats["dram"]["hits"] > 0
    assert value("tier_misses_total", tier="dram") == stats["dram"]["misses"] > 0
    assert value("tier_hits_total", tier="ssd") == stats["ssd"]["hits"]
    assert value("tier_hits_total", tier="dram") + value("tier_hits_total", tier="ssd") == 5 * 60 + 3
    assert value("ssd_pages_read_total") == stats["ssd"]["pages_read"] > 0
    assert value("ssd_bytes_read_total") == stats["ssd"]["bytes_read"] > 0
    assert value("ssd_rows_decoded_total") == stats["ssd"]["rows_decoded"]
    assert value("batches_total") == stats["batches"] == 6 and value("bags_total") == stats["bags"]
    assert value("cache_bytes_used", tier="dram") == stats["dram"]["bytes_used"] > 0
    assert value("cache_budget_bytes", tier="dram") == 8 * 4 * 300
    assert value("batch_latency_seconds", quantile="0.5") == pytest.approx(stats["latency"]["p50_ms"] / 1e3)
    timed = value("lookup_seconds_count", method="lookup_batch")
    assert 1 <= timed <= 5 and value("lookup_seconds_bucket", method="lookup_batch", le="+Inf") == timed
    assert timed + value("lookup_seconds_count", method="lookup") + value("warmup_batches_total") == 6
    assert value("warmup_batches_total") == stats["latency"]["warmup_batches"]
    assert value("lookup_seconds_sum", method="lookup_batch") > 0
    assert value("prefetch_pages_read_total") == value("prefetch_bytes_held") == 0


def test_prefetch_counters_are_the_stats(store):
    registry = prometheus_client.CollectorRegistry()
    metrics = StoreMetrics(store, registry=registry, name="emb")
    try:
        batch = SparseBatch.from_tables({"a": (np.arange(0, 2000, 7), np.array([0, 100, 286])),
                                         "b": (np.array([3, 4]), np.array([0, 1, 2]))})
        store.prefetch(batch).wait()
        store.lookup_batch(batch)
        stats = store.stats()["prefetch"]
        sample = lambda name: registry.get_sample_value(f"tierstore_{name}", {"store": "emb"})  # noqa: E731
        assert sample("prefetch_pages_read_total") == stats["pages_read"] > 0
        assert sample("prefetch_rows_served_total") == stats["rows_served"] > 0
        assert sample("prefetch_bytes_held") == stats["bytes_held"] == 0
    finally:
        metrics.close()


def test_close_stops_timing_and_unregisters(store):
    registry = prometheus_client.CollectorRegistry()
    metrics = StoreMetrics(store, registry=registry)
    metrics.close()
    assert "lookup" not in vars(store) and registry.get_sample_value("tierstore_batches_total",
                                                                     {"store": str(store.path)}) is None
    again = StoreMetrics(store, registry=registry)
    store.lookup("a", np.array([0]), np.array([0]))
    labels = {"store": str(store.path)}
    assert registry.get_sample_value("tierstore_lookup_seconds_count", {**labels, "method": "lookup"}) + \
        registry.get_sample_value("tierstore_warmup_batches_total", labels) == 1
    again.close()


def test_without_the_extra_the_import_says_what_to_install(monkeypatch):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "tierstore.metrics")
    with pytest.raises(ImportError, match=r"tierstore\[metrics\]"):
        importlib.import_module("tierstore.metrics")
