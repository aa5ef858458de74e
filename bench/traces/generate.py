"""Seeded synthetic trace generators: Zipf tables, pooling factors, heavy hitters, drift.

Per table, a bag's indices are drawn by rank from a bounded Zipf law (exponent
``zipf``; 0 is uniform) through the continuous inverse CDF of ``x**-zipf`` on
``[1, num_rows + 1)`` (O(1) memory per table, exact in the tail, a close
approximation in the head).  A rank becomes a row through a seeded affine
permutation ``row = (rank * mult + offset) mod num_rows``, so hot rows are
scattered over the table as in real data.  Optional parts:

* heavy hitters: ``heavy_hitter_share`` of a table's indices go uniformly to
  ``heavy_hitters`` fixed rows (default/padding ids in production traces);
* popularity drift: every batch the ranking slides by ``drift`` x num_rows ranks,
  so fresh rows enter at the top and popular ones decay gradually;
* working-set shifts: every ``shift_every`` batches the ranking jumps by a random
  offset, replacing the whole hot set.

Everything is vectorized numpy per (batch, table); the same spec and seed give the
same trace, batch after batch, without holding it in memory.  :func:`generate_parts`
yields each batch in parts of whole tables (about ``part_values`` requests each), so
memory stays bounded by a part, not a batch: a full-scale ``meta2022`` batch alone is
1.4 G requests.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from bench.traces.batching import BatchPart
from tierstore import SparseBatch
from tierstore.config import JsonConfig

POOLING_DISTRIBUTIONS = ("fixed", "poisson", "lognormal")
#: Requests per part :func:`generate_parts` aims for (a table's bags are never split).
PART_VALUES = 1 << 23


@dataclass(frozen=True)
class TableSpec(JsonConfig):
    """How one table's indices are drawn.

    Parameters
    ----------
    name : str
        Table name.
    num_rows : int
        Rows in the table.
    zipf : float
        Zipf exponent of row popularity (0 = uniform).
    pooling : float
        Mean indices per bag.
    pooling_dist : {"fixed", "poisson", "lognormal"}
        Bag-size distribution with that mean.
    pooling_sigma : float
        Shape of the lognormal bag sizes.
    max_pooling : int
        Bags are clipped to this size.
    heavy_hitters : int
        Number of fixed very hot rows.
    heavy_hitter_share : float
        Fraction of the table's indices that go to them.
    """

    name: str
    num_rows: int
    zipf: float = 1.05
    pooling: float = 10.0
    pooling_dist: str = "poisson"
    pooling_sigma: float = 1.0
    max_pooling: int = 1 << 16
    heavy_hitters: int = 0
    heavy_hitter_share: float = 0.0

    def __post_init__(self):
        if int(self.num_rows) <= 0:
            raise ValueError(f"table {self.name!r}: num_rows must be positive, got {self.num_rows}")
        if self.zipf < 0:
            raise ValueError(f"table {self.name!r}: zipf must be >= 0, got {self.zipf}")
        if self.pooling < 0:
            raise ValueError(f"table {self.name!r}: pooling must be >= 0, got {self.pooling}")
        if self.pooling_dist not in POOLING_DISTRIBUTIONS:
            raise ValueError(
                f"table {self.name!r}: pooling_dist must be one of {POOLING_DISTRIBUTIONS}, got {self.pooling_dist!r}"
            )
        if not 0 <= self.heavy_hitter_share <= 1:
            raise ValueError(f"table {self.name!r}: heavy_hitter_share must be in [0, 1], got {self.heavy_hitter_share}")
        if self.heavy_hitter_share > 0 and not 0 < self.heavy_hitters <= self.num_rows:
            raise ValueError(f"table {self.name!r}: heavy_hitters must be in [1, num_rows] when heavy_hitter_share > 0")


@dataclass(frozen=True)
class TraceSpec(JsonConfig):
    """A whole synthetic trace.

    Parameters
    ----------
    tables : tuple of TableSpec
        The tables, in batch key order.
    batch_size : int
        Bags per table per batch.
    num_batches : int
        Batches in the trace.
    seed : int
        Seed; the same spec gives the same trace.
    drift : float
        Ranking slide per batch, as a fraction of each table's rows.
    shift_every : int
        Batches between working-set shifts (0: never).
    preset : str or None
        Name of the preset that built the spec, for the record.
    """

    tables: tuple[TableSpec, ...]
    batch_size: int
    num_batches: int
    seed: int = 0
    drift: float = 0.0
    shift_every: int = 0
    preset: str | None = field(default=None)

    def __post_init__(self):
        tables = tuple(TableSpec.from_dict(t) if isinstance(t, dict) else t for t in self.tables)
        object.__setattr__(self, "tables", tables)
        if not tables:
            raise ValueError("TraceSpec needs at least one table")
        names = [t.name for t in tables]
        if len(set(names)) != len(names):
            raise ValueError(f"TraceSpec table names must be distinct, got {names}")
        if int(self.batch_size) <= 0 or int(self.num_batches) < 0:
            raise ValueError(f"batch_size must be positive and num_batches >= 0, got {self.batch_size}, {self.num_batches}")
        if self.drift < 0 or self.shift_every < 0:
            raise ValueError("drift and shift_every must be >= 0")

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["tables"] = [t.to_dict() for t in self.tables]
        return data

    @property
    def expected_requests(self) -> float:
        """Mean number of indices in the whole trace."""
        return self.num_batches * self.batch_size * sum(t.pooling for t in self.tables)


def zipf_ranks(rng: np.random.Generator, n: int, alpha: float, count: int) -> np.ndarray:
    """``count`` 0-based ranks in ``[0, n)`` from a bounded continuous Zipf(alpha) law."""
    u = rng.random(count)
    if alpha == 0:
        ranks = u * n
    elif abs(alpha - 1.0) < 1e-9:
        ranks = np.exp(u * math.log(n + 1.0)) - 1.0
    else:
        e = 1.0 - alpha
        ranks = (1.0 + u * ((n + 1.0) ** e - 1.0)) ** (1.0 / e) - 1.0
    return np.minimum(ranks.astype(np.int64), n - 1)


def bag_sizes(rng: np.random.Generator, table: TableSpec, count: int) -> np.ndarray:
    """Indices per bag for ``count`` bags."""
    if table.pooling_dist == "fixed":
        sizes = np.full(count, int(round(table.pooling)), dtype=np.int64)
    elif table.pooling_dist == "poisson":
        sizes = rng.poisson(table.pooling, count)
    else:
        mu = math.log(max(table.pooling, 1e-9)) - table.pooling_sigma**2 / 2
        sizes = np.rint(rng.lognormal(mu, table.pooling_sigma, count)).astype(np.int64)
    return np.minimum(sizes, table.max_pooling)


def _coprime_multiplier(rng: np.random.Generator, n: int) -> int:
    mult = int(rng.integers(1, max(2, min(n, 1 << 22))))
    while math.gcd(mult, n) != 1:
        mult += 1
    return mult


class _TableStream:
    """One table's generator state."""

    def __init__(self, table: TableSpec, seed: np.random.SeedSequence):
        self.table = table
        self.rng = np.random.default_rng(seed)
        n = table.num_rows
        self.mult = _coprime_multiplier(self.rng, n)
        self.offset = int(self.rng.integers(0, n))
        self.heavy = self.rng.choice(n, size=table.heavy_hitters, replace=False) if table.heavy_hitter_share > 0 else None
        self.shift = 0

    def jump(self) -> None:
        self.shift = int(self.rng.integers(0, self.table.num_rows))

    def bags(self, batch_size: int, slide: int) -> tuple[np.ndarray, np.ndarray]:
        t = self.table
        n = t.num_rows
        lengths = bag_sizes(self.rng, t, batch_size)
        count = int(lengths.sum())
        ranks = zipf_ranks(self.rng, n, t.zipf, count)
        ranks = (ranks - slide - self.shift) % n
        rows = (ranks * self.mult + self.offset) % n
        if self.heavy is not None and count:
            hot = self.rng.random(count) < t.heavy_hitter_share
            rows[hot] = self.heavy[self.rng.integers(0, self.heavy.size, int(hot.sum()))]
        return rows, lengths


