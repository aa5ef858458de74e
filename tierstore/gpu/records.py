"""Rows on the device at their stored width: the GPU slab's row layout, and staging stored records into it.

A device row holds a table's stored record (:func:`tierstore.pages.to_records`),
laid out so every field can be read with aligned loads:

- float32: ``dim`` float32;
- float16: ``dim`` float16;
- int8: ``dim`` uint8 codes, zero-padded to a multiple of 4 bytes, then the float32
  scale and the float32 bias (value = ``code * scale + bias``).  For a ``dim``
  that is a multiple of 4 (every torchrec/FBGEMM table) these are the stored
  record's bytes unchanged: 64-dim int8 rows take 72 bytes.

Device rows are padded to a multiple of 4 bytes (the slab is copied a 32-bit word
at a time); a slab shared by several tables is as wide as its widest row.
"""

from __future__ import annotations

import numba
import numpy as np

from tierstore.config import DTYPE_BYTES

FORMATS = {"float32": 0, "float16": 1, "int8": 2}
"""Storage dtype -> format code of the device kernels (the store's page dtype codes)."""

WORD = 4


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def scale_word(dim: int) -> int:
    """Index of an int8 row's scale in the row viewed as 32-bit words (the bias follows it)."""
    return _round_up(dim, WORD) // WORD


def device_row_bytes(dtype: str, dim: int) -> int:
    """Bytes of one ``dtype`` row of width ``dim`` on the device (a multiple of 4)."""
    if dtype == "int8":
        return (scale_word(dim) + 2) * WORD
    return _round_up(dim * DTYPE_BYTES[dtype], WORD)


@numba.njit(nogil=True, cache=True, parallel=True)
def _stage_int8(records, dim, scale_at, out):
    for i in numba.prange(records.shape[0]):
        out[i, :dim] = records[i, :dim]
        out[i, dim:scale_at] = 0
        out[i, scale_at : scale_at + 8] = records[i, dim : dim + 8]


@numba.njit(nogil=True, cache=True, parallel=True)
def _stage_plain(records, out):
    width = records.shape[1]
    for i in numba.prange(records.shape[0]):
        out[i, :width] = records[i]


def stage_records(records: np.ndarray, dtype: str, dim: int, out: np.ndarray) -> None:
    """Lay stored records out as device rows.

    Parameters
    ----------
    records : uint8 [n, TableConfig.row_bytes]
        Stored records of ``dtype`` and ``dim``.
    out : uint8 [n, W], W >= device_row_bytes(dtype, dim)
        Written: row ``i`` starts with record ``i`` in the device layout; the
        bytes past it are left as they were.
    """
    if records.shape[0] == 0:
        return
    if dtype == "int8":
        _stage_int8(records, dim, scale_word(dim) * WORD, out)
    else:
        _stage_plain(records, out)
