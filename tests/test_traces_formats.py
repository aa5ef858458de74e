"""Round trips and error handling of the trace readers and writers."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.traces import TraceFormatError, detect_format, open_trace, write_trace
from bench.traces import native, oracle
from tierstore import SparseBatch

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def batches(draw, max_tables=4, fixed_keys=None, weighted=None):
    """A list of SparseBatch with random tables, bag shapes, rows and optional weights."""
    n_batches = draw(st.integers(1, 4))
    names = fixed_keys or draw(
        st.lists(st.sampled_from(["t0", "t1", "user", "item", "ad_7", "x"]), min_size=1, max_size=max_tables, unique=True)
    )
    use_weights = draw(st.booleans()) if weighted is None else weighted
    fixed_b = draw(st.integers(1, 5))
    out = []
    for _ in range(n_batches):
        b = fixed_b if fixed_keys else draw(st.integers(1, 5))
        lengths = np.asarray(draw(st.lists(st.integers(0, 4), min_size=b * len(names), max_size=b * len(names))))
        n = int(lengths.sum())
        rows = np.asarray(draw(st.lists(st.integers(0, 2**33), min_size=n, max_size=n)), dtype=np.int64)
        weights = np.asarray(draw(st.lists(st.floats(-2, 2, width=32), min_size=n, max_size=n)), np.float32) if use_weights else None
        out.append(SparseBatch(keys=tuple(names), values=rows, lengths=lengths, weights=weights))
    return out


def same_batch(a: SparseBatch, b: SparseBatch) -> bool:
    return (
        a.keys == b.keys
        and np.array_equal(a.values, b.values)
        and np.array_equal(a.lengths, b.lengths)
        and ((a.weights is None and b.weights is None) or np.array_equal(a.weights, b.weights))
    )


def per_table_sequences(trace) -> dict[str, list[int]]:
    """Each table's requested rows in request order (invariant under regrouping into bags)."""
    seqs: dict[str, list[int]] = {}
    for batch in trace:
        for key in batch.keys:
            seqs.setdefault(key, []).extend(batch.table(key)[0].tolist())
    return seqs


@SETTINGS
@given(trace=batches(), chunk_values=st.integers(1, 40))
def test_native_round_trip_is_exact(tmp_path, trace, chunk_values):
    path = tmp_path / "t.tstrace"
    counts = native.write(path, trace, metadata={"seed": 3}, chunk_values=chunk_values)
    reader = open_trace(path)
    back = list(reader)
    assert counts["batches"] == len(trace) == len(back)
    assert reader.metadata == {"seed": 3}
    assert all(same_batch(a, b) for a, b in zip(trace, back))


@SETTINGS
@given(trace=batches(weighted=False))
def test_csv_round_trip_keeps_every_tables_request_order(tmp_path, trace):
    path = tmp_path / "t.csv"
    write_trace(path, trace)
    back = list(open_trace(path, batch_requests=7))
    assert per_table_sequences(back) == {k: v for k, v in per_table_sequences(trace).items() if v}
    assert all(b.values.size <= 7 for b in back)


@SETTINGS
@given(trace=batches(weighted=False), batch_requests=st.integers(1, 50))
def test_oracle_round_trip_and_next_access(tmp_path, trace, batch_requests):
    path = tmp_path / "t.oracleGeneral.bin"
    info = write_trace(path, trace)
    names = info["tables"]
    back = list(open_trace(path, batch_requests=batch_requests, table_shift=None if len(names) == 1 else 40))
    renamed = {f"t{i}": name for i, name in enumerate(names)}
    got = {renamed.get(k, k) if len(names) > 1 else names[0]: v for k, v in per_table_sequences(back).items()}
    assert got == {k: v for k, v in per_table_sequences(trace).items() if v}
    records = np.fromfile(path, dtype=oracle.RECORD)
    ids = records["id"].tolist()
    for i, key in enumerate(ids):
        later = [j for j in range(i + 1, len(ids)) if ids[j] == key]
        assert records["nxt"][i] == (later[0] + 1 if later else -1)


@SETTINGS
@given(trace=batches(fixed_keys=["t0", "t1", "t2"], weighted=False), gz=st.booleans())
def test_dlrm_round_trip(tmp_path, trace, gz):
    path = tmp_path / ("t.pt.gz" if gz else "t.pt")
    write_trace(path, trace)
    back = list(open_trace(path, batch_size=trace[0].batch_size))
    assert len(back) == len(trace)
    assert all(same_batch(a, b) for a, b in zip(trace, back))


def test_dlrm_layout_is_table_major(tmp_path):
    torch = pytest.importorskip("torch")
    # T=2 tables, B=3 bags: table 0 bags [1], [], [2,3]; table 1 bags [7], [8,9], []
    indices = torch.tensor([1, 2, 3, 7, 8, 9])
    lengths = torch.tensor([[1, 0, 2], [1, 2, 0]])
    offsets = torch.tensor([0, 1, 1, 3, 4, 6, 6])
    path = tmp_path / "meta.pt"
    torch.save((indices, offsets, lengths), path)
    (batch,) = list(open_trace(path))
    assert batch.keys == ("t0", "t1") and batch.batch_size == 3
    rows0, offs0, _ = batch.table("t0")
    rows1, offs1, _ = batch.table("t1")
    assert rows0.tolist() == [1, 2, 3] and offs0.tolist() == [0, 1, 1, 3]
    assert rows1.tolist() == [7, 8, 9] and offs1.tolist() == [0, 1, 3, 3]
    halves = list(open_trace(path, batch_size=2))
    assert [h.batch_size for h in halves] == [2, 1]
    assert halves[1].table("t0")[0].tolist() == [2, 3] and halves[1].table("t1")[0].tolist() == []


