"""Frequency sketch for TinyLFU admission: a counting Bloom filter.

``FrequencySketch`` keeps ``k`` hashed int32 counters per key and adds with
the *minimal increment* rule (only the smallest counters grow), so the
estimate (their minimum) overcounts as little as possible.  Sized like
libCacheSim's ``minimalIncrementCBF``: for ``entries`` keys and error rate
``error``, ``ceil(-log2(error))`` hashes over ``entries * -ln(error) / ln(2)**2``
counters.  ``halve`` ages all counters.  An optional Caffeine-style doorkeeper
(a Bloom filter of 1 bit per counter) absorbs each key's first touch, so
one-hit wonders never reach the counters; it is cleared when counters halve.
"""

from __future__ import annotations

import math

import numpy as np
from numba import boolean, int32, int64, uint64
from numba.experimental import jitclass

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@jitclass(
    [
        ("counters", int32[::1]),
        ("door", boolean[::1]),
        ("n_hashes", int64),
        ("use_doorkeeper", boolean),
        ("seed", uint64),
    ]
)
class FrequencySketch:
    """Counting Bloom filter with minimal increment, optional doorkeeper."""

    def __init__(self, n_counters, n_hashes, use_doorkeeper):
        self.counters = np.zeros(n_counters, dtype=np.int32)
        self.door = np.zeros(n_counters if use_doorkeeper else 1, dtype=np.bool_)
        self.n_hashes = n_hashes
        self.use_doorkeeper = use_doorkeeper
        self.seed = np.uint64(0x2545F4914F6CDD1D)

    def _mix(self, key):
        z = np.uint64(key) + self.seed
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))

    def _index(self, h1, h2, i):
        return np.int64((h1 + np.uint64(i) * h2) % np.uint64(self.counters.shape[0]))

    def _split(self, key):
        h = self._mix(key)
        h2 = self._mix(np.int64(h ^ _GOLDEN)) | np.uint64(1)
        return h, h2

    def _in_door(self, h1, h2):
        for i in range(self.n_hashes):
            if not self.door[self._index(h1, h2, i)]:
                return False
        return True

    def estimate(self, key):
        h1, h2 = self._split(key)
        lowest = np.int64(2**31 - 1)
        for i in range(self.n_hashes):
            c = np.int64(self.counters[self._index(h1, h2, i)])
            if c < lowest:
                lowest = c
        if self.use_doorkeeper and self._in_door(h1, h2):
            lowest += 1
        return lowest

    def add(self, key):
        h1, h2 = self._split(key)
        if self.use_doorkeeper and not self._in_door(h1, h2):
            for i in range(self.n_hashes):
                self.door[self._index(h1, h2, i)] = True
            return
        lowest = np.int64(2**31 - 1)
        for i in range(self.n_hashes):
            c = np.int64(self.counters[self._index(h1, h2, i)])
            if c < lowest:
                lowest = c
        if lowest >= 2**31 - 1:
            return
        for i in range(self.n_hashes):
            j = self._index(h1, h2, i)
            if self.counters[j] == lowest:
                self.counters[j] += 1

    def halve(self):
        for j in range(self.counters.shape[0]):
            self.counters[j] >>= 1
        if self.use_doorkeeper:
            self.door[:] = False


def new_sketch(entries: int, error: float = 0.001, doorkeeper: bool = False) -> FrequencySketch:
    """A sketch sized for ``entries`` keys at false-positive rate ``error``."""
    entries = max(int(entries), 1)
    n_hashes = max(1, math.ceil(-math.log2(error)))
    n_counters = max(64, math.ceil(entries * -math.log(error) / math.log(2) ** 2))
    return FrequencySketch(n_counters, n_hashes, doorkeeper)
