"""Streaming trace statistics: requests, distinct rows, skew, pooling, reuse.

Memory: per table, exact access counts and last-access positions.  While a table's
largest row id stays below ``dense_limit`` they are dense numpy arrays sized to that
id (16 bytes per row of the id range); past it the table switches to numba dicts
(roughly 60-100 bytes per distinct row).  Nothing else grows with the trace: batches
are processed one at a time, and the reuse-time histogram is log2-binned.

Reuse time is the number of requests (all tables, in trace order, key-major inside a
batch) since the previous access to the same (table, row); it is the reuse distance
counted in requests, not the LRU stack distance.  The in-batch reuse histogram is
Meta's dlrm_datasets statistic: per batch, the fraction of touched (table, row)
pairs by number of accesses in that batch, averaged over batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from numba import types
from numba.typed import Dict

from bench.traces import meta2022
from bench.traces.batching import request_tables
from bench.traces.kernels import REUSE_BINS, count_and_reuse_dense, count_and_reuse_sparse, dense_to_dicts
from tierstore import SparseBatch

SKEW_FRACTIONS = (0.001, 0.01, 0.1)
DEFAULT_DENSE_LIMIT = 1 << 24


def reuse_histogram(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Meta's in-batch reuse histogram of per-row access counts.

    Parameters
    ----------
    counts : ndarray of int
        Accesses per row (zeros are ignored).

    Returns
    -------
    frac_of_unique_rows, frac_of_accesses : ndarray
        Over the bins of :data:`bench.traces.meta2022.BIN_EDGES` ((0,1], (1,2], (2,4],
        ..., 32768+): the fraction of touched rows, and of accesses, in each bin.
    """
    counts = np.asarray(counts)
    counts = counts[counts > 0]
    nbins = len(meta2022.BIN_EDGES)
    bins = np.minimum(np.searchsorted(np.asarray(meta2022.BIN_EDGES), counts, side="left") - 1, nbins - 1)
    rows = np.bincount(bins, minlength=nbins).astype(np.float64)
    accesses = np.bincount(bins, weights=counts, minlength=nbins)
    return rows / max(rows.sum(), 1.0), accesses / max(accesses.sum(), 1.0)


def batch_access_counts(batch: SparseBatch) -> np.ndarray:
    """Accesses per touched (table, row) pair within one batch."""
    keys = (request_tables(batch) << 40) | batch.values
    return np.unique(keys, return_counts=True)[1]


def skew(counts: np.ndarray) -> dict[str, float]:
    """Share of accesses that go to the top 0.1 %, 1 % and 10 % of the touched rows."""
    counts = np.asarray(counts)
    counts = np.sort(counts[counts > 0])[::-1]
    total = counts.sum()
    out = {}
    for frac in SKEW_FRACTIONS:
        k = max(1, math.ceil(frac * counts.size)) if counts.size else 0
        out[f"top_{frac * 100:g}%"] = float(counts[:k].sum() / total) if total else 0.0
    return out


class _TableCounter:
    """Exact per-row counts and last-access positions of one table, dense or sparse."""

    def __init__(self, dense_limit: int):
        self.dense_limit = dense_limit
        self.counts = np.zeros(0, dtype=np.int64)
        self.last_seen = np.zeros(0, dtype=np.int64)
        self.sparse = False
        self.requests = 0
        self.bag_sizes = np.zeros(0, dtype=np.int64)

    def _go_sparse(self) -> None:
        counts = Dict.empty(key_type=types.int64, value_type=types.int64)
        last_seen = Dict.empty(key_type=types.int64, value_type=types.int64)
        dense_to_dicts(self.counts, self.last_seen, counts, last_seen)
        self.counts, self.last_seen, self.sparse = counts, last_seen, True

    def add(self, rows: np.ndarray, lengths: np.ndarray, first_position: int, reuse_hist: np.ndarray) -> None:
        self.requests += rows.size
        if lengths.size:
            top = int(lengths.max()) + 1
            if top > self.bag_sizes.size:
                self.bag_sizes = np.concatenate([self.bag_sizes, np.zeros(top - self.bag_sizes.size, np.int64)])
            self.bag_sizes[: top] += np.bincount(lengths, minlength=top)
        if not rows.size:
            return
        if rows.min() < 0:
            raise ValueError(f"negative row id {int(rows.min())} in trace")
        need = int(rows.max()) + 1
        if not self.sparse and need > self.counts.size:
            if need > self.dense_limit:
                self._go_sparse()
            else:
                size = min(self.dense_limit, max(need, 2 * self.counts.size))
                grow = size - self.counts.size
                self.counts = np.concatenate([self.counts, np.zeros(grow, np.int64)])
                self.last_seen = np.concatenate([self.last_seen, np.full(grow, -1, np.int64)])
        kernel = count_and_reuse_sparse if self.sparse else count_and_reuse_dense
        kernel(rows.astype(np.int64), first_position, self.counts, self.last_seen, reuse_hist)

    def count_array(self) -> np.ndarray:
        if self.sparse:
            return np.fromiter(self.counts.values(), dtype=np.int64, count=len(self.counts))
        return self.counts[self.counts > 0]

    def memory_bytes(self) -> int:
        return 64 * len(self.counts) * 2 if self.sparse else self.counts.nbytes + self.last_seen.nbytes

    def pooling(self) -> dict[str, float]:
        sizes = self.bag_sizes
        bags = int(sizes.sum())
        if not bags:
            return {"bags": 0, "mean": 0.0, "p50": 0, "p90": 0, "p99": 0, "max": 0}
        cdf = np.cumsum(sizes) / bags
        pct = {f"p{q}": int(np.searchsorted(cdf, q / 100)) for q in (50, 90, 99)}
        return {"bags": bags, "mean": float((np.arange(sizes.size) * sizes).sum() / bags), **pct,
                "max": int(np.flatnonzero(sizes)[-1])}


