"""Admission filters that stand in front of any policy.

A filter decides, on a miss while the cache is full, whether the object is
worth caching at all; the wrapped policy still decides the victims.  When the
cache has room every miss is admitted.

- ``second_hit``: cache an object only on its second miss within the last
  ``admission_memory`` distinct missed keys (a FIFO of keys); one-hit wonders
  never displace anything.
- ``tinylfu``: a frequency sketch (counting Bloom filter, halved every
  ``10 * admission_memory`` requests) counts every request; a miss is admitted
  when its estimate exceeds that of the most recently evicted key.  Classic
  TinyLFU compares with the victim about to go; the protocol asks ``admit``
  before any victim is chosen, so the latest victim stands in for it.

A filtered state's kind is ``Filtered(inner kind)`` and its view ``(filter
array, inner view)``: the filter's ``_rows`` array keeps each slot's key,
the history (key rows in one list) and the sketch (extra rows).  Filters
remember keys, so they and the policy they wrap are always told the real ones.
"""

from __future__ import annotations

import numba

from . import _rows as rows
from ._keymap import EMPTY_KEY
from ._rows import FIRST_SLOT, KEY_OF, POLICY_FIELDS, add, get, put
from ._sketch import sketch_add, sketch_estimate, sketch_halve, sketch_init, sketch_shape
from .drive import Kind, StateKernels, kernels_of_type, register_kernels

SECOND_HIT = 1
TINYLFU = 2
_MODES = {"second_hit": SECOND_HIT, "tinylfu": TINYLFU}
HISTORY = 0
# filter scalars (then the sketch's)
MODE = POLICY_FIELDS
MEMORY = POLICY_FIELDS + 1
EVENTS = POLICY_FIELDS + 2
AGING_PERIOD = POLICY_FIELDS + 3
LAST_VICTIM_KEY = POLICY_FIELDS + 4
SKETCH = POLICY_FIELDS + 5


class Filtered(Kind):
    """Kind of a filtered state: the kind of the policy it wraps (see ``drive``)."""

    def __init__(self, inner: Kind):
        self.inner = inner


@numba.njit
def new_filter(params):
    """The filter array: room for ``n_history`` keys of history, a sketch of
    ``n_counters`` counters (``n_hashes`` hashes) and each slot's key."""
    mode, memory, max_slots, n_history, n_counters, n_hashes = params
    n_fields = rows.N_NODE_FIELDS
    a = rows.new_rows(0, max_slots, n_fields, n_history, rows.packed_rows(n_counters, n_fields), 1)
    put(a, MODE, mode)
    put(a, MEMORY, memory)
    put(a, AGING_PERIOD, 10 * memory)
    put(a, LAST_VICTIM_KEY, EMPTY_KEY)
    sketch_init(a, SKETCH, get(a, rows.EXTRA_FIRST), n_counters, n_hashes, False)
    return a


@numba.njit(inline="always")
def _count(a, key):
    sketch_add(a, SKETCH, key)
    add(a, EVENTS, 1)
    if get(a, EVENTS) >= get(a, AGING_PERIOD):
        put(a, EVENTS, 0)
        sketch_halve(a, SKETCH)


@numba.njit(inline="always")
def _refuses(a, key):
    """Whether the filter keeps ``key`` out of a full cache (recording it in the history)."""
    if get(a, MODE) == SECOND_HIT:
        seen = rows.find_key_row(a, key)
        if seen != -1:
            rows.unlink(a, seen)
            rows.free_key_row(a, seen)
            return False
        while rows.list_bytes(a, HISTORY) + 1 > get(a, MEMORY):
            node = rows.tail(a, HISTORY)
            rows.unlink(a, node)
            rows.free_key_row(a, node)
        rows.push_key(a, HISTORY, key, 1)
        return True
    last = get(a, LAST_VICTIM_KEY)
    return last != EMPTY_KEY and sketch_estimate(a, SKETCH, key) <= sketch_estimate(a, SKETCH, last)


def _filter_kernels(kind_type) -> StateKernels:
    """The kernels of a filter in front of the policy of kind ``kind_type.inner``:
    functions of ``(filter array, inner view)`` over that policy's kernels."""
    inner = kernels_of_type(kind_type.inner)

    @numba.njit(inline="always")
    def new(params):
        return new_filter(params[0]), inner.new(params[1])

    @numba.njit(inline="always")
    def admit(v, key, size):
        a = v[0]
        if get(a, MODE) == TINYLFU:
            _count(a, key)
        if inner.used(v[1]) + size > inner.capacity(v[1]) and _refuses(a, key):
            return False
        return inner.admit(v[1], key, size)

    @numba.njit(inline="always")
    def victim(v):
        slot = inner.victim(v[1])
        put(v[0], LAST_VICTIM_KEY, v[0][FIRST_SLOT + slot, KEY_OF])
        return slot

    @numba.njit(inline="always")
    def on_insert(v, slot, key, size):
        v[0][FIRST_SLOT + slot, KEY_OF] = key
        inner.on_insert(v[1], slot, key, size)

    @numba.njit(inline="always")
    def on_hit(v, slot):
        a = v[0]
        if get(a, MODE) == TINYLFU:
            _count(a, a[FIRST_SLOT + slot, KEY_OF])
        inner.on_hit(v[1], slot)

    @numba.njit(inline="always")
    def ready(v, size):
        return rows.ready(v[0], size) and inner.ready(v[1], size)

    @numba.njit(inline="always")
    def grow(v, size):
        return rows.grow(v[0], size), inner.grow(v[1], size)

    @numba.njit(inline="always")
    def remove(v, slot):
        inner.remove(v[1], slot)

    @numba.njit(inline="always")
    def used(v):
        return inner.used(v[1])

    @numba.njit(inline="always")
    def capacity(v):
        return inner.capacity(v[1])

    @numba.njit(inline="always")
    def n_resident(v):
        return inner.n_resident(v[1])

    @numba.njit(inline="always")
    def n_pending(v):
        return inner.n_pending(v[1])

    @numba.njit(inline="always")
    def take_evicted(v):
        return inner.take_evicted(v[1])

    @numba.njit(inline="always")
    def set_next_access(v, next_vtime):
        inner.set_next_access(v[1], next_vtime)

    return StateKernels(new=new, admit=admit, victim=victim, on_hit=on_hit, on_insert=on_insert, ready=ready, grow=grow,
                        remove=remove, used=used, capacity=capacity, n_resident=n_resident, n_pending=n_pending,
                        take_evicted=take_evicted, set_next_access=set_next_access,
                        key_by_slot=rows.keys_stay_keys)


register_kernels(Filtered, _filter_kernels)


def wrap_with_filter(kind, params, filter_name: str, memory: int, max_slots: int):
    """Put admission filter ``filter_name`` in front of the policy of ``kind`` built from
    ``params``: returns the filtered state's ``(kind, params)``."""
    if filter_name not in _MODES:
        raise ValueError(f"unknown admission filter {filter_name!r}; available: {sorted(_MODES)}")
    mode = _MODES[filter_name]
    n_history = min(memory, max_slots) if mode == SECOND_HIT else 1
    n_counters, n_hashes = sketch_shape(min(memory, max_slots) if mode == TINYLFU else 1)
    return Filtered(kind), ((mode, memory, max_slots, n_history, n_counters, n_hashes), params)
