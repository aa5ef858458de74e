"""Input checks for lookups: every problem raises before anything is touched."""

from __future__ import annotations

import numba
import numpy as np

MODES = {"sum": 0, "mean": 1, "max": 2}


@numba.njit(nogil=True, cache=True)
def id_range(ids):
    """Smallest and largest id, in one branch-free (vectorizable) pass."""
    lo = hi = ids[0]
    for i in range(1, ids.size):
        lo = min(lo, ids[i])
        hi = max(hi, ids[i])
    return lo, hi


@numba.njit(nogil=True, cache=True)
def bag_bounds(offsets, n, include_last_offset):
    """Bag boundaries ``[B + 1]`` from torch-style ``offsets`` over ``n`` indices, checked in one pass.

    Returns
    -------
    bounds : int64[B + 1]
        ``offsets`` with ``n`` appended unless ``include_last_offset``.
    ok : bool
        The bounds start at 0, never decrease and end at ``n``.
    """
    size = offsets.size if include_last_offset else offsets.size + 1
    bounds = np.empty(size, dtype=np.int64)
    bounds[: offsets.size] = offsets
    if not include_last_offset:
        bounds[size - 1] = n
    ok = bounds[0] == 0 and bounds[size - 1] == n
    for i in range(1, size):
        ok &= bounds[i] >= bounds[i - 1]
    return bounds, ok


def _raise_offsets_error(table: str, bounds: np.ndarray, n: int, include_last_offset: bool):
    """Name the first problem of bounds that :func:`bag_bounds` rejected."""
    if include_last_offset and bounds[-1] != n:
        raise ValueError(f"table {table!r}: last offset {int(bounds[-1])} must equal len(indices) = {n}")
    if bounds.max() > n:
        raise ValueError(f"table {table!r}: offsets run past len(indices) = {n}")
    if bounds[0] != 0:
        raise ValueError(f"table {table!r}: offsets must start at 0, got {int(bounds[0])}")
    bad = int(np.flatnonzero(np.diff(bounds) < 0)[0])
    raise ValueError(
        f"table {table!r}: offsets must be non-decreasing (offsets[{bad}]={int(bounds[bad])} > "
        f"offsets[{bad + 1}]={int(bounds[bad + 1])})"
    )


def as_ids(name: str, ids, num_rows: int, table: str, check_range: bool = True) -> np.ndarray:
    """Row ids as a 1-D int64 array, all in ``[0, num_rows)`` (``check_range=False``: the caller checks that).

    Booleans count as the ids 0 and 1, as ``torch.nn.functional.embedding_bag`` takes them.
    """
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"table {table!r}: {name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "b":
        arr = arr.view(np.uint8)
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"table {table!r}: {name} must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= num_rows:
        raise ValueError(f"table {table!r}: {name} {int(arr.max())} out of range; ids must be in [0, {num_rows})")
    arr = arr.astype(np.int64, copy=False)
    if check_range and arr.size:
        lo, hi = id_range(arr)
        if lo < 0 or hi >= num_rows:
            raise_out_of_range(name, arr, num_rows, table)
    return arr


def raise_out_of_range(name: str, ids: np.ndarray, num_rows: int, table: str):
    """Raise the ``ValueError`` naming the smallest negative, or else the largest too-large, of int64 ``ids``."""
    lo, hi = id_range(ids)
    if lo < 0:
        raise ValueError(f"table {table!r}: negative {name} ({lo}); ids must be in [0, {num_rows})")
    raise ValueError(f"table {table!r}: {name} {hi} out of range; ids must be in [0, {num_rows})")


def check_update(table: str, num_rows: int, dim: int, ids, values) -> tuple[np.ndarray, np.ndarray]:
    """Distinct int64 row ids in ``[0, num_rows)`` and their float ``[n, dim]`` values, as given."""
    idx = as_ids("ids", ids, num_rows, table)
    values = np.asarray(values)
    if values.shape != (idx.size, dim) or values.dtype.kind != "f":
        raise ValueError(f"table {table!r}: values must be float [{idx.size}, {dim}], got {values.dtype} {values.shape}")
    if np.unique(idx).size != idx.size:
        raise ValueError(f"table {table!r}: update ids must be distinct")
    return idx, values


def check_bags(table: str, num_rows: int, indices, offsets, per_sample_weights, mode: str,
               include_last_offset: bool, check_range: bool = True):
    """Validate one table's bags with ``torch.nn.functional.embedding_bag`` conventions.

    ``check_range=False`` leaves the indices' range to the caller (a kernel that
    checks them as it reads them, then :func:`raise_out_of_range`).

    Returns
    -------
    indices : int64 [n]
    offsets : int64 [B + 1], starting at 0 and ending at n
    weights : float32 [n] or None
    mode_code : int
    """
    if mode not in MODES:
        raise ValueError(f"table {table!r}: mode must be one of {sorted(MODES)}, got {mode!r}")
    idx = as_ids("indices", indices, num_rows, table, check_range)
    off = np.asarray(offsets)
    if off.ndim != 1:
        raise ValueError(f"table {table!r}: offsets must be 1-D, got shape {off.shape}")
    if off.size and off.dtype.kind not in "iu":
        raise ValueError(f"table {table!r}: offsets must be integers, got dtype {off.dtype}")
    if include_last_offset and off.size == 0:
        raise ValueError(f"table {table!r}: with include_last_offset, offsets needs B + 1 >= 1 entries")
    if off.size == 0 and idx.size:
        raise ValueError(f"table {table!r}: offsets is empty (no bags) but there are {idx.size} indices; give each "
                         f"bag's start (offsets[0] = 0)")
    if off.dtype == np.uint64 and off.size and int(off.max()) > idx.size:
        raise ValueError(f"table {table!r}: offsets run past len(indices) = {idx.size}")
    bounds, ok = bag_bounds(off.astype(np.int64, copy=False), idx.size, include_last_offset)
    if not ok:
        _raise_offsets_error(table, bounds, idx.size, include_last_offset)
    weights = None
    if per_sample_weights is not None:
        if mode != "sum":
            raise ValueError(f"table {table!r}: per_sample_weights are only supported with mode='sum' (as in torch)")
        w = np.asarray(per_sample_weights)
        if w.shape != idx.shape:
            raise ValueError(f"table {table!r}: per_sample_weights shape {w.shape} != indices shape {idx.shape}")
        if w.size and w.dtype.kind != "f":
            raise ValueError(f"table {table!r}: per_sample_weights must be floating point, got dtype {w.dtype}")
        weights = np.ascontiguousarray(w, dtype=np.float32)
    return idx, bounds, weights, MODES[mode]
