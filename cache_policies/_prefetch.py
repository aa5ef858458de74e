"""Software prefetch for Numba kernels (``llvm.prefetch``), shared by the policy kernels and tierstore's."""

from __future__ import annotations

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


@intrinsic
def prefetch_item(typingctx, array, index):
    """Prefetch (into every cache level) the cache line holding ``array[index]`` of a 1-D array."""
    signature = types.void(array, index)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        array_struct = context.make_array(array_type)(context, builder, args[0])
        position = context.cast(builder, args[1], sig.args[1], types.intp)
        pointer = cgutils.get_item_pointer2(
            context, builder, array_struct.data,
            cgutils.unpack_tuple(builder, array_struct.shape),
            cgutils.unpack_tuple(builder, array_struct.strides),
            array_type.layout, [position], wraparound=False, boundscheck=False,
        )
        emit_prefetch(builder, pointer, 3)
        return context.get_dummy_value()

    return signature, codegen
