"""One-list policies (LRU, FIFO): victims come from the tail of a single list.

The state is one ``_rows`` array with one list and no ghosts; the
``single_list_*`` kernels serve the live caches and the simulator alike.
"""

from __future__ import annotations

import numba

from . import _rows as rows
from ._lists import NEXT
from ._rows import FIRST_SLOT, HEADER_ROWS, POLICY_FIELDS, get, put
from .drive import Kind, StateKernels, register_kernels

ONLY = 0
# policy scalar: move a hit object to the head (LRU) or not (FIFO)
PROMOTE_ON_HIT = POLICY_FIELDS


@numba.njit
def new_single_list(params):
    """The state array of an empty one-list cache of ``capacity`` bytes."""
    capacity, max_slots, promote_on_hit = params
    a = rows.new_rows(capacity, max_slots, rows.N_NODE_FIELDS, 0, 0, 0)
    put(a, PROMOTE_ON_HIT, promote_on_hit)
    return a


@rows.kernel
def single_list_victim(a):
    return rows.evict(a, rows.tail(a, ONLY))


@rows.kernel
def single_list_on_hit(a, slot):
    node = FIRST_SLOT + slot
    if get(a, PROMOTE_ON_HIT) and a[HEADER_ROWS + ONLY, NEXT] != node:
        rows.move_to_head(a, ONLY, node)


@rows.kernel
def single_list_on_insert(a, slot, key, size):
    rows.insert(a, ONLY, slot, key, size)


class SingleList(Kind):
    """Kind of an LRU or FIFO state (see ``drive``): objects in one list, inserts
    at the head, victims from the tail."""


register_kernels(SingleList, StateKernels(
    new=new_single_list, admit=rows.fits, victim=single_list_victim, on_hit=single_list_on_hit,
    on_insert=single_list_on_insert, ready=rows.always_ready,
))
