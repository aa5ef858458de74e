"""LIRS: low inter-reference recency set (Jiang & Zhang, SIGMETRICS'02).

Objects are LIR (recently reused: the protected ~99 % of the bytes) or HIR.
Stack S orders recent keys by recency (LIR, resident HIR and non-resident
HIR ghosts); queue Q holds the resident HIR objects, and victims come from
Q's LRU end.  A hit on an HIR key still in S proves a short reuse distance:
it becomes LIR and the LIR block at the bottom of S is demoted to Q.  S is
pruned so its bottom is always LIR, and ghosts are dropped when S exceeds
twice the capacity.  This follows libCacheSim's byte-sized variant exactly,
which evicts during hits and admission too (reported through
``take_evicted``); its HIR share is ``max(1, int(hirs_ratio * capacity))``.

One libCacheSim quirk is opt-in: when a hit on an HIR object that is only in
Q demotes an LIR block and that demotion pushes the hit object itself out of
Q, libCacheSim still counts the object as cached (uncharged) and its next
request as a hit.  ``phantom_hits=True`` reproduces that, giving libCacheSim's
exact miss counts at small capacities, but the cache may then briefly hold a
few objects beyond its capacity, so live caches keep the default (the object
leaves and stays in S as a non-resident HIR key).
"""

from __future__ import annotations

import numpy as np
from numba import boolean, int64
from numba.experimental import jitclass

from ._keymap import EMPTY_KEY, KeyList, KeyMap
from .base import protocol_defaults, register_policy

