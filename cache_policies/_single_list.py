"""One-list policies (LRU, FIFO): victims come from the tail of a single list."""

from __future__ import annotations

from numba import boolean, int64
from numba.experimental import jitclass

from ._lists import SlotLists


@jitclass(
    [
        ("capacity", int64),
        ("used", int64),
        ("n_resident", int64),
        ("n_pending", int64),
        ("promote_on_hit", boolean),
        ("lists", SlotLists.class_type.instance_type),
    ]
)
class SingleListState:
    """Objects in one list; inserts at the head, victims from the tail.

    ``promote_on_hit`` moves a hit object to the head (LRU) or not (FIFO).
    """

    def __init__(self, capacity, max_slots, promote_on_hit):
        self.capacity = capacity
        self.used = 0
        self.n_resident = 0
        self.n_pending = 0
        self.promote_on_hit = promote_on_hit
        self.lists = SlotLists(max_slots, 1)

    def admit(self, key, size):
        return size <= self.capacity

    def victim(self):
        slot = self.lists.pop_tail(0)
        self.used -= self.lists.size[slot]
        self.n_resident -= 1
        return slot

    def on_insert(self, slot, key, size):
        self.lists.push_head(0, slot, size)
        self.used += size
        self.n_resident += 1

    def on_hit(self, slot):
        if self.promote_on_hit:
            self.lists.move_to_head(0, slot)

    def remove(self, slot):
        self.lists.unlink(slot)
        self.used -= self.lists.size[slot]
        self.n_resident -= 1

    def take_evicted(self):
        return -1

    def set_next_access(self, next_vtime):
        pass
