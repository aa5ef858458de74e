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

from ._lists import NO_SLOT, PREV, dll_push_head, dll_unlink, new_nodes
from .base import protocol_defaults, register_policy


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("n_pending", int64),
        ("hand", int64),
        ("sentinel", int64),
        ("visited", boolean[::1]),
        ("links", int64[:, ::1]),
        ("size", int64[::1]),
    ]
)
@protocol_defaults
class SieveState:
    """SIEVE state over slots ``[0, max_slots)``; ``hand == NO_SLOT`` means the tail."""

    def __init__(self, capacity, max_slots):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.n_pending = 0
        self.hand = NO_SLOT
        self.sentinel = max_slots
        self.visited = np.zeros(max_slots, dtype=np.bool_)
        self.links = new_nodes(max_slots, 1, 2)
        self.size = np.zeros(max_slots, dtype=np.int64)

    def admit(self, key, size):
        return size <= self.capacity

    def _toward_head(self, slot):
        """The slot newer than ``slot``, wrapping from the head to the tail."""
        links = self.links
        nxt = links[slot, PREV]
        if nxt == self.sentinel:
            nxt = links[self.sentinel, PREV]
        return nxt

    def victim(self):
        links = self.links
        visited = self.visited
        slot = self.hand if self.hand != NO_SLOT else links[self.sentinel, PREV]
        while visited[slot]:
            visited[slot] = False
            slot = self._toward_head(slot)
        newer = links[slot, PREV]
        self.hand = NO_SLOT if newer == self.sentinel else newer
        dll_unlink(links, slot)
        self.used -= self.size[slot]
        self.n_resident -= 1
        return slot

    def on_insert(self, slot, key, size):
        self.visited[slot] = False
        dll_push_head(self.links, self.sentinel, slot)
        self.size[slot] = size
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        self.visited[slot] = True

    def remove(self, slot):
        if self.hand == slot:
            newer = self.links[slot, PREV]
            self.hand = NO_SLOT if newer == self.sentinel else newer
        dll_unlink(self.links, slot)
        self.used -= self.size[slot]
        self.n_resident -= 1


@register_policy("sieve", {}, "SIEVE (FIFO with visited bit and hand)")
def build_sieve(capacity, max_slots):
    return SieveState(capacity, max_slots)
