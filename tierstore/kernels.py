"""Hot-path kernels of the lookup pipeline: dedup, pooling, row gathers (Numba, nogil).

Row sources: ``loc[i] >= 0`` names row ``slab[loc[i]]`` (a cache slot), ``loc[i] < 0``
names ``extra[-1 - loc[i]]`` (a row read from SSD for this batch).

Pooling is bound by random DRAM reads (a 64-float row is four cache lines), so the
kernels do what keeps many reads in flight and little else in the way:

- each thread takes one contiguous run of bags holding an equal share of the rows,
  and walks its rows in order while prefetching the row ``ROW_PREFETCH_DISTANCE``
  positions ahead into L2 (``llvm.prefetch`` on every cache line of it, locality 2:
  ``prefetcht1`` on x86).  Measured on this machine's AMD EPYC (4M x 64 float32,
  2 threads, paired against torch): prefetching into L1 (``prefetcht0``) 16 rows
  ahead took 0.90-0.96 of torch's time; into L2, 32 rows ahead, 0.56-0.58
  (uniform) and 0.71-0.74 (Zipf).  L1 has few miss buffers, so L1 prefetches of
  four-line rows stall each other; L2 keeps many more misses in flight;
- the row width is a compile-time constant for the common widths
  (``SPECIALIZED_DIMS``) and a bag's running sum a stack array, which LLVM keeps
  in vector registers; other widths use a runtime-width variant;
- indices are cast to unsigned before indexing, so no negative-index
  wraparound code sits in the inner loop;
- a bag's result goes to its output row with one fixed-size ``memcpy`` (rows
  are contiguous even when ``out`` is a column block of a wider array), which
  LLVM turns into a few vector stores instead of one store per element;
- a kernel without the slab/extra branch serves lookups whose rows all come from
  the slab (the all-in-DRAM path);
- rows are float32 or records kept at their stored width (``FORMAT_*``, used by
  :mod:`tierstore.pool_records`), decoded inside the add: float16 with
  ``vcvtph2ps``, int8/int4 codes times the row's scale, with the rows' biases
  folded into one addition per element per bag (int4 codes are read a byte, two
  codes, at a time: 2.7-2.8x the rows/s of one nibble per element, measured);
- slabs should start on a cache-line boundary (:func:`aligned_empty`): a
  misaligned 256-byte row spans five lines instead of four.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from cache_policies._memory import aligned_empty  # noqa: F401  (tierstore's slabs are allocated with it)
from cache_policies._memory import item_pointer as _item_pointer
from cache_policies._memory import prefetch_cell_l2 as _prefetch
from cache_policies._memory import prefetch_item as _prefetch_item
from tierstore.validate import id_range

MODE_SUM, MODE_MEAN, MODE_MAX = 0, 1, 2
MODE_NAMES = {MODE_SUM: "sum", MODE_MEAN: "mean", MODE_MAX: "max"}

PREFETCH_DISTANCE = 16
"""How many ids ahead :func:`unique_inverse` prefetches its hash table slot."""

ROW_PREFETCH_DISTANCE = 32
"""How many rows ahead of the one being added the pooling and gather kernels prefetch (into L2)."""

SPECIALIZED_DIMS = (16, 32, 64, 128)
"""Row widths compiled with the width as a constant; others use a runtime width."""

FORMAT_FLOAT32, FORMAT_FLOAT16, FORMAT_INT8, FORMAT_INT4 = 0, 1, 2, 3
"""Row formats the pooling kernels read (the store's dtype codes): float32 rows (a float32 array);
float16 records (a uint16 view); int8 and int4 records (uint8: ``dim`` codes, or ``ceil(dim / 2)``
bytes of two 4-bit codes, low nibble first, then float32 scale and bias; value = code * scale + bias)."""

_unsigned = np.uint64


@intrinsic
def _load_float32(typingctx, array, row, col):
    """The float32 whose four bytes start at ``array[row, col]`` (any alignment; no bounds check)."""
    signature = types.float32(array, row, col)

    def codegen(context, builder, sig, args):
        pointer = builder.bitcast(_item_pointer(context, builder, sig, args), ir.FloatType().as_pointer())
        return builder.load(pointer, align=1)

    return signature, codegen


@intrinsic
def _half_to_float(typingctx, bits):
    """The float32 value of the IEEE half-precision number with bit pattern ``bits`` (uint16);
    one ``vcvtph2ps`` lane on x86 with F16C."""
    if bits != types.uint16:
        return None

    def codegen(context, builder, sig, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _stack_floats(typingctx, count):
    """A float32 array of ``count`` (a compile-time constant) elements on the stack.

    LLVM keeps such an array in vector registers, where a heap array would go
    through memory (it cannot prove the heap array aliases nothing).
    """
    if not isinstance(count, types.IntegerLiteral):
        return None
    size = max(count.literal_value, 1)
    array_type = types.Array(types.float32, 1, "C")

    def codegen(context, builder, sig, args):
        length = context.get_constant(types.intp, size)
        itemsize = context.get_constant(types.intp, 4)
        data = cgutils.alloca_once(builder, context.get_value_type(types.float32), size=length)
        array = context.make_array(array_type)(context, builder)
        context.populate_array(array, data=data, shape=[length], strides=[itemsize], itemsize=itemsize, meminfo=None)
        return array._getvalue()

    return array_type(count), codegen


@intrinsic
def _store_row(typingctx, out, row, values):
    """Copy the 1-D contiguous ``values`` into ``out[row, :len(values)]`` (one ``memcpy``, no bounds check).

    Storing element by element into a possibly strided ``out`` leaves LLVM one
    scalar store per element; a ``memcpy`` of a known size becomes a few vector
    stores.  The row of ``out`` must be contiguous.
    """
    signature = types.void(out, row, values)

    def codegen(context, builder, sig, args):
        values_type = sig.args[2]
        values_struct = context.make_array(values_type)(context, builder, args[2])
        zero = context.get_constant(types.intp, 0)
        destination = _item_pointer(context, builder, types.void(sig.args[0], sig.args[1], types.intp),
                                    [args[0], args[1], zero])
        count = cgutils.unpack_tuple(builder, values_struct.shape)[0]
        itemsize = context.get_abi_sizeof(context.get_data_type(values_type.dtype))
        cgutils.raw_memcpy(builder, destination, values_struct.data, count, itemsize)
        return context.get_dummy_value()

    return signature, codegen




_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)


_BOUNDS_CHECKED = bool(numba.config.BOUNDSCHECK)
"""Numba's disk cache ignores ``NUMBA_BOUNDSCHECK``; kernels built by factories capture it
in a closure variable, so that bounds-checked builds (the test suite's) and unchecked ones
are cached apart."""


def _build_unique_inverse(bounds_checked: bool, counting: bool = False):
    @numba.njit(nogil=True, cache=True)
    def unique_inverse(ids):
        """Distinct ids in order of first occurrence, and where each id sits among them.

        Parameters
        ----------
        ids : int64[n]

        Returns
        -------
        uniq : int64[u]
            Distinct values of ``ids`` in order of first occurrence.
        inverse : int64[n]
            ``ids[i] == uniq[inverse[i]]``.
        occurrences : int64[u]
            Only from :func:`unique_inverse_counts`: how often each distinct id occurs.

        Notes
        -----
        One pass over ``ids`` with an open-addressing (linear probing) hash table of at
        least ``2n`` slots, Fibonacci-hashed: an int32 array of positions in ``uniq``
        (-1 when free) beside the keys, prefetching the slot of the id
        ``PREFETCH_DISTANCE`` positions ahead.
        """
        if bounds_checked:  # no effect on the code: makes the flag part of the cache key
            pass
        n = ids.size
        bits = 4
        while (1 << bits) < 2 * n:
            bits += 1
        mask = _unsigned((1 << bits) - 1)
        shift = _unsigned(64 - bits)
        keys = np.empty(1 << bits, dtype=np.int64)
        positions = np.full(1 << bits, -1, dtype=np.int32)
        uniq = np.empty(n, dtype=np.int64)
        inverse = np.empty(n, dtype=np.int64)
        occurrences = np.zeros(n if counting else 0, dtype=np.int64)
        count = 0
        for i in range(n):
            ahead = i + PREFETCH_DISTANCE
            if ahead < n:
                _prefetch_item(positions, (_unsigned(ids[ahead]) * _FIBONACCI) >> shift)
            key = ids[i]
            slot = (_unsigned(key) * _FIBONACCI) >> shift
            while True:
                position = positions[slot]
                if position < 0:
                    keys[slot] = key
                    positions[slot] = count
                    uniq[count] = key
                    inverse[i] = count
                    if counting:
                        occurrences[count] = 1
                    count += 1
                    break
                if keys[slot] == key:
                    inverse[i] = position
                    if counting:
                        occurrences[position] += 1
                    break
                slot = (slot + _unsigned(1)) & mask
        if counting:
            return uniq[:count].copy(), inverse, occurrences[:count].copy()
        return uniq[:count].copy(), inverse

    return unique_inverse


unique_inverse = _build_unique_inverse(_BOUNDS_CHECKED)
unique_inverse_counts = _build_unique_inverse(_BOUNDS_CHECKED, counting=True)
""":func:`unique_inverse` that also returns how often each distinct id occurs."""


@numba.njit(nogil=True, cache=True)
def _chunk_of_bags(offsets, chunk, n_chunks):
    """Bags ``[lo, hi)`` of chunk ``chunk``: contiguous runs holding about equal numbers of rows."""
    n_bags = offsets.size - 1
    total = offsets[n_bags] - offsets[0]
    lo = 0 if chunk == 0 else np.searchsorted(offsets, offsets[0] + total * chunk // n_chunks)
    hi = n_bags if chunk == n_chunks - 1 else np.searchsorted(offsets, offsets[0] + total * (chunk + 1) // n_chunks)
    return min(lo, n_bags), min(hi, n_bags)


@numba.njit(nogil=True, inline="always")
def _row_value(rows, r, d, fmt):
    """Element ``d`` of row ``r`` as float32: the value itself for float rows, the code for quantized ones."""
    if fmt == FORMAT_FLOAT16:
        return _half_to_float(rows[r, d])
    if fmt == FORMAT_INT4:
        return np.float32((rows[r, d >> 1] >> ((d & 1) << 2)) & 15)
    return np.float32(rows[r, d])


@numba.njit(nogil=True, inline="always")
def _row_items(width, fmt):
    """Array elements one row of ``width`` values occupies (codes, scale and bias for quantized rows),
    and array elements per 64-byte cache line, for row format ``fmt``."""
    if fmt == FORMAT_FLOAT32:
        return width, 16
    if fmt == FORMAT_FLOAT16:
        return width, 32
    if fmt == FORMAT_INT8:
        return width + 8, 64
    return ((width + 1) >> 1) + 8, 64


@numba.njit(nogil=True, inline="always")
def _add_row(acc, rows, r, first, weight, width, mode, weighted, fmt):
    """Fold row ``rows[r]`` (format ``fmt``) into the bag's accumulator ``acc`` (the bag's first row when ``first``).

    Returns what the caller owes every element of the bag at its end: sums of quantized
    rows add ``weight * scale * q`` per element here and return ``weight * bias`` (one
    addition per bag instead of one per element); everything else returns 0.
    """
    quantized = fmt == FORMAT_INT8 or fmt == FORMAT_INT4
    scale, bias = np.float32(1.0), np.float32(0.0)
    if quantized:
        codes = _row_items(width, fmt)[0] - 8
        scale, bias = _load_float32(rows, r, codes), _load_float32(rows, r, codes + 4)
    if mode == MODE_MAX:
        if first:
            for d in range(width):
                acc[d] = _row_value(rows, r, d, fmt) * scale + bias if quantized else _row_value(rows, r, d, fmt)
        else:
            for d in range(width):
                value = _row_value(rows, r, d, fmt) * scale + bias if quantized else _row_value(rows, r, d, fmt)
                acc[d] = max(acc[d], value)
        return np.float32(0.0)
    if weighted:
        scale, bias = weight * scale, weight * bias
    if fmt == FORMAT_INT4:
        for j in range(width >> 1):
            pair = rows[r, j]
            acc[2 * j] += scale * np.float32(pair & 15)
            acc[2 * j + 1] += scale * np.float32(pair >> 4)
        if width & 1:
            acc[width - 1] += scale * _row_value(rows, r, width - 1, fmt)
    elif weighted or quantized:
        for d in range(width):
            acc[d] += scale * _row_value(rows, r, d, fmt)
    else:
        for d in range(width):
            acc[d] += _row_value(rows, r, d, fmt)
    return bias


@numba.njit(nogil=True, inline="always")
def _prefetch_lines(rows, row, items, line):
    """Prefetch the cache lines of ``rows[row, :items]`` (``line`` elements a line; rows need not be line-aligned)."""
    for k in range(0, items, line):
        _prefetch(rows, row, k)
    if items % line:
        _prefetch(rows, row, items - 1)


@numba.njit(nogil=True, inline="always")
def _prefetch_row(slab, extra, p, width, with_extra, fmt):
    """Prefetch every cache line of the row named by ``p`` (a ``loc`` value)."""
    items, line = _row_items(width, fmt)
    if with_extra and p < 0:
        _prefetch_lines(extra, _unsigned(-1 - p), items, line)
    else:
        _prefetch_lines(slab, _unsigned(p), items, line)


def _build_pool_kernel(dim: int, mode: int, weighted: bool, with_extra: bool, checked: bool, fmt: int):
    """Pooling kernel with its options as compile-time constants; ``dim == 0`` reads the width from ``out``.
    Rows are of format ``fmt`` (``FORMAT_*``).

    A ``checked`` kernel (never ``with_extra``) reads each ``loc`` value as a row id
    that may be out of range: it pools ``min(id, rows - 1)`` (no branch) and sets
    ``bad[chunk]`` when an id of its chunk named no row.
    """
    distance = _unsigned(ROW_PREFETCH_DISTANCE)
    bounds_checked = _BOUNDS_CHECKED
    folds_bias = (fmt == FORMAT_INT8 or fmt == FORMAT_INT4) and mode != MODE_MAX

    @numba.njit(nogil=True, cache=True, parallel=True)
    def pool(slab, extra, loc, offsets, weights, out, n_chunks, bad):
        if bounds_checked:  # no effect on the code: makes the flag part of the cache key
            pass
        width = out.shape[1] if dim == 0 else dim
        last_row = _unsigned(slab.shape[0] - 1)
        for chunk in numba.prange(n_chunks):
            lo, hi = _chunk_of_bags(offsets, chunk, n_chunks)
            acc = _stack_floats(dim) if dim else np.empty(width, dtype=np.float32)
            end = _unsigned(offsets[hi])
            out_of_range = False
            for b in range(lo, hi):
                start, stop = _unsigned(offsets[b]), _unsigned(offsets[b + 1])
                for d in range(width):
                    acc[d] = 0.0
                shift = np.float32(0.0)
                for i in range(start, stop):
                    ahead = i + distance
                    if ahead < end:
                        _prefetch_row(slab, extra, loc[ahead], width, with_extra, fmt)
                    r = loc[i]
                    weight = weights[i] if weighted else np.float32(1.0)
                    if checked:
                        row = _unsigned(r)
                        out_of_range |= row > last_row
                        shift += _add_row(acc, slab, min(row, last_row), i == start, weight, width, mode, weighted,
                                          fmt)
                    elif with_extra and r < 0:
                        shift += _add_row(acc, extra, _unsigned(-1 - r), i == start, weight, width, mode, weighted,
                                          fmt)
                    else:
                        shift += _add_row(acc, slab, _unsigned(r), i == start, weight, width, mode, weighted, fmt)
                if folds_bias:
                    for d in range(width):
                        acc[d] += shift
                if mode == MODE_MEAN and stop > start:
                    count = np.float32(stop - start)
                    for d in range(width):
                        acc[d] /= count
                _store_row(out, _unsigned(b), acc)
            if checked:
                bad[chunk] = out_of_range

    return pool


_POOL_KERNELS: dict[tuple[int, int, bool, bool, bool, int], object] = {}
_NO_WEIGHTS = np.zeros(0, dtype=np.float32)
_NO_FLAGS = np.zeros(0, dtype=np.bool_)
NO_ROWS = np.zeros((0, 1), dtype=np.float32)
"""An ``extra`` with no rows, for callers whose rows all come from the slab."""


def _pool_kernel(dim: int, mode: int, weighted: bool, with_extra: bool, checked: bool = False,
                 fmt: int = FORMAT_FLOAT32):
    key = (dim if dim in SPECIALIZED_DIMS else 0, mode, weighted, with_extra, checked, fmt)
    kernel = _POOL_KERNELS.get(key)
    if kernel is None:
        kernel = _POOL_KERNELS[key] = _build_pool_kernel(*key)
    return kernel


def _check_rows(name: str, rows: np.ndarray, dim: int) -> None:
    if not isinstance(rows, np.ndarray) or rows.dtype != np.float32 or rows.ndim != 2:
        raise ValueError(f"{name} must be a 2-D float32 array, got {_describe(rows)}")
    if rows.shape[0] and rows.shape[1] != dim:
        raise ValueError(f"{name} rows have width {rows.shape[1]}, but out has {dim} columns")
    if rows.shape[0] and rows.shape[1] > 1 and rows.strides[1] != rows.itemsize:
        raise ValueError(f"{name} rows must be contiguous (strides {rows.strides})")


def _check_ids(name: str, ids: np.ndarray) -> None:
    if not isinstance(ids, np.ndarray) or ids.dtype != np.int64 or ids.ndim != 1:
        raise ValueError(f"{name} must be a 1-D int64 array, got {_describe(ids)}")


def _check_out(out: np.ndarray, n: int, what: str) -> None:
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.ndim != 2:
        raise ValueError(f"out must be a 2-D float32 array, got {_describe(out)}")
    if out.shape[0] != n:
        raise ValueError(f"out has {out.shape[0]} rows, but there are {n} {what}")
    if out.shape[0] and out.shape[1] > 1 and out.strides[1] != out.itemsize:
        raise ValueError(f"out rows must be contiguous (strides {out.strides})")


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def pool_rows(slab, extra, loc, offsets, weights, mode, out) -> None:
    """Pool each bag's rows into ``out``, with ``torch.nn.functional.embedding_bag`` semantics.

    Parameters
    ----------
    slab : float32[R, D]
        Cache slab; ``loc[i] >= 0`` names ``slab[loc[i]]``.
    extra : float32[E, D]
        Rows read for this batch; ``loc[i] < 0`` names ``extra[-1 - loc[i]]``.
        May have zero rows (of any width) when every ``loc`` is ``>= 0``.
    loc : int64[n]
        Row of each index.
    offsets : int64[B + 1]
        Bag ``b`` is ``loc[offsets[b]:offsets[b + 1]]``; non-decreasing (the caller
        validates), ``offsets[-1] == n``.
    weights : float32[n] or None
        Per-row multipliers, ``MODE_SUM`` only.
    mode : int
        ``MODE_SUM``, ``MODE_MEAN`` (sum / bag length) or ``MODE_MAX`` (elementwise).
        Empty bags give zeros in every mode.
    out : float32[B, D]
        Written in place; rows may be strided (a column block of a wider output),
        each row contiguous.

    Raises
    ------
    ValueError
        On wrong dtypes or shapes, ``loc`` values naming no row, or a mode/weights
        combination torch rejects; before any work.
    """
    _check_pooling(loc, offsets, weights, mode, out)
    _check_rows("slab", slab, out.shape[1])
    _check_rows("extra", extra, out.shape[1])
    _check_loc(loc, slab.shape[0], extra.shape[0])
    pool_rows_unchecked(slab, extra, loc, offsets, weights, mode, out)


def _check_pooling(loc, offsets, weights, mode, out) -> None:
    """Raise ValueError unless ``loc``, ``offsets``, ``weights``, ``mode``, ``out`` are as :func:`pool_rows` needs."""
    _check_ids("loc", loc)
    _check_ids("offsets", offsets)
    if offsets.size == 0:
        raise ValueError("offsets must have B + 1 entries, got an empty array")
    _check_out(out, offsets.size - 1, "bags (offsets has B + 1 entries)")
    if offsets[0] != 0 or offsets[-1] != loc.size:
        raise ValueError(f"offsets must run from 0 to len(loc)={loc.size}, got {offsets[0]} .. {offsets[-1]}")
    if mode not in MODE_NAMES:
        raise ValueError(f"mode must be one of {sorted(MODE_NAMES)} (sum, mean, max), got {mode!r}")
    if weights is not None:
        if mode != MODE_SUM:
            raise ValueError(f"per-sample weights need mode sum, got mode {MODE_NAMES[mode]}")
        if not isinstance(weights, np.ndarray) or weights.dtype != np.float32 or weights.shape != loc.shape:
            raise ValueError(f"weights must be float32 of shape {loc.shape}, got {_describe(weights)}")


def _check_loc(loc, slab_rows: int, extra_rows: int) -> None:
    """Raise ValueError unless every ``loc`` value names a slab row (``>= 0``) or an extra row (``< 0``)."""
    lo, hi = id_range(loc) if loc.size else (0, -1)
    if lo < -extra_rows or hi >= slab_rows:
        raise ValueError(f"loc values must name a row: in [-{extra_rows}, {slab_rows}) for "
                         f"{extra_rows} extra and {slab_rows} slab rows, got {lo} .. {hi}")


def pool_rows_unchecked(slab, extra, loc, offsets, weights, mode, out, fmt: int = FORMAT_FLOAT32) -> None:
    """:func:`pool_rows` without its argument checks, for callers that have made them (the store);
    ``slab`` and ``extra`` hold rows of format ``fmt`` (see ``FORMAT_FLOAT32``).

    Wrong arguments here read or write out of bounds; use :func:`pool_rows` elsewhere.
    """
    if out.shape[0] == 0 or out.shape[1] == 0:
        return
    weighted = weights is not None
    kernel = _pool_kernel(out.shape[1], mode, weighted, extra.shape[0] > 0, False, fmt)
    n_chunks = min(numba.get_num_threads(), out.shape[0])
    kernel(slab, extra, loc, offsets, weights if weighted else _NO_WEIGHTS, out, n_chunks, _NO_FLAGS)


def pool_ids(table, ids, offsets, weights, mode, out, fmt: int = FORMAT_FLOAT32) -> bool:
    """Pool bags of row ids straight from a whole table (row ``i`` is ``table[i]``), checking the ids as they are read.

    For callers that have checked everything but the ids' range (the store, whose
    separate range pass over the ids cost more than this kernel's branch-free check).

    Parameters
    ----------
    table : float32[R, D]
        Or rows of format ``fmt`` (see ``FORMAT_FLOAT32``).
    ids : int64[n]
        Row ids; any value is safe to pass.
    offsets, weights, mode, out
        As :func:`pool_rows`.
    fmt : int
        Row format of ``table``.

    Returns
    -------
    bool
        True when every id is in ``[0, R)``.  False otherwise: ``out`` is then
        undefined (out-of-range ids were read as row ``R - 1``) and nothing else was touched.
    """
    if ids.size and table.shape[0] == 0:
        return False
    if out.shape[0] == 0 or out.shape[1] == 0:
        lo, hi = id_range(ids) if ids.size else (0, -1)
        return bool(lo >= 0 and hi < table.shape[0])
    weighted = weights is not None
    kernel = _pool_kernel(out.shape[1], mode, weighted, False, True, fmt)
    n_chunks = min(numba.get_num_threads(), out.shape[0])
    bad = np.zeros(n_chunks, dtype=np.bool_)
    kernel(table, table[:0], ids, offsets, weights if weighted else _NO_WEIGHTS, out, n_chunks, bad)
    return not bad.any()


def _build_gather(bounds_checked: bool, fmt: int):
    @numba.njit(nogil=True, cache=True, parallel=True)
    def gather(slab, extra, loc, out, n_chunks):
        if bounds_checked:  # no effect on the code: makes the flag part of the cache key
            pass
        n = loc.size
        width = out.shape[1]
        distance = _unsigned(ROW_PREFETCH_DISTANCE)
        one = np.float32(1.0)
        for chunk in numba.prange(n_chunks):
            lo = _unsigned(n * chunk // n_chunks)
            hi = _unsigned(n * (chunk + 1) // n_chunks)
            row_values = np.empty(width, dtype=np.float32)
            for i in range(lo, hi):
                ahead = i + distance
                if ahead < hi:
                    _prefetch_row(slab, extra, loc[ahead], width, True, fmt)
                r = loc[i]
                if r >= 0:
                    _add_row(row_values, slab, _unsigned(r), True, one, width, MODE_MAX, False, fmt)
                else:
                    _add_row(row_values, extra, _unsigned(-1 - r), True, one, width, MODE_MAX, False, fmt)
                _store_row(out, i, row_values)

    return gather


_GATHER_KERNELS: dict[int, object] = {}


def _gather_kernel(fmt: int):
    """The gather kernel for rows of format ``fmt`` (the row's values, dequantized, go to ``out``)."""
    kernel = _GATHER_KERNELS.get(fmt)
    if kernel is None:
        kernel = _GATHER_KERNELS[fmt] = _build_gather(_BOUNDS_CHECKED, fmt)
    return kernel


def gather_rows(slab, extra, loc, out) -> None:
    """Copy the row named by ``loc[i]`` into ``out[i]`` (same row sources as :func:`pool_rows`).

    Parameters
    ----------
    slab, extra : float32[R, D], float32[E, D]
    loc : int64[n]
    out : float32[n, D]
    """
    _check_ids("loc", loc)
    _check_out(out, loc.size, "ids")
    dim = out.shape[1]
    _check_rows("slab", slab, dim)
    _check_rows("extra", extra, dim)
    if loc.size and dim:
        _gather_kernel(FORMAT_FLOAT32)(slab, extra, loc, out, min(numba.get_num_threads(), loc.size))

