"""W-TinyLFU: an LRU window in front of an SLRU main cache, with TinyLFU
admission between them (Einziger, Friedman & Manes, 2017).

New objects enter the window (``window_size`` of the bytes).  A window victim
moves into main while main has room; otherwise it replaces main's victim only
if the frequency sketch rates it strictly higher, else it leaves.  Main is
libCacheSim's segmented LRU: 20 % probation and 80 % protected; an object
enters the lowest segment with room, victims come from probation first, a
probation hit promotes to protected, and protected overflow demotes back to
probation (whose own overflow then evicts, reported through
``take_evicted``).  The sketch counts inserts, main hits and every window victim
considered (window hits are not counted) and halves after ``32 * main size``
main hits, as in libCacheSim; its hashes differ, so miss ratios match
libCacheSim's only approximately.  ``doorkeeper=True`` adds Caffeine's
doorkeeper Bloom filter in front of the counters.

The state is one ``_rows`` array: the three lists over the slots, then, in
the extra rows, the stack of pending evictions and the sketch (``_sketch``).
The sketch hashes keys, so the policy is always told the real ones.
"""

from __future__ import annotations

import numba

from . import _rows as rows
from ._rows import FIRST_SLOT, POLICY_FIELDS, SIZE, add, get, put
from ._sketch import sketch_add, sketch_estimate, sketch_halve, sketch_init, sketch_shape
from .base import register_policy
from .drive import Kind, StateKernels, register_kernels

WINDOW = 0
PROBATION = 1
PROTECTED = 2
# policy scalars (then the sketch's)
WINDOW_CAPACITY = POLICY_FIELDS
MAIN_CAPACITY = POLICY_FIELDS + 1
PROBATION_CAPACITY = POLICY_FIELDS + 2
PROTECTED_CAPACITY = POLICY_FIELDS + 3
MAIN_HITS = POLICY_FIELDS + 4
DECAY_PERIOD = POLICY_FIELDS + 5
SKETCH = POLICY_FIELDS + 6


@numba.njit
def new_wtinylfu(params):
    """The state array of an empty W-TinyLFU cache of ``capacity`` bytes."""
    (capacity, max_slots, window_capacity, probation_capacity, protected_capacity, n_counters, n_hashes,
     doorkeeper) = params
    n_fields = rows.N_NODE_FIELDS
    pending_rows = rows.packed_rows(max_slots, n_fields)
    a = rows.new_rows(capacity, max_slots, n_fields, 0, pending_rows + rows.packed_rows(n_counters, n_fields), 0)
    main = capacity - window_capacity
    put(a, rows.PENDING_FIRST, get(a, rows.EXTRA_FIRST))
    put(a, WINDOW_CAPACITY, window_capacity)
    put(a, MAIN_CAPACITY, main)
    put(a, PROBATION_CAPACITY, probation_capacity)
    put(a, PROTECTED_CAPACITY, protected_capacity)
    put(a, DECAY_PERIOD, 32 * main)
    sketch_init(a, SKETCH, get(a, rows.EXTRA_FIRST) + pending_rows, n_counters, n_hashes, doorkeeper)
    return a


@rows.kernel
def wtinylfu_admit(a, key, size):
    return size <= get(a, rows.CAPACITY) and size <= get(a, WINDOW_CAPACITY) and size <= get(a, PROBATION_CAPACITY)


@numba.njit(inline="always")
def _main_bytes(a):
    return rows.list_bytes(a, PROBATION) + rows.list_bytes(a, PROTECTED)


@numba.njit(inline="always")
def _enter_main(a, node):
    size = a[node, SIZE]
    if rows.list_bytes(a, PROBATION) + size > get(a, PROBATION_CAPACITY) and (
        rows.list_bytes(a, PROTECTED) + size <= get(a, PROTECTED_CAPACITY)
    ):
        rows.move_to_head(a, PROTECTED, node)
    else:
        rows.move_to_head(a, PROBATION, node)


