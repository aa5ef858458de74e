"""Cache lines for Numba kernels: software prefetch (``llvm.prefetch``) and aligned arrays, shared by the
policy kernels and tierstore's."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def emit_prefetch(builder, pointer, locality: int):
    """Emit ``llvm.prefetch`` of ``pointer`` for reading into the data cache; ``locality`` 3 fetches
    into every level (``prefetcht0``), 2 into L2 and beyond (``prefetcht1``)."""
    byte_pointer = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0"
    )
    read, data_cache = ir.Constant(i32, 0), ir.Constant(i32, 1)
    builder.call(function, [builder.bitcast(pointer, byte_pointer), read, ir.Constant(i32, locality), data_cache])


def item_pointer(context, builder, sig, args):
    """Pointer to ``array[index...]`` for an intrinsic whose arguments are ``(array, *index)``
    (one index argument per dimension; no bounds check)."""
    array_type = sig.args[0]
    array_struct = context.make_array(array_type)(context, builder, args[0])
    index = [context.cast(builder, value, typ, types.intp) for value, typ in zip(args[1:], sig.args[1:])]
    return cgutils.get_item_pointer2(
        context, builder, array_struct.data,
        cgutils.unpack_tuple(builder, array_struct.shape),
        cgutils.unpack_tuple(builder, array_struct.strides),
        array_type.layout, index, wraparound=False, boundscheck=False,
    )


@intrinsic
def prefetch_item(typingctx, array, index):
    """Prefetch (into every cache level) the cache line holding ``array[index]`` of a 1-D array."""
    signature = types.void(array, index)

    def codegen(context, builder, sig, args):
        emit_prefetch(builder, item_pointer(context, builder, sig, args), 3)
        return context.get_dummy_value()

    return signature, codegen


def _cell_prefetcher(locality: int):
    """An intrinsic ``prefetch(array, row, col)`` of the cache line holding ``array[row, col]`` (2-D) into
    the levels ``locality`` names (see :func:`emit_prefetch`)."""

    @intrinsic
    def prefetch(typingctx, array, row, col):
        signature = types.void(array, row, col)

        def codegen(context, builder, sig, args):
            emit_prefetch(builder, item_pointer(context, builder, sig, args), locality)
            return context.get_dummy_value()

        return signature, codegen

    return prefetch


prefetch_cell = _cell_prefetcher(3)
"""Prefetch the cache line holding ``array[row, col]`` of a 2-D array into every cache level."""
prefetch_cell_l2 = _cell_prefetcher(2)
"""Prefetch the cache line holding ``array[row, col]`` of a 2-D array into L2 (``prefetcht1``)."""


def aligned_empty(shape, dtype=np.float32, alignment: int = 4096) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``alignment``-byte boundary.

    Parameters
    ----------
    shape : int or tuple of int
    dtype : numpy dtype
    alignment : int
        Power of two, in bytes (a page by default, so rows of 2^k bytes never straddle pages).

    Returns
    -------
    ndarray
        A view into a slightly larger buffer (which it keeps alive).
    """
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"alignment must be a positive power of two, got {alignment}")
    shape = (shape,) if np.isscalar(shape) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buffer = np.empty(nbytes + alignment, dtype=np.uint8)
    start = (-buffer.ctypes.data) % alignment
    return buffer[start : start + nbytes].view(dtype).reshape(shape)
