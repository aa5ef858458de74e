"""Pooling and gathers over rows kept at their stored width (records), dequantized as they are read.

A record is one row as the store keeps it (:func:`tierstore.pages.to_records`):

- float32: ``dim`` float32;
- float16: ``dim`` float16 (``2 * dim`` bytes);
- int8: ``dim`` uint8 codes, then a float32 scale and a float32 bias (``dim + 8`` bytes);
- int4: ``ceil(dim / 2)`` bytes of two 4-bit codes (low nibble first), then the same
  scale and bias (a record format here; not yet a table dtype of the store).

The value of a quantized element is ``code * scale + bias``.  A slab of records (a
cache's slab, or the ``extra`` rows read from SSD for one batch) is a uint8 array
``[n, stride]`` whose rows are contiguous, one record at the start of each; a cache
slab uses :func:`record_stride` (the record rounded up to ``RECORD_ALIGNMENT``
bytes) and starts on a page boundary (:func:`empty_records`).

The functions here check their arguments, view the records as the array type of
their format (float32, uint16 for float16, uint8 for int8/int4) and run the
pooling and gather kernels of :mod:`tierstore.kernels` compiled for that format:
the same chunking, L2 prefetching and specialized widths, with the row's decode
(``vcvtph2ps`` for float16; ``code * scale`` for int8/int4) inside the add.  Sums
of quantized rows add ``weight * scale * code`` per element and fold the rows'
``weight * bias`` into one addition per element per bag; they equal the plain
sum of dequantized rows within float32 rounding.
"""

from __future__ import annotations

import numba
import numpy as np

from tierstore import kernels
from tierstore.config import record_bytes
from tierstore.kernels import (
    FORMAT_FLOAT16,
    FORMAT_FLOAT32,
    FORMAT_INT4,
    FORMAT_INT8,
    _check_ids,
    _check_loc,
    _check_out,
    _check_pooling,
    _describe,
    _gather_kernel,
    _store_row,
    aligned_empty,
)
from tierstore.validate import id_range

RECORD_FORMATS = {"float32": FORMAT_FLOAT32, "float16": FORMAT_FLOAT16, "int8": FORMAT_INT8, "int4": FORMAT_INT4}
"""Record dtype -> format code (the store's dtype codes, :data:`tierstore.pages.DTYPE_CODES`)."""

FORMAT_DTYPES = {code: dtype for dtype, code in RECORD_FORMATS.items()}

RECORD_ALIGNMENT = 8
"""Bytes a slab row (:func:`record_stride`) is rounded up to: a 64-dim int8 record takes 72 bytes."""

_VIEW_DTYPES = {FORMAT_FLOAT32: np.float32, FORMAT_FLOAT16: np.uint16, FORMAT_INT8: np.uint8, FORMAT_INT4: np.uint8}


