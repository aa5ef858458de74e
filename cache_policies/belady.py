"""Belady (MIN): evict the object whose next access is farthest away.

Offline only: the simulator passes each request's next-access time through
``set_next_access`` before the request.  Objects never requested again count
as infinitely far.  Resident objects sit in a binary max-heap on next-access
time with the sift rules of libCacheSim's ``pqueue`` (strict comparisons), so
ties among never-reused objects break as libCacheSim breaks them.

The state is one ``_rows`` array of four columns: per slot its next-access
time ``PRI``, heap position ``POS`` and size, and the 1-based heap itself in
column ``HEAP`` (entry ``i`` in slot row ``i - 1``).
"""

from __future__ import annotations

import numba
import numpy as np

from . import _rows as rows
from ._rows import FIRST_SLOT, POLICY_FIELDS, SIZE, add, get, put
from .base import register_policy
from .drive import Kind, StateKernels, register_kernels

_INFINITY = np.iinfo(np.int64).max
# node columns (no lists: SIZE is the only standard one)
PRI = 0
POS = 1
HEAP = 3
N_FIELDS = 4
# policy scalars
CURRENT_NEXT = POLICY_FIELDS
HEAP_SIZE = POLICY_FIELDS + 1


@numba.njit
def new_belady(params):
    """The state array of an empty Belady cache of ``capacity`` bytes."""
    capacity, max_slots = params
    a = rows.new_rows(capacity, max_slots, N_FIELDS, 0, 0, 0)
    put(a, CURRENT_NEXT, _INFINITY)
    return a


@numba.njit(inline="always")
def _pri(a, slot):
    return a[FIRST_SLOT + slot, PRI]


@numba.njit(inline="always")
def _heap(a, i):
    return a[FIRST_SLOT + i - 1, HEAP]


@numba.njit(inline="always")
def _place(a, i, slot):
    """Put ``slot`` at heap position ``i``."""
    a[FIRST_SLOT + i - 1, HEAP] = slot
    a[FIRST_SLOT + slot, POS] = i


@numba.njit(inline="always")
def _bubble_up(a, i):
    moving = _heap(a, i)
    p = _pri(a, moving)
    while i > 1 and _pri(a, _heap(a, i >> 1)) < p:
        _place(a, i, _heap(a, i >> 1))
        i >>= 1
    _place(a, i, moving)


@numba.njit(inline="always")
def _percolate_down(a, i):
    moving = _heap(a, i)
    p = _pri(a, moving)
    n = get(a, HEAP_SIZE)
    while True:
        child = 2 * i
        if child > n:
            break
        if child + 1 <= n and _pri(a, _heap(a, child)) < _pri(a, _heap(a, child + 1)):
            child += 1
        if not p < _pri(a, _heap(a, child)):
            break
        _place(a, i, _heap(a, child))
        i = child
    _place(a, i, moving)


@numba.njit(inline="always")
def _leave(a, slot):
    """Take ``slot`` out of the heap and count it out."""
    i = a[FIRST_SLOT + slot, POS]
    last = _heap(a, get(a, HEAP_SIZE))
    add(a, HEAP_SIZE, -1)
    if i <= get(a, HEAP_SIZE):
        _place(a, i, last)
        if _pri(a, slot) < _pri(a, last):
            _bubble_up(a, i)
        else:
            _percolate_down(a, i)
    add(a, rows.USED, -a[FIRST_SLOT + slot, SIZE])
    add(a, rows.N_RESIDENT, -1)
    return slot


@rows.kernel
def belady_victim(a):
    return _leave(a, _heap(a, 1))


@rows.kernel
def belady_on_insert(a, slot, key, size):
    node = FIRST_SLOT + slot
    a[node, PRI] = get(a, CURRENT_NEXT)
    a[node, SIZE] = size
    add(a, HEAP_SIZE, 1)
    _place(a, get(a, HEAP_SIZE), slot)
    _bubble_up(a, get(a, HEAP_SIZE))
    add(a, rows.USED, size)
    add(a, rows.N_RESIDENT, 1)


@rows.kernel
def belady_on_hit(a, slot):
    node = FIRST_SLOT + slot
    old = a[node, PRI]
    a[node, PRI] = get(a, CURRENT_NEXT)
    if old < get(a, CURRENT_NEXT):
        _bubble_up(a, a[node, POS])
    else:
        _percolate_down(a, a[node, POS])


@rows.kernel
def belady_remove(a, slot):
    _leave(a, slot)


@rows.kernel
def belady_set_next_access(a, next_vtime):
    put(a, CURRENT_NEXT, next_vtime if next_vtime >= 0 else _INFINITY)


class Belady(Kind):
    """Kind of a Belady state (see ``drive``)."""


register_kernels(Belady, StateKernels(
    new=new_belady, admit=rows.fits, victim=belady_victim, on_hit=belady_on_hit, on_insert=belady_on_insert,
    ready=rows.always_ready, remove=belady_remove, set_next_access=belady_set_next_access,
))


@register_policy("belady", {}, "offline optimum (farthest next access)", needs_next_access=True)
def build_belady(capacity, max_slots):
    return Belady(), (capacity, max_slots)
