"""Streaming access profile of a trace: per-row counts and co-access hyperedges.

A trace is any iterable of batches shaped like ``tierstore.SparseBatch``: an
attribute ``keys`` (table names) and a method ``table(key)`` returning
``(indices, offsets[B + 1], weights)``.  One pass, bounded memory: exact counts
take 8 bytes per row of a table; tables over ``exact_max_rows`` rows get a
count-min sketch of ``sketch_width * sketch_depth`` counters instead; the
co-access sample holds at most ``max_pins`` row entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from .coaccess import EdgeSample
from .sketch import CountMinSketch
from .tables import TableSpec, as_table_specs


@numba.njit(cache=True, nogil=True)
def _add_counts(counts, rows):
    for i in range(rows.size):
        counts[rows[i]] += 1


@dataclass
class AccessProfile:
    """What :func:`profile` learned from a trace.

    Attributes
    ----------
    tables : dict of str to TableSpec
    exact_counts : dict of str to int64 ndarray
        Per-row access counts of exactly counted tables.
    sketches : dict of str to CountMinSketch
        Sketched counts of the other tables.
    coaccess : EdgeSample
        Sampled co-access hyperedges.
    num_batches : int
        Batches read.
    requests : dict of str to int
        Index occurrences per table.
    """

    tables: dict[str, TableSpec]
    exact_counts: dict[str, np.ndarray]
    sketches: dict[str, CountMinSketch]
    coaccess: EdgeSample
    num_batches: int = 0
    requests: dict[str, int] = field(default_factory=dict)

    def row_counts(self, name: str) -> np.ndarray:
        """Access count of every row of table ``name`` (sketch estimates for sketched tables)."""
        if name in self.exact_counts:
            return self.exact_counts[name]
        if name in self.sketches:
            return self.sketches[name].estimate(np.arange(self.tables[name].num_rows, dtype=np.int64))
        raise KeyError(f"no table {name!r} in the profile; tables: {list(self.tables)}")

    def count_error(self, name: str) -> tuple[float, float]:
        """``(bound, confidence)``: each count overestimates by at most ``bound`` with that probability.

        Exact tables give ``(0.0, 1.0)``.
        """
        if name in self.exact_counts:
            return 0.0, 1.0
        if name in self.sketches:
            sketch = self.sketches[name]
            return sketch.error_bound, sketch.confidence
        raise KeyError(f"no table {name!r} in the profile; tables: {list(self.tables)}")

    def summary(self) -> dict:
        """Plain-data description (JSON-ready)."""
        return {
            "num_batches": self.num_batches,
            "requests": dict(self.requests),
            "exact_tables": sorted(self.exact_counts),
            "sketched_tables": {
                n: {"width": s.width, "depth": s.depth, "error_bound": s.error_bound, "confidence": s.confidence}
                for n, s in self.sketches.items()
            },
            "coaccess": {
                "granularity": self.coaccess.granularity,
                "edges_seen": self.coaccess.edges_seen,
                "edges_kept": self.coaccess.num_edges,
                "pins_kept": self.coaccess.num_pins,
                "sample_rate": self.coaccess.sample_rate,
            },
        }


def profile(
    trace,
    tables,
    *,
    granularity: str = "bag",
    max_pins: int = 8_000_000,
    exact_max_rows: int = 200_000_000,
    sketch_width: int = 1 << 24,
    sketch_depth: int = 4,
    seed: int = 0,
) -> AccessProfile:
    """Profile a trace in one streaming pass.

    Parameters
    ----------
    trace : iterable of batches
        ``SparseBatch``-like batches (``keys`` and ``table(key)``).
    tables : mapping or sequence
        Table metadata, see :func:`placement.tables.as_table_specs`.
    granularity : {"bag", "batch"}
        Co-access unit: rows of one bag, or of one table in one batch.
    max_pins : int
        Memory bound of the co-access sample, in row entries (8 bytes each).
    exact_max_rows : int
        Tables with more rows are counted by a count-min sketch.
    sketch_width, sketch_depth : int
        Count-min sketch shape.
    seed : int
        Seeds sampling and hashing.

    Returns
    -------
    AccessProfile
    """
    specs = as_table_specs(tables)
    names = list(specs)
    exact = {n: np.zeros(s.num_rows, dtype=np.int64) for n, s in specs.items() if s.num_rows <= exact_max_rows}
    sketches = {
        n: CountMinSketch(sketch_width, sketch_depth, seed=seed + i)
        for i, (n, s) in enumerate(specs.items())
        if s.num_rows > exact_max_rows
    }
    result = AccessProfile(
        tables=specs,
        exact_counts=exact,
        sketches=sketches,
        coaccess=EdgeSample(names, granularity=granularity, max_pins=max_pins, seed=seed),
        requests={n: 0 for n in names},
    )
    for batch in trace:
        for key in batch.keys:
            if key not in specs:
                raise KeyError(f"trace batch {result.num_batches} has table {key!r} that is not in the tables given: {names}")
            indices, offsets, _ = batch.table(key)
            indices = check_indices(indices, specs[key], result.num_batches)
            if key in exact:
                _add_counts(exact[key], indices)
            else:
                sketches[key].add(indices)
            result.requests[key] += int(indices.size)
            result.coaccess.add(names.index(key), indices, np.ascontiguousarray(offsets, dtype=np.int64))
        result.num_batches += 1
    return result


def check_indices(indices, spec: TableSpec, batch_number: int) -> np.ndarray:
    """Indices as contiguous int64, or ``ValueError`` naming the table and batch when out of range."""
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= spec.num_rows):
        bad = indices[(indices < 0) | (indices >= spec.num_rows)][0]
        raise ValueError(
            f"trace batch {batch_number}, table {spec.name!r}: index {bad} outside [0, {spec.num_rows})"
        )
    return indices
