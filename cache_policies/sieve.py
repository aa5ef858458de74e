"""SIEVE: a FIFO queue with a visited bit and a moving hand.

New objects enter at the head with the bit clear; a hit sets the bit.  The
hand starts at the tail and walks toward the head, clearing set bits (wrapping
to the tail), and evicts the first object whose bit is clear; it then rests on
that object's predecessor.  Objects never move, so hits cost one store.
"""

from __future__ import annotations

import numpy as np
from numba import boolean, int64
from numba.experimental import jitclass

from ._lists import NO_SLOT, SlotLists
from .base import register_policy


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("n_pending", int64),
        ("hand", int64),
        ("visited", boolean[::1]),
        ("lists", SlotLists.class_type.instance_type),
    ]
)
class SieveState:
    """SIEVE state over slots ``[0, max_slots)``."""

    def __init__(self, capacity, max_slots):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.n_pending = 0
        self.hand = NO_SLOT
        self.visited = np.zeros(max_slots, dtype=np.bool_)
        self.lists = SlotLists(max_slots, 1)

    def admit(self, key, size):
        return size <= self.capacity

    def victim(self):
        lists = self.lists
        slot = self.hand if self.hand != NO_SLOT else lists.tail[0]
        while self.visited[slot]:
            self.visited[slot] = False
            slot = lists.prev[slot]
            if slot == NO_SLOT:
                slot = lists.tail[0]
        self.hand = lists.prev[slot]
        lists.unlink(slot)
        self.used -= lists.size[slot]
        self.n_resident -= 1
        return slot

    def on_insert(self, slot, key, size):
        self.visited[slot] = False
        self.lists.push_head(0, slot, size)
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        self.visited[slot] = True

    def remove(self, slot):
        if self.hand == slot:
            self.hand = self.lists.prev[slot]
        self.lists.unlink(slot)
        self.used -= self.lists.size[slot]
        self.n_resident -= 1

    def take_evicted(self):
        return -1

    def set_next_access(self, next_vtime):
        pass


@register_policy("sieve", {}, "SIEVE (FIFO with visited bit and hand)")
def build_sieve(capacity, max_slots):
    return SieveState(capacity, max_slots)
