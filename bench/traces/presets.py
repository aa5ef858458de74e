"""Named trace presets for ``tierstore trace gen --preset``."""

from __future__ import annotations

import numpy as np

from bench.traces import meta2022 as meta_stats
from bench.traces.generate import TableSpec, TraceSpec


def _family_table_counts(num_tables: int, shares: np.ndarray) -> np.ndarray:
    """Tables per family: at least one each, the rest by largest remainder of the shares."""
    counts = np.ones(shares.size, dtype=np.int64)
    spare = num_tables - shares.size
    ideal = shares / shares.sum() * spare
    counts += np.floor(ideal).astype(np.int64)
    rest = num_tables - counts.sum()
    counts[np.argsort(-(ideal - np.floor(ideal)), kind="stable")[:rest]] += 1
    return counts


def meta2022(
    num_tables: int = meta_stats.NUM_TABLES,
    batch_size: int = meta_stats.BATCH_SIZE,
    num_batches: int = 1,
    seed: int = 0,
    drift: float = 0.0,
    shift_every: int = 0,
) -> TraceSpec:
    """Tables calibrated to Meta's 2022 per-batch locality statistics.

    Tables fall into the families of :data:`bench.traces.meta2022.FAMILIES`.  Each
    family gets its share of the batch's requests through its tables' mean pooling
    factors (overall mean pooling 13.6, as published), and each table has
    ``batch_size * pooling / requests_per_row`` rows, so the per-batch reuse
    histogram is kept when ``num_tables`` and ``batch_size`` are scaled down together
    (the histogram depends on each table's Zipf exponent and requests per row, not on
    the absolute scale).  The published statistics describe independent single
    batches; reuse across batches here comes from the fixed popularity, plus
    ``drift`` and ``shift_every`` if given.
    """
    families = np.asarray(meta_stats.FAMILIES)
    if num_tables < len(families):
        raise ValueError(f"meta2022 needs at least {len(families)} tables (one per family), got {num_tables}")
    counts = _family_table_counts(num_tables, families[:, 2])
    tables = []
    for (zipf, per_row, share), count in zip(families, counts):
        pooling = meta_stats.MEAN_POOLING_FACTOR * num_tables * share / count
        rows = max(1, int(round(batch_size * pooling / per_row)))
        for _ in range(count):
            tables.append(
                TableSpec(name=f"t{len(tables)}", num_rows=rows, zipf=float(zipf), pooling=float(pooling),
                          pooling_dist="lognormal", pooling_sigma=1.0)
            )
    return TraceSpec(tables=tuple(tables), batch_size=batch_size, num_batches=num_batches, seed=seed,
                     drift=drift, shift_every=shift_every, preset="meta2022")


def uniform_zipf(
    num_tables: int = 8,
    num_rows: int = 1_000_000,
    zipf: float = 1.05,
    pooling: float = 20.0,
    batch_size: int = 2048,
    num_batches: int = 100,
    seed: int = 0,
    drift: float = 0.0,
    shift_every: int = 0,
) -> TraceSpec:
    """``num_tables`` identical Zipf tables: a plain DLRM-like stream."""
    tables = tuple(
        TableSpec(name=f"t{i}", num_rows=num_rows, zipf=zipf, pooling=pooling) for i in range(num_tables)
    )
    return TraceSpec(tables=tables, batch_size=batch_size, num_batches=num_batches, seed=seed,
                     drift=drift, shift_every=shift_every, preset="zipf")


PRESETS = {"meta2022": meta2022, "zipf": uniform_zipf}
