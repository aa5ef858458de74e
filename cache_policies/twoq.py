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
"""

from __future__ import annotations

import numpy as np
from numba import boolean, int64
from numba.experimental import jitclass

from ._keymap import KeyList
from ._lists import SlotLists
from .base import protocol_defaults, register_policy

AIN = 0
AM = 1


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("n_pending", int64),
        ("ain_capacity", int64),
        ("am_capacity", int64),
        ("ghost_hit", boolean),
        ("incoming_size", int64),
        ("key_of", int64[::1]),
        ("lists", SlotLists.class_type.instance_type),
        ("aout", KeyList.class_type.instance_type),
    ]
)
@protocol_defaults
class TwoQState:
    """2Q state over slots ``[0, max_slots)``."""

    def __init__(self, capacity, max_slots, ain_capacity, aout_capacity):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.n_pending = 0
        self.ain_capacity = ain_capacity
        self.am_capacity = capacity - ain_capacity
        self.ghost_hit = False
        self.incoming_size = 0
        self.key_of = np.zeros(max_slots, dtype=np.int64)
        self.lists = SlotLists(max_slots, 2)
        self.aout = KeyList(aout_capacity, min(max_slots, max(aout_capacity, 16)))

    def _resident_bytes(self):
        return self.lists.nbytes(AIN) + self.lists.nbytes(AM)

    def _update_used(self):
        if self.ghost_hit:
            self.used = self.lists.nbytes(AM) + max(self.lists.nbytes(AIN), self.ain_capacity)
        else:
            self.used = self._resident_bytes()

    def admit(self, key, size):
        self.ghost_hit = self.aout.remove(key)
        self.incoming_size = size
        ok = size <= self.ain_capacity and size <= self.capacity
        if not ok:
            self.ghost_hit = False
        self._update_used()
        return ok

    def victim(self):
        lists = self.lists
        needs_room = self._resident_bytes() + self.incoming_size > self.capacity
        if needs_room and (lists.nbytes(AIN) > self.ain_capacity or lists.count(AM) == 0):
            slot = lists.pop_tail(AIN)
            self.aout.push(self.key_of[slot], lists.size_of(slot))
        else:
            slot = lists.pop_tail(AM)
        self.n_resident -= 1
        self._update_used()
        return slot

    def on_insert(self, slot, key, size):
        self.key_of[slot] = key
        if self.ghost_hit:
            self.lists.push_head(AM, slot, size)
            self.ghost_hit = False
        else:
            self.lists.push_head(AIN, slot, size)
        self.n_resident += 1
        self._update_used()

    def on_hit(self, slot):
        if self.lists.list_of(slot) == AM:
            self.lists.move_to_head(AM, slot)

    def remove(self, slot):
        self.lists.unlink(slot)
        self.n_resident -= 1
        self._update_used()


@register_policy("twoq", {"ain_size_ratio": 0.25, "aout_size_ratio": 0.5}, "2Q (FIFO Ain, ghost Aout, LRU Am)")
def build_twoq(capacity, max_slots, ain_size_ratio, aout_size_ratio):
    if not 0.0 < ain_size_ratio < 1.0:
        raise ValueError(f"twoq: ain_size_ratio must be in (0, 1), got {ain_size_ratio}")
    if aout_size_ratio < 0.0:
        raise ValueError(f"twoq: aout_size_ratio must be >= 0, got {aout_size_ratio}")
    return TwoQState(capacity, max_slots, int(capacity * ain_size_ratio), int(capacity * aout_size_ratio))
