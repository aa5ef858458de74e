"""Splitting a batch by shard and merging the shards' pooled partials (no Ray here).

A table held whole by one shard is pooled there in the caller's mode, so its
result is bit-for-bit the single store's.  A table cut into row ranges is split
index by index (one Numba pass, bag order kept): each shard pools the ids that
fall in its range, as ids local to that range, and the router merges:

- ``sum`` (weighted or not): the partial sums add up (a bag held by one shard
  gets exactly the single store's sum; a bag spread over shards is summed in
  another order, so it may differ in the last bits);
- ``mean``: the shards return sums; the router divides by the bag's length,
  which it knows from the split;
- ``max``: element-wise max over the shards that hold a row of the bag (the
  router's per-shard bag counts mark the others, whose zeros would corrupt a max);
- an empty bag stays zero in every mode.

Local ids travel as int32 when the range allows, bag lengths as int32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from tierstore.batch import SparseBatch
from tierstore.distributed.plan import ShardPlan


@numba.njit(nogil=True, cache=True)
def split_by_piece(ids, bounds, starts, local):
    """Group ``ids`` by the row range they fall in, keeping bag order within each range.

    Parameters
    ----------
    ids : int64 [n]
        Row ids, all in ``[starts[0], starts[-1])``.
    bounds : int64 [B + 1]
        Bag boundaries.
    starts : int64 [k + 1]
        Range boundaries (first row of each range, then the table's row count).
    local : int32 or int64 [n]
        Output: ids minus their range's start, range-major, then bag by bag.

    Returns
    -------
    counts : int64 [k, B]
        Ids of each bag in each range.
    order : int64 [n]
        ``local[j]`` came from ``ids[order[j]]``.
    """
    k = starts.size - 1
    n_bags = bounds.size - 1
    piece = np.empty(ids.size, dtype=np.int32)
    counts = np.zeros((k, n_bags), dtype=np.int64)
    for b in range(n_bags):
        for i in range(bounds[b], bounds[b + 1]):
            p = np.searchsorted(starts, ids[i], side="right") - 1
            piece[i] = p
            counts[p, b] += 1
    cursor = np.empty((k, n_bags), dtype=np.int64)
    total = 0
    for p in range(k):
        for b in range(n_bags):
            cursor[p, b] = total
            total += counts[p, b]
    order = np.empty(ids.size, dtype=np.int64)
    for b in range(n_bags):
        for i in range(bounds[b], bounds[b + 1]):
            p = piece[i]
            j = cursor[p, b]
            local[j] = ids[i] - starts[p]
            order[j] = i
            cursor[p, b] += 1
    return counts, order


def id_dtype(num_rows: int):
    """The narrowest id dtype the wire needs for a range of ``num_rows`` rows."""
    return np.int32 if num_rows <= np.iinfo(np.int32).max else np.int64


@dataclass(frozen=True)
class ShardRequest:
    """One shard's share of a batch: bags of several of its tables, KeyedJaggedTensor-style.

    ``values`` are ids local to the shard's tables; ``weights`` are given for every key or for none.
    """

    keys: tuple[str, ...]
    modes: tuple[str, ...]
    values: np.ndarray
    lengths: np.ndarray
    weights: np.ndarray | None = None

    def batch(self) -> SparseBatch:
        return SparseBatch(keys=self.keys, values=self.values, lengths=self.lengths, weights=self.weights)

    @property
    def nbytes(self) -> int:
        """Bytes of arrays this request carries to the shard."""
        return self.values.nbytes + self.lengths.nbytes + (0 if self.weights is None else self.weights.nbytes)


@dataclass(frozen=True)
class Part:
    """Where one table's partial sits in a shard's reply: columns ``[col, col + dim)``; ``counts``: the bag
    lengths it covers (None when the shard holds the whole table)."""

    shard: int
    col: int
    counts: np.ndarray | None


@dataclass(frozen=True)
class TableMerge:
    """How to merge one table's partials into its output columns."""

    table: str
    mode: str
    lengths: np.ndarray
    parts: tuple[Part, ...]


class BatchRouter:
    """Splits checked lookups by shard and merges the shards' replies, following a :class:`ShardPlan`."""

    def __init__(self, plan: ShardPlan):
        self.plan = plan
        self._starts, self._shards, self._dims, self._wire = {}, {}, {}, {}
        for table in plan.tables:
            pieces = plan.pieces_of(table.name)
            self._starts[table.name] = np.array([p.start for p in pieces] + [table.num_rows], dtype=np.int64)
            self._shards[table.name] = [p.shard for p in pieces]
            self._dims[table.name] = table.dim
            self._wire[table.name] = id_dtype(max(p.num_rows for p in pieces))

    def split(self, requests) -> tuple[dict[int, list], list[TableMerge]]:
        """Split checked lookups ``(table, ids int64, bounds int64[B+1], weights or None, mode)``.

        Weights come with every request or with none, as in a ``SparseBatch``.

        Returns
        -------
        per_shard : dict of int to ShardRequest
        merges : list of TableMerge
            In request order.
        """
        if len({weights is None for *_, weights, _ in requests}) > 1:
            raise ValueError("per_sample_weights must be given for every table of a batch or for none")
        parts_of: dict[int, list] = {}
        merges = []
        for table, ids, bounds, weights, mode in requests:
            lengths = np.diff(bounds)
            starts, shards = self._starts[table], self._shards[table]
            wire = self._wire[table]
            if len(shards) == 1:
                shard_parts = [(shards[0], mode, ids.astype(wire, copy=False), lengths, weights, None)]
            else:
                local = np.empty(ids.size, dtype=wire)
                counts, order = split_by_piece(ids, bounds, starts, local)
                ends = np.cumsum(counts.sum(axis=1))
                local_weights = None if weights is None else weights[order]
                pooled_mode = "sum" if mode == "mean" else mode
                shard_parts = []
                for p, shard in enumerate(shards):
                    if ends[p] == (ends[p - 1] if p else 0):
                        continue
                    span = slice(ends[p - 1] if p else 0, ends[p])
                    shard_parts.append((shard, pooled_mode, local[span], counts[p],
                                        None if local_weights is None else local_weights[span], counts[p]))
            parts = []
            for shard, shard_mode, values, bag_lengths, part_weights, counts in shard_parts:
                pending = parts_of.setdefault(shard, [])
                col = sum(self._dims[t] for t, *_ in pending)
                pending.append((table, shard_mode, values, bag_lengths, part_weights))
                parts.append(Part(shard, col, counts))
            merges.append(TableMerge(table, mode, lengths, tuple(parts)))
        return {shard: _request(parts) for shard, parts in parts_of.items()}, merges

    def merge(self, merges: list[TableMerge], replies: dict[int, np.ndarray], views: dict[str, np.ndarray]) -> None:
        """Write each table's merged result into ``views[table]`` from ``replies[shard]`` ([B, dims])."""
        for m in merges:
            out = views[m.table]
            dim = out.shape[1]
            partials = [replies[p.shard][:, p.col : p.col + dim] for p in m.parts]
            if not partials:
                out[:] = 0.0
            elif len(partials) == 1 and m.parts[0].counts is None:
                out[:] = partials[0]
            elif m.mode == "max":
                out[:] = -np.inf
                for part, partial in zip(m.parts, partials):
                    np.maximum(out, partial, out=out, where=(part.counts > 0)[:, None])
                out[m.lengths == 0] = 0.0
            else:
                out[:] = partials[0]
                for partial in partials[1:]:
                    out += partial
                if m.mode == "mean":
                    full = m.lengths > 0
                    out[full] /= m.lengths[full, None].astype(np.float32)

    def split_ids(self, table: str, ids: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """``[(shard, local ids, positions in ids)]`` for checked int64 ``ids`` of ``table``."""
        starts, shards = self._starts[table], self._shards[table]
        if len(shards) == 1:
            return [(shards[0], ids, np.arange(ids.size))] if ids.size else []
        local = np.empty(ids.size, dtype=np.int64)
        counts, order = split_by_piece(ids, np.array([0, ids.size], dtype=np.int64), starts, local)
        ends = np.cumsum(counts[:, 0])
        out = []
        for p, shard in enumerate(shards):
            span = slice(ends[p - 1] if p else 0, ends[p])
            if span.stop > span.start:
                out.append((shard, local[span], order[span]))
        return out


def _request(parts: list) -> ShardRequest:
    weights = None if parts[0][4] is None else np.concatenate([p[4] for p in parts])
    return ShardRequest(
        keys=tuple(p[0] for p in parts),
        modes=tuple(p[1] for p in parts),
        values=np.concatenate([p[2] for p in parts]),
        lengths=np.concatenate([p[3] for p in parts]).astype(np.int32),
        weights=weights,
    )
