"""Hot-path kernels of the lookup pipeline: dedup, pooling, row gathers (Numba, nogil).

Row sources: ``loc[i] >= 0`` names row ``slab[loc[i]]`` (a cache slot), ``loc[i] < 0``
names ``extra[-1 - loc[i]]`` (a row read from SSD for this batch).
"""

from __future__ import annotations

import numba
import numpy as np

MODE_SUM, MODE_MEAN, MODE_MAX = 0, 1, 2


@numba.njit(nogil=True, cache=True)
def unique_inverse(ids):
    """Distinct ids in order of first occurrence, and each id's index among them (open-addressing hash)."""
    n = ids.size
    size = 16
    while size < 2 * n:
        size <<= 1
    mask = size - 1
    table_keys = np.empty(size, dtype=np.int64)
    table_vals = np.full(size, -1, dtype=np.int64)
    uniq = np.empty(n, dtype=np.int64)
    inverse = np.empty(n, dtype=np.int64)
    count = 0
    for i in range(n):
        key = ids[i]
        h = (np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
        slot = np.int64(h) & mask
        while True:
            v = table_vals[slot]
            if v < 0:
                table_keys[slot] = key
                table_vals[slot] = count
                uniq[count] = key
                inverse[i] = count
                count += 1
                break
            if table_keys[slot] == key:
                inverse[i] = v
                break
            slot = (slot + 1) & mask
    return uniq[:count].copy(), inverse


@numba.njit(nogil=True, cache=True, parallel=True, fastmath=True)
def _pool(slab, extra, loc, offsets, weights, has_weights, mode, out):
    n_bags = offsets.size - 1
    dim = out.shape[1]
    for b in numba.prange(n_bags):
        start, stop = offsets[b], offsets[b + 1]
        acc = np.zeros(dim, dtype=np.float32)
        if stop > start and mode == MODE_MAX:
            acc[:] = -np.inf
        for i in range(start, stop):
            r = loc[i]
            row = slab[r] if r >= 0 else extra[-1 - r]
            if mode == MODE_MAX:
                for j in range(dim):
                    acc[j] = max(acc[j], row[j])
            elif has_weights:
                w = weights[i]
                for j in range(dim):
                    acc[j] += w * row[j]
            else:
                for j in range(dim):
                    acc[j] += row[j]
        if mode == MODE_MEAN and stop > start:
            inv = np.float32(1.0) / np.float32(stop - start)
            for j in range(dim):
                acc[j] *= inv
        for j in range(dim):
            out[b, j] = acc[j]


_NO_WEIGHTS = np.zeros(0, dtype=np.float32)


def pool_rows(slab, extra, loc, offsets, weights, mode, out) -> None:
    """Pool bag ``b`` = rows ``loc[offsets[b]:offsets[b+1]]`` into ``out[b]`` (sum, mean or max; empty -> 0)."""
    has_weights = weights is not None
    _pool(slab, extra, loc, offsets, weights if has_weights else _NO_WEIGHTS, has_weights, mode, out)


@numba.njit(nogil=True, cache=True, parallel=True)
def gather_rows(slab, extra, loc, out):
    """``out[i] = row named by loc[i]``."""
    for i in numba.prange(loc.size):
        r = loc[i]
        if r >= 0:
            out[i, :] = slab[r]
        else:
            out[i, :] = extra[-1 - r]
