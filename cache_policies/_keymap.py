"""An int64 -> int64 hash table kept in a row range of a policy's state array.

Open addressing with linear probing and backward-shift deletion, ``2**shift``
entries (key and value side by side) per row: ``slot_in`` finds a key or the
empty entry where it would go, ``delete_in`` empties an entry.  Policies find
ghosts (and LIRS its entries) by *key* through it in a live cache, which
reuses slots for other keys (see ``_rows``).  The key ``EMPTY_KEY`` (int64
minimum) is reserved.
"""

from __future__ import annotations

import numba
import numpy as np

EMPTY_KEY = np.iinfo(np.int64).min
_FIB = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15 as int64
KEY = 0
VAL = 1


@numba.njit(inline="always")
def _home(key, mask):
    h = key * _FIB
    return (h ^ (h >> 29)) & mask


@numba.njit(inline="always")
def entry_at(first, shift, i):
    """Row and key column of entry ``i`` of a table starting at row ``first``
    with ``2**shift`` entries (key and value side by side) per row."""
    return first + (i >> shift), (i & ((1 << shift) - 1)) * 2


@numba.njit(inline="always")
def slot_in(rows, first, mask, shift, key):
    """Entry of ``key`` in the table of ``mask + 1`` entries (a power of two)
    at row ``first`` of ``rows``, ``2**shift`` per row, or of the empty entry
    where it would go."""
    i = _home(key, mask)
    while True:
        r, c = entry_at(first, shift, i)
        k = rows[r, c + KEY]
        if k == key or k == EMPTY_KEY:
            return i
        i = (i + 1) & mask


@numba.njit(inline="always")
def delete_in(rows, first, mask, shift, i):
    """Empty entry ``i`` of the table (as in ``slot_in``), shifting later
    entries of its probe run back."""
    j = i
    while True:
        j = (j + 1) & mask
        rj, cj = entry_at(first, shift, j)
        kj = rows[rj, cj + KEY]
        if kj == EMPTY_KEY:
            break
        home = _home(kj, mask)
        # keep kj where it is if its home lies cyclically in (i, j]
        if i <= j:
            stays = i < home <= j
        else:
            stays = home > i or home <= j
        if stays:
            continue
        ri, ci = entry_at(first, shift, i)
        rows[ri, ci + KEY] = kj
        rows[ri, ci + VAL] = rows[rj, cj + VAL]
        i = j
    ri, ci = entry_at(first, shift, i)
    rows[ri, ci + KEY] = EMPTY_KEY
