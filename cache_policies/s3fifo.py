"""S3-FIFO: a small FIFO, a main FIFO and a ghost FIFO (Yang et al., SOSP'23).

New objects enter the small queue S (10 % of the bytes); a key found in the
ghost queue G goes straight to the main queue M.  Hits only bump a counter.
Evicting from S moves objects hit at least ``move_to_main_threshold`` times to
M and turns the others into ghosts; evicting from M gives objects with a
non-zero counter another round (counter capped at 3, minus one).  M is
evicted when it is over its share or S is empty.  This follows libCacheSim's
Dec-2024 rewrite: before the first eviction, once S is full new objects go to
M.  Objects at least as large as S are refused (libCacheSim evicts for them
first and then refuses; here ``admit`` refuses before any eviction).

The state is one array (``_rows``: slots with a hit counter, the three
queues, ghosts, scalars); the ``s3fifo_*`` kernels run on it in the live
caches (ghosts found by key in a table) and in the simulator's replay loop
(ghosts kept in their slots' rows) alike.
"""

from __future__ import annotations

import numba

from . import _rows as rows
from ._rows import FIRST_SLOT, POLICY_FIELDS, get, put
from .base import register_policy
from .drive import Kind, StateKernels, register_kernels

SMALL = 0
MAIN = 1
GHOST = 2
# node column
FREQ = rows.N_NODE_FIELDS
# policy scalars
SMALL_CAPACITY = POLICY_FIELDS
MAIN_CAPACITY = POLICY_FIELDS + 1
GHOST_CAPACITY = POLICY_FIELDS + 2
THRESHOLD = POLICY_FIELDS + 3
HAS_EVICTED = POLICY_FIELDS + 4
GHOST_HIT = POLICY_FIELDS + 5


@numba.njit
def new_s3fifo(params):
    """The state array of an empty S3-FIFO cache of ``capacity`` bytes."""
    capacity, max_slots, small_capacity, ghost_capacity, threshold = params
    a = rows.new_rows(capacity, max_slots, rows.N_NODE_FIELDS + 1, min(max_slots, max(ghost_capacity, 16)), 0,
                  rows.ONE_PER_VICTIM)
    put(a, SMALL_CAPACITY, small_capacity)
    put(a, MAIN_CAPACITY, capacity - small_capacity)
    put(a, GHOST_CAPACITY, ghost_capacity)
    put(a, THRESHOLD, threshold)
    return a


@rows.kernel
def s3fifo_admit(a, key, size):
    ghost = rows.find_ghost(a, key)
    ghost_hit = ghost != -1
    if ghost_hit:
        rows.forget_ghost(a, ghost)
    put(a, GHOST_HIT, ghost_hit)
    small_capacity = get(a, SMALL_CAPACITY)
    if size > small_capacity or size > get(a, rows.CAPACITY):
        return False
    return ghost_hit or size < small_capacity


@rows.kernel
def s3fifo_victim(a):
    """Evict one slot (needs ``rows.ready(a, 1)``)."""
    put(a, HAS_EVICTED, 1)
    while True:
        if rows.list_bytes(a, MAIN) > get(a, MAIN_CAPACITY) or rows.list_empty(a, SMALL):
            while True:
                node = rows.tail(a, MAIN)
                f = a[node, FREQ]
                if f < 1:
                    break
                a[node, FREQ] = min(f, 3) - 1
                rows.move_to_head(a, MAIN, node)
            break
        node = -1
        while not rows.list_empty(a, SMALL):
            s = rows.tail(a, SMALL)
            if a[s, FREQ] >= get(a, THRESHOLD):
                a[s, FREQ] = 0
                rows.move_to_head(a, MAIN, s)
            else:
                node = s
                break
        if node != -1:
            slot = rows.evict(a, node)
            rows.remember(a, GHOST, node, get(a, GHOST_CAPACITY))
            return slot
    return rows.evict(a, node)


@rows.kernel
def s3fifo_on_insert(a, slot, key, size):
    a[FIRST_SLOT + slot, FREQ] = 0
    to_main = get(a, GHOST_HIT) != 0 or (
        get(a, HAS_EVICTED) == 0 and rows.list_bytes(a, SMALL) >= get(a, SMALL_CAPACITY)
    )
    rows.insert(a, MAIN if to_main else SMALL, slot, key, size)
    put(a, GHOST_HIT, 0)


@rows.kernel
def s3fifo_on_hit(a, slot):
    a[FIRST_SLOT + slot, FREQ] += 1


class S3FIFO(Kind):
    """Kind of an S3-FIFO state (see ``drive``)."""


register_kernels(S3FIFO, StateKernels(
    new=new_s3fifo, admit=s3fifo_admit, victim=s3fifo_victim, on_hit=s3fifo_on_hit, on_insert=s3fifo_on_insert,
))


@register_policy(
    "s3fifo",
    {"small_size_ratio": 0.1, "ghost_size_ratio": 0.9, "move_to_main_threshold": 2},
    "S3-FIFO (small, main and ghost FIFOs)",
)
def build_s3fifo(capacity, max_slots, small_size_ratio, ghost_size_ratio, move_to_main_threshold):
    if not 0.0 < small_size_ratio < 1.0:
        raise ValueError(f"s3fifo: small_size_ratio must be in (0, 1), got {small_size_ratio}")
    if ghost_size_ratio < 0.0:
        raise ValueError(f"s3fifo: ghost_size_ratio must be >= 0, got {ghost_size_ratio}")
    if move_to_main_threshold < 1:
        raise ValueError(f"s3fifo: move_to_main_threshold must be >= 1, got {move_to_main_threshold}")
    small = int(capacity * small_size_ratio)
    ghost = int(capacity * ghost_size_ratio)
    return S3FIFO(), (capacity, max_slots, small, ghost, move_to_main_threshold)