class TraceStats:
    """Accumulate statistics batch by batch; :meth:`result` gives a JSON-ready dict.

    Parameters
    ----------
    dense_limit : int
        Largest id range per table kept in dense arrays (see the module notes on memory).
    in_batch : bool
        Also compute Meta's in-batch reuse histogram (one sort per batch).
    """

    def __init__(self, dense_limit: int = DEFAULT_DENSE_LIMIT, in_batch: bool = True):
        self.dense_limit = int(dense_limit)
        self.in_batch = in_batch
        self.tables: dict[str, _TableCounter] = {}
        self.reuse_hist = np.zeros(REUSE_BINS + 1, dtype=np.int64)
        self.requests = 0
        self.batches = 0
        self.in_batch_unique = np.zeros(len(meta2022.BIN_EDGES))
        self.in_batch_accesses = np.zeros(len(meta2022.BIN_EDGES))
        self.in_batch_reuse_sum = 0.0

    def add(self, batch: SparseBatch) -> None:
        """Account for one batch."""
        b = batch.batch_size
        for k, key in enumerate(batch.keys):
            start, stop = int(batch.offsets[k * b]), int(batch.offsets[(k + 1) * b])
            counter = self.tables.get(key)
            if counter is None:
                counter = self.tables[key] = _TableCounter(self.dense_limit)
            counter.add(batch.values[start:stop], batch.lengths[k * b : (k + 1) * b], self.requests + start, self.reuse_hist)
        if self.in_batch and batch.values.size:
            counts = batch_access_counts(batch)
            unique, accesses = reuse_histogram(counts)
            self.in_batch_unique += unique
            self.in_batch_accesses += accesses
            self.in_batch_reuse_sum += batch.values.size / counts.size
        self.requests += batch.values.size
        self.batches += 1

    def result(self) -> dict:
        """Statistics so far, as plain Python types."""
        tables = {}
        all_counts = []
        for name, counter in self.tables.items():
            counts = counter.count_array()
            all_counts.append(counts)
            tables[name] = {
                "requests": counter.requests,
                "distinct_rows": int(counts.size),
                "skew": skew(counts),
                "pooling": counter.pooling(),
            }
        counts = np.concatenate(all_counts) if all_counts else np.zeros(0, np.int64)
        nonempty = np.flatnonzero(self.reuse_hist[:-1])
        top = int(nonempty[-1]) + 1 if nonempty.size else 0
        out = {
            "requests": self.requests,
            "batches": self.batches,
            "num_tables": len(tables),
            "distinct_rows": int(counts.size),
            "skew": skew(counts),
            "tables": tables,
            "reuse_time_histogram": {
                "unit": "requests since the previous access to the same (table, row)",
                "bins": [[1 << b, (1 << (b + 1)) - 1] for b in range(top)],
                "counts": self.reuse_hist[:top].tolist(),
                "first_accesses": int(self.reuse_hist[-1]),
            },
            "counter_memory_bytes": int(sum(c.memory_bytes() for c in self.tables.values())),
        }
        if self.in_batch and self.batches:
            out["in_batch_reuse"] = {
                "bin_edges": list(meta2022.BIN_EDGES),
                "frac_of_unique_rows": (self.in_batch_unique / self.batches).tolist(),
                "frac_of_accesses": (self.in_batch_accesses / self.batches).tolist(),
                "mean_reuse": self.in_batch_reuse_sum / self.batches,
            }
        return out


def trace_stats(batches: Iterable[SparseBatch], **options) -> dict:
    """Statistics of a whole trace (see :class:`TraceStats` for the options)."""
    stats = TraceStats(**options)
    for batch in batches:
        stats.add(batch)
    return stats.result()
