"""CLOCK: FIFO with an n-bit reference counter per object (second chance).

A hit raises the counter up to ``2**n_bit_counter - 1``.  To evict, look at
the oldest object: while its counter is above zero, decrement it and move the
object to the newest end; the first object found at zero leaves.  New objects
start at ``init_freq``.
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
        ("max_freq", int64),
        ("init_freq", int64),
        ("freq", int64[::1]),
        ("lists", SlotLists.class_type.instance_type),
    ]
)
@protocol_defaults
class ClockState:
    """CLOCK state over slots ``[0, max_slots)``."""

    def __init__(self, capacity, max_slots, n_bit_counter, init_freq):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.n_pending = 0
        self.max_freq = (1 << n_bit_counter) - 1
        self.init_freq = init_freq
        self.freq = np.zeros(max_slots, dtype=np.int64)
        self.lists = SlotLists(max_slots, 1)

    def admit(self, key, size):
        return size <= self.capacity

    def victim(self):
        lists = self.lists
        slot = lists.tail(0)
        while self.freq[slot] >= 1:
            self.freq[slot] -= 1
            lists.move_to_head(0, slot)
            slot = lists.tail(0)
        lists.unlink(slot)
        self.used -= lists.size_of(slot)
        self.n_resident -= 1
        return slot

    def on_insert(self, slot, key, size):
        self.freq[slot] = self.init_freq
        self.lists.push_head(0, slot, size)
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        if self.freq[slot] < self.max_freq:
            self.freq[slot] += 1

    def remove(self, slot):
        self.lists.unlink(slot)
        self.used -= self.lists.size_of(slot)
        self.n_resident -= 1


@register_policy("clock", {"n_bit_counter": 1, "init_freq": 0}, "FIFO with n-bit reference counters")
def build_clock(capacity, max_slots, n_bit_counter, init_freq):
    if not 1 <= n_bit_counter <= 30:
        raise ValueError(f"clock: n_bit_counter must be in [1, 30], got {n_bit_counter}")
    if not 0 <= init_freq < (1 << n_bit_counter):
        raise ValueError(f"clock: init_freq must be in [0, 2**n_bit_counter), got {init_freq}")
    return ClockState(capacity, max_slots, n_bit_counter, init_freq)
