"""Prometheus metrics for a store: its ``stats()`` as counters and gauges, and a lookup latency histogram.

Needs prometheus-client, an optional extra: ``pip install 'tierstore[metrics]'``.

>>> from tierstore.metrics import StoreMetrics
>>> metrics = StoreMetrics(store)            # doctest: +SKIP
>>> server = metrics.serve(port=9108)        # doctest: +SKIP  (GET http://host:9108/metrics)

What is exported (every series carries a ``store`` label, the store's path unless
named otherwise):

- ``tierstore_tier_hits_total{tier}`` and ``tierstore_tier_misses_total{tier}``:
  requests (one per index of every bag) served or missed by the GPU tier (when the
  store has one), the DRAM tier and the SSD tier (which holds every row, so it
  never misses);
- ``tierstore_ssd_pages_read_total``, ``tierstore_ssd_bytes_read_total``,
  ``tierstore_ssd_rows_decoded_total``: LMDB page reads (a page counts once per
  batch that reads it), their bytes, and rows decoded from them;
- ``tierstore_lookups_total``, ``tierstore_bags_total``, ``tierstore_batches_total``,
  ``tierstore_dram_rows_admitted_total``;
- ``tierstore_cache_bytes_used{tier}`` and ``tierstore_cache_budget_bytes{tier}``;
- ``tierstore_batch_latency_seconds{quantile}``: the p50/p95/p99 that ``stats()``
  reports over its recent window;
- ``tierstore_lookup_seconds{method}``: a histogram of the wall time of every
  ``lookup`` and ``lookup_batch`` call made on the store after the
  ``StoreMetrics`` was made, except calls during which Numba compiled or loaded
  code (a process's first calls), which ``tierstore_warmup_batches_total`` counts
  as ``stats()`` does;
- ``tierstore_prefetch_pages_read_total``, ``tierstore_prefetch_rows_served_total``
  and ``tierstore_prefetch_bytes_held``: pages read ahead by ``Store.prefetch``,
  missed rows served from them, and the bytes they hold now.

Counters are read from ``stats()`` at scrape time, so ``Store.reset_stats()``
shows as a counter reset, which Prometheus's ``rate()`` handles.
"""

from __future__ import annotations

import functools
import time

from tierstore.stats import CODE_LOADS

try:
    from prometheus_client import REGISTRY, Histogram, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError as err:  # the optional extra is missing
    raise ImportError("tierstore.metrics needs prometheus-client: pip install 'tierstore[metrics]'") from err

#: Histogram buckets for lookup wall time, in seconds (100 us to 10 s).
LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
TIMED_METHODS = ("lookup", "lookup_batch")


