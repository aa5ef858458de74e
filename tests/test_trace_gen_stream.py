"""``trace gen`` in bounded memory: batches written a part at a time, sizes estimated first, full disks refused."""

from __future__ import annotations

import shutil
from collections import namedtuple

import numpy as np
import pytest
from processes import cli_peak_rss

from bench.traces import open_trace, write_trace
from bench.traces.batching import BatchPart, join_parts
from bench.traces.generate import generate, generate_parts
from bench.traces.presets import meta2022, uniform_zipf
from bench.traces.sizing import estimate_size
from tierstore.cli import main

def assert_same_batches(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.keys == b.keys
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.lengths, b.lengths)


def test_parts_join_into_the_batches_generate_yields():
    spec = meta2022(num_tables=12, batch_size=64, num_batches=3, seed=2, drift=0.01, shift_every=2)
    parts = list(generate_parts(spec, part_values=500))
    assert sum(p.last for p in parts) == 3 and len(parts) > 6
    assert all(p.batch.values.size < 500 + 64 * max(t.pooling for t in spec.tables) * 20 for p in parts)
    assert_same_batches(list(join_parts(parts)), list(generate(spec)))


@pytest.mark.parametrize("suffix", ["tstrace", "csv", "oracleGeneral.bin", "pt"])
def test_writing_parts_equals_writing_whole_batches(tmp_path, suffix):
    spec = uniform_zipf(num_tables=5, num_rows=300, batch_size=16, num_batches=4, seed=1)
    whole, split = tmp_path / f"whole.{suffix}", tmp_path / f"split.{suffix}"
    write_trace(whole, generate(spec))
    counts = write_trace(split, generate_parts(spec, part_values=100))
    assert counts["batches"] == 4
    if suffix in ("csv", "oracleGeneral.bin"):
        assert whole.read_bytes() == split.read_bytes()
    else:
        reader = open_trace(split, batch_size=16)
        assert_same_batches(list(reader), list(generate(spec)))


def test_a_trace_cut_inside_a_batch_is_refused(tmp_path):
    spec = uniform_zipf(num_tables=3, num_rows=100, batch_size=8, num_batches=1)
    first = next(generate_parts(spec, part_values=1))
    with pytest.raises(ValueError, match="inside a batch"):
        write_trace(tmp_path / "cut.tstrace", [BatchPart(first.batch, last=False)])
    assert not list(tmp_path.iterdir())


def test_estimate_is_close_to_the_written_size(tmp_path):
    spec = meta2022(num_tables=40, batch_size=2048, num_batches=3)
    for suffix in ("tstrace", "csv"):
        out = tmp_path / f"m.{suffix}"
        size = estimate_size(spec, "tstrace" if suffix == "tstrace" else "csv", {"generator": spec.to_dict()})
        write_trace(out, generate_parts(spec), metadata={"generator": spec.to_dict()})
        assert abs(size.file_bytes / out.stat().st_size - 1) < 0.1


def test_gen_refuses_when_the_disk_is_too_small(tmp_path, monkeypatch, capsys):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 5000, 5000))
    out = tmp_path / "big.tstrace"
    code = main(["trace", "gen", str(out), "--preset", "zipf", "--batches", "10", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "nothing was written" in err and "free" in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_gen_prints_the_expected_size_first(tmp_path, capsys):
    out = tmp_path / "z.tstrace"
    assert main(["trace", "gen", str(out), "--preset", "zipf", "--batches", "3", "--rows", "1000"]) == 0
    captured = capsys.readouterr()
    assert captured.err.index("expected size about") < captured.err.index("gen:")
    assert "expected" in captured.out and out.exists()


def test_peak_memory_does_not_grow_with_batches_or_batch_size(tmp_path):
    gen = ["trace", "gen", str(tmp_path / "t.tstrace"), "--tables", "16", "--batch-size", "8192"]
    few, many = cli_peak_rss(tmp_path, *gen, "--batches", "2"), cli_peak_rss(tmp_path, *gen, "--batches", "20")
    batch_bytes = 8 * 16 * 8192 * 13.6
    assert many < few + batch_bytes, (few, many)
    big = ["trace", "gen", str(tmp_path / "b.tstrace"), "--tables", "32", "--batch-size", "65536", "--batches", "1"]
    batch_bytes = 8 * 32 * 65536 * 13.6
    assert cli_peak_rss(tmp_path, *big) < few + batch_bytes / 2
