"""Intrusive doubly linked lists over slot ids, shared by every policy.

All links live in one 2-D int64 array (``PREV``, ``NEXT`` side by side, then
any per-slot fields): touching one array per step keeps numba's reference
counting off the per-request path.  Each list is circular through a sentinel node placed after
the slots (list ``l`` of ``SlotLists`` uses node ``max_slots + l``), so the
link updates have no branches; the sentinel's ``NEXT`` is the head (newest /
MRU end) and its ``PREV`` the tail (oldest / LRU end).  ``dll_*`` are the
inlined primitives; ``SlotLists`` adds several lists sharing one node array
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
def new_nodes(max_slots, n_lists, n_fields):
    """Nodes (``n_fields`` columns, links first) for ``max_slots`` slots in no
    list, then the sentinels of ``n_lists`` empty lists."""
    nodes = np.full((max_slots + n_lists, n_fields), NO_SLOT, dtype=np.int64)
    for s in range(max_slots, max_slots + n_lists):
        nodes[s, PREV] = s
        nodes[s, NEXT] = s
    return nodes


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


# node fields of SlotLists (PREV and NEXT as above)
SIZE = 2
WHERE = 3
# per-list fields of SlotLists
COUNT = 0
BYTES = 1


@numba.njit(inline="always")
def sl_tail(nodes, max_slots, lst):
    """Oldest slot of list ``lst`` (``NO_SLOT`` if empty)."""
    t = nodes[max_slots + lst, PREV]
    return NO_SLOT if t >= max_slots else t


@numba.njit(inline="always")
def sl_push_head(nodes, stats, max_slots, lst, slot, size):
    """Insert ``slot`` (of ``size`` bytes) at the head of list ``lst``."""
    dll_push_head(nodes, max_slots + lst, slot)
    nodes[slot, SIZE] = size
    nodes[slot, WHERE] = lst
    stats[lst, COUNT] += 1
    stats[lst, BYTES] += size


@numba.njit(inline="always")
def sl_unlink(nodes, stats, slot):
    """Remove ``slot`` from its list; return the list it was in."""
    dll_unlink(nodes, slot)
    lst = nodes[slot, WHERE]
    nodes[slot, WHERE] = -1
    stats[lst, COUNT] -= 1
    stats[lst, BYTES] -= nodes[slot, SIZE]
    return lst


@numba.njit(inline="always")
def sl_move_to_head(nodes, stats, max_slots, lst, slot):
    """Move ``slot`` (in any list) to the head of ``lst``."""
    dll_unlink(nodes, slot)
    dll_push_head(nodes, max_slots + lst, slot)
    old = nodes[slot, WHERE]
    if old != lst:
        size = nodes[slot, SIZE]
        nodes[slot, WHERE] = lst
        stats[old, COUNT] -= 1
        stats[old, BYTES] -= size
        stats[lst, COUNT] += 1
        stats[lst, BYTES] += size


@jitclass([("nodes", int64[:, ::1]), ("stats", int64[:, ::1]), ("max_slots", int64)])
class SlotLists:
    """``n_lists`` doubly linked lists over slots ``[0, max_slots)``.

    ``nodes[slot]`` is (prev, next, size, list or -1); ``stats[list]`` is
    (length, bytes).  List ``l``'s sentinel is node ``max_slots + l``.
    """

    def __init__(self, max_slots, n_lists):
        self.max_slots = max_slots
        self.nodes = new_nodes(max_slots, n_lists, 4)
        self.stats = np.zeros((n_lists, 2), dtype=np.int64)

    def head(self, lst):
        """Newest slot of ``lst`` (``NO_SLOT`` if empty)."""
        h = self.nodes[self.max_slots + lst, NEXT]
        return NO_SLOT if h >= self.max_slots else h

    def tail(self, lst):
        """Oldest slot of ``lst`` (``NO_SLOT`` if empty)."""
        return sl_tail(self.nodes, self.max_slots, lst)

    def size_of(self, slot):
        return self.nodes[slot, SIZE]

    def list_of(self, slot):
        """The list holding ``slot`` (-1 if none)."""
        return self.nodes[slot, WHERE]

    def count(self, lst):
        return self.stats[lst, COUNT]

    def nbytes(self, lst):
        return self.stats[lst, BYTES]

    def ensure_lists(self, n_lists):
        """Grow to at least ``n_lists`` lists (new ones empty)."""
        old = self.stats.shape[0]
        if n_lists <= old:
            return
        n = max(n_lists, 2 * old)
        nodes = np.full((self.max_slots + n, 4), NO_SLOT, dtype=np.int64)
        nodes[: self.max_slots + old] = self.nodes
        for s in range(self.max_slots + old, self.max_slots + n):
            nodes[s, PREV] = s
            nodes[s, NEXT] = s
        stats = np.zeros((n, 2), dtype=np.int64)
        stats[:old] = self.stats
        self.nodes = nodes
        self.stats = stats

    def push_head(self, lst, slot, size):
        """Insert ``slot`` (of ``size`` bytes) at the head of list ``lst``."""
        sl_push_head(self.nodes, self.stats, self.max_slots, lst, slot, size)

    def unlink(self, slot):
        """Remove ``slot`` from its list; return the list it was in."""
        return sl_unlink(self.nodes, self.stats, slot)

    def move_to_head(self, lst, slot):
        """Move ``slot`` (in any list) to the head of ``lst``."""
        sl_move_to_head(self.nodes, self.stats, self.max_slots, lst, slot)

    def pop_tail(self, lst):
        """Unlink and return the tail of ``lst`` (``NO_SLOT`` if empty)."""
        t = self.tail(lst)
        if t != NO_SLOT:
            self.unlink(t)
        return t
