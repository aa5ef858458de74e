"""2Q: a FIFO for first-time objects, a ghost FIFO, and an LRU (Johnson & Shasha).

New objects enter the FIFO ``Ain`` (``ain_size_ratio`` of the bytes); a hit in
``Ain`` changes nothing.  When ``Ain`` is over its share its oldest object
leaves and its key enters the ghost FIFO ``Aout`` (``aout_size_ratio`` of the
bytes); otherwise the victim is the LRU end of ``Am``.  A miss whose key is in
``Aout`` goes to the MRU end of ``Am``, which holds at most
``capacity - |Ain share|`` bytes and first evicts its own LRU objects to fit.

Protocol note: for such a ghost hit, ``used`` reads ``|Am| + max(|Ain|,
share of Ain)`` between ``admit`` and ``on_insert``, so that the caller's
``while used + size > capacity: victim()`` loop also makes the room ``Am``
needs (libCacheSim evicts those inside its insert).

The state is one ``_rows`` array (slots, the lists ``Ain`` and ``Am``, the
ghost list ``Aout``, scalars).
"""

from __future__ import annotations

import numba

from . import _rows as rows
from ._rows import FIRST_SLOT, POLICY_FIELDS, get, put
from .base import register_policy
from .drive import Kind, StateKernels, register_kernels

AIN = 0
AM = 1
AOUT = 2
# policy scalars
AIN_CAPACITY = POLICY_FIELDS
AOUT_CAPACITY = POLICY_FIELDS + 1
GHOST_HIT = POLICY_FIELDS + 2
INCOMING_SIZE = POLICY_FIELDS + 3


@numba.njit
def new_twoq(params):
    """The state array of an empty 2Q cache of ``capacity`` bytes."""
    capacity, max_slots, ain_capacity, aout_capacity = params
    a = rows.new_rows(capacity, max_slots, rows.N_NODE_FIELDS, min(max_slots, max(aout_capacity, 16)), 0,
                      rows.ONE_PER_VICTIM)
    put(a, AIN_CAPACITY, ain_capacity)
    put(a, AOUT_CAPACITY, aout_capacity)
    return a


@numba.njit(inline="always")
def _update_used(a):
    ain = rows.list_bytes(a, AIN)
    if get(a, GHOST_HIT):
        ain = max(ain, get(a, AIN_CAPACITY))
    put(a, rows.USED, ain + rows.list_bytes(a, AM))


@rows.kernel
def twoq_admit(a, key, size):
    ghost = rows.find_ghost(a, key)
    if ghost != -1:
        rows.forget_ghost(a, ghost)
    put(a, INCOMING_SIZE, size)
    ok = size <= get(a, AIN_CAPACITY) and size <= get(a, rows.CAPACITY)
    put(a, GHOST_HIT, ghost != -1 and ok)
    _update_used(a)
    return ok


@rows.kernel
def twoq_victim(a):
    """Evict one slot (needs ``rows.ready(a, 1)``)."""
    ain = rows.list_bytes(a, AIN)
    needs_room = ain + rows.list_bytes(a, AM) + get(a, INCOMING_SIZE) > get(a, rows.CAPACITY)
    if (needs_room and ain > get(a, AIN_CAPACITY)) or rows.list_empty(a, AM):
        node = rows.tail(a, AIN)
        slot = rows.evict(a, node)
        rows.remember(a, AOUT, node, get(a, AOUT_CAPACITY))
    else:
        slot = rows.evict(a, rows.tail(a, AM))
    _update_used(a)
    return slot


@rows.kernel
def twoq_on_insert(a, slot, key, size):
    rows.insert(a, AM if get(a, GHOST_HIT) else AIN, slot, key, size)
    put(a, GHOST_HIT, 0)
    _update_used(a)


@rows.kernel
def twoq_on_hit(a, slot):
    node = FIRST_SLOT + slot
    if a[node, rows.LIST] == AM:
        rows.move_to_head(a, AM, node)


@rows.kernel
def twoq_remove(a, slot):
    rows.remove(a, slot)
    _update_used(a)


class TwoQ(Kind):
    """Kind of a 2Q state (see ``drive``)."""


register_kernels(TwoQ, StateKernels(
    new=new_twoq, admit=twoq_admit, victim=twoq_victim, on_hit=twoq_on_hit, on_insert=twoq_on_insert,
    remove=twoq_remove,
))


@register_policy("twoq", {"ain_size_ratio": 0.25, "aout_size_ratio": 0.5}, "2Q (FIFO Ain, ghost Aout, LRU Am)")
def build_twoq(capacity, max_slots, ain_size_ratio, aout_size_ratio):
    if not 0.0 < ain_size_ratio < 1.0:
        raise ValueError(f"twoq: ain_size_ratio must be in (0, 1), got {ain_size_ratio}")
    if aout_size_ratio < 0.0:
        raise ValueError(f"twoq: aout_size_ratio must be >= 0, got {aout_size_ratio}")
    return TwoQ(), (capacity, max_slots, int(capacity * ain_size_ratio), int(capacity * aout_size_ratio))
