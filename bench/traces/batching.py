"""Helpers shared by the readers and writers: batch parts, single-index bags and request streams."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

from tierstore import SparseBatch


class BatchPart(NamedTuple):
    """Some consecutive tables of one batch; the part with ``last`` set ends the batch.

    Writers take parts so that a batch too large for memory (a full-scale
    ``meta2022`` batch is 1.4 G requests) can be written a part at a time.
    """

    batch: SparseBatch
    last: bool


def as_parts(items: Iterable) -> Iterator[BatchPart]:
    """Yield ``items`` as parts: a whole :class:`SparseBatch` is one part that ends its batch."""
    for item in items:
        yield item if isinstance(item, BatchPart) else BatchPart(item, True)


def join_parts(items: Iterable) -> Iterator[SparseBatch]:
    """Yield whole batches from parts (and whole batches); ValueError if the last batch is cut short."""
    pending: list[SparseBatch] = []
    for part in as_parts(items):
        pending.append(part.batch)
        if part.last:
            yield pending[0] if len(pending) == 1 else concat_tables(pending)
            pending = []
    if pending:
        raise ValueError("the trace ends inside a batch: its last part is missing")


def concat_tables(parts: list[SparseBatch]) -> SparseBatch:
    """One batch holding the tables of ``parts`` (same bags per table) in order, ids and lengths as int64."""
    sizes = {p.batch_size for p in parts}
    if len(sizes) != 1:
        raise ValueError(f"parts of one batch must have the same bags per table, got {sorted(sizes)}")
    weighted = [p.weights is not None for p in parts]
    if any(weighted) and not all(weighted):
        raise ValueError("parts of one batch must all have weights or none")
    return SparseBatch(
        keys=tuple(k for p in parts for k in p.keys),
        values=np.concatenate([p.values for p in parts], dtype=np.int64),
        lengths=np.concatenate([p.lengths for p in parts], dtype=np.int64),
        weights=np.concatenate([p.weights for p in parts]) if all(weighted) else None,
    )


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
