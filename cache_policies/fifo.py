"""FIFO: evict the object that was inserted first.

Objects sit in one list in insertion order: an insert puts the object at the
head, a hit changes nothing, and the victim is the tail.
"""

from __future__ import annotations

from ._single_list import SingleList, new_single_list
from .base import register_policy


@register_policy("fifo", {}, "first in, first out")
def build_fifo(capacity, max_slots):
    return SingleList(), (capacity, max_slots, False)
