"""ARC: adaptive replacement cache (Megiddo & Modha, FAST'03).

Two LRU lists hold resident objects: T1 (seen once recently) and T2 (seen at
least twice); two ghost lists B1 and B2 remember keys recently evicted from
each.  A ghost hit in B1 grows the target size ``p`` of T1, a ghost hit in B2
shrinks it, and the object goes to T2; REPLACE evicts from T1 when it exceeds
``p``, else from T2.  Sizes count bytes, ``p`` is a float and ghost lists are
trimmed as in libCacheSim (|T1|+|B1| <= c, total <= 2c).
"""

from __future__ import annotations

import numpy as np
from numba import float64, int64
from numba.experimental import jitclass

from ._keymap import KeyList
from ._lists import BYTES, SIZE, new_nodes, sl_move_to_head, sl_push_head, sl_tail, sl_unlink
from .base import protocol_defaults, register_policy

T1 = 0
T2 = 1
NO_GHOST_HIT = 0
HIT_B1 = 1
HIT_B2 = 2


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("n_pending", int64),
        ("p", float64),
        ("ghost_hit", int64),
        ("incoming_size", int64),
        ("key_of", int64[::1]),
        ("max_slots", int64),
        ("nodes", int64[:, ::1]),
        ("stats", int64[:, ::1]),
        ("b1", KeyList.class_type.instance_type),
        ("b2", KeyList.class_type.instance_type),
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
        self.key_of = np.zeros(max_slots, dtype=np.int64)
        self.max_slots = max_slots
        self.nodes = new_nodes(max_slots, 2, 4)
        self.stats = np.zeros((2, 2), dtype=np.int64)
        n_ghost = min(max_slots, max(capacity, 16))
        self.b1 = KeyList(-1, n_ghost)
        self.b2 = KeyList(-1, n_ghost)

    def admit(self, key, size):
        self.ghost_hit = NO_GHOST_HIT
        self.incoming_size = size
        b1_bytes = self.b1.used
        b2_bytes = self.b2.used
        if self.b1.remove(key):
            self.ghost_hit = HIT_B1
            self.p = min(self.p + max(b2_bytes / b1_bytes, 1.0), float(self.capacity))
        elif self.b2.remove(key):
            self.ghost_hit = HIT_B2
            self.p = max(self.p - max(b1_bytes / b2_bytes, 1.0), 0.0)
        return size <= self.capacity

    def _drop(self, slot):
        sl_unlink(self.nodes, self.stats, slot)
        self.used -= self.nodes[slot, SIZE]
        self.n_resident -= 1

    def _replace(self):
        nodes = self.nodes
        stats = self.stats
        t1 = stats[T1, BYTES]
        from_t1 = t1 > 0 and (t1 > self.p or (t1 == self.p and self.ghost_hit == HIT_B2))
        if from_t1 or stats[T2, BYTES] == 0:
            slot = sl_tail(nodes, self.max_slots, T1)
            self.b1.push(self.key_of[slot], nodes[slot, SIZE])
        else:
            slot = sl_tail(nodes, self.max_slots, T2)
            self.b2.push(self.key_of[slot], nodes[slot, SIZE])
        self._drop(slot)
        return slot

    def victim(self):
        if self.ghost_hit != NO_GHOST_HIT:
            return self._replace()
        t1 = self.stats[T1, BYTES]
        b1_bytes = self.b1.used
        if t1 + b1_bytes + self.incoming_size > self.capacity:
            if b1_bytes > 0:
                self.b1.pop_oldest()
                return self._replace()
            slot = sl_tail(self.nodes, self.max_slots, T1)
            self._drop(slot)
            return slot
        b2_bytes = self.b2.used
        if t1 + b1_bytes + self.stats[T2, BYTES] + b2_bytes >= 2 * self.capacity and b2_bytes > 0:
            self.b2.pop_oldest()
        return self._replace()

    def on_insert(self, slot, key, size):
        self.key_of[slot] = key
        if self.ghost_hit != NO_GHOST_HIT:
            sl_push_head(self.nodes, self.stats, self.max_slots, T2, slot, size)
            self.ghost_hit = NO_GHOST_HIT
        else:
            sl_push_head(self.nodes, self.stats, self.max_slots, T1, slot, size)
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        sl_move_to_head(self.nodes, self.stats, self.max_slots, T2, slot)

    def remove(self, slot):
        self._drop(slot)


@register_policy("arc", {}, "adaptive replacement cache")
def build_arc(capacity, max_slots):
    return ARCState(capacity, max_slots)
