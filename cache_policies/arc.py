"""ARC: adaptive replacement cache (Megiddo & Modha, FAST'03).

Two LRU lists hold resident objects: T1 (seen once recently) and T2 (seen at
least twice); two ghost lists B1 and B2 remember keys recently evicted from
each.  A ghost hit in B1 grows the target size ``p`` of T1, a ghost hit in B2
shrinks it, and the object goes to T2; REPLACE evicts from T1 when it exceeds
``p``, else from T2.  Sizes count bytes, ``p`` is a float and ghost lists are
trimmed as in libCacheSim (|T1|+|B1| <= c, total <= 2c).

The whole state is one int64 array of ``N_FIELDS`` columns (numba's
reference counting is pruned from a loop only when the code it inlines holds
one array), in row ranges:

- ``[0, max_slots)``: the resident slots;
- the sentinels of T1, T2, B1 and B2 (circular doubly linked lists,
  ``_lists``; a sentinel's ``SIZE`` is its list's bytes);
- the ghost nodes, free ones chained through ``NEXT``;
- the ghost table: open addressing (``_keymap.slot_in``) from a key to its
  ghost node, so a miss probes one table;
- ``HEADER_ROWS`` rows of scalars (``p`` stored as its float64 bits).

The ``arc_*`` kernels take that array; the jitclass methods (the live
caches) and the simulator's replay loop both run them.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import int64, types
from numba.experimental import jitclass
from numba.extending import intrinsic

from ._keymap import EMPTY_KEY, KEY, VAL, delete_in, slot_in
from ._lists import NEXT, PREV, dll_push_head, dll_unlink
from .base import StateKernels, protocol_defaults, register_kernels, register_policy

# lists, as offsets of their sentinels from row ``max_slots``
T1 = 0
T2 = 1
B1 = 2
B2 = 3
N_LISTS = 4
NO_GHOST_HIT = -1
# node fields (PREV and NEXT as in ``_lists``; table rows use KEY and VAL)
SIZE = 2
KEY_OF = 3
LIST = 4
N_FIELDS = 5
# scalars, field ``f`` at header row ``f // N_FIELDS``, column ``f % N_FIELDS``
CAPACITY = 0
USED = 1
N_RESIDENT = 2
GHOST_HIT = 3
INCOMING_SIZE = 4
BASE = 5
FREE_GHOST = 6
N_GHOSTS = 7
MAX_GHOSTS = 8
P_BITS = 9
TABLE_FIRST = 10
TABLE_MASK = 11
HEADER_ROWS = 3


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
def _get(a, field):
    return a[a.shape[0] - HEADER_ROWS + field // N_FIELDS, field % N_FIELDS]


@numba.njit(inline="always")
def _put(a, field, value):
    a[a.shape[0] - HEADER_ROWS + field // N_FIELDS, field % N_FIELDS] = value


@numba.njit(inline="always")
def _add(a, field, delta):
    a[a.shape[0] - HEADER_ROWS + field // N_FIELDS, field % N_FIELDS] += delta


@numba.njit(inline="always")
def _p(a):
    return _float_of_bits(_get(a, P_BITS))


@numba.njit(inline="always")
def _set_p(a, p):
    _put(a, P_BITS, _bits_of_float(p))


@numba.njit(inline="always")
def _push_head(a, sentinel, node, size, lst):
    """Link ``node`` (of ``size`` bytes) at the head of list ``lst``."""
    dll_push_head(a, sentinel, node)
    a[node, LIST] = lst
    a[sentinel, SIZE] += size


@numba.njit(inline="always")
def _unlink(a, base, node):
    """Unlink ``node`` from its list (the lists' sentinels start at row ``base``)."""
    dll_unlink(a, node)
    a[base + a[node, LIST], SIZE] -= a[node, SIZE]


@numba.njit(inline="always")
def _free_ghost(a, node):
    """Put ghost ``node`` (unlinked) back on the free chain."""
    a[node, NEXT] = _get(a, FREE_GHOST)
    _put(a, FREE_GHOST, node)
    _add(a, N_GHOSTS, -1)


@numba.njit(cache=True)
def _layout(a, n_rows, first_ghost, n_ghost_rows, table_rows):
    """An ARC array: rows ``[0, n_rows)`` and the header copied from ``a``,
    ghost rows from ``n_rows`` up to ``first_ghost + n_ghost_rows`` chained
    free, and an empty table of ``table_rows`` (a power of two) holding
    ``a``'s ghost table entries."""
    table_first = first_ghost + n_ghost_rows
    out = np.full((table_first + table_rows + HEADER_ROWS, N_FIELDS), -1, dtype=np.int64)
    out[:n_rows] = a[:n_rows]
    out[out.shape[0] - HEADER_ROWS :] = a[a.shape[0] - HEADER_ROWS :]
    for node in range(max(n_rows, first_ghost), table_first - 1):
        out[node, NEXT] = node + 1
    mask = table_rows - 1
    for row in range(table_first, table_first + table_rows):
        out[row, KEY] = EMPTY_KEY
    if a.shape[0] > HEADER_ROWS:
        old_first = _get(a, TABLE_FIRST)
        for row in range(old_first, old_first + _get(a, TABLE_MASK) + 1):
            key = a[row, KEY]
            if key != EMPTY_KEY:
                i = slot_in(out, table_first, mask, key)
                out[i, KEY] = key
                out[i, VAL] = a[row, VAL]
    _put(out, TABLE_FIRST, table_first)
    _put(out, TABLE_MASK, mask)
    _put(out, MAX_GHOSTS, table_rows // 2)
    return out


@numba.njit(cache=True)
def new_arc(capacity, max_slots):
    """The ARC array of an empty cache of ``capacity`` bytes over ``max_slots`` slots."""
    n_ghosts = min(2 * max_slots, 2 * max(capacity, 16))
    table_rows = 16
    while table_rows < 2 * n_ghosts:
        table_rows *= 2
    header = np.zeros((HEADER_ROWS, N_FIELDS), dtype=np.int64)
    _put(header, CAPACITY, capacity)
    _put(header, GHOST_HIT, NO_GHOST_HIT)
    _put(header, BASE, max_slots)
    _put(header, FREE_GHOST, max_slots + N_LISTS)
    _set_p(header, 0.0)
    a = _layout(header, 0, max_slots + N_LISTS, n_ghosts, table_rows)
    for sentinel in range(max_slots, max_slots + N_LISTS):
        a[sentinel, PREV] = sentinel
        a[sentinel, NEXT] = sentinel
        a[sentinel, SIZE] = 0
    return a


@numba.njit(cache=True)
def grown_arc(a):
    """``a`` with twice the ghost rows and twice the table."""
    first_ghost = _get(a, BASE) + N_LISTS
    table_first = _get(a, TABLE_FIRST)
    n_ghost_rows = table_first - first_ghost
    out = _layout(a, table_first, first_ghost, 2 * n_ghost_rows, 2 * (_get(a, TABLE_MASK) + 1))
    # the new ghost rows, then the old free chain
    out[_get(out, TABLE_FIRST) - 1, NEXT] = _get(a, FREE_GHOST)
    _put(out, FREE_GHOST, table_first)
    return out


@numba.njit(inline="always")
def arc_ready(a, size):
    """Whether ghost rows and table room suffice for every victim a miss of
    ``size`` bytes may take (at most one per byte, and no more than are
    resident)."""
    n_ghosts = _get(a, N_GHOSTS) + min(size, _get(a, N_RESIDENT))
    return n_ghosts <= _get(a, TABLE_FIRST) - _get(a, BASE) - N_LISTS and n_ghosts <= _get(a, MAX_GHOSTS)


@numba.njit(inline="always")
def arc_admit(a, key, size):
    _put(a, GHOST_HIT, NO_GHOST_HIT)
    _put(a, INCOMING_SIZE, size)
    first = _get(a, TABLE_FIRST)
    mask = _get(a, TABLE_MASK)
    i = slot_in(a, first, mask, key)
    if a[i, KEY] == key:
        node = a[i, VAL]
        delete_in(a, first, mask, i)
        base = _get(a, BASE)
        b1_bytes = a[base + B1, SIZE]
        b2_bytes = a[base + B2, SIZE]
        lst = a[node, LIST]
        if lst == B1:
            _set_p(a, min(_p(a) + max(b2_bytes / b1_bytes, 1.0), float(_get(a, CAPACITY))))
        else:
            _set_p(a, max(_p(a) - max(b1_bytes / b2_bytes, 1.0), 0.0))
        _put(a, GHOST_HIT, lst)
        _unlink(a, base, node)
        _free_ghost(a, node)
    return size <= _get(a, CAPACITY)


@numba.njit(inline="always")
def arc_victim(a):
    """Evict one slot (needs room for one more ghost: ``arc_ready(a, 1)``)."""
    base = _get(a, BASE)
    capacity = _get(a, CAPACITY)
    ghost_hit = _get(a, GHOST_HIT)
    first = _get(a, TABLE_FIRST)
    mask = _get(a, TABLE_MASK)
    t1_bytes = a[base + T1, SIZE]
    if ghost_hit == NO_GHOST_HIT:
        b1_bytes = a[base + B1, SIZE]
        b2_bytes = a[base + B2, SIZE]
        trim = NO_GHOST_HIT
        if t1_bytes + b1_bytes + _get(a, INCOMING_SIZE) > capacity:
            if b1_bytes == 0:
                slot = a[base + T1, PREV]
                _unlink(a, base, slot)
                _add(a, USED, -a[slot, SIZE])
                _add(a, N_RESIDENT, -1)
                return slot
            trim = B1
        elif t1_bytes + b1_bytes + a[base + T2, SIZE] + b2_bytes >= 2 * capacity and b2_bytes > 0:
            trim = B2
        if trim != NO_GHOST_HIT:
            oldest = a[base + trim, PREV]
            delete_in(a, first, mask, slot_in(a, first, mask, a[oldest, KEY_OF]))
            _unlink(a, base, oldest)
            _free_ghost(a, oldest)
    # REPLACE: the T1 or T2 tail becomes the newest ghost of B1 or B2
    p = _p(a)
    from_t1 = t1_bytes > 0 and (t1_bytes > p or (t1_bytes == p and ghost_hit == B2))
    lst = T1 if from_t1 or a[base + T2, SIZE] == 0 else T2
    slot = a[base + lst, PREV]
    _unlink(a, base, slot)
    size = a[slot, SIZE]
    key = a[slot, KEY_OF]
    _add(a, USED, -size)
    _add(a, N_RESIDENT, -1)
    ghost = _get(a, FREE_GHOST)
    _put(a, FREE_GHOST, a[ghost, NEXT])
    a[ghost, KEY_OF] = key
    a[ghost, SIZE] = size
    ghost_list = B1 if lst == T1 else B2
    _push_head(a, base + ghost_list, ghost, size, ghost_list)
    _add(a, N_GHOSTS, 1)
    i = slot_in(a, first, mask, key)
    a[i, KEY] = key
    a[i, VAL] = ghost
    return slot


@numba.njit(inline="always")
def arc_on_insert(a, slot, key, size):
    lst = T1 if _get(a, GHOST_HIT) == NO_GHOST_HIT else T2
    a[slot, KEY_OF] = key
    a[slot, SIZE] = size
    _push_head(a, _get(a, BASE) + lst, slot, size, lst)
    _put(a, GHOST_HIT, NO_GHOST_HIT)
    _add(a, USED, size)
    _add(a, N_RESIDENT, 1)


@numba.njit(inline="always")
def arc_on_hit(a, slot):
    base = _get(a, BASE)
    head = base + T2
    if a[head, NEXT] != slot:
        _unlink(a, base, slot)
        _push_head(a, head, slot, a[slot, SIZE], T2)


@numba.njit(inline="always")
def arc_remove(a, slot):
    _unlink(a, _get(a, BASE), slot)
    _add(a, USED, -a[slot, SIZE])
    _add(a, N_RESIDENT, -1)


@numba.njit(inline="always")
def arc_used(a):
    return _get(a, USED)


@numba.njit(inline="always")
def arc_capacity(a):
    return _get(a, CAPACITY)


@jitclass([("n_pending", int64), ("rows", int64[:, ::1])])
@protocol_defaults
class ARCState:
    """ARC state over slots ``[0, max_slots)``, all in the array ``rows``."""

    def __init__(self, capacity, max_slots):
        self.n_pending = 0
        self.rows = new_arc(capacity, max_slots)

    @property
    def capacity(self):
        return arc_capacity(self.rows)

    @property
    def used(self):
        return arc_used(self.rows)

    @property
    def n_resident(self):
        return _get(self.rows, N_RESIDENT)

    @property
    def p(self):
        """Target bytes of T1."""
        return _p(self.rows)

    def kernel_state(self):
        return self.rows

    def grow(self):
        self.rows = grown_arc(self.rows)

    def admit(self, key, size):
        return arc_admit(self.rows, key, size)

    def victim(self):
        if not arc_ready(self.rows, 1):
            self.grow()
        return arc_victim(self.rows)

    def on_insert(self, slot, key, size):
        arc_on_insert(self.rows, slot, key, size)

    def on_hit(self, slot):
        arc_on_hit(self.rows, slot)

    def remove(self, slot):
        arc_remove(self.rows, slot)


register_kernels(
    ARCState,
    StateKernels(
        ready=arc_ready,
        admit=arc_admit,
        victim=arc_victim,
        on_hit=arc_on_hit,
        on_insert=arc_on_insert,
        remove=arc_remove,
        used=arc_used,
        capacity=arc_capacity,
    ),
)


@register_policy("arc", {}, "adaptive replacement cache")
def build_arc(capacity, max_slots):
    return ARCState(capacity, max_slots)
