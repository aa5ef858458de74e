"""LRU: evict the least recently used object.

Objects sit in one list ordered by last access: a hit moves the object to the
head, an insert puts it at the head, and the victim is the tail.
"""

from __future__ import annotations

from ._single_list import SingleList, new_single_list
from .base import register_policy


@register_policy("lru", {}, "least recently used")
def build_lru(capacity, max_slots):
    return SingleList(), (capacity, max_slots, True)
