"""ARC: adaptive replacement cache (Megiddo & Modha, FAST'03).

Two LRU lists hold resident objects: T1 (seen once recently) and T2 (seen at
least twice); two ghost lists B1 and B2 remember keys recently evicted from
each.  A ghost hit in B1 grows the target size ``p`` of T1, a ghost hit in B2
shrinks it, and the object goes to T2; REPLACE evicts from T1 when it exceeds
``p``, else from T2.  Sizes count bytes, ``p`` is a float and ghost lists are
trimmed as in libCacheSim (|T1|+|B1| <= c, total <= 2c).

All four lists live in one node array held by the state (numba reference
counts each array a method touches, so fewer arrays make cheaper steps):
rows ``[0, max_slots)`` are the resident slots, then the sentinels of T1, T2,
B1 and B2 (circular doubly linked lists, ``_lists``; a sentinel's ``SIZE``
is its list's bytes), then the ghost nodes, free ones chained through
``NEXT``.  Ghosts are found by key in one open-addressing table (``_keymap``)
mapping a key to its ghost node, so a miss probes one table.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import float64, int64
from numba.experimental import jitclass

from ._keymap import KEY, VAL, _delete_at, _slot_for, grown_table, new_table
from ._lists import NEXT, PREV, dll_push_head, dll_unlink
from .base import protocol_defaults, register_policy

# lists, as offsets of their sentinels from row ``max_slots``
T1 = 0
T2 = 1
B1 = 2
B2 = 3
N_LISTS = 4
NO_GHOST_HIT = -1
# node fields (PREV and NEXT as in ``_lists``)
SIZE = 2
KEY_OF = 3
LIST = 4
N_FIELDS = 5


@numba.njit(cache=True)
def _chain_free(nodes, first):
    """Chain rows ``[first, len(nodes))`` into a free list through ``NEXT``."""
    for node in range(first, nodes.shape[0] - 1):
        nodes[node, NEXT] = node + 1
    nodes[nodes.shape[0] - 1, NEXT] = -1


@numba.njit(cache=True)
def _new_nodes(max_slots, n_ghosts):
    """Nodes for ``max_slots`` slots, the four empty lists and ``n_ghosts``
    free ghost nodes."""
    nodes = np.full((max_slots + N_LISTS + n_ghosts, N_FIELDS), -1, dtype=np.int64)
    for sentinel in range(max_slots, max_slots + N_LISTS):
        nodes[sentinel, PREV] = sentinel
        nodes[sentinel, NEXT] = sentinel
        nodes[sentinel, SIZE] = 0
    _chain_free(nodes, max_slots + N_LISTS)
    return nodes


@numba.njit(cache=True)
def _grown_nodes(nodes, n_more):
    """``nodes`` with ``n_more`` free ghost nodes appended."""
    n = nodes.shape[0]
    bigger = np.full((n + n_more, N_FIELDS), -1, dtype=np.int64)
    bigger[:n] = nodes
    _chain_free(bigger, n)
    return bigger


@numba.njit(inline="always")
def _push_head(nodes, sentinel, node, size, lst):
    """Link ``node`` (of ``size`` bytes) at the head of list ``lst``."""
    dll_push_head(nodes, sentinel, node)
    nodes[node, LIST] = lst
    nodes[sentinel, SIZE] += size


@numba.njit(inline="always")
def _unlink(nodes, base, node):
    """Unlink ``node`` from its list (the lists' sentinels start at row ``base``)."""
    dll_unlink(nodes, node)
    nodes[base + nodes[node, LIST], SIZE] -= nodes[node, SIZE]


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("n_pending", int64),
        ("p", float64),
        ("ghost_hit", int64),
        ("incoming_size", int64),
        ("base", int64),
        ("nodes", int64[:, ::1]),
        ("free_ghost", int64),
        ("n_ghosts", int64),
        ("ghost_table", int64[:, ::1]),
        ("max_ghosts", int64),
    ]
)
@protocol_defaults
class ARCState:
    """ARC state over slots ``[0, max_slots)``."""

    def __init__(self, capacity, max_slots):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.n_pending = 0
        self.p = 0.0
        self.ghost_hit = NO_GHOST_HIT
        self.incoming_size = 0
        self.base = max_slots
        n_ghosts = min(2 * max_slots, 2 * max(capacity, 16))
        self.nodes = _new_nodes(max_slots, n_ghosts)
        self.free_ghost = max_slots + N_LISTS
        self.n_ghosts = 0
        self.ghost_table = new_table(n_ghosts)
        self.max_ghosts = self.ghost_table.shape[0] // 2

    def admit(self, key, size):
        self.ghost_hit = NO_GHOST_HIT
        self.incoming_size = size
        table = self.ghost_table
        i = _slot_for(table, key)
        if table[i, KEY] == key:
            node = table[i, VAL]
            _delete_at(table, i)
            nodes = self.nodes
            base = self.base
            b1_bytes = nodes[base + B1, SIZE]
            b2_bytes = nodes[base + B2, SIZE]
            lst = nodes[node, LIST]
            if lst == B1:
                self.p = min(self.p + max(b2_bytes / b1_bytes, 1.0), float(self.capacity))
            else:
                self.p = max(self.p - max(b1_bytes / b2_bytes, 1.0), 0.0)
            self.ghost_hit = lst
            _unlink(nodes, base, node)
            nodes[node, NEXT] = self.free_ghost
            self.free_ghost = node
            self.n_ghosts -= 1
        return size <= self.capacity

    def _grow(self):
        """Make room for one more ghost in the node array and the table."""
        if self.free_ghost == -1:
            self.free_ghost = self.nodes.shape[0]
            self.nodes = _grown_nodes(self.nodes, self.nodes.shape[0] - self.base)
        if self.n_ghosts >= self.max_ghosts:
            self.ghost_table = grown_table(self.ghost_table)
            self.max_ghosts = self.ghost_table.shape[0] // 2

    def victim(self):
        if self.free_ghost == -1 or self.n_ghosts >= self.max_ghosts:
            self._grow()
        nodes = self.nodes
        table = self.ghost_table
        base = self.base
        t1_bytes = nodes[base + T1, SIZE]
        if self.ghost_hit == NO_GHOST_HIT:
            b1_bytes = nodes[base + B1, SIZE]
            b2_bytes = nodes[base + B2, SIZE]
            trim = NO_GHOST_HIT
            if t1_bytes + b1_bytes + self.incoming_size > self.capacity:
                if b1_bytes == 0:
                    slot = nodes[base + T1, PREV]
                    _unlink(nodes, base, slot)
                    self.used -= nodes[slot, SIZE]
                    self.n_resident -= 1
                    return slot
                trim = B1
            elif t1_bytes + b1_bytes + nodes[base + T2, SIZE] + b2_bytes >= 2 * self.capacity and b2_bytes > 0:
                trim = B2
            if trim != NO_GHOST_HIT:
                oldest = nodes[base + trim, PREV]
                _delete_at(table, _slot_for(table, nodes[oldest, KEY_OF]))
                _unlink(nodes, base, oldest)
                nodes[oldest, NEXT] = self.free_ghost
                self.free_ghost = oldest
                self.n_ghosts -= 1
        # REPLACE: the T1 or T2 tail becomes the newest ghost of B1 or B2
        from_t1 = t1_bytes > 0 and (t1_bytes > self.p or (t1_bytes == self.p and self.ghost_hit == B2))
        lst = T1 if from_t1 or nodes[base + T2, SIZE] == 0 else T2
        slot = nodes[base + lst, PREV]
        _unlink(nodes, base, slot)
        size = nodes[slot, SIZE]
        key = nodes[slot, KEY_OF]
        self.used -= size
        self.n_resident -= 1
        ghost = self.free_ghost
        self.free_ghost = nodes[ghost, NEXT]
        nodes[ghost, KEY_OF] = key
        nodes[ghost, SIZE] = size
        ghost_list = B1 if lst == T1 else B2
        _push_head(nodes, base + ghost_list, ghost, size, ghost_list)
        self.n_ghosts += 1
        i = _slot_for(table, key)
        table[i, KEY] = key
        table[i, VAL] = ghost
        return slot

    def on_insert(self, slot, key, size):
        nodes = self.nodes
        lst = T1 if self.ghost_hit == NO_GHOST_HIT else T2
        nodes[slot, KEY_OF] = key
        nodes[slot, SIZE] = size
        _push_head(nodes, self.base + lst, slot, size, lst)
        self.ghost_hit = NO_GHOST_HIT
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        nodes = self.nodes
        head = self.base + T2
        if nodes[head, NEXT] != slot:
            _unlink(nodes, self.base, slot)
            _push_head(nodes, head, slot, nodes[slot, SIZE], T2)

    def remove(self, slot):
        nodes = self.nodes
        _unlink(nodes, self.base, slot)
        self.used -= nodes[slot, SIZE]
        self.n_resident -= 1


@register_policy("arc", {}, "adaptive replacement cache")
def build_arc(capacity, max_slots):
    return ARCState(capacity, max_slots)
