"""Numba hash structures over int64 keys, shared by every policy.

``KeyMap`` is an open-addressing (linear probing, backward-shift deletion)
int64 -> int64 map (``slot_in`` and ``delete_in`` also serve a table
kept in a row range of a larger array, several entries per row); ``KeyList`` is an ordered list of keys (with sizes and a
small integer tag) that also answers membership, moves and removes any key in
O(1): the ghost queues of S3-FIFO, 2Q and ARC and the stacks of LIRS.  Ghosts
are tracked by *key*, never by slot, because a live cache reuses slots for
other keys.  Each structure keeps its entries in one 2-D int64 array (fields
side by side), so a step touches one array: cache friendly and light on
numba's reference counting.  The key ``EMPTY_KEY`` (int64 minimum) is
reserved.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import int64
from numba.experimental import jitclass

EMPTY_KEY = np.iinfo(np.int64).min
_FIB = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15 as int64
KEY = 0
VAL = 1


@numba.njit(inline="always")
def _home(key, mask):
    h = key * _FIB
    return (h ^ (h >> 29)) & mask


@numba.njit(inline="always")
def entry_at(first, shift, i):
    """Row and key column of entry ``i`` of a table starting at row ``first``
    with ``2**shift`` entries (key and value side by side) per row."""
    return first + (i >> shift), (i & ((1 << shift) - 1)) * 2


@numba.njit(inline="always")
def slot_in(rows, first, mask, shift, key):
    """Entry of ``key`` in the table of ``mask + 1`` entries (a power of two)
    at row ``first`` of ``rows``, ``2**shift`` per row, or of the empty entry
    where it would go."""
    i = _home(key, mask)
    while True:
        r, c = entry_at(first, shift, i)
        k = rows[r, c + KEY]
        if k == key or k == EMPTY_KEY:
            return i
        i = (i + 1) & mask


@numba.njit(inline="always")
def delete_in(rows, first, mask, shift, i):
    """Empty entry ``i`` of the table (as in ``slot_in``), shifting later
    entries of its probe run back."""
    j = i
    while True:
        j = (j + 1) & mask
        rj, cj = entry_at(first, shift, j)
        kj = rows[rj, cj + KEY]
        if kj == EMPTY_KEY:
            break
        home = _home(kj, mask)
        # keep kj where it is if its home lies cyclically in (i, j]
        if i <= j:
            stays = i < home <= j
        else:
            stays = home > i or home <= j
        if stays:
            continue
        ri, ci = entry_at(first, shift, i)
        rows[ri, ci + KEY] = kj
        rows[ri, ci + VAL] = rows[rj, cj + VAL]
        i = j
    ri, ci = entry_at(first, shift, i)
    rows[ri, ci + KEY] = EMPTY_KEY


@numba.njit(inline="always")
def _slot_for(table, key):
    """Index of ``key`` in ``table``, or of the empty entry where it would go."""
    return slot_in(table, 0, table.shape[0] - 1, 0, key)


@numba.njit(inline="always")
def _delete_at(table, i):
    """Empty entry ``i``, shifting later entries of its probe run back."""
    delete_in(table, 0, table.shape[0] - 1, 0, i)


@numba.njit(cache=True)
def new_table(n_expected):
    """An empty hash table for about ``n_expected`` keys."""
    n = 16
    while n < 2 * n_expected:
        n *= 2
    table = np.zeros((n, 2), dtype=np.int64)
    table[:, KEY] = EMPTY_KEY
    return table


@numba.njit(cache=True)
def grown_table(table):
    """``table`` rehashed into twice the entries."""
    bigger = np.zeros((2 * table.shape[0], 2), dtype=np.int64)
    bigger[:, KEY] = EMPTY_KEY
    for t in range(table.shape[0]):
        k = table[t, KEY]
        if k != EMPTY_KEY:
            i = _slot_for(bigger, k)
            bigger[i, KEY] = k
            bigger[i, VAL] = table[t, VAL]
    return bigger


@jitclass([("table", int64[:, ::1]), ("size", int64)])
class KeyMap:
    """int64 -> int64 open-addressing hash map; ``table[i] = (key, value)``.

    Parameters
    ----------
    n_expected : int
        Expected number of entries; the table doubles when half full.
    """

    def __init__(self, n_expected):
        self.table = new_table(n_expected)
        self.size = 0

    def contains(self, key):
        table = self.table
        return table[_slot_for(table, key), KEY] == key

    def get(self, key, default):
        table = self.table
        i = _slot_for(table, key)
        if table[i, KEY] == key:
            return table[i, VAL]
        return default

    def put(self, key, val):
        table = self.table
        i = _slot_for(table, key)
        if table[i, KEY] != key:
            table[i, KEY] = key
            self.size += 1
        table[i, VAL] = val
        if 2 * self.size > table.shape[0]:
            self.table = grown_table(table)

    def remove(self, key):
        """Delete ``key``; return whether it was present."""
        table = self.table
        i = _slot_for(table, key)
        if table[i, KEY] != key:
            return False
        _delete_at(table, i)
        self.size -= 1
        return True


# KeyList node fields
N_KEY = 0
N_SIZE = 1
N_TAG = 2
N_PREV = 3
N_NEXT = 4
# KeyList bookkeeping fields (``meta``)
M_NEWEST = 0
M_OLDEST = 1
M_FREE = 2
M_COUNT = 3
M_USED = 4


@numba.njit(inline="always")
def _link_newest(nodes, meta, node):
    newest = meta[M_NEWEST]
    nodes[node, N_PREV] = newest
    nodes[node, N_NEXT] = -1
    if newest != -1:
        nodes[newest, N_NEXT] = node
    else:
        meta[M_OLDEST] = node
    meta[M_NEWEST] = node


@numba.njit(inline="always")
def _detach(nodes, meta, node):
    p = nodes[node, N_PREV]
    nx = nodes[node, N_NEXT]
    if p != -1:
        nodes[p, N_NEXT] = nx
    else:
        meta[M_OLDEST] = nx
    if nx != -1:
        nodes[nx, N_PREV] = p
    else:
        meta[M_NEWEST] = p


@numba.njit(inline="always")
def _release(nodes, meta, node):
    """Detach ``node`` and put it on the free list."""
    _detach(nodes, meta, node)
    meta[M_COUNT] -= 1
    meta[M_USED] -= nodes[node, N_SIZE]
    nodes[node, N_NEXT] = meta[M_FREE]
    meta[M_FREE] = node


@numba.njit(cache=True)
def _grown_nodes(nodes):
    n = nodes.shape[0]
    bigger = np.zeros((2 * n, 5), dtype=np.int64)
    bigger[:n] = nodes
    for i in range(n, 2 * n):
        bigger[i, N_NEXT] = i + 1
    bigger[2 * n - 1, N_NEXT] = -1
    return bigger


@jitclass([("table", int64[:, ::1]), ("nodes", int64[:, ::1]), ("meta", int64[::1]), ("capacity", int64)])
class KeyList:
    """Keys ordered oldest to newest, with sizes and tags; O(1) membership,
    move and removal.

    Parameters
    ----------
    capacity : int
        Byte budget; ``push`` drops the oldest keys to stay within it.  A negative
        capacity means unbounded (the owner trims with ``pop_oldest``).
    n_expected : int
        Expected number of keys, to size the first allocation.
    """

    def __init__(self, capacity, n_expected):
        n = max(n_expected, 16)
        self.table = new_table(n)
        self.nodes = np.zeros((n, 5), dtype=np.int64)
        for i in range(n):
            self.nodes[i, N_NEXT] = i + 1
        self.nodes[n - 1, N_NEXT] = -1
        self.meta = np.zeros(5, dtype=np.int64)
        self.meta[M_NEWEST] = -1
        self.meta[M_OLDEST] = -1
        self.capacity = capacity

    @property
    def count(self):
        return self.meta[M_COUNT]

    @property
    def used(self):
        """Bytes of the keys listed."""
        return self.meta[M_USED]

    def contains(self, key):
        table = self.table
        return table[_slot_for(table, key), KEY] == key

    def _node(self, key):
        """Node of ``key`` (``-1`` if absent)."""
        table = self.table
        i = _slot_for(table, key)
        return table[i, VAL] if table[i, KEY] == key else -1

    def push(self, key, size):
        """Append ``key`` (absent) as the newest, first dropping the oldest keys
        while the budget would be exceeded; a key larger than the whole budget
        is not recorded."""
        meta = self.meta
        if self.capacity >= 0:
            if size > self.capacity:
                return
            while meta[M_USED] + size > self.capacity:
                self.pop_oldest()
        if meta[M_FREE] == -1:
            meta[M_FREE] = self.nodes.shape[0]
            self.nodes = _grown_nodes(self.nodes)
        nodes = self.nodes
        node = meta[M_FREE]
        meta[M_FREE] = nodes[node, N_NEXT]
        nodes[node, N_KEY] = key
        nodes[node, N_SIZE] = size
        nodes[node, N_TAG] = 0
        _link_newest(nodes, meta, node)
        meta[M_COUNT] += 1
        meta[M_USED] += size
        table = self.table
        i = _slot_for(table, key)
        table[i, KEY] = key
        table[i, VAL] = node
        if 2 * meta[M_COUNT] > table.shape[0]:
            self.table = grown_table(table)

    def move_to_newest(self, key):
        """Make ``key`` (present) the newest entry."""
        node = self._node(key)
        meta = self.meta
        if node != meta[M_NEWEST]:
            nodes = self.nodes
            _detach(nodes, meta, node)
            _link_newest(nodes, meta, node)

    def size_of(self, key):
        return self.nodes[self._node(key), N_SIZE]

    def tag(self, key):
        return self.nodes[self._node(key), N_TAG]

    def set_tag(self, key, tag):
        self.nodes[self._node(key), N_TAG] = tag

    def oldest_key(self):
        """Key of the oldest entry (``EMPTY_KEY`` if empty)."""
        oldest = self.meta[M_OLDEST]
        if oldest == -1:
            return EMPTY_KEY
        return self.nodes[oldest, N_KEY]

    def remove(self, key):
        """Forget ``key``; return whether it was present."""
        table = self.table
        i = _slot_for(table, key)
        if table[i, KEY] != key:
            return False
        node = table[i, VAL]
        _delete_at(table, i)
        _release(self.nodes, self.meta, node)
        return True

    def pop_oldest(self):
        """Drop the oldest entry and return its key (``EMPTY_KEY`` if empty)."""
        meta = self.meta
        node = meta[M_OLDEST]
        if node == -1:
            return EMPTY_KEY
        nodes = self.nodes
        key = nodes[node, N_KEY]
        table = self.table
        _delete_at(table, _slot_for(table, key))
        _release(nodes, meta, node)
        return key
