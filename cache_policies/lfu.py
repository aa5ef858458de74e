"""LFU: evict the least frequently used object.

Frequencies count only while an object is cached; an insert starts at 1.
Objects sit in one FIFO bucket per frequency; the victim is the oldest entry of
the lowest non-empty bucket, i.e. the object that reached that frequency first.
"""

from __future__ import annotations

import numpy as np
from numba import int64
from numba.experimental import jitclass

from ._lists import SlotLists
from .base import protocol_defaults, register_policy


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("n_pending", int64),
        ("min_freq", int64),
        ("freq", int64[::1]),
        ("lists", SlotLists.class_type.instance_type),
    ]
)
@protocol_defaults
class LFUState:
    """LFU state over slots ``[0, max_slots)``; list ``f`` is frequency bucket ``f``."""

    def __init__(self, capacity, max_slots):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.n_pending = 0
        self.min_freq = 1
        self.freq = np.zeros(max_slots, dtype=np.int64)
        self.lists = SlotLists(max_slots, 64)

    def admit(self, key, size):
        return size <= self.capacity

    def victim(self):
        lists = self.lists
        while lists.count(self.min_freq) == 0:
            self.min_freq += 1
        slot = lists.pop_tail(self.min_freq)
        self.used -= lists.size_of(slot)
        self.n_resident -= 1
        return slot

    def on_insert(self, slot, key, size):
        self.freq[slot] = 1
        self.min_freq = 1
        self.lists.push_head(1, slot, size)
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        f = self.freq[slot] + 1
        self.freq[slot] = f
        self.lists.ensure_lists(f + 1)
        self.lists.move_to_head(f, slot)
        if self.lists.count(self.min_freq) == 0 and self.min_freq == f - 1:
            self.min_freq = f

    def remove(self, slot):
        self.lists.unlink(slot)
        self.used -= self.lists.size_of(slot)
        self.n_resident -= 1


@register_policy("lfu", {}, "least frequently used, FIFO among equal counts")
def build_lfu(capacity, max_slots):
    return LFUState(capacity, max_slots)
