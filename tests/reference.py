"""Plain numpy references the engine is checked against."""

from __future__ import annotations

import numpy as np


def stored_values(table: np.ndarray, dtype: str) -> np.ndarray:
    """What a table holds after storage in ``dtype`` (fp16 rounding, int8 row-wise quantization)."""
    table = np.asarray(table, dtype=np.float32)
    if dtype == "float32":
        return table.copy()
    if dtype == "float16":
        return table.astype(np.float16).astype(np.float32)
    lo = table.min(axis=1, keepdims=True)
    scale = (table.max(axis=1, keepdims=True) - lo) / np.float32(255.0)
    inv = np.where(scale == 0, np.float32(0), np.float32(1) / np.where(scale == 0, 1, scale))
    q = np.clip(np.floor((table - lo) * inv + np.float32(0.5)), 0, 255)
    return (q.astype(np.float32) * scale + lo).astype(np.float32)


def quantization_bound(table: np.ndarray, dtype: str) -> np.ndarray:
    """Per-element bound on |stored - original| for ``dtype``."""
    table = np.asarray(table, dtype=np.float32)
    if dtype == "float32":
        return np.zeros_like(table)
    if dtype == "float16":
        return np.abs(table) * 2.0**-11 + 2.0**-24
    span = table.max(axis=1, keepdims=True) - table.min(axis=1, keepdims=True)
    return np.broadcast_to(span / 255.0 * 0.5 * (1 + 1e-5) + 1e-6, table.shape)


def pool(table: np.ndarray, indices, offsets, weights=None, mode: str = "sum") -> np.ndarray:
    """EmbeddingBag pooling over a dense table; ``offsets`` has B + 1 entries."""
    indices = np.asarray(indices, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    rows = table[indices].astype(np.float64)
    if weights is not None:
        rows = rows * np.asarray(weights, dtype=np.float64)[:, None]
    n_bags = offsets.size - 1
    out = np.zeros((n_bags, table.shape[1]), dtype=np.float64)
    lengths = np.diff(offsets)
    full = np.flatnonzero(lengths > 0)
    if full.size:
        starts = offsets[:-1][full]
        if mode == "max":
            out[full] = np.maximum.reduceat(rows, starts, axis=0)
        else:
            out[full] = np.add.reduceat(rows, starts, axis=0)
            if mode == "mean":
                out[full] /= lengths[full, None]
    return out.astype(np.float32)
