"""SIEVE: a FIFO queue with a visited bit and a moving hand.

New objects enter at the head with the bit clear; a hit sets the bit.  The
hand starts at the tail and walks toward the head, clearing set bits (wrapping
to the tail), and evicts the first object whose bit is clear; it then rests on
that object's predecessor.  Objects never move, so hits cost one store.

The state is one ``_rows`` array (one list, a visited column, the hand in
the header, no ghosts); the ``sieve_*`` kernels serve the live caches and
the simulator alike.
"""

from __future__ import annotations

import numba

from . import _rows as rows
from ._lists import PREV
from ._rows import FIRST_SLOT, HEADER_ROWS, POLICY_FIELDS, get, put
from .base import register_policy
from .drive import Kind, StateKernels, register_kernels

QUEUE = 0
SENTINEL = HEADER_ROWS + QUEUE
NO_HAND = -1
# node column
VISITED = rows.N_NODE_FIELDS
# policy scalar: the hand's row (``NO_HAND``: the tail)
HAND = POLICY_FIELDS


@numba.njit
def new_sieve(params):
    """The state array of an empty SIEVE cache of ``capacity`` bytes."""
    capacity, max_slots = params
    a = rows.new_rows(capacity, max_slots, rows.N_NODE_FIELDS + 1, 0, 0, 0)
    put(a, HAND, NO_HAND)
    return a


@numba.njit(inline="always")
def _rest_hand_before(a, node):
    """Put the hand on the object newer than ``node`` (the tail if none)."""
    newer = a[node, PREV]
    put(a, HAND, NO_HAND if newer == SENTINEL else newer)


@rows.kernel
def sieve_victim(a):
    node = get(a, HAND)
    if node == NO_HAND:
        node = a[SENTINEL, PREV]
    while a[node, VISITED]:
        a[node, VISITED] = 0
        node = a[node, PREV]
        if node == SENTINEL:
            node = a[SENTINEL, PREV]
    _rest_hand_before(a, node)
    return rows.evict(a, node)


@rows.kernel
def sieve_on_hit(a, slot):
    a[FIRST_SLOT + slot, VISITED] = 1


@rows.kernel
def sieve_on_insert(a, slot, key, size):
    a[FIRST_SLOT + slot, VISITED] = 0
    rows.insert(a, QUEUE, slot, key, size)


@rows.kernel
def sieve_remove(a, slot):
    node = FIRST_SLOT + slot
    if get(a, HAND) == node:
        _rest_hand_before(a, node)
    rows.evict(a, node)


class SIEVE(Kind):
    """Kind of a SIEVE state (see ``drive``)."""


register_kernels(SIEVE, StateKernels(
    new=new_sieve, admit=rows.fits, victim=sieve_victim, on_hit=sieve_on_hit, on_insert=sieve_on_insert,
    ready=rows.always_ready, remove=sieve_remove,
))


@register_policy("sieve", {}, "SIEVE (FIFO with visited bit and hand)")
def build_sieve(capacity, max_slots):
    return SIEVE(), (capacity, max_slots)
