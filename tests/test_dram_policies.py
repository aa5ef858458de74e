"""The DRAM tier drives each policy as ``simulate`` does.

The tier reuses slots for whichever row comes, so its policies find ghosts, LIRS
entries and filter history by key (key rows in a table); ``simulate`` gives each
key its own slot.  Both must take the same decisions.  LRU, S3-FIFO and LIRS are
checked through a whole store in ``test_store``; Belady needs next-access times
(simulation only).  W-TinyLFU and the tinylfu filter size their sketch by the
slot count where it is smaller than their memory, and the tier has fewer slots
than the simulator (one per key), so the filter is checked with a memory below
both and W-TinyLFU not at all.
"""

from __future__ import annotations

import numpy as np
import pytest

from cache_policies import make_policy, simulate
from tierstore.config import TableConfig
from tierstore.dram import DramTier

POLICIES = [
    make_policy("arc"),
    make_policy("clock", n_bit_counter=2),
    make_policy("fifo"),
    make_policy("lfu"),
    make_policy("pinned", pinned_keys=[0, 1, 2, 3, 5, 8]),
    make_policy("sieve"),
    make_policy("twoq"),
    make_policy("lru", admission="second_hit", admission_memory=30),
    make_policy("lru", admission="tinylfu", admission_memory=100),
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.name}-{p.params['admission']}")
def test_the_tier_misses_what_simulation_predicts(policy):
    table = TableConfig("t", 300, 8)
    tier = DramTier([table], 120 * table.cached_row_bytes, policy)
    rng = np.random.default_rng(2)
    stream, missed = [], 0
    for _ in range(40):
        rows = (rng.zipf(1.2, 150) - 1) % 300
        _, first = np.unique(rows, return_index=True)
        distinct = rows[np.sort(first)]
        slots = tier.probe("t", distinct)
        hit, miss = distinct[slots >= 0], distinct[slots < 0]
        tier.admit("t", miss, np.zeros((miss.size, 8), dtype=np.float32))
        stream += [hit, miss]
        missed += miss.size
        assert tier.used_bytes <= tier.budget_bytes
    expected = simulate(np.concatenate(stream), policy, tier.budget_bytes,
                        sizes=np.full(sum(s.size for s in stream), table.cached_row_bytes))
    assert missed == expected.misses
    assert tier.resident_rows("t") == int((tier.row2slot >= 0).sum())
