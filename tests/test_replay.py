"""replay: a real store driven by a trace, figures checked against independent counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tierstore
from bench.cli import main
from bench.replay import FOLD_STRIDE, ReplayConfig, TableFolder, UnknownTablesError, replay
from bench.traces import write_trace
from bench.traces.generate import TableSpec, TraceSpec, generate
from tierstore import SparseBatch, TableConfig

TABLES = (TableConfig("a", 600, 8), TableConfig("b", 200, 4, "float16"))


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "s"
    rng = np.random.default_rng(0)
    with tierstore.create(path, list(TABLES)) as store:
        for t in TABLES:
            store.load(t.name, rng.standard_normal((t.num_rows, t.dim)).astype(np.float32), progress=False)
    return str(path)


def trace(batches=12, seed=0):
    spec = TraceSpec(tables=(TableSpec("a", 600, zipf=1.0, pooling=5), TableSpec("b", 200, zipf=0.5, pooling=2)),
                     batch_size=16, num_batches=batches, seed=seed)
    return list(generate(spec))


def test_whole_table_cache_misses_only_rows_never_seen_before(store_path):
    batches = trace()
    result = replay(batches, ReplayConfig(store=store_path, trace="mem", dram_cache="100%", warmup_batches=4,
                                          interval=3))
    seen, misses = set(), 0
    for i, batch in enumerate(batches):
        keys = [(k, r) for k in batch.keys for r in batch.table(k)[0].tolist()]
        if i >= 4:
            misses += sum(1 for key in keys if key not in seen)
        seen.update(keys)
    measured_rows = sum(b.values.size for b in batches[4:])
    assert result["measured_batches"] == 8
    assert result["pooled_rows"] == measured_rows
    dram = result["store_stats"]["dram"]
    assert dram["hits"] + dram["misses"] == measured_rows
    assert dram["misses"] == misses
    assert result["hit_rates"]["dram"] + result["hit_rates"]["ssd"] == pytest.approx(1.0)
    assert [p["batch"] for p in result["timeline"]] == [7, 10]
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]
    assert result["peak_rss_bytes"] > 0 and result["ssd"]["rows_decoded"] >= 0
    assert ReplayConfig.from_dict(result["config"]).warmup_batches == 4


def test_no_cache_sends_everything_to_ssd(store_path):
    result = replay(trace(6), ReplayConfig(store=store_path, trace="mem", dram_cache="0B", warmup_batches=1))
    assert result["hit_rates"]["ssd"] == pytest.approx(1.0)
    assert result["ssd"]["pages_read"] > 0 and result["ssd"]["bytes_read"] > 0


def test_fold_maps_tables_round_robin_and_rows_modulo():
    folder = TableFolder({"a": TABLES[0], "b": TABLES[1]})
    batch = SparseBatch.from_tables({
        "x": (np.array([1, 601, 2]), np.array([0, 2, 3])),
        "y": (np.array([7]), np.array([0, 0, 1])),
        "z": (np.array([5, 6]), np.array([0, 1, 2])),
    })
    folded = folder(batch)
    assert folder.mapping == {"x": "a", "y": "b", "z": "a"}
    assert folded.keys == ("a", "b") and folded.batch_size == 2
    z_shift = 2 * FOLD_STRIDE % 600
    rows, offsets, _ = folded.table("a")
    assert rows.tolist() == [1, 1, (5 + z_shift) % 600, 2, (6 + z_shift) % 600] and offsets.tolist() == [0, 3, 5]
    rows, offsets, _ = folded.table("b")
    assert rows.tolist() == [(7 + FOLD_STRIDE) % 200] and offsets.tolist() == [0, 0, 1]


def test_unknown_tables_need_fold(store_path):
    batch = SparseBatch.from_tables({"nope": (np.array([1]), np.array([0, 1]))})
    with pytest.raises(UnknownTablesError, match="fold=True"):
        replay([batch] * 3, ReplayConfig(store=store_path, trace="mem", warmup_batches=1))
    result = replay([batch] * 3, ReplayConfig(store=store_path, trace="mem", warmup_batches=1, fold=True))
    assert result["table_mapping"] == {"nope": "a"} and result["pooled_rows"] == 2


def test_replay_cli_json(store_path, tmp_path, capsys):
    path = tmp_path / "t.tstrace"
    write_trace(path, trace(8))
    assert main(["replay", store_path, str(path), "--json", "--quiet", "--warmup", "2", "--interval", "2",
                 "--dram-cache", "4KiB", "--policy", "lru"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["measured_batches"] == 6 and out["dram_budget_bytes"] == 4096
    assert set(out["latency_ms"]) >= {"p50", "p95", "p99"} and len(out["timeline"]) == 3
