"""CLOCK: FIFO with an n-bit reference counter per object (second chance).

A hit raises the counter up to ``2**n_bit_counter - 1``.  To evict, look at
the oldest object: while its counter is above zero, decrement it and move the
object to the newest end; the first object found at zero leaves.  New objects
start at ``init_freq``.

The state is one ``_rows`` array (one list, a counter column, no ghosts).
"""

from __future__ import annotations

import numba

from . import _rows as rows
from ._rows import FIRST_SLOT, POLICY_FIELDS, get, put
from .base import register_policy
from .drive import Kind, StateKernels, register_kernels

ONLY = 0
# node column
FREQ = rows.N_NODE_FIELDS
# policy scalars
MAX_FREQ = POLICY_FIELDS
INIT_FREQ = POLICY_FIELDS + 1


@numba.njit
def new_clock(params):
    """The state array of an empty CLOCK cache of ``capacity`` bytes."""
    capacity, max_slots, max_freq, init_freq = params
    a = rows.new_rows(capacity, max_slots, rows.N_NODE_FIELDS + 1, 0, 0, 0)
    put(a, MAX_FREQ, max_freq)
    put(a, INIT_FREQ, init_freq)
    return a


@rows.kernel
def clock_victim(a):
    node = rows.tail(a, ONLY)
    while a[node, FREQ] >= 1:
        a[node, FREQ] -= 1
        rows.move_to_head(a, ONLY, node)
        node = rows.tail(a, ONLY)
    return rows.evict(a, node)


@rows.kernel
def clock_on_insert(a, slot, key, size):
    a[FIRST_SLOT + slot, FREQ] = get(a, INIT_FREQ)
    rows.insert(a, ONLY, slot, key, size)


@rows.kernel
def clock_on_hit(a, slot):
    node = FIRST_SLOT + slot
    if a[node, FREQ] < get(a, MAX_FREQ):
        a[node, FREQ] += 1


class CLOCK(Kind):
    """Kind of a CLOCK state (see ``drive``)."""


register_kernels(CLOCK, StateKernels(
    new=new_clock, admit=rows.fits, victim=clock_victim, on_hit=clock_on_hit, on_insert=clock_on_insert,
    ready=rows.always_ready,
))


@register_policy("clock", {"n_bit_counter": 1, "init_freq": 0}, "FIFO with n-bit reference counters")
def build_clock(capacity, max_slots, n_bit_counter, init_freq):
    if not 1 <= n_bit_counter <= 30:
        raise ValueError(f"clock: n_bit_counter must be in [1, 30], got {n_bit_counter}")
    if not 0 <= init_freq < (1 << n_bit_counter):
        raise ValueError(f"clock: init_freq must be in [0, 2**n_bit_counter), got {init_freq}")
    return CLOCK(), (capacity, max_slots, (1 << n_bit_counter) - 1, init_freq)
