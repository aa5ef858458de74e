"""ARC: adaptive replacement cache (Megiddo & Modha, FAST'03).

Two LRU lists hold resident objects: T1 (seen once recently) and T2 (seen at
least twice); two ghost lists B1 and B2 remember keys recently evicted from
each.  A ghost hit in B1 grows the target size ``p`` of T1, a ghost hit in B2
shrinks it, and the object goes to T2; REPLACE evicts from T1 when it exceeds
``p``, else from T2.  Sizes count bytes, ``p`` is a float and ghost lists are
trimmed as in libCacheSim (|T1|+|B1| <= c, total <= 2c).

The state is one array (``_rows``: slots, the four lists, ghosts, scalars;
``p`` is kept as its float64 bits); the ``arc_*`` kernels run on it in the
live caches (ghosts found by key in a table) and in the simulator's replay
loop (ghosts kept in their slots' rows) alike.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from . import _rows as rows
from ._lists import NEXT
from ._rows import FIRST_SLOT, POLICY_FIELDS, get, put
from .base import register_policy
from .drive import Kind, StateKernels, register_kernels

T1 = 0
T2 = 1
B1 = 2
B2 = 3
NO_GHOST_HIT = -1
# policy scalars
GHOST_HIT = POLICY_FIELDS
INCOMING_SIZE = POLICY_FIELDS + 1
P_BITS = POLICY_FIELDS + 2


@intrinsic
def _float_of_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _bits_of_float(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@numba.njit(inline="always")
def _p(a):
    return _float_of_bits(get(a, P_BITS))


@numba.njit(inline="always")
def _set_p(a, p):
    put(a, P_BITS, _bits_of_float(p))


@numba.njit
def new_arc(params):
    """The state array of an empty ARC cache of ``capacity`` bytes."""
    capacity, max_slots = params
    a = rows.new_rows(capacity, max_slots, rows.N_NODE_FIELDS, min(2 * max_slots, 2 * max(capacity, 16)), 0,
                  rows.ONE_PER_VICTIM)
    put(a, GHOST_HIT, NO_GHOST_HIT)
    _set_p(a, 0.0)
    return a


@rows.kernel
def arc_admit(a, key, size):
    put(a, GHOST_HIT, NO_GHOST_HIT)
    put(a, INCOMING_SIZE, size)
    ghost = rows.find_ghost(a, key)
    if ghost != -1:
        b1_bytes = rows.list_bytes(a, B1)
        b2_bytes = rows.list_bytes(a, B2)
        lst = a[ghost, rows.LIST]
        if lst == B1:
            _set_p(a, min(_p(a) + max(b2_bytes / b1_bytes, 1.0), float(get(a, rows.CAPACITY))))
        else:
            _set_p(a, max(_p(a) - max(b1_bytes / b2_bytes, 1.0), 0.0))
        put(a, GHOST_HIT, lst)
        rows.forget_ghost(a, ghost)
    return size <= get(a, rows.CAPACITY)


@rows.kernel
def arc_victim(a):
    """Evict one slot (needs ``rows.ready(a, 1)``)."""
    capacity = get(a, rows.CAPACITY)
    ghost_hit = get(a, GHOST_HIT)
    t1_bytes = rows.list_bytes(a, T1)
    if ghost_hit == NO_GHOST_HIT:
        b1_bytes = rows.list_bytes(a, B1)
        b2_bytes = rows.list_bytes(a, B2)
        if t1_bytes + b1_bytes + get(a, INCOMING_SIZE) > capacity:
            if b1_bytes == 0:
                return rows.evict(a, rows.tail(a, T1))
            rows.forget_oldest_ghost(a, B1)
        elif t1_bytes + b1_bytes + rows.list_bytes(a, T2) + b2_bytes >= 2 * capacity and b2_bytes > 0:
            rows.forget_oldest_ghost(a, B2)
    # REPLACE: the T1 or T2 tail becomes the newest ghost of B1 or B2
    p = _p(a)
    from_t1 = t1_bytes > 0 and (t1_bytes > p or (t1_bytes == p and ghost_hit == B2))
    lst = T1 if from_t1 or rows.list_bytes(a, T2) == 0 else T2
    node = rows.tail(a, lst)
    slot = rows.evict(a, node)
    rows.push_ghost(a, B1 if lst == T1 else B2, node)
    return slot


@rows.kernel
def arc_on_insert(a, slot, key, size):
    rows.insert(a, T1 if get(a, GHOST_HIT) == NO_GHOST_HIT else T2, slot, key, size)
    put(a, GHOST_HIT, NO_GHOST_HIT)


@rows.kernel
def arc_on_hit(a, slot):
    node = FIRST_SLOT + slot
    if a[rows.sentinel(T2), NEXT] != node:
        rows.move_to_head(a, T2, node)


class ARC(Kind):
    """Kind of an ARC state (see ``drive``)."""


register_kernels(ARC, StateKernels(
    new=new_arc, admit=arc_admit, victim=arc_victim, on_hit=arc_on_hit, on_insert=arc_on_insert,
))


@register_policy("arc", {}, "adaptive replacement cache")
def build_arc(capacity, max_slots):
    return ARC(), (capacity, max_slots)
