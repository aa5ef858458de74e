"""Intrusive doubly linked lists over slot ids, shared by every policy.

All links live in one ``[n_nodes, 2]`` int64 array (``PREV``, ``NEXT`` side by
side): touching one array per step keeps numba's reference counting off the
per-request path.  Each list is circular through a sentinel node placed after
the slots (list ``l`` of ``SlotLists`` uses node ``max_slots + l``), so the
link updates have no branches; the sentinel's ``NEXT`` is the head (newest /
MRU end) and its ``PREV`` the tail (oldest / LRU end).  ``dll_*`` are the
inlined primitives; ``SlotLists`` adds several lists sharing one links array
(a slot is in at most one list at a time) with per-slot sizes and per-list
lengths and bytes.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import int64
from numba.experimental import jitclass

NO_SLOT = -1
PREV = 0
NEXT = 1


@numba.njit(cache=True)
def new_links(n_slots, n_lists):
    """Links for ``n_slots`` slots and ``n_lists`` empty lists (sentinels after the slots)."""
    links = np.full((n_slots + n_lists, 2), NO_SLOT, dtype=np.int64)
    for s in range(n_slots, n_slots + n_lists):
        links[s, PREV] = s
        links[s, NEXT] = s
    return links


@numba.njit(inline="always")
def dll_push_head(links, sentinel, slot):
    """Insert ``slot`` right after ``sentinel`` (at the head)."""
    h = links[sentinel, NEXT]
    links[slot, PREV] = sentinel
    links[slot, NEXT] = h
    links[h, PREV] = slot
    links[sentinel, NEXT] = slot


@numba.njit(inline="always")
def dll_unlink(links, slot):
    """Remove ``slot`` from its list."""
    p = links[slot, PREV]
    n = links[slot, NEXT]
    links[p, NEXT] = n
    links[n, PREV] = p


@jitclass(
    [
        ("links", int64[:, ::1]),
        ("size", int64[::1]),
        ("where", int64[::1]),
        ("count", int64[::1]),
        ("nbytes", int64[::1]),
        ("max_slots", int64),
    ]
)
class SlotLists:
    """``n_lists`` doubly linked lists over slots ``[0, max_slots)``.

    ``where[slot]`` is the list holding the slot, or -1.
    """

    def __init__(self, max_slots, n_lists):
        self.links = new_links(max_slots, n_lists)
        self.max_slots = max_slots
        self.size = np.zeros(self.max_slots, dtype=np.int64)
        self.where = np.full(self.max_slots, -1, dtype=np.int64)
        self.count = np.zeros(n_lists, dtype=np.int64)
        self.nbytes = np.zeros(n_lists, dtype=np.int64)

    def head(self, lst):
        """Newest slot of ``lst`` (``NO_SLOT`` if empty)."""
        h = self.links[self.max_slots + lst, NEXT]
        return NO_SLOT if h >= self.max_slots else h

    def tail(self, lst):
        """Oldest slot of ``lst`` (``NO_SLOT`` if empty)."""
        t = self.links[self.max_slots + lst, PREV]
        return NO_SLOT if t >= self.max_slots else t

    def ensure_lists(self, n_lists):
        """Grow to at least ``n_lists`` lists (new ones empty)."""
        old = self.count.shape[0]
        if n_lists <= old:
            return
        n = max(n_lists, 2 * old)
        links = np.empty((self.max_slots + n, 2), dtype=np.int64)
        links[: self.max_slots + old] = self.links
        for s in range(self.max_slots + old, self.max_slots + n):
            links[s, PREV] = s
            links[s, NEXT] = s
        count = np.zeros(n, dtype=np.int64)
        nbytes = np.zeros(n, dtype=np.int64)
        count[:old] = self.count
        nbytes[:old] = self.nbytes
        self.links = links
        self.count = count
        self.nbytes = nbytes

    def push_head(self, lst, slot, size):
        """Insert ``slot`` (of ``size`` bytes) at the head of list ``lst``."""
        dll_push_head(self.links, self.max_slots + lst, slot)
        self.size[slot] = size
        self.where[slot] = lst
        self.count[lst] += 1
        self.nbytes[lst] += size

    def unlink(self, slot):
        """Remove ``slot`` from its list; return the list it was in."""
        dll_unlink(self.links, slot)
        lst = self.where[slot]
        self.where[slot] = -1
        self.count[lst] -= 1
        self.nbytes[lst] -= self.size[slot]
        return lst

    def move_to_head(self, lst, slot):
        """Move ``slot`` (in any list) to the head of ``lst``."""
        links = self.links
        dll_unlink(links, slot)
        dll_push_head(links, self.max_slots + lst, slot)
        old = self.where[slot]
        if old != lst:
            size = self.size[slot]
            self.where[slot] = lst
            self.count[old] -= 1
            self.nbytes[old] -= size
            self.count[lst] += 1
            self.nbytes[lst] += size

    def pop_tail(self, lst):
        """Unlink and return the tail of ``lst`` (``NO_SLOT`` if empty)."""
        t = self.tail(lst)
        if t != NO_SLOT:
            self.unlink(t)
        return t