def record_stride(dtype: str, dim: int, alignment: int = RECORD_ALIGNMENT) -> int:
    """Bytes per slab row for records of ``dtype`` and ``dim``: :func:`~tierstore.config.record_bytes`
    rounded up to ``alignment`` (a power of two)."""
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"alignment must be a positive power of two, got {alignment}")
    return -(-record_bytes(dtype, dim) // alignment) * alignment


def empty_records(n: int, dtype: str, dim: int, alignment: int = RECORD_ALIGNMENT) -> np.ndarray:
    """An uninitialised, page-aligned slab of ``n`` records: uint8 ``[n, record_stride(dtype, dim, alignment)]``."""
    return aligned_empty((n, record_stride(dtype, dim, alignment)), np.uint8)


def _format_of(dtype_code) -> int:
    if dtype_code not in FORMAT_DTYPES:
        raise ValueError(f"dtype_code must be one of {RECORD_FORMATS} (dtype -> code), got {dtype_code!r}")
    return dtype_code


def _records_view(name: str, records, fmt: int, dim: int) -> np.ndarray:
    """``records`` (uint8 ``[n, stride]``) as the array its format's kernels read; raises ValueError if it
    cannot hold ``dim``-wide records of format ``fmt``."""
    if not isinstance(records, np.ndarray) or records.dtype != np.uint8 or records.ndim != 2:
        raise ValueError(f"{name} must be a 2-D uint8 array of records, got {_describe(records)}")
    view_dtype = np.dtype(_VIEW_DTYPES[fmt])
    if records.shape[0] == 0:
        return np.zeros((0, 1), dtype=view_dtype)
    needed = record_bytes(FORMAT_DTYPES[fmt], dim)
    if records.shape[1] < needed:
        raise ValueError(f"{name} rows have {records.shape[1]} bytes, but a {FORMAT_DTYPES[fmt]} record of "
                         f"dim {dim} needs {needed}")
    if records.strides[1] != 1:
        raise ValueError(f"{name} rows must be contiguous (strides {records.strides})")
    size = view_dtype.itemsize
    if records.ctypes.data % size or records.strides[0] % size:
        raise ValueError(f"{FORMAT_DTYPES[fmt]} records must start at multiples of {size} bytes "
                         f"({name}: address {records.ctypes.data}, strides {records.strides})")
    return records[:, : records.shape[1] // size * size].view(view_dtype)


def _check_dim(dim, out) -> None:
    if out.shape[1] != dim:
        raise ValueError(f"out has {out.shape[1]} columns, but dim is {dim}")


def pool_records(slab, extra, loc, offsets, weights, mode, dtype_code, dim, out) -> None:
    """Pool each bag's records into ``out``, with ``torch.nn.functional.embedding_bag`` semantics
    over the dequantized rows.

    Parameters
    ----------
    slab : uint8[R, S]
        Records (format ``dtype_code``); ``loc[i] >= 0`` names ``slab[loc[i]]``.
    extra : uint8[E, S2]
        Records read for this batch; ``loc[i] < 0`` names ``extra[-1 - loc[i]]``.
        May have zero rows (of any width) when every ``loc`` is ``>= 0``.
    loc : int64[n]
    offsets : int64[B + 1]
    weights : float32[n] or None
    mode : int
        As :func:`tierstore.kernels.pool_rows`.
    dtype_code : int
        Record format, :data:`RECORD_FORMATS` (0 float32, 1 float16, 2 int8, 3 int4).
    dim : int
        Values per row.
    out : float32[B, dim]
        Written in place; rows may be strided, each row contiguous.

    Raises
    ------
    ValueError
        On wrong dtypes or shapes, records too narrow for ``dim``, ``loc`` values
        naming no row, or a mode/weights combination torch rejects; before any work.
    """
    fmt = _format_of(dtype_code)
    _check_pooling(loc, offsets, weights, mode, out)
    _check_dim(dim, out)
    slab_rows, extra_rows = _records_view("slab", slab, fmt, dim), _records_view("extra", extra, fmt, dim)
    _check_loc(loc, slab_rows.shape[0], extra_rows.shape[0])
    kernels.pool_rows_unchecked(slab_rows, extra_rows, loc, offsets, weights, mode, out, fmt)


def pool_record_ids(slab, ids, offsets, weights, mode, dtype_code, dim, out) -> bool:
    """Pool bags of row ids straight from a whole table of records (row ``i`` is ``slab[i]``), checking
    the ids' range as they are read (:func:`tierstore.kernels.pool_ids`).

    ``ids`` may hold any value; ``offsets``, ``weights``, ``mode`` are trusted (the caller
    checked them); the records' shape and format are checked here.

    Returns
    -------
    bool
        True when every id is in ``[0, R)``; False otherwise (``out`` is then undefined).
    """
    fmt = _format_of(dtype_code)
    _check_dim(dim, out)
    return kernels.pool_ids(_records_view("slab", slab, fmt, dim), ids, offsets, weights, mode, out, fmt)


def gather_records(slab, extra, loc, dtype_code, dim, out) -> None:
    """Dequantize the record named by ``loc[i]`` (same row sources as :func:`pool_records`) into ``out[i]``.

    Parameters
    ----------
    slab, extra : uint8[R, S], uint8[E, S2]
    loc : int64[n]
    dtype_code, dim
        As :func:`pool_records`.
    out : float32[n, dim]
    """
    fmt = _format_of(dtype_code)
    _check_ids("loc", loc)
    _check_out(out, loc.size, "ids")
    _check_dim(dim, out)
    slab_rows, extra_rows = _records_view("slab", slab, fmt, dim), _records_view("extra", extra, fmt, dim)
    _check_loc(loc, slab_rows.shape[0], extra_rows.shape[0])
    if loc.size and dim:
        _gather_kernel(fmt)(slab_rows, extra_rows, loc, out, min(numba.get_num_threads(), loc.size))


@numba.njit(nogil=True, cache=True, parallel=True)
def _copy_records(slab, slots, records):
    for i in numba.prange(slots.size):
        if slots[i] >= 0:
            _store_row(slab, slots[i], records[i])


def copy_records(slab, slots, records) -> None:
    """Copy record ``records[i]`` into slab row ``slots[i]`` (one ``memcpy`` each, in parallel), skipping
    ``slots[i] < 0`` (rows not admitted).

    Parameters
    ----------
    slab : uint8[R, S]
    slots : int64[n]
        Destination rows, distinct where ``>= 0``.
    records : uint8[n, W], W <= S
        Rows contiguous (e.g. :func:`tierstore.pages.extract_records` output).  Bytes
        ``W:S`` of the destination rows are left as they were.
    """
    _check_ids("slots", slots)
    for name, array in (("slab", slab), ("records", records)):
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 2:
            raise ValueError(f"{name} must be a 2-D uint8 array, got {_describe(array)}")
        if array.shape[0] and array.strides[1] != 1:
            raise ValueError(f"{name} rows must be contiguous (strides {array.strides})")
    if records.shape[0] != slots.size:
        raise ValueError(f"records has {records.shape[0]} rows, but there are {slots.size} slots")
    if records.shape[0] and records.shape[1] > slab.shape[1]:
        raise ValueError(f"records of {records.shape[1]} bytes do not fit slab rows of {slab.shape[1]}")
    hi = id_range(slots)[1] if slots.size else -1
    if hi >= slab.shape[0]:
        raise ValueError(f"slots must be < {slab.shape[0]} (slab rows), got {hi}")
    if slots.size:
        _copy_records(slab, slots, records)