def test_oracle_reads_libcachesim_sample_and_rewrites_identical_next_access(tmp_path):
    sample = "/work/shared/libcachesim/cloudPhysicsIO.oracleGeneral.bin"
    if not os.path.exists(sample):
        pytest.skip("../shared/libcachesim sample trace is absent")
    original = np.fromfile(sample, dtype=oracle.RECORD)
    out = tmp_path / "copy.oracleGeneral.bin"
    write_trace(out, open_trace(sample))
    copy = np.fromfile(out, dtype=oracle.RECORD)
    assert np.array_equal(copy["id"], original["id"])
    assert np.array_equal(copy["nxt"], original["nxt"])


def small_trace():
    rng = np.random.default_rng(0)
    return [
        SparseBatch(keys=("a", "b"), values=rng.integers(0, 1000, 400), lengths=np.full(40, 10))
        for _ in range(20)
    ]


def test_native_truncation_names_file_and_offset(tmp_path):
    path = tmp_path / "t.tstrace"
    native.write(path, small_trace(), chunk_values=1000)
    data = path.read_bytes()
    for cut in (len(data) - 10, len(data) - native.CHUNK.size, len(data) // 2, 20):
        bad = tmp_path / f"cut{cut}.tstrace"
        bad.write_bytes(data[:cut])
        with pytest.raises(TraceFormatError) as err:
            list(open_trace(bad))
        assert str(bad) in str(err.value) and "byte offset" in str(err.value)
        assert "truncated" in str(err.value)
        assert 0 <= err.value.offset <= cut


def test_native_corruption_is_detected_at_the_chunk(tmp_path):
    path = tmp_path / "t.tstrace"
    native.write(path, small_trace(), chunk_values=1000)
    data = bytearray(path.read_bytes())
    reader = native.NativeTraceReader(path)
    first_chunk = reader._data_start
    second_chunk = first_chunk + native.CHUNK.size + native.CHUNK.unpack_from(data, first_chunk)[2]
    data[second_chunk + native.CHUNK.size + 5] ^= 0xFF
    bad = tmp_path / "flip.tstrace"
    bad.write_bytes(bytes(data))
    with pytest.raises(TraceFormatError, match="checksum") as err:
        list(open_trace(bad))
    assert err.value.offset == second_chunk and str(bad) in str(err.value)
    data = bytearray(path.read_bytes())
    data[2] = ord("X")
    bad.write_bytes(bytes(data))
    with pytest.raises(TraceFormatError, match="magic"):
        open_trace(bad, format="tstrace")


def test_oracle_truncated_and_corrupt_records(tmp_path):
    path = tmp_path / "t.oracleGeneral.bin"
    write_trace(path, small_trace())
    data = bytearray(path.read_bytes())
    (tmp_path / "cut.bin").write_bytes(bytes(data[:-5]))
    with pytest.raises(TraceFormatError, match="truncated") as err:
        open_trace(tmp_path / "cut.bin")
    assert err.value.offset == len(data) - oracle.RECORD.itemsize
    records = np.frombuffer(bytes(data), dtype=oracle.RECORD).copy()
    records["nxt"][100] = 3
    records.tofile(tmp_path / "bad.bin")
    with pytest.raises(TraceFormatError, match="does not point forward") as err:
        list(open_trace(tmp_path / "bad.bin"))
    assert err.value.offset == 100 * oracle.RECORD.itemsize


def test_csv_malformed_line_names_offset(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"table,row\na,1\nb,2\nc,x3\n")
    with pytest.raises(TraceFormatError, match="malformed") as err:
        list(open_trace(path))
    assert err.value.offset == len(b"table,row\na,1\nb,2\n")


def test_dlrm_truncated_gzip_is_a_trace_error(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "t.pt.gz"
    write_trace(path, small_trace())
    data = path.read_bytes()
    cut = tmp_path / "cut.pt.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceFormatError) as err:
        list(open_trace(cut))
    assert str(cut) in str(err.value)
    with gzip.open(tmp_path / "junk.pt.gz", "wb") as f:
        f.write(b"not a pickle")
    with pytest.raises(TraceFormatError):
        list(open_trace(tmp_path / "junk.pt.gz"))


def test_format_detection_and_bad_names(tmp_path):
    assert detect_format("a.pt.gz") == "dlrm_datasets" and detect_format("x.oracleGeneral.bin") == "oracleGeneral"
    assert detect_format("x.csv") == "csv"
    with pytest.raises(ValueError, match="cannot tell"):
        detect_format(tmp_path / "trace.unknown")
    with pytest.raises(ValueError, match="unknown trace format"):
        open_trace("x.csv", format="parquet")
    with pytest.raises(ValueError, match="unknown trace reader options"):
        open_trace("x.csv", batch=3)


def test_dlrm_without_torch_says_how_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="tierstore\\[torch\\]"):
        list(open_trace(tmp_path / "x.pt"))
    with pytest.raises(ImportError, match="needs torch"):
        write_trace(tmp_path / "y.pt", small_trace())
