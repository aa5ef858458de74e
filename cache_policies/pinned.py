"""Frequency-pinned: the hottest rows from a profile stay cached for good.

``pinned_keys`` (for example ``top_keys(profile_trace, n)``) are cached on
their first miss and are never victims; every other object shares the rest of
the capacity under LRU.  A miss is refused when the pinned bytes already
cached leave no room for it, so pinned rows that do not fit are simply not
cached.  Embedding tables have a stable hot head, so pinning it avoids the
churn an adaptive policy would spend relearning it.
"""

from __future__ import annotations

import numpy as np
from numba import int64
from numba.experimental import jitclass

from ._keymap import KeyMap
from ._lists import SlotLists
from .base import protocol_defaults, register_policy

DYNAMIC = 0
PINNED = 1


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("n_pending", int64),
        ("pinned", KeyMap.class_type.instance_type),
        ("lists", SlotLists.class_type.instance_type),
    ]
)
@protocol_defaults
class PinnedState:
    """Pinned keys in list ``PINNED`` (never evicted), LRU over list ``DYNAMIC``."""

    def __init__(self, capacity, max_slots, pinned_keys):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.n_pending = 0
        self.pinned = KeyMap(pinned_keys.shape[0])
        for k in pinned_keys:
            self.pinned.put(k, 1)
        self.lists = SlotLists(max_slots, 2)

    def admit(self, key, size):
        return self.lists.nbytes(PINNED) + size <= self.capacity

    def victim(self):
        slot = self.lists.pop_tail(DYNAMIC)
        self.used -= self.lists.size_of(slot)
        self.n_resident -= 1
        return slot

    def on_insert(self, slot, key, size):
        self.lists.push_head(PINNED if self.pinned.contains(key) else DYNAMIC, slot, size)
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        if self.lists.list_of(slot) == DYNAMIC:
            self.lists.move_to_head(DYNAMIC, slot)

    def remove(self, slot):
        self.lists.unlink(slot)
        self.used -= self.lists.size_of(slot)
        self.n_resident -= 1


def top_keys(keys, n: int) -> np.ndarray:
    """The ``n`` most requested keys of a profile trace, most frequent first
    (ties by smaller key)."""
    keys = np.asarray(keys, dtype=np.int64)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    uniq, counts = np.unique(keys, return_counts=True)
    order = np.lexsort((uniq, -counts))
    return uniq[order[:n]]


@register_policy("pinned", {"pinned_keys": None}, "static hot keys pinned, LRU for the rest")
def build_pinned(capacity, max_slots, pinned_keys):
    keys = np.zeros(0, dtype=np.int64) if pinned_keys is None else np.asarray(pinned_keys)
    if keys.ndim != 1 or (keys.size and not np.issubdtype(keys.dtype, np.integer)):
        raise ValueError("pinned: pinned_keys must be a one-dimensional sequence of integer keys")
    return PinnedState(capacity, max_slots, np.ascontiguousarray(keys, dtype=np.int64))
