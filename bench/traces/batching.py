"""Helpers shared by the readers and writers: single-index bags and request streams."""

from __future__ import annotations

import numpy as np

from tierstore import SparseBatch


def single_index_batch(table_ids: np.ndarray, rows: np.ndarray, names: list[str]) -> SparseBatch:
    """Build a batch of single-index bags from a request stream.

    Request ``i`` becomes bag ``i`` of its table; the other tables' bag ``i`` is empty,
    so every table has ``B = len(rows)`` bags.  Keys appear in ascending table id, and
    within a table the requests keep their order.

    Parameters
    ----------
    table_ids : ndarray of int
        Table index of each request (an index into ``names``).
    rows : ndarray of int
        Row of each request.
    names : list of str
        Table name by table index.
    """
    table_ids = np.asarray(table_ids, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    n = rows.size
    present = np.unique(table_ids)
    order = np.argsort(table_ids, kind="stable")
    lengths = np.zeros((present.size, n), dtype=np.int64)
    slot = np.searchsorted(present, table_ids)
    lengths[slot, np.arange(n)] = 1
    return SparseBatch(
        keys=tuple(names[t] for t in present),
        values=rows[order],
        lengths=lengths.reshape(-1),
    )


def request_tables(batch: SparseBatch) -> np.ndarray:
    """Index into ``batch.keys`` of every value (key-major, aligned with ``batch.values``)."""
    b = batch.batch_size
    per_key = batch.offsets[b :: b] - batch.offsets[: -1 : b] if b else np.zeros(len(batch.keys), np.int64)
    return np.repeat(np.arange(len(batch.keys), dtype=np.int64), per_key)
