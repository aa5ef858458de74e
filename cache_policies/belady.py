"""Belady (MIN): evict the object whose next access is farthest away.

Offline only: the simulator passes each request's next-access time through
``set_next_access`` before the request.  Objects never requested again count
as infinitely far.  Resident objects sit in a binary max-heap on next-access
time with the sift rules of libCacheSim's ``pqueue`` (strict comparisons), so
ties among never-reused objects break as libCacheSim breaks them.
"""

from __future__ import annotations

import numpy as np
from numba import int64
from numba.experimental import jitclass

from .base import protocol_defaults, register_policy

_INFINITY = np.iinfo(np.int64).max


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("n_pending", int64),
        ("current_next", int64),
        ("heap", int64[::1]),
        ("heap_size", int64),
        ("pos", int64[::1]),
        ("pri", int64[::1]),
        ("size", int64[::1]),
    ]
)
@protocol_defaults
class BeladyState:
    """Belady state over slots ``[0, max_slots)``; ``heap`` is 1-based."""

    def __init__(self, capacity, max_slots):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.n_pending = 0
        self.current_next = _INFINITY
        self.heap = np.zeros(max_slots + 1, dtype=np.int64)
        self.heap_size = 0
        self.pos = np.zeros(max_slots, dtype=np.int64)
        self.pri = np.zeros(max_slots, dtype=np.int64)
        self.size = np.zeros(max_slots, dtype=np.int64)

    def _bubble_up(self, i):
        heap = self.heap
        moving = heap[i]
        p = self.pri[moving]
        while i > 1 and self.pri[heap[i >> 1]] < p:
            heap[i] = heap[i >> 1]
            self.pos[heap[i]] = i
            i >>= 1
        heap[i] = moving
        self.pos[moving] = i

    def _percolate_down(self, i):
        heap = self.heap
        moving = heap[i]
        p = self.pri[moving]
        n = self.heap_size
        while True:
            child = 2 * i
            if child > n:
                break
            if child + 1 <= n and self.pri[heap[child]] < self.pri[heap[child + 1]]:
                child += 1
            if not p < self.pri[heap[child]]:
                break
            heap[i] = heap[child]
            self.pos[heap[i]] = i
            i = child
        heap[i] = moving
        self.pos[moving] = i

    def _delete_at(self, i):
        slot = self.heap[i]
        last = self.heap[self.heap_size]
        self.heap_size -= 1
        if i <= self.heap_size:
            self.heap[i] = last
            self.pos[last] = i
            if self.pri[slot] < self.pri[last]:
                self._bubble_up(i)
            else:
                self._percolate_down(i)

    def admit(self, key, size):
        return size <= self.capacity

    def victim(self):
        slot = self.heap[1]
        self._delete_at(1)
        self.used -= self.size[slot]
        self.n_resident -= 1
        return slot

    def on_insert(self, slot, key, size):
        self.pri[slot] = self.current_next
        self.size[slot] = size
        self.heap_size += 1
        self.heap[self.heap_size] = slot
        self._bubble_up(self.heap_size)
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        old = self.pri[slot]
        self.pri[slot] = self.current_next
        if old < self.current_next:
            self._bubble_up(self.pos[slot])
        else:
            self._percolate_down(self.pos[slot])

    def remove(self, slot):
        self._delete_at(self.pos[slot])
        self.used -= self.size[slot]
        self.n_resident -= 1

    def set_next_access(self, next_vtime):
        self.current_next = next_vtime if next_vtime >= 0 else _INFINITY


@register_policy("belady", {}, "offline optimum (farthest next access)", needs_next_access=True)
def build_belady(capacity, max_slots):
    return BeladyState(capacity, max_slots)
