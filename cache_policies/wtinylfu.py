"""W-TinyLFU: an LRU window in front of an SLRU main cache, with TinyLFU
admission between them (Einziger, Friedman & Manes, 2017).

New objects enter the window (``window_size`` of the bytes).  A window victim
moves into main while main has room; otherwise it replaces main's victim only
if the frequency sketch rates it strictly higher, else it leaves.  Main is
libCacheSim's segmented LRU: 20 % probation and 80 % protected; an object
enters the lowest segment with room, victims come from probation first, a
probation hit promotes to protected, and protected overflow demotes back to
probation (whose own overflow then evicts, reported through
``take_evicted``).  The sketch counts inserts, main hits and every window victim
considered (window hits are not counted) and halves after ``32 * main size``
main hits, as in libCacheSim; its hashes differ, so miss ratios match
libCacheSim's only approximately.  ``doorkeeper=True`` adds Caffeine's
doorkeeper Bloom filter in front of the counters.
"""

from __future__ import annotations

import numpy as np
from numba import int64
from numba.experimental import jitclass

from ._lists import SlotLists
from ._sketch import FrequencySketch, new_sketch
from .base import protocol_defaults, register_policy

WINDOW = 0
PROBATION = 1
PROTECTED = 2


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("window_capacity", int64),
        ("main_capacity", int64),
        ("probation_capacity", int64),
        ("protected_capacity", int64),
        ("pending", int64[::1]),
        ("n_pending", int64),
        ("main_hits", int64),
        ("decay_period", int64),
        ("key_of", int64[::1]),
        ("lists", SlotLists.class_type.instance_type),
        ("sketch", FrequencySketch.class_type.instance_type),
    ]
)
@protocol_defaults
class WTinyLFUState:
    """W-TinyLFU state over slots ``[0, max_slots)``."""

    def __init__(self, capacity, max_slots, window_capacity, protected_ratio, sketch):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.window_capacity = window_capacity
        self.main_capacity = capacity - window_capacity
        self.protected_capacity = int64(self.main_capacity * protected_ratio)
        self.probation_capacity = int64(self.main_capacity * (1.0 - protected_ratio))
        self.pending = np.zeros(max_slots, dtype=np.int64)
        self.n_pending = 0
        self.main_hits = 0
        self.decay_period = 32 * self.main_capacity
        self.key_of = np.zeros(max_slots, dtype=np.int64)
        self.lists = SlotLists(max_slots, 3)
        self.sketch = sketch

    def admit(self, key, size):
        return size <= self.capacity and size <= self.window_capacity and size <= self.probation_capacity

    def _main_bytes(self):
        return self.lists.nbytes(PROBATION) + self.lists.nbytes(PROTECTED)

    def _enter_main(self, slot):
        lists = self.lists
        size = lists.size_of(slot)
        if lists.nbytes(PROBATION) + size > self.probation_capacity and (
            lists.nbytes(PROTECTED) + size <= self.protected_capacity
        ):
            lists.move_to_head(PROTECTED, slot)
        else:
            lists.move_to_head(PROBATION, slot)

    def _main_victim(self):
        if self.lists.count(PROBATION) > 0:
            return self.lists.tail(PROBATION)
        return self.lists.tail(PROTECTED)

    def _leave(self, slot):
        self.lists.unlink(slot)
        self.used -= self.lists.size_of(slot)
        self.n_resident -= 1
        return slot

    def victim(self):
        lists = self.lists
        while lists.count(WINDOW) > 0:
            candidate = lists.tail(WINDOW)
            key = self.key_of[candidate]
            if self._main_bytes() + lists.size_of(candidate) <= self.main_capacity:
                self._enter_main(candidate)
                self.sketch.add(key)
                continue
            main_victim = self._main_victim()
            if self.sketch.estimate(key) > self.sketch.estimate(self.key_of[main_victim]):
                self._leave(main_victim)
                self._enter_main(candidate)
                self.sketch.add(key)
                return main_victim
            self.sketch.add(key)
            return self._leave(candidate)
        return self._leave(self._main_victim())

    def on_insert(self, slot, key, size):
        self.key_of[slot] = key
        self.lists.push_head(WINDOW, slot, size)
        self.sketch.add(key)
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        lists = self.lists
        where = lists.list_of(slot)
        if where == WINDOW:
            lists.move_to_head(WINDOW, slot)
            return
        self.sketch.add(self.key_of[slot])
        self.main_hits += 1
        if self.main_hits >= self.decay_period:
            self.main_hits = 0
            self.sketch.halve()
        if where == PROTECTED:
            lists.move_to_head(PROTECTED, slot)
            return
        lists.move_to_head(PROTECTED, slot)
        while lists.nbytes(PROTECTED) > self.protected_capacity:
            lists.move_to_head(PROBATION, lists.tail(PROTECTED))
            while lists.nbytes(PROBATION) > self.probation_capacity:
                self.pending[self.n_pending] = self._leave(lists.tail(PROBATION))
                self.n_pending += 1

    def remove(self, slot):
        self._leave(slot)

    def take_evicted(self):
        if self.n_pending == 0:
            return -1
        self.n_pending -= 1
        return self.pending[self.n_pending]


@register_policy(
    "wtinylfu",
    {"window_size": 0.01, "protected_ratio": 0.8, "sketch_error": 0.001, "doorkeeper": False},
    "W-TinyLFU (LRU window, SLRU main, frequency-sketch admission)",
)
def build_wtinylfu(capacity, max_slots, window_size, protected_ratio, sketch_error, doorkeeper):
    if not 0.0 <= window_size < 1.0:
        raise ValueError(f"wtinylfu: window_size must be in [0, 1), got {window_size}")
    if not 0.0 < protected_ratio < 1.0:
        raise ValueError(f"wtinylfu: protected_ratio must be in (0, 1), got {protected_ratio}")
    if not 0.0 < sketch_error < 1.0:
        raise ValueError(f"wtinylfu: sketch_error must be in (0, 1), got {sketch_error}")
    window = int(capacity * window_size)
    # libCacheSim sizes the sketch by main's bytes; no more than max_slots keys can be cached
    sketch = new_sketch(min(capacity - window, max_slots), sketch_error, doorkeeper)
    return WTinyLFUState(capacity, max_slots, window, protected_ratio, sketch)
