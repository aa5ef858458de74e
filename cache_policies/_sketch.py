"""Frequency sketch for TinyLFU admission: a counting Bloom filter kept in a
row range of a policy's ``_rows`` array.

The sketch keeps ``k`` hashed counters per key and adds with the *minimal
increment* rule (only the smallest counters grow), so the estimate (their
minimum) overcounts as little as possible; counters saturate at ``2**31 - 1``.
Sized like libCacheSim's ``minimalIncrementCBF``: for ``entries`` keys and
error rate ``error``, ``ceil(-log2(error))`` hashes over ``entries *
-ln(error) / ln(2)**2`` counters.  ``sketch_halve`` ages all counters.  An
optional Caffeine-style doorkeeper (a Bloom filter of one bit per counter,
bit ``DOOR_BIT`` of the counter's word) absorbs each key's first touch, so
one-hit wonders never reach the counters; it is cleared when counters halve.

The sketch's scalars sit in four header fields from ``base`` (its first row,
counters, hashes, doorkeeper flag); its counters are packed ``a.shape[1]``
to a row (``_rows.at``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._rows import at, get, put

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0x2545F4914F6CDD1D)
COUNT_MAX = 2**31 - 1
DOOR_BIT = np.int64(1) << 32
# header fields from ``base``
FIRST = 0
N_COUNTERS = 1
N_HASHES = 2
DOORKEEPER = 3
N_FIELDS = 4


def sketch_shape(entries: int, error: float = 0.001) -> tuple[int, int]:
    """``(n_counters, n_hashes)`` for ``entries`` keys at false-positive rate ``error``."""
    entries = max(int(entries), 1)
    n_hashes = max(1, math.ceil(-math.log2(error)))
    n_counters = max(64, math.ceil(entries * -math.log(error) / math.log(2) ** 2))
    return n_counters, n_hashes


@numba.njit(inline="always")
def sketch_init(a, base, first_row, n_counters, n_hashes, doorkeeper):
    """Describe an empty sketch (its rows zero) in fields ``base...``."""
    put(a, base + FIRST, first_row)
    put(a, base + N_COUNTERS, n_counters)
    put(a, base + N_HASHES, n_hashes)
    put(a, base + DOORKEEPER, doorkeeper)


@numba.njit(inline="always")
def _mix(key):
    z = np.uint64(key) + _SEED
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@numba.njit(inline="always")
def _split(key):
    h = _mix(key)
    return h, _mix(np.int64(h ^ _GOLDEN)) | np.uint64(1)


@numba.njit(inline="always")
def _word(a, base, h1, h2, i):
    """Row and column of hash ``i``'s counter."""
    j = np.int64((h1 + np.uint64(i) * h2) % np.uint64(get(a, base + N_COUNTERS)))
    return at(a, get(a, base + FIRST), j)


@numba.njit(inline="always")
def _in_door(a, base, h1, h2):
    for i in range(get(a, base + N_HASHES)):
        r, c = _word(a, base, h1, h2, i)
        if not a[r, c] & DOOR_BIT:
            return False
    return True


@numba.njit(inline="always")
def _lowest(a, base, h1, h2):
    lowest = np.int64(COUNT_MAX)
    for i in range(get(a, base + N_HASHES)):
        r, c = _word(a, base, h1, h2, i)
        count = a[r, c] & COUNT_MAX
        if count < lowest:
            lowest = count
    return lowest


@numba.njit(inline="always")
def sketch_estimate(a, base, key):
    """Estimated count of ``key``."""
    h1, h2 = _split(key)
    lowest = _lowest(a, base, h1, h2)
    if get(a, base + DOORKEEPER) and _in_door(a, base, h1, h2):
        lowest += 1
    return lowest


@numba.njit(inline="always")
def sketch_add(a, base, key):
    """Count one touch of ``key``."""
    h1, h2 = _split(key)
    if get(a, base + DOORKEEPER) and not _in_door(a, base, h1, h2):
        for i in range(get(a, base + N_HASHES)):
            r, c = _word(a, base, h1, h2, i)
            a[r, c] |= DOOR_BIT
        return
    lowest = _lowest(a, base, h1, h2)
    if lowest >= COUNT_MAX:
        return
    for i in range(get(a, base + N_HASHES)):
        r, c = _word(a, base, h1, h2, i)
        if a[r, c] & COUNT_MAX == lowest:
            a[r, c] += 1


@numba.njit(inline="always")
def sketch_halve(a, base):
    """Halve every counter and clear the doorkeeper."""
    for j in range(get(a, base + N_COUNTERS)):
        r, c = at(a, get(a, base + FIRST), j)
        a[r, c] = (a[r, c] & COUNT_MAX) >> 1
