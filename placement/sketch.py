"""Count-min sketch for per-row access counts of tables too large to count exactly.

Estimates never undercount; with probability at least ``1 - exp(-depth)`` an
estimate exceeds the true count by at most ``(e / width) * total``
(Cormode and Muthukrishnan, 2005).
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _bucket(row, a, b, shift):
    # Multiply-shift hashing on 64-bit words (wrapping arithmetic), top bits as bucket.
    return ((np.uint64(row) * a + b) >> shift)


@numba.njit(cache=True, nogil=True)
def _sketch_add(table, mult, add, shift, rows):
    for i in range(rows.size):
        for d in range(table.shape[0]):
            table[d, _bucket(rows[i], mult[d], add[d], shift)] += 1


@numba.njit(cache=True, nogil=True)
def _sketch_estimate(table, mult, add, shift, rows, out):
    for i in range(rows.size):
        best = table[0, _bucket(rows[i], mult[0], add[0], shift)]
        for d in range(1, table.shape[0]):
            value = table[d, _bucket(rows[i], mult[d], add[d], shift)]
            if value < best:
                best = value
        out[i] = best


class CountMinSketch:
    """A count-min sketch over int64 row ids.

    Parameters
    ----------
    width : int
        Counters per row of the sketch; rounded up to a power of two.
    depth : int
        Independent hash rows.
    seed : int
        Seeds the hash functions.
    """

    def __init__(self, width: int, depth: int = 4, seed: int = 0):
        if width < 2 or depth < 1:
            raise ValueError(f"count-min sketch needs width >= 2 and depth >= 1, got width={width}, depth={depth}")
        bits = max(1, math.ceil(math.log2(width)))
        self.width = 1 << bits
        self.depth = int(depth)
        self._shift = np.uint64(64 - bits)
        rng = np.random.default_rng(seed)
        self._mult = rng.integers(1, 2**63, size=depth, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._add = rng.integers(0, 2**63, size=depth, dtype=np.uint64)
        self.table = np.zeros((self.depth, self.width), dtype=np.int64)
        self.total = 0

    def add(self, rows: np.ndarray) -> None:
        """Count one access for every entry of ``rows``."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        _sketch_add(self.table, self._mult, self._add, self._shift, rows)
        self.total += rows.size

    def estimate(self, rows: np.ndarray) -> np.ndarray:
        """Estimated access counts (never below the true count) of ``rows``."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        out = np.empty(rows.size, dtype=np.int64)
        _sketch_estimate(self.table, self._mult, self._add, self._shift, rows, out)
        return out

    @property
    def error_bound(self) -> float:
        """Additive overestimate bound ``e / width * total``."""
        return math.e / self.width * self.total

    @property
    def confidence(self) -> float:
        """Probability that one estimate stays within :attr:`error_bound`."""
        return 1.0 - math.exp(-self.depth)

    @property
    def nbytes(self) -> int:
        """Memory held by the counters."""
        return self.table.nbytes
