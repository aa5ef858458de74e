"""Intrusive circular doubly linked lists in the rows of a 2-D int64 array.

A list runs through a sentinel row: the sentinel's ``next`` is the head
(newest / MRU end) and its ``prev`` the tail (oldest / LRU end), so link
updates have no branches.  A row may sit in several lists at once, each
through its own pair of link columns (``link_head`` and ``link_out`` take
the columns); ``dll_push_head`` and ``dll_unlink`` use ``PREV`` and ``NEXT``,
the pair every policy state has.  All are inlined into the kernels that call
them (see ``_rows``).
"""

from __future__ import annotations

import numba

PREV = 0
NEXT = 1


@numba.njit(inline="always")
def link_head(links, sentinel, row, prev, nxt):
    """Insert ``row`` right after ``sentinel`` (at the head), through columns ``prev`` and ``nxt``."""
    h = links[sentinel, nxt]
    links[row, prev] = sentinel
    links[row, nxt] = h
    links[h, prev] = row
    links[sentinel, nxt] = row


@numba.njit(inline="always")
def link_out(links, row, prev, nxt):
    """Remove ``row`` from the list it is in through columns ``prev`` and ``nxt``."""
    p = links[row, prev]
    n = links[row, nxt]
    links[p, nxt] = n
    links[n, prev] = p


@numba.njit(inline="always")
def dll_push_head(links, sentinel, row):
    """Insert ``row`` right after ``sentinel`` (at the head)."""
    link_head(links, sentinel, row, PREV, NEXT)


@numba.njit(inline="always")
def dll_unlink(links, row):
    """Remove ``row`` from its list."""
    link_out(links, row, PREV, NEXT)
