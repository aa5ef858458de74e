"""Numba kernels for per-request loops over traces (next-access times, reuse times)."""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.typed import Dict


def new_position_map():
    """An empty int64 -> int64 numba dict (key -> position), kept across chunks."""
    return Dict.empty(key_type=types.int64, value_type=types.int64)


@numba.njit(cache=True)
def fill_next_access_backward(keys, first_index, positions, next_access):
    """Fill 1-based next-access indices, walking a chunk from its last request back.

    Parameters
    ----------
    keys : int64 array
        The chunk's keys.
    first_index : int
        0-based index of ``keys[0]`` in the whole trace.
    positions : numba dict
        key -> 1-based index of its next access after this chunk; updated in place.
    next_access : int64 array (out)
        1-based index of each request's next access, or -1 when never reused.
    """
    for i in range(keys.size - 1, -1, -1):
        k = keys[i]
        next_access[i] = positions.get(k, -1)
        positions[k] = first_index + i + 1


REUSE_BINS = 64


@numba.njit(cache=True)
def _log2_bin(d):
    b = 0
    while d > 1:
        d >>= 1
        b += 1
    return b


@numba.njit(cache=True)
def _record_reuse(reuse_hist, prev, pos):
    """Bin the reuse time ``pos - prev`` (the last bin counts first accesses, ``prev < 0``)."""
    if prev < 0:
        reuse_hist[reuse_hist.size - 1] += 1
    else:
        reuse_hist[_log2_bin(pos - prev)] += 1


@numba.njit(cache=True)
def count_and_reuse_dense(rows, first_position, counts, last_seen, reuse_hist):
    """Count accesses per row and bin reuse times, for rows that index dense arrays.

    Parameters
    ----------
    rows : int64 array
        One table's requests, in order.
    first_position : int
        Global request position of ``rows[0]``; the rows occupy consecutive positions.
    counts, last_seen : int64 arrays
        Accesses per row and global position of each row's last access (-1: never),
        updated in place.
    reuse_hist : int64 array
        ``reuse_hist[b]`` counts reuse times ``d`` with ``floor(log2(d)) == b``;
        ``reuse_hist[-1]`` counts first accesses.
    """
    for i in range(rows.size):
        r = rows[i]
        pos = first_position + i
        counts[r] += 1
        _record_reuse(reuse_hist, last_seen[r], pos)
        last_seen[r] = pos


@numba.njit(cache=True)
def count_and_reuse_sparse(rows, first_position, counts, last_seen, reuse_hist):
    """Like :func:`count_and_reuse_dense` with numba dicts for arbitrary row ids."""
    for i in range(rows.size):
        r = rows[i]
        pos = first_position + i
        counts[r] = counts.get(r, 0) + 1
        _record_reuse(reuse_hist, last_seen.get(r, -1), pos)
        last_seen[r] = pos


@numba.njit(cache=True)
def dense_to_dicts(counts, last_seen, count_dict, last_dict):
    """Move the touched rows of dense counters into numba dicts."""
    for r in range(counts.size):
        if counts[r] > 0:
            count_dict[r] = counts[r]
            last_dict[r] = last_seen[r]
