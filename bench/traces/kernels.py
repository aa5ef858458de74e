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


@numba.njit(cache=True)
def reuse_times_dense(rows, positions, last_seen, out):
    """Requests since the previous access of each row (-1 when first seen), dense ids.

    ``last_seen[row]`` holds the global position of the row's last access (or -1) and is
    updated in place; ``positions`` are the requests' global positions.
    """
    for i in range(rows.size):
        r = rows[i]
        prev = last_seen[r]
        out[i] = -1 if prev < 0 else positions[i] - prev
        last_seen[r] = positions[i]


@numba.njit(cache=True)
def reuse_times_sparse(keys, positions, last_seen, out):
    """Like :func:`reuse_times_dense` for arbitrary int64 keys, with a numba dict."""
    for i in range(keys.size):
        k = keys[i]
        prev = last_seen.get(k, -1)
        out[i] = -1 if prev < 0 else positions[i] - prev
        last_seen[k] = positions[i]