LIR = 1
RESIDENT = 2
NONRESIDENT_HIR = 0


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("lirs_limit", int64),
        ("hirs_limit", int64),
        ("lirs_count", int64),
        ("hirs_count", int64),
        ("incoming_key", int64),
        ("incoming_size", int64),
        ("phantom_hits", boolean),
        ("hit_key", int64),
        ("key_of", int64[::1]),
        ("pending", int64[::1]),
        ("n_pending", int64),
        ("slot_of", KeyMap.class_type.instance_type),
        ("stack", KeyList.class_type.instance_type),
        ("queue", KeyList.class_type.instance_type),
        ("ghosts", KeyList.class_type.instance_type),
    ]
)
@protocol_defaults
class LIRSState:
    """LIRS state over slots ``[0, max_slots)``; tags of ``stack`` entries are
    ``LIR | RESIDENT`` bits, ``ghosts`` lists the non-resident HIR keys of S."""

    def __init__(self, capacity, max_slots, hirs_limit, phantom_hits):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.hirs_limit = hirs_limit
        self.lirs_limit = capacity - hirs_limit
        self.lirs_count = 0
        self.hirs_count = 0
        self.incoming_key = EMPTY_KEY
        self.incoming_size = 0
        self.phantom_hits = phantom_hits
        self.hit_key = EMPTY_KEY
        self.key_of = np.zeros(max_slots, dtype=np.int64)
        self.pending = np.zeros(max_slots, dtype=np.int64)
        self.n_pending = 0
        n = min(max_slots, max(capacity, 16))
        self.slot_of = KeyMap(n)
        self.stack = KeyList(-1, n)
        self.queue = KeyList(-1, n)
        self.ghosts = KeyList(-1, n)

    # -- internal moves ------------------------------------------------------

    def _leave(self, key):
        """``key`` is no longer cached: queue its slot for ``take_evicted``."""
        slot = self.slot_of.get(key, -1)
        if slot != -1:
            self.slot_of.remove(key)
            self.pending[self.n_pending] = slot
            self.n_pending += 1
            self.n_resident -= 1

    def _evict_hir(self):
        key = self.queue.oldest_key()
        size = self.queue.size_of(key)
        self.hirs_count -= size
        self.queue.remove(key)
        if self.stack.contains(key):
            self.stack.set_tag(key, self.stack.tag(key) & ~RESIDENT)
            self.ghosts.push(key, size)
        self.used -= size
        if not (self.phantom_hits and key == self.hit_key):
            self._leave(key)

    def _prune(self):
        stack = self.stack
        while stack.count > 1:
            key = stack.oldest_key()
            tag = stack.tag(key)
            if tag & LIR:
                break
            if not tag & RESIDENT:
                self.ghosts.remove(key)
            elif not self.queue.contains(key):
                self._leave(key)  # a phantom (see phantom_hits) leaves with its S entry
            stack.remove(key)

    def _evict_lir(self):
        key = self.stack.oldest_key()
        size = self.stack.size_of(key)
        self.lirs_count -= size
        self.stack.remove(key)
        self.used -= size
        if size <= self.hirs_limit:
            while self.hirs_count + size > self.hirs_limit:
                self._evict_hir()
            self.queue.push(key, size)
            self.hirs_count += size
            self.used += size
        else:
            self._leave(key)
        self._prune()

    def _limit_stack(self):
        while self.stack.used > 2 * self.capacity and self.ghosts.count > 0:
            self.stack.remove(self.ghosts.pop_oldest())

    def _is_ghost_in_stack(self, key):
        return self.stack.contains(key) and self.stack.tag(key) == NONRESIDENT_HIR

    # -- protocol ------------------------------------------------------------

    def admit(self, key, size):
        self.incoming_key = key
        self.incoming_size = size
        in_stack = self.stack.contains(key)
        if in_stack:
            self.stack.move_to_newest(key)
        if size > self.capacity:
            return False
        if in_stack and self.stack.tag(key) == NONRESIDENT_HIR:
            old_size = self.stack.size_of(key)
            while self.lirs_count + old_size > self.lirs_limit:
                self._evict_lir()
            self.ghosts.remove(key)
            return True
        if in_stack or self.queue.contains(key):
            return False
        if size > self.lirs_limit or size > self.hirs_limit:
            return False
        if self.lirs_count + size > self.lirs_limit and self.hirs_count + size > self.hirs_limit:
            while self.hirs_count + size > self.hirs_limit:
                self._evict_hir()
        return True

    def victim(self):
        key = self.incoming_key
        size = self.incoming_size
        while self.n_pending == 0:
            if self._is_ghost_in_stack(key):
                while self.hirs_count >= self.hirs_limit:
                    self._evict_hir()
                self._evict_lir()
            elif self.lirs_count + size > self.lirs_limit and self.hirs_count + size > self.hirs_limit:
                self._evict_hir()
            elif self.queue.count > 0:
                self._evict_hir()  # libCacheSim would spin here without progress
            else:
                self._evict_lir()
        return self.take_evicted()

    def take_evicted(self):
        if self.n_pending == 0:
            return -1
        self.n_pending -= 1
        return self.pending[self.n_pending]

    def on_insert(self, slot, key, size):
        self.key_of[slot] = key
        self.slot_of.put(key, slot)
        self.n_resident += 1
        stack = self.stack
        if self._is_ghost_in_stack(key):
            stack.set_tag(key, LIR | RESIDENT)
            old_size = stack.size_of(key)
            self.lirs_count += old_size
            self.used += old_size
        else:
            if self.lirs_count + size <= self.lirs_limit:
                stack.push(key, size)
                stack.set_tag(key, LIR | RESIDENT)
                self.lirs_count += size
            else:
                stack.push(key, size)
                stack.set_tag(key, RESIDENT)
                self.queue.push(key, size)
                self.hirs_count += size
            self.used += size
        self._limit_stack()

    def on_hit(self, slot):
        key = self.key_of[slot]
        stack = self.stack
        in_stack = stack.contains(key)
        in_queue = self.queue.contains(key)
        if in_stack:
            stack.move_to_newest(key)
        if in_queue:
            self.queue.move_to_newest(key)
        if in_stack:
            tag = stack.tag(key)
            if tag & LIR:
                self._prune()
            elif tag & RESIDENT:
                if in_queue:
                    q_size = self.queue.size_of(key)
                    self.hirs_count -= q_size
                    self.queue.remove(key)
                    self.used -= q_size
                size = stack.size_of(key)
                while self.lirs_count + size > self.lirs_limit:
                    self._evict_lir()
                stack.set_tag(key, LIR | RESIDENT)
                self.lirs_count += size
                self.used += size
        elif in_queue:
            size = self.queue.size_of(key)
            self.hit_key = key
            while self.lirs_count + size > self.lirs_limit:
                self._evict_lir()
            self.hit_key = EMPTY_KEY
            stack.push(key, size)
            if self.phantom_hits or self.queue.contains(key):
                stack.set_tag(key, RESIDENT)
            else:
                self.ghosts.push(key, size)
        self._limit_stack()

    def remove(self, slot):
        key = self.key_of[slot]
        stack = self.stack
        if stack.contains(key):
            tag = stack.tag(key)
            size = stack.size_of(key)
            stack.remove(key)
            if tag & LIR:
                self.lirs_count -= size
                self.used -= size
                self._prune()
            elif tag & RESIDENT:
                self.hirs_count -= size
                self.used -= size
            if self.queue.contains(key):
                self.queue.remove(key)
        elif self.queue.contains(key):
            size = self.queue.size_of(key)
            self.queue.remove(key)
            self.hirs_count -= size
            self.used -= size
        if self.slot_of.remove(key):
            self.n_resident -= 1


@register_policy(
    "lirs", {"hirs_ratio": 0.01, "phantom_hits": False}, "LIRS (LIR stack S, resident HIR queue Q)"
)
def build_lirs(capacity, max_slots, hirs_ratio, phantom_hits):
    if not 0.0 < hirs_ratio < 1.0:
        raise ValueError(f"lirs: hirs_ratio must be in (0, 1), got {hirs_ratio}")
    return LIRSState(capacity, max_slots, max(1, int(hirs_ratio * capacity)), phantom_hits)
