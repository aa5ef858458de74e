"""Damaged trace files: every bit flip and every truncation of a .tstrace is one TraceFormatError with an offset."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.traces import TraceFormatError, native, open_trace
from tierstore import SparseBatch
from tierstore.cli import main

DAMAGE = settings(max_examples=60, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    rng = np.random.default_rng(5)
    batches = []
    for i in range(12):
        lengths = rng.integers(0, 4, size=6)
        weights = rng.random(int(lengths.sum())).astype(np.float32) if i % 2 else None
        batches.append(SparseBatch(keys=("a", "b"), values=rng.integers(0, 5000, int(lengths.sum())),
                                   lengths=lengths, weights=weights))
    path = tmp_path_factory.mktemp("trace") / "t.tstrace"
    native.write(path, batches, chunk_values=40)
    return path, path.read_bytes(), batches


def read_all(path) -> list:
    return list(open_trace(path))


def chunk_offsets(data: bytes) -> list[int]:
    """Byte offsets of every chunk header and of the end marker."""
    (meta_len,) = struct.unpack_from("<I", data, len(native.MAGIC) + 4)
    offset = len(native.MAGIC) + 8 + meta_len + 4
    found = []
    while True:
        found.append(offset)
        magic, _, payload_len, _, _ = native.CHUNK.unpack_from(data, offset)
        if magic == native.END_MAGIC:
            return found
        offset += native.CHUNK.size + payload_len


def test_a_huge_payload_length_is_a_format_error_not_a_memory_error(tmp_path, trace, capsys):
    path, data, _ = trace
    first = chunk_offsets(data)[0]
    damaged = bytearray(data)
    damaged[first + 8 + 5] ^= 0x80  # payload_len's high bytes: terabytes
    bad = tmp_path / "bad.tstrace"
    bad.write_bytes(bytes(damaged))
    with pytest.raises(TraceFormatError, match=rf"at byte offset {first}: .*only \d+ remain") as err:
        read_all(bad)
    assert err.value.offset == first
    assert main(["trace", "stats", str(bad)]) == 1
    assert f"at byte offset {first}" in capsys.readouterr().err


@pytest.mark.parametrize("field, value, message", [
    (1, 999, "counts 999 batches"),
    (2, 5, "reserved fields"),
    (3, 12345, "counts 12345 values"),
    (4, 1, "reserved fields"),
])
def test_every_end_marker_field_is_checked(tmp_path, trace, field, value, message):
    path, data, _ = trace
    end = chunk_offsets(data)[-1]
    fields = list(native.CHUNK.unpack_from(data, end))
    fields[field] = value
    bad = tmp_path / "bad.tstrace"
    bad.write_bytes(data[:end] + native.CHUNK.pack(*fields))
    with pytest.raises(TraceFormatError, match=rf"at byte offset {end}: .*{message}"):
        read_all(bad)


def test_the_intact_trace_reads_back(trace):
    path, _, batches = trace
    got = read_all(path)
    assert len(got) == len(batches)
    assert all(np.array_equal(a.values, b.values) and np.array_equal(a.lengths, b.lengths) for a, b in zip(got, batches))


def test_every_bit_flip_is_one_format_error_with_an_offset(tmp_path, trace):
    path, data, _ = trace

    @DAMAGE
    @given(offset=st.integers(0, len(data) - 1), bit=st.integers(0, 7))
    def flip(offset, bit):
        damaged = bytearray(data)
        damaged[offset] ^= 1 << bit
        bad = tmp_path / "bad.tstrace"
        bad.write_bytes(bytes(damaged))
        with pytest.raises(TraceFormatError) as err:
            read_all(bad)
        assert 0 <= err.value.offset <= len(data)

    flip()


def test_every_truncation_is_one_format_error(tmp_path, trace):
    path, data, _ = trace
    for length in range(len(data)):
        bad = tmp_path / "cut.tstrace"
        bad.write_bytes(data[:length])
        with pytest.raises(TraceFormatError) as err:
            read_all(bad)
        assert 0 <= err.value.offset <= length


def test_csv_table_names_that_are_not_utf8_are_format_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"table,row\nuser,3\nus\xe1r,4\n")
    with pytest.raises(TraceFormatError, match=r"at byte offset 17: table name .* is not UTF-8"):
        read_all(bad)
