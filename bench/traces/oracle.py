"""libCacheSim's oracleGeneral binary trace: 24-byte little-endian records.

Each record is ``<u4 clock_time, <u8 obj_id, <u4 obj_size, <i8 next_access_vtime>``,
where ``next_access_vtime`` is the 1-based index of the next request for the same
object, or -1.  The format has no table names and no bags:

* reading groups ``batch_requests`` consecutive requests into one batch of single-index
  bags (bag ``i`` of a table holds request ``i`` if it went to that table, else it is
  empty).  With ``table_shift=None`` every id is a row of one table ``t0``; with
  ``table_shift=40`` the id is split into table ``t{id >> 40}`` and row
  ``id & (2**40 - 1)``.
* writing stores key-major requests, ``clock_time`` = batch number, ``obj_size`` from
  ``row_bytes``, ids ``table_index << 40 | row`` (tables numbered by first appearance;
  one table writes raw rows), then computes ``next_access_vtime`` in a backward pass
  over the file (memory: one numba dict entry per distinct id).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np

from bench.traces.batching import as_parts, request_tables, single_index_batch
from bench.traces.errors import TraceFormatError
from bench.traces.kernels import fill_next_access_backward, new_position_map
from tierstore import SparseBatch

RECORD = np.dtype([("t", "<u4"), ("id", "<u8"), ("sz", "<u4"), ("nxt", "<i8")])
TABLE_SHIFT = 40
ROW_MASK = (1 << TABLE_SHIFT) - 1
DEFAULT_BATCH_REQUESTS = 4096
PASS_RECORDS = 1 << 20


class OracleTraceReader:
    """Stream an oracleGeneral file as batches of single-index bags.

    Parameters
    ----------
    path : str or PathLike
        The trace file.
    batch_requests : int
        Requests per batch.
    table_shift : int or None
        ``None``: one table ``t0`` whose rows are the object ids.  An int: table index
        ``id >> table_shift``, row ``id & (2**table_shift - 1)``.
    """

    def __init__(self, path, batch_requests: int = DEFAULT_BATCH_REQUESTS, table_shift: int | None = None):
        self.path = os.fspath(path)
        if int(batch_requests) <= 0:
            raise ValueError(f"batch_requests must be positive, got {batch_requests}")
        self.batch_requests = int(batch_requests)
        self.table_shift = table_shift
        self.metadata = {"format": "oracleGeneral"}
        size = os.path.getsize(self.path)
        if size % RECORD.itemsize:
            whole = size - size % RECORD.itemsize
            raise TraceFormatError(
                self.path, whole, f"truncated: a {RECORD.itemsize}-byte record is cut after {size - whole} bytes"
            )
        self.num_requests = size // RECORD.itemsize

    def _check(self, records: np.ndarray, first: int) -> None:
        if np.any(records["id"] >= np.uint64(1 << 63)):
            bad = int(np.flatnonzero(records["id"] >= np.uint64(1 << 63))[0])
            raise TraceFormatError(self.path, (first + bad) * RECORD.itemsize, "object id does not fit int64")
        index = np.arange(first + 1, first + 1 + records.size)
        nxt = records["nxt"]
        bad = np.flatnonzero((nxt != -1) & (nxt <= index))
        if bad.size:
            i = int(bad[0])
            raise TraceFormatError(
                self.path,
                (first + i) * RECORD.itemsize,
                f"record {first + i}: next_access_vtime {int(nxt[i])} does not point forward (corrupt record)",
            )

    def __iter__(self) -> Iterator[SparseBatch]:
        with open(self.path, "rb") as f:
            first = 0
            while first < self.num_requests:
                records = np.fromfile(f, dtype=RECORD, count=self.batch_requests)
                self._check(records, first)
                ids = records["id"].astype(np.int64)
                if self.table_shift is None:
                    tables = np.zeros(ids.size, dtype=np.int64)
                    rows = ids
                else:
                    tables = ids >> self.table_shift
                    rows = ids & ((1 << self.table_shift) - 1)
                names = [f"t{t}" for t in range(int(tables.max()) + 1)] if ids.size else []
                yield single_index_batch(tables, rows, names)
                first += records.size


def read(path, **options) -> OracleTraceReader:
    """Open an oracleGeneral file for streaming (see :class:`OracleTraceReader`)."""
    return OracleTraceReader(path, **options)


def write(path, batches: Iterable[SparseBatch], row_bytes: int | dict[str, int] = 1) -> dict:
    """Write batches as oracleGeneral records, then fill ``next_access_vtime``.

    Parameters
    ----------
    path : str or PathLike
        Output file.
    batches : iterable of SparseBatch or BatchPart
        The trace.
    row_bytes : int or dict
        ``obj_size`` of every request, or per table name.

    Returns
    -------
    dict
        ``{"batches": n, "values": n, "tables": [names by table index]}``.
    """
    path = os.fspath(path)
    table_index: dict[str, int] = {}
    n_batches = n_values = 0
    with open(path, "wb") as f:
        for batch, last in as_parts(batches):
            for key in batch.keys:
                table_index.setdefault(key, len(table_index))
            ids = np.asarray([table_index[k] for k in batch.keys], dtype=np.int64)[request_tables(batch)]
            if np.any(batch.values < 0) or np.any(batch.values > ROW_MASK):
                raise ValueError(f"oracleGeneral rows must be in [0, 2**{TABLE_SHIFT}), batch {n_batches}")
            sizes = np.asarray(
                [row_bytes.get(k, 1) if isinstance(row_bytes, dict) else row_bytes for k in batch.keys], dtype=np.uint32
            )[request_tables(batch)]
            records = np.empty(batch.values.size, dtype=RECORD)
            records["t"] = n_batches
            records["id"] = (ids << TABLE_SHIFT) | batch.values
            records["sz"] = sizes
            records["nxt"] = -1
            records.tofile(f)
            n_batches += last
            n_values += batch.values.size
    _fill_next_access(path, n_values)
    return {"batches": n_batches, "values": n_values, "tables": list(table_index)}


def _fill_next_access(path: str, n: int) -> None:
    """Backward pass over the file writing ``next_access_vtime`` in place, chunk by chunk."""
    positions = new_position_map()
    with open(path, "r+b") as f:
        stop = n
        while stop > 0:
            start = max(0, stop - PASS_RECORDS)
            f.seek(start * RECORD.itemsize)
            chunk = np.fromfile(f, dtype=RECORD, count=stop - start)
            nxt = np.empty(chunk.size, dtype=np.int64)
            fill_next_access_backward(chunk["id"].astype(np.int64), start, positions, nxt)
            chunk["nxt"] = nxt
            f.seek(start * RECORD.itemsize)
            chunk.tofile(f)
            stop = start
