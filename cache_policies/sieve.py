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

QUEUE = 0
SENTINEL = HEADER_ROWS + QUEUE
NO_HAND = -1
# node column
VISITED = rows.N_NODE_FIELDS
# policy scalar: the hand's row (``NO_HAND``: the tail)
HAND = POLICY_FIELDS


@numba.njit(cache=True)
def new_sieve(capacity, max_slots):
    """The state array of an empty SIEVE cache of ``capacity`` bytes."""
    a = rows.new_rows(capacity, max_slots, rows.N_NODE_FIELDS + 1, 0)
    put(a, HAND, NO_HAND)
    return a


@numba.njit(inline="always")
def _rest_hand_before(a, node):
    """Put the hand on the object newer than ``node`` (the tail if none)."""
    newer = a[node, PREV]
    put(a, HAND, NO_HAND if newer == SENTINEL else newer)


@numba.njit(cache=True)
def sieve_admit(a, key, size):
    return size <= get(a, rows.CAPACITY)


@numba.njit(cache=True)
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


@numba.njit(cache=True)
def sieve_on_hit(a, slot):
    a[FIRST_SLOT + slot, VISITED] = 1


@numba.njit(cache=True)
def sieve_on_insert(a, slot, key, size):
    a[FIRST_SLOT + slot, VISITED] = 0
    rows.insert(a, QUEUE, slot, key, size)


@numba.njit(cache=True)
def sieve_remove(a, slot):
    node = FIRST_SLOT + slot
    if get(a, HAND) == node:
        _rest_hand_before(a, node)
    rows.evict(a, node)


SieveState = rows.state_class(
    "SieveState",
    "SIEVE state over slots ``[0, max_slots)``, all in one ``_rows`` array.",
    admit=sieve_admit,
    victim=sieve_victim,
    on_hit=sieve_on_hit,
    on_insert=sieve_on_insert,
    ready=rows.always_ready,
    remove=sieve_remove,
)


@register_policy("sieve", {}, "SIEVE (FIFO with visited bit and hand)")
def build_sieve(capacity, max_slots):
    return SieveState(new_sieve(capacity, max_slots))
