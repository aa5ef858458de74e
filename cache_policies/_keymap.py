"""Numba hash structures over int64 keys, shared by every policy.

``KeyMap`` is an open-addressing (linear probing, backward-shift deletion)
int64 -> int64 map stored in two numpy arrays; it doubles when half full.
``KeyList`` is an ordered list of keys (with sizes and a small integer tag)
that also answers membership, moves and removes any key in O(1): the ghost
queues of S3-FIFO, 2Q and ARC and the stacks of LIRS.  Ghosts are tracked by
*key*, never by slot, because a live cache reuses slots for other keys.  The
key ``EMPTY_KEY`` (int64 minimum) is reserved.
"""

from __future__ import annotations

import numpy as np
from numba import int64
from numba.experimental import jitclass

EMPTY_KEY = np.iinfo(np.int64).min
_FIB = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15 as int64


@jitclass([("keys", int64[::1]), ("vals", int64[::1]), ("mask", int64), ("size", int64)])
class KeyMap:
    """int64 -> int64 open-addressing hash map.

    Parameters
    ----------
    n_expected : int
        Expected number of entries; the table grows past it as needed.
    """

    def __init__(self, n_expected):
        n = 16
        while n < 2 * n_expected:
            n *= 2
        self.keys = np.full(n, EMPTY_KEY, dtype=np.int64)
        self.vals = np.zeros(n, dtype=np.int64)
        self.mask = n - 1
        self.size = 0

    def _home(self, key):
        h = key * _FIB
        return (h ^ (h >> 29)) & self.mask

    def _find(self, key):
        i = self._home(key)
        while True:
            k = self.keys[i]
            if k == key or k == EMPTY_KEY:
                return i
            i = (i + 1) & self.mask

    def contains(self, key):
        return self.keys[self._find(key)] == key

    def get(self, key, default):
        i = self._find(key)
        if self.keys[i] == key:
            return self.vals[i]
        return default

    def put(self, key, val):
        i = self._find(key)
        if self.keys[i] == key:
            self.vals[i] = val
            return
        self.keys[i] = key
        self.vals[i] = val
        self.size += 1
        if 2 * self.size > self.mask + 1:
            self._grow()

    def add(self, key, delta):
        """Add ``delta`` to the value of ``key`` (0 if absent); return the new value."""
        i = self._find(key)
        if self.keys[i] == key:
            self.vals[i] += delta
            return self.vals[i]
        self.put(key, delta)
        return delta

    def remove(self, key):
        """Delete ``key``; return whether it was present."""
        i = self._find(key)
        if self.keys[i] != key:
            return False
        mask = self.mask
        j = i
        while True:
            j = (j + 1) & mask
            kj = self.keys[j]
            if kj == EMPTY_KEY:
                break
            home = self._home(kj)
            # keep kj where it is if its home lies cyclically in (i, j]
            if i <= j:
                stays = i < home <= j
            else:
                stays = home > i or home <= j
            if stays:
                continue
            self.keys[i] = kj
            self.vals[i] = self.vals[j]
            i = j
        self.keys[i] = EMPTY_KEY
        self.size -= 1
        return True

    def clear(self):
        self.keys[:] = EMPTY_KEY
        self.size = 0

    def _grow(self):
        old_keys = self.keys
        old_vals = self.vals
        n = 2 * (self.mask + 1)
        self.keys = np.full(n, EMPTY_KEY, dtype=np.int64)
        self.vals = np.zeros(n, dtype=np.int64)
        self.mask = n - 1
        for t in range(old_keys.shape[0]):
            k = old_keys[t]
            if k != EMPTY_KEY:
                i = self._find(k)
                self.keys[i] = k
                self.vals[i] = old_vals[t]


@jitclass(
    [
        ("index", KeyMap.class_type.instance_type),
        ("node_key", int64[::1]),
        ("node_size", int64[::1]),
        ("node_tag", int64[::1]),
        ("node_prev", int64[::1]),
        ("node_next", int64[::1]),
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
        self.node_key = np.zeros(n, dtype=np.int64)
        self.node_size = np.zeros(n, dtype=np.int64)
        self.node_tag = np.zeros(n, dtype=np.int64)
        self.node_prev = np.full(n, -1, dtype=np.int64)
        self.node_next = np.empty(n, dtype=np.int64)
        for i in range(n):
            self.node_next[i] = i + 1
        self.node_next[n - 1] = -1
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
            n = self.node_key.shape[0]
            m = 2 * n
            nk = np.zeros(m, dtype=np.int64)
            ns = np.zeros(m, dtype=np.int64)
            nt = np.zeros(m, dtype=np.int64)
            npv = np.full(m, -1, dtype=np.int64)
            nn = np.empty(m, dtype=np.int64)
            nk[:n] = self.node_key
            ns[:n] = self.node_size
            nt[:n] = self.node_tag
            npv[:n] = self.node_prev
            nn[:n] = self.node_next
            for i in range(n, m):
                nn[i] = i + 1
            nn[m - 1] = -1
            self.node_key = nk
            self.node_size = ns
            self.node_tag = nt
            self.node_prev = npv
            self.node_next = nn
            self.free = n
        node = self.free
        self.free = self.node_next[node]
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
        self.node_key[node] = key
        self.node_size[node] = size
        self.node_tag[node] = 0
        self._link_newest(node)
        self.index.put(key, node)
        self.count += 1
        self.used += size

    def _link_newest(self, node):
        self.node_prev[node] = self.newest
        self.node_next[node] = -1
        if self.newest != -1:
            self.node_next[self.newest] = node
        else:
            self.oldest = node
        self.newest = node

    def _detach(self, node):
        p = self.node_prev[node]
        nx = self.node_next[node]
        if p != -1:
            self.node_next[p] = nx
        else:
            self.oldest = nx
        if nx != -1:
            self.node_prev[nx] = p
        else:
            self.newest = p

    def move_to_newest(self, key):
        """Make ``key`` (present) the newest entry."""
        node = self.index.get(key, -1)
        if node != self.newest:
            self._detach(node)
            self._link_newest(node)

    def size_of(self, key):
        return self.node_size[self.index.get(key, -1)]

    def tag(self, key):
        return self.node_tag[self.index.get(key, -1)]

    def set_tag(self, key, tag):
        self.node_tag[self.index.get(key, -1)] = tag

    def oldest_key(self):
        """Key of the oldest entry (``EMPTY_KEY`` if empty)."""
        if self.oldest == -1:
            return EMPTY_KEY
        return self.node_key[self.oldest]

    def newest_key(self):
        """Key of the newest entry (``EMPTY_KEY`` if empty)."""
        if self.newest == -1:
            return EMPTY_KEY
        return self.node_key[self.newest]

    def _unlink(self, node):
        self._detach(node)
        self.count -= 1
        self.used -= self.node_size[node]
        self.node_next[node] = self.free
        self.free = node

    def remove(self, key):
        """Forget ``key``; return whether it was present."""
        node = self.index.get(key, -1)
        if node == -1:
            return False
        self.index.remove(key)
        self._unlink(node)
        return True

    def pop_oldest(self):
        """Drop the oldest entry and return its key (``EMPTY_KEY`` if empty)."""
        node = self.oldest
        if node == -1:
            return EMPTY_KEY
        key = self.node_key[node]
        self.index.remove(key)
        self._unlink(node)
        return key
