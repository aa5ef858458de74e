"""S3-FIFO: a small FIFO, a main FIFO and a ghost FIFO (Yang et al., SOSP'23).

New objects enter the small queue S (10 % of the bytes); a key found in the
ghost queue G goes straight to the main queue M.  Hits only bump a counter.
Evicting from S moves objects hit at least ``move_to_main_threshold`` times to
M and turns the others into ghosts; evicting from M gives objects with a
non-zero counter another round (counter capped at 3, minus one).  M is
evicted when it is over its share or S is empty.  This follows libCacheSim's
Dec-2024 rewrite: before the first eviction, once S is full new objects go to
M.  Objects at least as large as S are refused (libCacheSim evicts for them
first and then refuses; here ``admit`` refuses before any eviction).
"""

from __future__ import annotations

import numpy as np
from numba import boolean, int64
from numba.experimental import jitclass

from ._keymap import KeyList
from ._lists import BYTES, COUNT, SIZE, new_nodes, sl_move_to_head, sl_push_head, sl_tail, sl_unlink
from .base import protocol_defaults, register_policy

SMALL = 0
MAIN = 1


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("n_pending", int64),
        ("small_capacity", int64),
        ("main_capacity", int64),
        ("threshold", int64),
        ("has_evicted", boolean),
        ("ghost_hit", boolean),
        ("freq", int64[::1]),
        ("key_of", int64[::1]),
        ("max_slots", int64),
        ("nodes", int64[:, ::1]),
        ("stats", int64[:, ::1]),
        ("ghost", KeyList.class_type.instance_type),
    ]
)
@protocol_defaults
class S3FIFOState:
    """S3-FIFO state over slots ``[0, max_slots)``."""

    def __init__(self, capacity, max_slots, small_capacity, ghost_capacity, threshold):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.n_pending = 0
        self.small_capacity = small_capacity
        self.main_capacity = capacity - small_capacity
        self.threshold = threshold
        self.has_evicted = False
        self.ghost_hit = False
        self.freq = np.zeros(max_slots, dtype=np.int64)
        self.key_of = np.zeros(max_slots, dtype=np.int64)
        self.max_slots = max_slots
        self.nodes = new_nodes(max_slots, 2, 4)
        self.stats = np.zeros((2, 2), dtype=np.int64)
        self.ghost = KeyList(ghost_capacity, min(max_slots, max(ghost_capacity, 16)))

    def admit(self, key, size):
        self.ghost_hit = self.ghost.remove(key)
        if size > self.small_capacity or size > self.capacity:
            return False
        return self.ghost_hit or size < self.small_capacity

    def _evict_main(self):
        nodes = self.nodes
        freq = self.freq
        while True:
            slot = sl_tail(nodes, self.max_slots, MAIN)
            f = freq[slot]
            if f >= 1:
                freq[slot] = min(f, 3) - 1
                sl_move_to_head(nodes, self.stats, self.max_slots, MAIN, slot)
            else:
                return slot

    def victim(self):
        self.has_evicted = True
        nodes = self.nodes
        stats = self.stats
        freq = self.freq
        while True:
            if stats[MAIN, BYTES] > self.main_capacity or stats[SMALL, COUNT] == 0:
                slot = self._evict_main()
                break
            slot = -1
            while stats[SMALL, COUNT] > 0:
                s = sl_tail(nodes, self.max_slots, SMALL)
                if freq[s] >= self.threshold:
                    freq[s] = 0
                    sl_move_to_head(nodes, stats, self.max_slots, MAIN, s)
                else:
                    self.ghost.push(self.key_of[s], nodes[s, SIZE])
                    slot = s
                    break
            if slot != -1:
                break
        sl_unlink(nodes, stats, slot)
        self.used -= nodes[slot, SIZE]
        self.n_resident -= 1
        return slot

    def on_insert(self, slot, key, size):
        self.key_of[slot] = key
        self.freq[slot] = 0
        to_main = self.ghost_hit or (not self.has_evicted and self.stats[SMALL, BYTES] >= self.small_capacity)
        sl_push_head(self.nodes, self.stats, self.max_slots, MAIN if to_main else SMALL, slot, size)
        self.ghost_hit = False
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        self.freq[slot] += 1

    def remove(self, slot):
        sl_unlink(self.nodes, self.stats, slot)
        self.used -= self.nodes[slot, SIZE]
        self.n_resident -= 1


@register_policy(
    "s3fifo",
    {"small_size_ratio": 0.1, "ghost_size_ratio": 0.9, "move_to_main_threshold": 2},
    "S3-FIFO (small, main and ghost FIFOs)",
)
def build_s3fifo(capacity, max_slots, small_size_ratio, ghost_size_ratio, move_to_main_threshold):
    if not 0.0 < small_size_ratio < 1.0:
        raise ValueError(f"s3fifo: small_size_ratio must be in (0, 1), got {small_size_ratio}")
    if ghost_size_ratio < 0.0:
        raise ValueError(f"s3fifo: ghost_size_ratio must be >= 0, got {ghost_size_ratio}")
    if move_to_main_threshold < 1:
        raise ValueError(f"s3fifo: move_to_main_threshold must be >= 1, got {move_to_main_threshold}")
    small = int(capacity * small_size_ratio)
    ghost = int(capacity * ghost_size_ratio)
    return S3FIFOState(capacity, max_slots, small, ghost, move_to_main_threshold)
