"""A trace as one key stream on disk, ready for offline cache simulation.

Every request becomes the key ``table_index << 40 | row`` (tables numbered by first
appearance), in trace order (key-major inside each batch).  Two passes over
temporary files keep memory independent of the trace length:

1. forward: stream the batches, write the keys;
2. backward: give each distinct key a dense id (the simulator's slot id) and find
   each request's next access (0-based index, -1 if none; Belady needs it).

Memory is O(distinct keys): a numba dict key -> id plus three int64 arrays per id.
Disk is 24 bytes per request (keys, ids, next accesses).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator

import numba
import numpy as np
from numba import types
from numba.typed import Dict

from bench.traces.batching import request_tables
from tierstore import SparseBatch

TABLE_SHIFT = 40
MAX_ROW = (1 << TABLE_SHIFT) - 1
CHUNK = 1 << 22


@numba.njit(cache=True)
def _ids_and_next_backward(keys, first_index, id_of, next_by_id, key_by_id, n_ids, ids_out, next_out):
    """Walk a chunk from its end: dense id per key and next access per request."""
    n = n_ids[0]
    for i in range(keys.size - 1, -1, -1):
        k = keys[i]
        if k in id_of:
            slot = id_of[k]
        else:
            slot = n
            id_of[k] = slot
            key_by_id[slot] = k
            next_by_id[slot] = -1
            n += 1
        ids_out[i] = slot
        next_out[i] = next_by_id[slot]
        next_by_id[slot] = first_index + i
    n_ids[0] = n


class KeyStream:
    """The on-disk key stream of a trace (see the module notes).

    Attributes
    ----------
    n_requests, n_keys : int
        Requests and distinct (table, row) keys.
    tables : list of str
        Table names by table index.
    key_by_id, table_by_id : ndarray of int64
        Key and table index of each dense id.
    """

    def __init__(self, batches: Iterable[SparseBatch], workdir: str | None = None, chunk: int = CHUNK):
        self._dir = tempfile.TemporaryDirectory(prefix="tierstore-keys-", dir=workdir)
        self.chunk = int(chunk)
        self.tables: list[str] = []
        self.batch_ends: list[int] = []
        keys_path = os.path.join(self._dir.name, "keys.i8")
        self.n_requests = self._write_keys(batches, keys_path)
        self.ids_path = os.path.join(self._dir.name, "ids.i8")
        self.next_path = os.path.join(self._dir.name, "next.i8")
        self._index(keys_path)
        os.remove(keys_path)

    def _write_keys(self, batches: Iterable[SparseBatch], path: str) -> int:
        index: dict[str, int] = {}
        n = 0
        with open(path, "wb") as f:
            for batch in batches:
                for key in batch.keys:
                    if key not in index:
                        index[key] = len(self.tables)
                        self.tables.append(key)
                if batch.values.size and (batch.values.min() < 0 or batch.values.max() > MAX_ROW):
                    raise ValueError(f"rows must be in [0, 2**{TABLE_SHIFT}) for simulation, batch {len(self.batch_ends)}")
                table_ids = np.asarray([index[k] for k in batch.keys], dtype=np.int64)[request_tables(batch)]
                ((table_ids << TABLE_SHIFT) | batch.values.astype(np.int64)).tofile(f)
                n += batch.values.size
                self.batch_ends.append(n)
        return n

    def _index(self, keys_path: str) -> None:
        id_of = Dict.empty(key_type=types.int64, value_type=types.int64)
        next_by_id = np.zeros(0, dtype=np.int64)
        key_by_id = np.zeros(0, dtype=np.int64)
        n_ids = np.zeros(1, dtype=np.int64)
        with open(keys_path, "rb") as keys_file, open(self.ids_path, "wb") as ids_file, \
                open(self.next_path, "wb") as next_file:
            ids_file.truncate(8 * self.n_requests)
            next_file.truncate(8 * self.n_requests)
            stop = self.n_requests
            while stop > 0:
                start = max(0, stop - self.chunk)
                keys_file.seek(8 * start)
                keys = np.fromfile(keys_file, dtype=np.int64, count=stop - start)
                need = int(n_ids[0]) + keys.size
                if need > next_by_id.size:
                    grow = max(need, 2 * next_by_id.size) - next_by_id.size
                    next_by_id = np.concatenate([next_by_id, np.zeros(grow, np.int64)])
                    key_by_id = np.concatenate([key_by_id, np.zeros(grow, np.int64)])
                ids = np.empty(keys.size, dtype=np.int64)
                nxt = np.empty(keys.size, dtype=np.int64)
                _ids_and_next_backward(keys, start, id_of, next_by_id, key_by_id, n_ids, ids, nxt)
                ids_file.seek(8 * start)
                ids.tofile(ids_file)
                next_file.seek(8 * start)
                nxt.tofile(next_file)
                stop = start
        self.n_keys = int(n_ids[0])
        self.key_by_id = key_by_id[: self.n_keys].copy()
        self.table_by_id = self.key_by_id >> TABLE_SHIFT

    def chunks(self, with_next: bool) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(first_index, ids, next_access)`` chunks in trace order.

        ``next_access`` is empty when ``with_next`` is False.
        """
        with open(self.ids_path, "rb") as ids_file, open(self.next_path, "rb") as next_file:
            for start in range(0, self.n_requests, self.chunk):
                count = min(self.chunk, self.n_requests - start)
                ids = np.fromfile(ids_file, dtype=np.int64, count=count)
                if with_next:
                    nxt = np.fromfile(next_file, dtype=np.int64, count=count)
                else:
                    nxt = np.empty(0, dtype=np.int64)
                yield start, ids, nxt

    def keys(self) -> np.ndarray:
        """The whole key stream in memory (for tests and small traces)."""
        ids = np.concatenate([c[1] for c in self.chunks(False)]) if self.n_requests else np.zeros(0, np.int64)
        return self.key_by_id[ids]

    def close(self) -> None:
        """Delete the temporary files."""
        self._dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