@numba.njit(inline="always")
def _main_victim(a):
    if not rows.list_empty(a, PROBATION):
        return rows.tail(a, PROBATION)
    return rows.tail(a, PROTECTED)


@rows.kernel
def wtinylfu_victim(a):
    while not rows.list_empty(a, WINDOW):
        candidate = rows.tail(a, WINDOW)
        key = a[candidate, rows.KEY_OF]
        if _main_bytes(a) + a[candidate, SIZE] <= get(a, MAIN_CAPACITY):
            _enter_main(a, candidate)
            sketch_add(a, SKETCH, key)
            continue
        main_victim = _main_victim(a)
        if sketch_estimate(a, SKETCH, key) > sketch_estimate(a, SKETCH, a[main_victim, rows.KEY_OF]):
            slot = rows.evict(a, main_victim)
            _enter_main(a, candidate)
            sketch_add(a, SKETCH, key)
            return slot
        sketch_add(a, SKETCH, key)
        return rows.evict(a, candidate)
    return rows.evict(a, _main_victim(a))


@rows.kernel
def wtinylfu_on_insert(a, slot, key, size):
    rows.insert(a, WINDOW, slot, key, size)
    sketch_add(a, SKETCH, key)


@rows.kernel
def wtinylfu_on_hit(a, slot):
    node = FIRST_SLOT + slot
    where = a[node, rows.LIST]
    if where == WINDOW:
        rows.move_to_head(a, WINDOW, node)
        return
    sketch_add(a, SKETCH, a[node, rows.KEY_OF])
    add(a, MAIN_HITS, 1)
    if get(a, MAIN_HITS) >= get(a, DECAY_PERIOD):
        put(a, MAIN_HITS, 0)
        sketch_halve(a, SKETCH)
    rows.move_to_head(a, PROTECTED, node)
    if where == PROTECTED:
        return
    while rows.list_bytes(a, PROTECTED) > get(a, PROTECTED_CAPACITY):
        rows.move_to_head(a, PROBATION, rows.tail(a, PROTECTED))
        while rows.list_bytes(a, PROBATION) > get(a, PROBATION_CAPACITY):
            rows.push_pending(a, rows.evict(a, rows.tail(a, PROBATION)))


class WTinyLFU(Kind):
    """Kind of a W-TinyLFU state (see ``drive``)."""


register_kernels(WTinyLFU, StateKernels(
    new=new_wtinylfu, admit=wtinylfu_admit, victim=wtinylfu_victim, on_hit=wtinylfu_on_hit,
    on_insert=wtinylfu_on_insert, ready=rows.always_ready, n_pending=rows.n_pending,
    take_evicted=rows.take_evicted, key_by_slot=rows.keys_stay_keys,
))


@register_policy(
    "wtinylfu",
    {"window_size": 0.01, "protected_ratio": 0.8, "sketch_error": 0.001, "doorkeeper": False},
    "W-TinyLFU (LRU window, SLRU main, frequency-sketch admission)",
)
def build_wtinylfu(capacity, max_slots, window_size, protected_ratio, sketch_error, doorkeeper):
    if not 0.0 <= window_size < 1.0:
        raise ValueError(f"wtinylfu: window_size must be in [0, 1), got {window_size}")
    if not 0.0 < protected_ratio < 1.0:
        raise ValueError(f"wtinylfu: protected_ratio must be in (0, 1), got {protected_ratio}")
    if not 0.0 < sketch_error < 1.0:
        raise ValueError(f"wtinylfu: sketch_error must be in (0, 1), got {sketch_error}")
    window = int(capacity * window_size)
    main = capacity - window
    # libCacheSim sizes the sketch by main's bytes; no more than max_slots keys can be cached
    n_counters, n_hashes = sketch_shape(min(main, max_slots), sketch_error)
    return WTinyLFU(), (capacity, max_slots, window, int(main * (1.0 - protected_ratio)),
                                    int(main * protected_ratio), n_counters, n_hashes, doorkeeper)
