"""Admission filters that stand in front of any policy.

A filter decides, on a miss while the cache is full, whether the object is
worth caching at all; the wrapped policy still decides the victims.  When the
cache has room every miss is admitted.

- ``second_hit``: cache an object only on its second miss within the last
  ``admission_memory`` distinct missed keys (a FIFO of keys); one-hit wonders
  never displace anything.
- ``tinylfu``: a frequency sketch (counting Bloom filter, halved every
  ``10 * admission_memory`` requests) counts every request; a miss is admitted
  when its estimate exceeds that of the most recently evicted key.  Classic
  TinyLFU compares with the victim about to go; the protocol asks ``admit``
  before any victim is chosen, so the latest victim stands in for it.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import int64
from numba.experimental import jitclass

from ._keymap import EMPTY_KEY, KeyList
from ._sketch import FrequencySketch, new_sketch

SECOND_HIT = 1
TINYLFU = 2
_MODES = {"second_hit": SECOND_HIT, "tinylfu": TINYLFU}
_CLASSES: dict = {}


class _Filtered:
    """Admission filter around ``inner`` (spec filled per inner state type)."""

    def __init__(self, inner, mode, memory, max_slots, history, sketch):
        self.inner = inner
        self.capacity = inner.capacity
        self.mode = mode
        self.history = history
        self.sketch = sketch
        self.events = 0
        self.aging_period = 10 * memory
        self.last_victim_key = EMPTY_KEY
        self.key_of = np.zeros(max_slots, dtype=np.int64)

    @property
    def used(self):
        return self.inner.used

    @property
    def n_resident(self):
        return self.inner.n_resident

    @property
    def n_pending(self):
        return self.inner.n_pending

    def _count(self, key):
        self.sketch.add(key)
        self.events += 1
        if self.events >= self.aging_period:
            self.events = 0
            self.sketch.halve()

    def admit(self, key, size):
        if self.mode == TINYLFU:
            self._count(key)
        if self.inner.used + size > self.capacity:
            if self.mode == SECOND_HIT:
                if not self.history.remove(key):
                    self.history.push(key, 1)
                    return False
            elif self.last_victim_key != EMPTY_KEY and self.sketch.estimate(key) <= self.sketch.estimate(
                self.last_victim_key
            ):
                return False
        return self.inner.admit(key, size)

    def victim(self):
        slot = self.inner.victim()
        self.last_victim_key = self.key_of[slot]
        return slot

    def on_insert(self, slot, key, size):
        self.key_of[slot] = key
        self.inner.on_insert(slot, key, size)

    def on_hit(self, slot):
        if self.mode == TINYLFU:
            self._count(self.key_of[slot])
        self.inner.on_hit(slot)

    def remove(self, slot):
        self.inner.remove(slot)

    def take_evicted(self):
        return self.inner.take_evicted()

    def set_next_access(self, next_vtime):
        self.inner.set_next_access(next_vtime)


def _filter_class(inner_type):
    cls = _CLASSES.get(inner_type)
    if cls is None:
        spec = [
            ("inner", inner_type),
            ("capacity", int64),
            ("mode", int64),
            ("history", KeyList.class_type.instance_type),
            ("sketch", FrequencySketch.class_type.instance_type),
            ("events", int64),
            ("aging_period", int64),
            ("last_victim_key", int64),
            ("key_of", int64[::1]),
        ]
        cls = jitclass(spec)(type(f"Filtered_{len(_CLASSES)}", (_Filtered,), {}))
        _CLASSES[inner_type] = cls
    return cls


def wrap_with_filter(state, filter_name: str, memory: int, max_slots: int):
    """Put admission filter ``filter_name`` in front of policy ``state``."""
    if filter_name not in _MODES:
        raise ValueError(f"unknown admission filter {filter_name!r}; available: {sorted(_MODES)}")
    mode = _MODES[filter_name]
    history = KeyList(memory if mode == SECOND_HIT else 0, min(memory, max_slots) if mode == SECOND_HIT else 16)
    sketch = new_sketch(min(memory, max_slots) if mode == TINYLFU else 1)
    cls = _filter_class(numba.typeof(state))
    return cls(state, mode, memory, max_slots, history, sketch)
