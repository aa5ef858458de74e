"""Tier assignment: which rows are pinned in GPU or DRAM, left to the cache policy, or served from SSD only.

All tables compete under one budget per tier.  Methods:

``"cost"``
    Rank rows by expected saving per byte, ``count * saving_per_byte(tier, row_bytes)``
    from the :class:`CostModel`, and fill the GPU, then DRAM, greedily.
``"frequency"``
    Frequency-greedy baseline: rank by access count alone, whatever a row costs in bytes.
``"uniform"``
    Uniform-split baseline: each table gets a share of every tier proportional to
    its size in bytes and pins its own most accessed rows.
``"cache_only"``
    Nothing pinned and no row kept out: all of DRAM goes to one policy-managed
    cache that may admit any row (the single-policy baseline).

A share ``dynamic_fraction`` of DRAM is kept for the policy-managed cache (plus
whatever pinning leaves unused).  Rows that are not pinned are cached when the
profile saw them at least ``min_cache_count`` times, else they are SSD-only
(never admitted into a cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from .costmodel import CostModel, TierBudgets
from .tables import TableSpec, as_table_specs

PINNED_GPU, PINNED_DRAM, CACHED, SSD_ONLY = 0, 1, 2, 3
TIER_NAMES = ("pinned_gpu", "pinned_dram", "cached", "ssd_only")
METHODS = ("cost", "frequency", "uniform", "cache_only")


@dataclass
class TierAssignment:
    """Per-row tiers and how the budgets were spent.

    Attributes
    ----------
    tier : dict of str to int8 ndarray
        Per table, one of ``PINNED_GPU``, ``PINNED_DRAM``, ``CACHED``, ``SSD_ONLY`` per row.
    gpu_pinned_bytes, dram_pinned_bytes : int
        Bytes of pinned rows.
    dram_cache_bytes : int
        DRAM left to the policy-managed cache.
    method : str
    """

    tier: dict[str, np.ndarray]
    gpu_pinned_bytes: int
    dram_pinned_bytes: int
    dram_cache_bytes: int
    method: str
    params: dict = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per tier, per table."""
        return {
            name: {TIER_NAMES[t]: int(np.count_nonzero(tiers == t)) for t in range(len(TIER_NAMES))}
            for name, tiers in self.tier.items()
        }


@numba.njit(cache=True, nogil=True)
def _greedy_fill(ranking, value, row_bytes, capacity, taken):
    """Take rows in ``ranking`` order while they fit; skip ones that do not; never take value <= 0."""
    used = 0
    smallest = row_bytes.min() if row_bytes.size else 0
    for r in ranking:
        if capacity - used < smallest:
            break
        if taken[r] or value[r] <= 0:
            continue
        if used + row_bytes[r] <= capacity:
            taken[r] = True
            used += row_bytes[r]
    return used


def _fill_tier(value, row_bytes, capacity, taken) -> int:
    """Fill ``capacity`` bytes with untaken rows by descending ``value``; marks them in ``taken``."""
    if capacity <= 0 or value.size == 0:
        return 0
    ranking = np.argsort(-value, kind="stable")
    return int(_greedy_fill(ranking, value, row_bytes, int(capacity), taken))


