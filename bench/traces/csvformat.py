"""Plain CSV traces: a ``table,row`` header, then one ``table,row`` line per request.

CSV carries no bags: reading groups ``batch_requests`` consecutive lines into a batch
of single-index bags (as :mod:`bench.traces.oracle` does); writing emits each batch's
requests key-major.  Parsing and formatting run in numba kernels over byte blocks, so
memory is one block (``block_bytes``) plus one batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np

from bench.traces.batching import as_parts, request_tables, single_index_batch
from bench.traces.csv_kernels import format_lines, parse_lines
from bench.traces.errors import TraceFormatError
from tierstore import SparseBatch

HEADER = b"table,row\n"
DEFAULT_BATCH_REQUESTS = 4096
BLOCK_BYTES = 1 << 24


class CsvTraceReader:
    """Stream a ``table,row`` CSV file as batches of single-index bags.

    Parameters
    ----------
    path : str or PathLike
        The CSV file (the ``table,row`` header line is optional).
    batch_requests : int
        Requests (lines) per batch.
    block_bytes : int
        Bytes read and parsed at a time.
    """

    def __init__(self, path, batch_requests: int = DEFAULT_BATCH_REQUESTS, block_bytes: int = BLOCK_BYTES):
        self.path = os.fspath(path)
        if int(batch_requests) <= 0:
            raise ValueError(f"batch_requests must be positive, got {batch_requests}")
        self.batch_requests = int(batch_requests)
        self.block_bytes = max(int(block_bytes), 1 << 12)
        self.metadata = {"format": "csv"}

    def _blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(file_offset, bytes)`` blocks that end on a line boundary."""
        with open(self.path, "rb") as f:
            first = f.readline()
            offset = f.tell() if first.strip().lower() in (b"table,row", b"table, row") else 0
            f.seek(offset)
            carry = b""
            while True:
                data = f.read(self.block_bytes)
                block = carry + data
                if not data:
                    if block:
                        if not block.endswith(b"\n"):
                            block += b"\n"
                        yield offset, np.frombuffer(block, dtype=np.uint8)
                    return
                cut = block.rfind(b"\n") + 1
                if cut:
                    yield offset, np.frombuffer(block[:cut], dtype=np.uint8)
                    offset += cut
                carry = block[cut:]

    def _requests(self) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        """Yield ``(table_ids, rows, names)`` per block; table ids index the growing ``names``."""
        names: list[str] = []
        ids_by_hash: dict[int, int] = {}
        for offset, buf in self._blocks():
            cap = int(np.count_nonzero(buf == 10))
            name_hash = np.empty(cap, dtype=np.uint64)
            name_start = np.empty(cap, dtype=np.int64)
            name_len = np.empty(cap, dtype=np.int64)
            rows = np.empty(cap, dtype=np.int64)
            lines, bad = parse_lines(buf, name_hash, name_start, name_len, rows)
            if bad >= 0:
                end = buf[bad:].tobytes().find(b"\n")
                text = buf[bad : bad + (end if end >= 0 else 60)].tobytes()[:60]
                raise TraceFormatError(self.path, offset + bad, f"malformed CSV line {text!r}, expected table,row")
            hashes, first = np.unique(name_hash[:lines], return_index=True)
            by_appearance = np.argsort(first)
            for h, i in zip(hashes[by_appearance].tolist(), first[by_appearance].tolist()):
                if h not in ids_by_hash:
                    ids_by_hash[h] = len(names)
                    raw = buf[name_start[i] : name_start[i] + name_len[i]].tobytes()
                    try:
                        names.append(raw.decode())
                    except UnicodeDecodeError:
                        raise TraceFormatError(self.path, offset + int(name_start[i]),
                                               f"table name {raw!r} is not UTF-8") from None
            lookup = np.asarray([ids_by_hash[h] for h in hashes.tolist()], dtype=np.int64)
            table_ids = lookup[np.searchsorted(hashes, name_hash[:lines])]
            yield table_ids, rows[:lines], names

    def __iter__(self) -> Iterator[SparseBatch]:
        pending_t: list[np.ndarray] = []
        pending_r: list[np.ndarray] = []
        pending = 0
        names: list[str] = []
        for table_ids, rows, names in self._requests():
            pending_t.append(table_ids)
            pending_r.append(rows)
            pending += rows.size
            if pending < self.batch_requests:
                continue
            all_t = np.concatenate(pending_t)
            all_r = np.concatenate(pending_r)
            whole = (all_r.size // self.batch_requests) * self.batch_requests
            for s in range(0, whole, self.batch_requests):
                yield single_index_batch(all_t[s : s + self.batch_requests], all_r[s : s + self.batch_requests], names)
            pending_t, pending_r, pending = [all_t[whole:]], [all_r[whole:]], all_r.size - whole
        if pending:
            yield single_index_batch(np.concatenate(pending_t), np.concatenate(pending_r), names)


def read(path, **options) -> CsvTraceReader:
    """Open a CSV trace for streaming (see :class:`CsvTraceReader`)."""
    return CsvTraceReader(path, **options)


def write(path, batches: Iterable[SparseBatch]) -> dict:
    """Write batches (SparseBatch or BatchPart items) as ``table,row`` lines (key-major per batch); return counts."""
    n_batches = n_values = 0
    with open(os.fspath(path), "wb") as f:
        f.write(HEADER)
        for batch, last in as_parts(batches):
            encoded = [k.encode() for k in batch.keys]
            if any(b"," in k or b"\n" in k for k in encoded):
                raise ValueError(f"CSV table names may not contain ',' or newlines: {list(batch.keys)}")
            if batch.values.size and batch.values.min() < 0:
                raise ValueError(f"CSV rows must be non-negative, batch {n_batches}")
            name_offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
            np.cumsum([len(k) for k in encoded], out=name_offsets[1:])
            name_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
            tables = request_tables(batch)
            out = np.empty(int((name_offsets[1:] - name_offsets[:-1] + 22)[tables].sum()), dtype=np.uint8)
            used = format_lines(tables, batch.values.astype(np.int64), name_bytes, name_offsets, out)
            f.write(out[:used].tobytes())
            n_batches += last
            n_values += batch.values.size
    return {"batches": n_batches, "values": n_values}
