"""One-list policies (LRU, FIFO): victims come from the tail of a single list."""

from __future__ import annotations

import numpy as np
from numba import boolean, int64
from numba.experimental import jitclass

from ._lists import NEXT, PREV, dll_push_head, dll_unlink, new_nodes
from .base import protocol_defaults


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("n_pending", int64),
        ("promote_on_hit", boolean),
        ("sentinel", int64),
        ("links", int64[:, ::1]),
        ("size", int64[::1]),
    ]
)
@protocol_defaults
class SingleListState:
    """Objects in one list; inserts at the head, victims from the tail.

    ``promote_on_hit`` moves a hit object to the head (LRU) or not (FIFO).
    """

    def __init__(self, capacity, max_slots, promote_on_hit):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.n_pending = 0
        self.promote_on_hit = promote_on_hit
        self.sentinel = max_slots
        self.links = new_nodes(max_slots, 1, 2)
        self.size = np.zeros(max_slots, dtype=np.int64)

    def admit(self, key, size):
        return size <= self.capacity

    def victim(self):
        links = self.links
        slot = links[self.sentinel, PREV]
        dll_unlink(links, slot)
        self.used -= self.size[slot]
        self.n_resident -= 1
        return slot

    def on_insert(self, slot, key, size):
        dll_push_head(self.links, self.sentinel, slot)
        self.size[slot] = size
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        if self.promote_on_hit:
            links = self.links
            if links[self.sentinel, NEXT] != slot:
                dll_unlink(links, slot)
                dll_push_head(links, self.sentinel, slot)

    def remove(self, slot):
        dll_unlink(self.links, slot)
        self.used -= self.size[slot]
        self.n_resident -= 1
