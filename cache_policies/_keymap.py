"""Numba hash structures over int64 keys, shared by every policy.

``KeyMap`` is an open-addressing (linear probing, backward-shift deletion)
int64 -> int64 map; ``KeyList`` is an ordered list of keys (with sizes and a
small integer tag) that also answers membership, moves and removes any key in
O(1): the ghost queues of S3-FIFO, 2Q and ARC and the stacks of LIRS.  Ghosts
are tracked by *key*, never by slot, because a live cache reuses slots for
other keys.  Each structure keeps its entries in one 2-D int64 array (fields
side by side), so a step touches one array: cache friendly and light on
numba's reference counting.  The key ``EMPTY_KEY`` (int64 minimum) is
reserved.
"""

from __future__ import annotations

import numpy as np
from numba import int64
from numba.experimental import jitclass

EMPTY_KEY = np.iinfo(np.int64).min
_FIB = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15 as int64
KEY = 0
VAL = 1


@jitclass([("table", int64[:, ::1]), ("mask", int64), ("size", int64)])
class KeyMap:
    """int64 -> int64 open-addressing hash map; ``table[i] = (key, value)``.

    Parameters
    ----------
    n_expected : int
        Expected number of entries; the table doubles when half full.
    """

    def __init__(self, n_expected):
        n = 16
        while n < 2 * n_expected:
            n *= 2
        self.table = np.zeros((n, 2), dtype=np.int64)
        self.table[:, KEY] = EMPTY_KEY
        self.mask = n - 1
        self.size = 0

    def _find(self, key):
        table = self.table
        mask = self.mask
        h = key * _FIB
        i = (h ^ (h >> 29)) & mask
        while True:
            k = table[i, KEY]
            if k == key or k == EMPTY_KEY:
                return i
            i = (i + 1) & mask

    def contains(self, key):
        return self.table[self._find(key), KEY] == key

    def get(self, key, default):
        i = self._find(key)
        if self.table[i, KEY] == key:
            return self.table[i, VAL]
        return default

    def put(self, key, val):
        table = self.table
        i = self._find(key)
        if table[i, KEY] != key:
            table[i, KEY] = key
            self.size += 1
        table[i, VAL] = val
        if 2 * self.size > self.mask + 1:
            self._grow()

    def remove(self, key):
        """Delete ``key``; return whether it was present (values are never ``EMPTY_KEY``)."""
        return self.pop(key, EMPTY_KEY) != EMPTY_KEY

    def pop(self, key, default):
        """Delete ``key`` and return its value (``default`` if absent)."""
        table = self.table
        mask = self.mask
        i = self._find(key)
        if table[i, KEY] != key:
            return default
        value = table[i, VAL]
        j = i
        while True:
            j = (j + 1) & mask
            kj = table[j, KEY]
            if kj == EMPTY_KEY:
                break
            h = kj * _FIB
            home = (h ^ (h >> 29)) & mask
            # keep kj where it is if its home lies cyclically in (i, j]
            if i <= j:
                stays = i < home <= j
            else:
                stays = home > i or home <= j
            if stays:
                continue
            table[i, KEY] = kj
            table[i, VAL] = table[j, VAL]
            i = j
        table[i, KEY] = EMPTY_KEY
        self.size -= 1
        return value

    def _grow(self):
        old = self.table
        n = 2 * old.shape[0]
        self.table = np.zeros((n, 2), dtype=np.int64)
        self.table[:, KEY] = EMPTY_KEY
        self.mask = n - 1
        for t in range(old.shape[0]):
            k = old[t, KEY]
            if k != EMPTY_KEY:
                i = self._find(k)
                self.table[i, KEY] = k
                self.table[i, VAL] = old[t, VAL]


# KeyList node fields
N_KEY = 0
N_SIZE = 1
N_TAG = 2
N_PREV = 3
N_NEXT = 4


@jitclass(
    [
        ("index", KeyMap.class_type.instance_type),
        ("nodes", int64[:, ::1]),
        ("free", int64),
        ("newest", int64),
        ("oldest", int64),
        ("count", int64),
        ("used", int64),
        ("capacity", int64),
    ]
)
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
        self.index = KeyMap(n)
        self.nodes = np.zeros((n, 5), dtype=np.int64)
        for i in range(n):
            self.nodes[i, N_NEXT] = i + 1
        self.nodes[n - 1, N_NEXT] = -1
        self.free = 0
        self.newest = -1
        self.oldest = -1
        self.count = 0
        self.used = 0
        self.capacity = capacity

    def contains(self, key):
        return self.index.contains(key)

    def _alloc(self):
        if self.free == -1:
            n = self.nodes.shape[0]
            nodes = np.zeros((2 * n, 5), dtype=np.int64)
            nodes[:n] = self.nodes
            for i in range(n, 2 * n):
                nodes[i, N_NEXT] = i + 1
            nodes[2 * n - 1, N_NEXT] = -1
            self.nodes = nodes
            self.free = n
        node = self.free
        self.free = self.nodes[node, N_NEXT]
        return node

    def push(self, key, size):
        """Append ``key`` (absent) as the newest, first dropping the oldest keys
        while the budget would be exceeded; a key larger than the whole budget
        is not recorded."""
        if self.capacity >= 0:
            if size > self.capacity:
                return
            while self.used + size > self.capacity:
                self.pop_oldest()
        node = self._alloc()
        nodes = self.nodes
        nodes[node, N_KEY] = key
        nodes[node, N_SIZE] = size
        nodes[node, N_TAG] = 0
        self._link_newest(node)
        self.index.put(key, node)
        self.count += 1
        self.used += size

    def _link_newest(self, node):
        nodes = self.nodes
        nodes[node, N_PREV] = self.newest
        nodes[node, N_NEXT] = -1
        if self.newest != -1:
            nodes[self.newest, N_NEXT] = node
        else:
            self.oldest = node
        self.newest = node

    def _detach(self, node):
        nodes = self.nodes
        p = nodes[node, N_PREV]
        nx = nodes[node, N_NEXT]
        if p != -1:
            nodes[p, N_NEXT] = nx
        else:
            self.oldest = nx
        if nx != -1:
            nodes[nx, N_PREV] = p
        else:
            self.newest = p

    def move_to_newest(self, key):
        """Make ``key`` (present) the newest entry."""
        node = self.index.get(key, -1)
        if node != self.newest:
            self._detach(node)
            self._link_newest(node)

    def size_of(self, key):
        return self.nodes[self.index.get(key, -1), N_SIZE]

    def tag(self, key):
        return self.nodes[self.index.get(key, -1), N_TAG]

    def set_tag(self, key, tag):
        self.nodes[self.index.get(key, -1), N_TAG] = tag

    def oldest_key(self):
        """Key of the oldest entry (``EMPTY_KEY`` if empty)."""
        if self.oldest == -1:
            return EMPTY_KEY
        return self.nodes[self.oldest, N_KEY]

    def _unlink(self, node):
        self._detach(node)
        self.count -= 1
        self.used -= self.nodes[node, N_SIZE]
        self.nodes[node, N_NEXT] = self.free
        self.free = node

    def remove(self, key):
        """Forget ``key``; return whether it was present."""
        node = self.index.pop(key, -1)
        if node == -1:
            return False
        self._unlink(node)
        return True

    def pop_oldest(self):
        """Drop the oldest entry and return its key (``EMPTY_KEY`` if empty)."""
        node = self.oldest
        if node == -1:
            return EMPTY_KEY
        key = self.nodes[node, N_KEY]
        self.index.remove(key)
        self._unlink(node)
        return key
