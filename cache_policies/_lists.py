"""Intrusive doubly linked lists over slot ids, shared by every policy.

A slot belongs to at most one list at a time, so all lists of a policy share
one ``prev``/``next`` pair of arrays and one per-slot ``size`` array; each list
keeps its head (newest / MRU end), tail (oldest / LRU end), length and bytes.
"""

from __future__ import annotations

import numpy as np
from numba import int64
from numba.experimental import jitclass

NO_SLOT = -1


@jitclass(
    [
        ("prev", int64[::1]),
        ("next", int64[::1]),
        ("size", int64[::1]),
        ("where", int64[::1]),
        ("head", int64[::1]),
        ("tail", int64[::1]),
        ("count", int64[::1]),
        ("nbytes", int64[::1]),
    ]
)
class SlotLists:
    """``n_lists`` doubly linked lists over slots ``[0, max_slots)``.

    ``where[slot]`` is the list holding the slot, or -1.
    """

    def __init__(self, max_slots, n_lists):
        self.prev = np.full(max_slots, NO_SLOT, dtype=np.int64)
        self.next = np.full(max_slots, NO_SLOT, dtype=np.int64)
        self.size = np.zeros(max_slots, dtype=np.int64)
        self.where = np.full(max_slots, -1, dtype=np.int64)
        self.head = np.full(n_lists, NO_SLOT, dtype=np.int64)
        self.tail = np.full(n_lists, NO_SLOT, dtype=np.int64)
        self.count = np.zeros(n_lists, dtype=np.int64)
        self.nbytes = np.zeros(n_lists, dtype=np.int64)

    def ensure_lists(self, n_lists):
        """Grow to at least ``n_lists`` lists (new ones empty)."""
        old = self.head.shape[0]
        if n_lists <= old:
            return
        n = max(n_lists, 2 * old)
        head = np.full(n, NO_SLOT, dtype=np.int64)
        tail = np.full(n, NO_SLOT, dtype=np.int64)
        count = np.zeros(n, dtype=np.int64)
        nbytes = np.zeros(n, dtype=np.int64)
        head[:old] = self.head
        tail[:old] = self.tail
        count[:old] = self.count
        nbytes[:old] = self.nbytes
        self.head = head
        self.tail = tail
        self.count = count
        self.nbytes = nbytes

    def push_head(self, lst, slot, size):
        """Insert ``slot`` (of ``size`` bytes) at the head of list ``lst``."""
        prev = self.prev
        h = self.head[lst]
        prev[slot] = NO_SLOT
        self.next[slot] = h
        if h != NO_SLOT:
            prev[h] = slot
        else:
            self.tail[lst] = slot
        self.head[lst] = slot
        self.size[slot] = size
        self.where[slot] = lst
        self.count[lst] += 1
        self.nbytes[lst] += size

    def unlink(self, slot):
        """Remove ``slot`` from its list; return the list it was in."""
        prev = self.prev
        nxt = self.next
        lst = self.where[slot]
        p = prev[slot]
        n = nxt[slot]
        if p != NO_SLOT:
            nxt[p] = n
        else:
            self.head[lst] = n
        if n != NO_SLOT:
            prev[n] = p
        else:
            self.tail[lst] = p
        self.where[slot] = -1
        self.count[lst] -= 1
        self.nbytes[lst] -= self.size[slot]
        return lst

    def move_to_head(self, lst, slot):
        """Move ``slot`` (in any list) to the head of ``lst``."""
        head = self.head
        if head[lst] == slot:
            return
        prev = self.prev
        nxt = self.next
        old = self.where[slot]
        p = prev[slot]
        n = nxt[slot]
        if p != NO_SLOT:
            nxt[p] = n
        else:
            head[old] = n
        if n != NO_SLOT:
            prev[n] = p
        else:
            self.tail[old] = p
        h = head[lst]
        prev[slot] = NO_SLOT
        nxt[slot] = h
        if h != NO_SLOT:
            prev[h] = slot
        else:
            self.tail[lst] = slot
        head[lst] = slot
        if old != lst:
            size = self.size[slot]
            self.where[slot] = lst
            self.count[old] -= 1
            self.nbytes[old] -= size
            self.count[lst] += 1
            self.nbytes[lst] += size

    def pop_tail(self, lst):
        """Unlink and return the tail of ``lst`` (``NO_SLOT`` if empty)."""
        t = self.tail[lst]
        if t != NO_SLOT:
            self.unlink(t)
        return t