class StoreMetrics:
    """Export one store's statistics to a Prometheus registry.

    Parameters
    ----------
    store : tierstore.Store
        An open store.  Its ``lookup`` and ``lookup_batch`` are timed from now on
        (through wrappers set on this store object; :meth:`close` removes them).
    registry : prometheus_client.CollectorRegistry, optional
        Where the metrics go (default: prometheus_client's global registry).
    name : str, optional
        Value of the ``store`` label (default: the store's path).
    namespace : str
        Prefix of every metric name.
    buckets : tuple of float
        Latency histogram buckets in seconds.
    """

    def __init__(self, store, registry=None, name: str | None = None, namespace: str = "tierstore",
                 buckets=LATENCY_BUCKETS):
        self.store = store
        self.registry = REGISTRY if registry is None else registry
        self.label = str(store.path) if name is None else name
        self.namespace = namespace
        self.latency = Histogram(f"{namespace}_lookup_seconds", "Wall time of Store.lookup and lookup_batch calls",
                                 ["store", "method"], buckets=buckets, registry=None)
        for method in TIMED_METHODS:
            setattr(store, method, self._timed(getattr(store, method), self.latency.labels(self.label, method)))
        self.registry.register(self)
        self.registry.register(self.latency)

    @staticmethod
    def _timed(call, histogram):
        @functools.wraps(call)
        def timed(*args, **kwargs):
            loads, started = CODE_LOADS.count, time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                if CODE_LOADS.count == loads:
                    histogram.observe(time.perf_counter() - started)

        return timed

    def _family(self, kind, name: str, doc: str, labels: tuple = ()):
        return kind(f"{self.namespace}_{name}", doc, labels=("store", *labels))

    def collect(self):
        """Called by the registry at each scrape: the store's ``stats()`` as metric families."""
        s = self.store.stats()
        hits = self._family(CounterMetricFamily, "tier_hits", "Requests served by each tier", ("tier",))
        misses = self._family(CounterMetricFamily, "tier_misses", "Requests a tier did not hold", ("tier",))
        for tier in ("gpu", "dram") if "gpu" in s else ("dram",):
            hits.add_metric([self.label, tier], s[tier]["hits"])
            misses.add_metric([self.label, tier], s[tier]["misses"])
        hits.add_metric([self.label, "ssd"], s["ssd"]["hits"])
        misses.add_metric([self.label, "ssd"], 0)
        yield hits
        yield misses
        for name, value, doc in (
            ("ssd_pages_read", s["ssd"]["pages_read"], "LMDB pages read (once per batch that reads a page)"),
            ("ssd_bytes_read", s["ssd"]["bytes_read"], "Bytes of the LMDB pages read"),
            ("ssd_rows_decoded", s["ssd"]["rows_decoded"], "Rows decoded from SSD pages"),
            ("lookups", s["lookups"], "Table lookups (one per table per batch)"),
            ("bags", s["bags"], "Bags pooled"),
            ("batches", s["batches"], "Lookup calls timed by the store"),
            ("dram_rows_admitted", s["dram"]["rows_admitted"], "Rows admitted into the DRAM cache"),
            ("warmup_batches", s["latency"]["warmup_batches"], "Lookup calls during which Numba compiled or loaded "
             "code (left out of latencies)"),
            ("prefetch_pages_read", s["prefetch"]["pages_read"], "SSD pages read ahead by Store.prefetch"),
            ("prefetch_rows_served", s["prefetch"]["rows_served"], "Missed rows served from pages read ahead"),
        ):
            family = self._family(CounterMetricFamily, name, doc)
            family.add_metric([self.label], value)
            yield family
        for name, key, doc in (("cache_bytes_used", "bytes_used", "Bytes of cached rows"),
                               ("cache_budget_bytes", "budget_bytes", "Cache budget in bytes")):
            family = self._family(GaugeMetricFamily, name, doc, ("tier",))
            family.add_metric([self.label, "dram"], s["dram"][key])
            yield family
        family = self._family(GaugeMetricFamily, "prefetch_bytes_held", "Bytes of pages read ahead, not used yet")
        family.add_metric([self.label], s["prefetch"]["bytes_held"])
        yield family
        quantiles = self._family(GaugeMetricFamily, "batch_latency_seconds",
                                 "Batch latency percentiles over the store's recent window", ("quantile",))
        for q, key in (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("0.99", "p99_ms")):
            quantiles.add_metric([self.label, q], s["latency"][key] / 1e3)
        yield quantiles

    def describe(self):
        """No metrics up front: the registry then calls :meth:`collect` only at scrape time."""
        return []

    def serve(self, port: int, addr: str = "127.0.0.1"):
        """Serve this registry on ``http://addr:port/metrics`` from a daemon thread; return the HTTP server.

        ``port=0`` picks a free port (``server.server_port``); ``server.shutdown()`` stops it.
        """
        server, _ = start_http_server(port, addr=addr, registry=self.registry)
        return server

    def close(self) -> None:
        """Unregister the metrics and stop timing the store's lookups."""
        self.registry.unregister(self)
        self.registry.unregister(self.latency)
        for method in TIMED_METHODS:
            vars(self.store).pop(method, None)
