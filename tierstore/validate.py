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


def as_ids(name: str, ids, num_rows: int, table: str) -> np.ndarray:
    """Row ids as a 1-D int64 array, all in ``[0, num_rows)``."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"table {table!r}: {name} must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"table {table!r}: {name} must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= num_rows:
        raise ValueError(f"table {table!r}: {name} {int(arr.max())} out of range; ids must be in [0, {num_rows})")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        lo, hi = (int(v) for v in id_range(arr))
        if lo < 0:
            raise ValueError(f"table {table!r}: negative {name} ({lo}); ids must be in [0, {num_rows})")
        if hi >= num_rows:
            raise ValueError(f"table {table!r}: {name} {hi} out of range; ids must be in [0, {num_rows})")
    return arr


def check_bags(table: str, num_rows: int, indices, offsets, per_sample_weights, mode: str,
               include_last_offset: bool):
    """Validate one table's bags with ``torch.nn.functional.embedding_bag`` conventions.

    Returns
    -------
    indices : int64 [n]
    offsets : int64 [B + 1], starting at 0 and ending at n
    weights : float32 [n] or None
    mode_code : int
    """
    if mode not in MODES:
        raise ValueError(f"table {table!r}: mode must be one of {sorted(MODES)}, got {mode!r}")
    idx = as_ids("indices", indices, num_rows, table)
    off = np.asarray(offsets)
    if off.ndim != 1:
        raise ValueError(f"table {table!r}: offsets must be 1-D, got shape {off.shape}")
    if off.size and off.dtype.kind not in "iu":
        raise ValueError(f"table {table!r}: offsets must be integers, got dtype {off.dtype}")
    off = off.astype(np.int64)
    if include_last_offset:
        if off.size == 0:
            raise ValueError(f"table {table!r}: with include_last_offset, offsets needs B + 1 >= 1 entries")
        if off[-1] != idx.size:
            raise ValueError(
                f"table {table!r}: last offset {int(off[-1])} must equal len(indices) = {idx.size}"
            )
    elif off.size and off.max() > idx.size:
        raise ValueError(f"table {table!r}: offsets run past len(indices) = {idx.size}")
    else:
        off = np.append(off, np.int64(idx.size))
    if off[0] != 0:
        raise ValueError(f"table {table!r}: offsets must start at 0, got {int(off[0])}")
    steps = np.diff(off)
    if steps.size and steps.min() < 0:
        bad = int(np.flatnonzero(steps < 0)[0])
        raise ValueError(
            f"table {table!r}: offsets must be non-decreasing (offsets[{bad}]={int(off[bad])} > "
            f"offsets[{bad + 1}]={int(off[bad + 1])})"
        )
    if off[-1] > idx.size:
        raise ValueError(f"table {table!r}: offsets run past len(indices) = {idx.size}")
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
    return idx, off, weights, MODES[mode]