def assign_tiers(
    counts: dict[str, np.ndarray],
    tables,
    budgets: TierBudgets,
    cost: CostModel | None = None,
    *,
    method: str = "cost",
    dynamic_fraction: float = 0.2,
    min_cache_count: int = 1,
) -> TierAssignment:
    """Assign every row of every table to a tier.

    Parameters
    ----------
    counts : dict of str to ndarray
        Per table, per-row access counts (e.g. ``AccessProfile.row_counts``).
    tables : mapping or sequence
        Table metadata (see :func:`placement.tables.as_table_specs`).
    budgets : TierBudgets
    cost : CostModel, optional
        Used by ``method="cost"``.
    method : {"cost", "frequency", "uniform", "cache_only"}
    dynamic_fraction : float
        Share of DRAM kept for the policy-managed cache, in [0, 1].
    min_cache_count : int
        Unpinned rows seen fewer times are SSD-only.

    Returns
    -------
    TierAssignment
    """
    specs = as_table_specs(tables)
    cost = cost or CostModel()
    if method not in METHODS:
        raise ValueError(f"unknown tier-assignment method {method!r}; methods: {METHODS}")
    if not 0.0 <= dynamic_fraction <= 1.0:
        raise ValueError(f"dynamic_fraction must be in [0, 1], got {dynamic_fraction!r}")
    total_bytes = sum(s.total_bytes for s in specs.values())
    if budgets.ssd_bytes is not None and total_bytes > budgets.ssd_bytes:
        raise ValueError(f"the tables need {total_bytes} bytes on SSD but the SSD budget is {budgets.ssd_bytes}")
    names = list(specs)
    for name in names:
        if name not in counts:
            raise KeyError(f"no access counts for table {name!r}")
        if np.shape(counts[name]) != (specs[name].num_rows,):
            raise ValueError(
                f"table {name!r}: counts have shape {np.shape(counts[name])}, expected ({specs[name].num_rows},)"
            )
    all_counts = np.concatenate([np.asarray(counts[n], dtype=np.float64) for n in names])
    row_bytes = np.concatenate([np.full(specs[n].num_rows, specs[n].row_bytes, dtype=np.int64) for n in names])
    starts = np.cumsum([0] + [specs[n].num_rows for n in names])
    gpu = np.zeros(all_counts.size, dtype=np.bool_)
    dram = np.zeros(all_counts.size, dtype=np.bool_)
    dram_pin_capacity = int(budgets.dram_bytes * (1.0 - dynamic_fraction))
    if method == "cost":
        gpu_used = _fill_tier(all_counts * _per_row(specs, names, lambda s: cost.saving_per_byte("gpu", s.row_bytes)),
                              row_bytes, budgets.gpu_bytes, gpu)
        taken = gpu.copy()
        dram_used = _fill_tier(
            all_counts * _per_row(specs, names, lambda s: cost.saving_per_byte("dram", s.row_bytes)),
            row_bytes, dram_pin_capacity, taken,
        )
        dram = taken & ~gpu
    elif method == "frequency":
        gpu_used = _fill_tier(all_counts, row_bytes, budgets.gpu_bytes, gpu)
        taken = gpu.copy()
        dram_used = _fill_tier(all_counts, row_bytes, dram_pin_capacity, taken)
        dram = taken & ~gpu
    elif method == "uniform":
        gpu_used = dram_used = 0
        for i, name in enumerate(names):
            share = specs[name].total_bytes / total_bytes
            part = slice(starts[i], starts[i + 1])
            table_gpu = gpu[part]
            gpu_used += _fill_tier(all_counts[part], row_bytes[part], int(budgets.gpu_bytes * share), table_gpu)
            taken = table_gpu.copy()
            dram_used += _fill_tier(all_counts[part], row_bytes[part], int(dram_pin_capacity * share), taken)
            dram[part] = taken & ~table_gpu
    else:
        gpu_used = dram_used = 0
    dram_cache_bytes = budgets.dram_bytes - dram_used
    tier = np.full(all_counts.size, SSD_ONLY, dtype=np.int8)
    if dram_cache_bytes > 0:
        tier[(all_counts >= min_cache_count) | (method == "cache_only")] = CACHED
    tier[dram] = PINNED_DRAM
    tier[gpu] = PINNED_GPU
    return TierAssignment(
        tier={n: tier[starts[i] : starts[i + 1]] for i, n in enumerate(names)},
        gpu_pinned_bytes=int(gpu_used),
        dram_pinned_bytes=int(dram_used),
        dram_cache_bytes=int(dram_cache_bytes),
        method=method,
        params={"dynamic_fraction": dynamic_fraction, "min_cache_count": min_cache_count},
    )


def _per_row(specs: dict[str, TableSpec], names: list[str], per_table) -> np.ndarray:
    """Expand a per-table scalar to every row, tables concatenated in ``names`` order."""
    return np.concatenate([np.full(specs[n].num_rows, per_table(specs[n]), dtype=np.float64) for n in names])