def _table_groups(spec: TraceSpec, part_values: float) -> list[list[int]]:
    """Consecutive tables grouped until each group expects at least ``part_values`` requests per batch."""
    groups, current, expected = [], [], 0.0
    for i, table in enumerate(spec.tables):
        current.append(i)
        expected += spec.batch_size * table.pooling
        if expected >= part_values:
            groups.append(current)
            current, expected = [], 0.0
    return groups + [current] if current else groups


def generate_parts(spec: TraceSpec, part_values: float = PART_VALUES) -> Iterator[BatchPart]:
    """Yield every batch of ``spec`` in parts of consecutive whole tables, about ``part_values`` requests each.

    A batch's parts, joined in order (``bench.traces.batching.join_parts``), are the
    batch :func:`generate` yields: each table draws from its own random stream.
    """
    seeds = np.random.SeedSequence(spec.seed).spawn(len(spec.tables))
    streams = [_TableStream(t, s) for t, s in zip(spec.tables, seeds)]
    groups = _table_groups(spec, part_values)
    for b in range(spec.num_batches):
        if spec.shift_every and b and b % spec.shift_every == 0:
            for s in streams:
                s.jump()
        for g, group in enumerate(groups):
            parts = [streams[i].bags(spec.batch_size, int(spec.drift * streams[i].table.num_rows * b)) for i in group]
            batch = SparseBatch(
                keys=tuple(spec.tables[i].name for i in group),
                values=np.concatenate([p[0] for p in parts]),
                lengths=np.concatenate([p[1] for p in parts]),
            )
            yield BatchPart(batch, last=g == len(groups) - 1)


def generate(spec: TraceSpec) -> Iterator[SparseBatch]:
    """Yield the batches of ``spec`` lazily, whole (memory: one batch at a time)."""
    return (part.batch for part in generate_parts(spec, part_values=math.inf))
