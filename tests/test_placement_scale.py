"""Scale check of the co-access layout: 20M rows (slow; run with ``-m slow``).

Prints the wall time and peak RSS of ``coaccess_layout`` on 20M rows with an
8M-pin co-access sample (1M bags of 8 rows drawn from hidden 16-row clusters).
"""

import resource
import time

import numpy as np
import pytest

import placement as pl

NUM_ROWS = 20_000_000
BAGS = 1_000_000
PER_BAG = 8
CLUSTER = 16


@pytest.mark.slow
def test_coaccess_layout_of_20m_rows():
    rng = np.random.default_rng(0)
    members = rng.permutation(NUM_ROWS).reshape(-1, CLUSTER)
    rows = members[rng.integers(0, members.shape[0], BAGS)[:, None], rng.integers(0, CLUSTER, (BAGS, PER_BAG))]
    rows.sort(axis=1)
    ptr = np.arange(BAGS + 1, dtype=np.int64) * PER_BAG
    counts = np.bincount(rows.ravel(), minlength=NUM_ROWS)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    order = pl.coaccess_layout(counts, ptr, rows.ravel(), CLUSTER)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"\ncoaccess_layout: {NUM_ROWS:,} rows, {rows.size:,} pins: {seconds:.1f} s, "
          f"peak RSS {peak / 2**20:.2f} GiB (inputs {before / 2**20:.2f} GiB)")
    pl.check_layout(order, NUM_ROWS)
    positions = pl.positions_of(order)
    sample = rows[:20_000]
    pages = np.mean([np.unique(positions[bag] // CLUSTER).size for bag in sample])
    identity = np.mean([np.unique(bag // CLUSTER).size for bag in sample])
    assert pages <= 0.3 * identity
