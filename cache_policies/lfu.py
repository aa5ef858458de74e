"""LFU: evict the least frequently used object.

Frequencies count only while an object is cached; an insert starts at 1.
Objects sit in one FIFO bucket per frequency; the victim is the oldest entry of
the lowest non-empty bucket, i.e. the object that reached that frequency first.

The state is one ``_rows`` array of five columns.  The non-empty buckets form
a chain in ascending frequency (through the first list sentinel), so the
lowest is the chain's first and a hit moves its object to the next bucket,
made if missing.  A bucket is a row of the extra region (at most one per
resident object, and one more while a hit moves its object): ``PREV`` and
``NEXT`` are the sentinel links of its objects' list, then its frequency and
its chain links; an object's row holds its links, size and bucket.
"""

from __future__ import annotations

import numba

from . import _rows as rows
from ._lists import NEXT, PREV, dll_push_head, dll_unlink, link_head, link_out
from ._rows import FIRST_SLOT, HEADER_ROWS, POLICY_FIELDS, SIZE, add, get, put
from .base import register_policy
from .drive import Kind, StateKernels, register_kernels

CHAIN = HEADER_ROWS
# an object's column
BUCKET = 3
# a bucket's columns (after the links of its objects' list)
FREQ = 2
CHAIN_PREV = 3
CHAIN_NEXT = 4
N_FIELDS = 5
# policy scalar: first free bucket row (free ones chained through CHAIN_NEXT), -1 for none
FREE_BUCKET = POLICY_FIELDS


@numba.njit
def new_lfu(params):
    """The state array of an empty LFU cache of ``capacity`` bytes."""
    capacity, max_slots = params
    a = rows.new_rows(capacity, max_slots, N_FIELDS, 0, max_slots + 1, 0)
    a[CHAIN, CHAIN_PREV] = CHAIN
    a[CHAIN, CHAIN_NEXT] = CHAIN
    first = get(a, rows.EXTRA_FIRST)
    for b in range(first, first + max_slots):
        a[b, CHAIN_NEXT] = b + 1
    a[first + max_slots, CHAIN_NEXT] = -1
    put(a, FREE_BUCKET, first)
    return a


@numba.njit(inline="always")
def _new_bucket(a, after, freq):
    """An empty bucket for ``freq``, chained right after row ``after``."""
    b = get(a, FREE_BUCKET)
    put(a, FREE_BUCKET, a[b, CHAIN_NEXT])
    a[b, FREQ] = freq
    a[b, PREV] = b
    a[b, NEXT] = b
    link_head(a, after, b, CHAIN_PREV, CHAIN_NEXT)
    return b


@numba.njit(inline="always")
def _take_out(a, node):
    """Unlink ``node`` from its bucket, dropping the bucket if that empties it."""
    b = a[node, BUCKET]
    dll_unlink(a, node)
    if a[b, NEXT] == b:
        link_out(a, b, CHAIN_PREV, CHAIN_NEXT)
        a[b, CHAIN_NEXT] = get(a, FREE_BUCKET)
        put(a, FREE_BUCKET, b)


@numba.njit(inline="always")
def _leave(a, node):
    _take_out(a, node)
    add(a, rows.USED, -a[node, SIZE])
    add(a, rows.N_RESIDENT, -1)
    return node - FIRST_SLOT


@rows.kernel
def lfu_victim(a):
    lowest = a[CHAIN, CHAIN_NEXT]
    return _leave(a, a[lowest, PREV])


@rows.kernel
def lfu_on_insert(a, slot, key, size):
    first = a[CHAIN, CHAIN_NEXT]
    if first == CHAIN or a[first, FREQ] != 1:
        first = _new_bucket(a, CHAIN, 1)
    node = FIRST_SLOT + slot
    dll_push_head(a, first, node)
    a[node, BUCKET] = first
    a[node, SIZE] = size
    add(a, rows.USED, size)
    add(a, rows.N_RESIDENT, 1)


@rows.kernel
def lfu_on_hit(a, slot):
    node = FIRST_SLOT + slot
    b = a[node, BUCKET]
    f = a[b, FREQ] + 1
    up = a[b, CHAIN_NEXT]
    if up == CHAIN or a[up, FREQ] != f:
        up = _new_bucket(a, b, f)
    _take_out(a, node)
    dll_push_head(a, up, node)
    a[node, BUCKET] = up


@rows.kernel
def lfu_remove(a, slot):
    _leave(a, FIRST_SLOT + slot)


class LFU(Kind):
    """Kind of an LFU state (see ``drive``)."""


register_kernels(LFU, StateKernels(
    new=new_lfu, admit=rows.fits, victim=lfu_victim, on_hit=lfu_on_hit, on_insert=lfu_on_insert,
    ready=rows.always_ready, remove=lfu_remove,
))


@register_policy("lfu", {}, "least frequently used, FIFO among equal counts")
def build_lfu(capacity, max_slots):
    return LFU(), (capacity, max_slots)
