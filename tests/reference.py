"""Plain numpy references the engine is checked against."""

from __future__ import annotations

import numpy as np

QUANTIZED_LEVELS = {"int8": 255, "int4": 15}
"""Largest code of each row-wise quantized dtype."""


def stored_values(table: np.ndarray, dtype: str) -> np.ndarray:
    """What a table holds after storage in ``dtype`` (fp16 rounding, int8 / int4 row-wise quantization)."""
    table = np.asarray(table, dtype=np.float32)
    if dtype == "float32":
        return table.copy()
    if dtype == "float16":
        return table.astype(np.float16).astype(np.float32)
    levels = np.float32(QUANTIZED_LEVELS[dtype])
    lo = table.min(axis=1, keepdims=True)
    scale = (table.max(axis=1, keepdims=True) - lo) / levels
    inv = np.where(scale == 0, np.float32(0), np.float32(1) / np.where(scale == 0, 1, scale))
    q = np.clip(np.floor((table - lo) * inv + np.float32(0.5)), 0, levels)
    return (q.astype(np.float32) * scale + lo).astype(np.float32)


def record_values(records: np.ndarray, dtype: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode stored records (uint8 ``[n, >= record bytes]``, see ``tierstore.pages.to_records``) with numpy.

    Returns
    -------
    values : float32[n, dim]
        ``code * scale + bias`` for int8 / int4 (int4: two codes a byte, low nibble first).
    bias : float32[n]
        Each row's bias (zeros for float32 / float16).
    """
    records = np.ascontiguousarray(records)
    n = records.shape[0]
    if dtype in ("float32", "float16"):
        width = dim * (4 if dtype == "float32" else 2)
        values = records[:, :width].copy().view(np.float32 if dtype == "float32" else np.float16)
        return values.astype(np.float32), np.zeros(n, dtype=np.float32)
    if dtype == "int8":
        codes = records[:, :dim]
    else:
        packed = records[:, : (dim + 1) // 2]
        codes = np.stack([packed & 15, packed >> 4], axis=2).reshape(n, -1)[:, :dim]
    code_bytes = dim if dtype == "int8" else (dim + 1) // 2
    scale, bias = records[:, code_bytes : code_bytes + 8].copy().view(np.float32).T
    return (codes.astype(np.float32) * scale[:, None] + bias[:, None]).astype(np.float32), bias


def quantization_bound(table: np.ndarray, dtype: str) -> np.ndarray:
    """Per-element bound on |stored - original| for ``dtype``."""
    table = np.asarray(table, dtype=np.float32)
    if dtype == "float32":
        return np.zeros_like(table)
    if dtype == "float16":
        return np.abs(table) * 2.0**-11 + 2.0**-24
    span = table.max(axis=1, keepdims=True) - table.min(axis=1, keepdims=True)
    return np.broadcast_to(span / QUANTIZED_LEVELS[dtype] * 0.5 * (1 + 1e-5) + 1e-6, table.shape)


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
