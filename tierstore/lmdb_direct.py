"""Locate LMDB values from Numba: a read-only B+tree walk over the data file's memory map.

py-lmdb costs about 2 us of Python per ``get``; a batch that misses thousands of
pages would spend milliseconds in the interpreter.  LMDB is built to be read through
a memory map (``mdb_get`` returns a pointer into it), so this module maps
``data.mdb`` read-only and walks the B+tree in a parallel, ``nogil`` Numba kernel,
returning each value's offset and length in the map.  Page decoding then reads the
values in place, with no copy, or (``copy_reads``) from private copies made with
``pread``, which keeps the file's pages out of the process's RSS.

Consistency comes from LMDB itself: the caller holds a py-lmdb read transaction;
its snapshot's meta page names the roots, and LMDB never reuses a page that a live
reader's snapshot can reach.  The walk reads only pages reachable from those roots.

Only the on-disk format this was checked against is accepted: meta magic
``0xBEEFC0DE``, data version 1, 64-bit page numbers, little-endian headers.  Anything
else (or ``TIERSTORE_LMDB_DIRECT=0``) makes :func:`open_direct` return None and the
store reads through py-lmdb's ``getmulti`` instead.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from pathlib import Path

import numba
import numpy as np

MDB_MAGIC = 0xBEEFC0DE
MDB_DATA_VERSION = 1
PAGE_HEADER = 16
NODE_HEADER = 8
P_BRANCH, P_LEAF = 0x01, 0x02
F_BIGDATA, F_SUBDATA = 0x01, 0x02
P_INVALID = (1 << 64) - 1
_META_OFFSET = PAGE_HEADER
_DB_RECORD = 48
_MAX_DEPTH = 64

FOUND, NOT_FOUND, OUT_OF_MAP, BAD_PAGE = 0, 1, 2, 3


@numba.njit(inline="always")
def _u16(m, off):
    return np.int64(m[off]) | (np.int64(m[off + 1]) << 8)


@numba.njit(inline="always")
def _u64le(m, off):
    v = np.uint64(0)
    for k in range(8):
        v |= np.uint64(m[off + k]) << np.uint64(8 * k)
    return v


@numba.njit(inline="always")
def _u64be(m, off):
    v = np.uint64(0)
    for k in range(8):
        v = (v << np.uint64(8)) | np.uint64(m[off + k])
    return v


@numba.njit(inline="always")
def _node(m, base, i):
    return base + _u16(m, base + PAGE_HEADER + 2 * i)


@numba.njit(nogil=True)
def _walk_u64(m, psize, root, key):
    """Find 8-byte big-endian ``key`` in the tree at ``root``: (status, value offset, value length)."""
    if root == P_INVALID:
        return NOT_FOUND, 0, 0
    pg = np.int64(root)
    for _ in range(_MAX_DEPTH):
        base = pg * psize
        if base + psize > m.size:
            return OUT_OF_MAP, 0, 0
        flags = _u16(m, base + 10)
        n = (_u16(m, base + 12) - PAGE_HEADER) >> 1
        if flags & P_BRANCH:
            lo, hi = 1, n
            while lo < hi:
                mid = (lo + hi) >> 1
                if _u64be(m, _node(m, base, mid) + NODE_HEADER) <= key:
                    lo = mid + 1
                else:
                    hi = mid
            node = _node(m, base, lo - 1)
            pg = _u16(m, node) | (_u16(m, node + 2) << 16) | (_u16(m, node + 4) << 32)
        elif flags & P_LEAF:
            lo, hi = 0, n
            while lo < hi:
                mid = (lo + hi) >> 1
                if _u64be(m, _node(m, base, mid) + NODE_HEADER) < key:
                    lo = mid + 1
                else:
                    hi = mid
            if lo == n:
                return NOT_FOUND, 0, 0
            node = _node(m, base, lo)
            if _u16(m, node + 6) != 8 or _u64be(m, node + NODE_HEADER) != key:
                return NOT_FOUND, 0, 0
            size = _u16(m, node) | (_u16(m, node + 2) << 16)
            data = node + NODE_HEADER + 8
            if _u16(m, node + 4) & F_BIGDATA:
                start = np.int64(_u64le(m, data)) * psize + PAGE_HEADER
            else:
                start = data
            if start + size > m.size:
                return OUT_OF_MAP, 0, 0
            return FOUND, start, size
        else:
            return BAD_PAGE, 0, 0
    return BAD_PAGE, 0, 0


@numba.njit(nogil=True, parallel=True, cache=True)
def _find_u64(m, psize, root, keys, starts, lengths, status):
    for i in numba.prange(keys.size):
        status[i], starts[i], lengths[i] = _walk_u64(m, psize, root, keys[i])


@numba.njit(nogil=True, cache=True)
def _find_named(m, psize, root, name):
    """Find a named database's record in the main tree (memcmp order): (status, offset of its MDB_db)."""
    if root == P_INVALID:
        return NOT_FOUND, 0
    pg = np.int64(root)
    for _ in range(_MAX_DEPTH):
        base = pg * psize
        if base + psize > m.size:
            return OUT_OF_MAP, 0
        flags = _u16(m, base + 10)
        n = (_u16(m, base + 12) - PAGE_HEADER) >> 1
        first = 1 if flags & P_BRANCH else 0
        lo, hi = first, n
        while lo < hi:
            mid = (lo + hi) >> 1
            node = _node(m, base, mid)
            ksize = _u16(m, node + 6)
            cmp = 0
            for k in range(min(ksize, name.size)):
                a, b = m[node + NODE_HEADER + k], name[k]
                if a != b:
                    cmp = 1 if a > b else -1
                    break
            if cmp == 0:
                cmp = (ksize > name.size) - (ksize < name.size)
            if cmp < 0 or (flags & P_BRANCH and cmp == 0):
                lo = mid + 1
            else:
                hi = mid
        if flags & P_BRANCH:
            node = _node(m, base, lo - 1)
            pg = _u16(m, node) | (_u16(m, node + 2) << 16) | (_u16(m, node + 4) << 32)
            continue
        if not flags & P_LEAF:
            return BAD_PAGE, 0
        if lo == n:
            return NOT_FOUND, 0
        node = _node(m, base, lo)
        ksize = _u16(m, node + 6)
        if ksize != name.size or not (_u16(m, node + 4) & F_SUBDATA):
            return NOT_FOUND, 0
        for k in range(ksize):
            if m[node + NODE_HEADER + k] != name[k]:
                return NOT_FOUND, 0
        return FOUND, node + NODE_HEADER + ksize
    return BAD_PAGE, 0


_libc = ctypes.CDLL(None, use_errno=True)
pread = _libc.pread
pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64]
pread.restype = ctypes.c_ssize_t


@numba.njit(nogil=True, parallel=True)
def _pread_values(fd, starts, lengths, offsets, buf, n_chunks):
    """``pread`` value ``i`` (``lengths[i]`` bytes at file offset ``starts[i]``) to ``buf[offsets[i]:]``,
    ``n_chunks`` threads; returns how many reads came back short."""
    short = np.zeros(n_chunks, dtype=np.int64)
    for chunk in numba.prange(n_chunks):
        for i in range(starts.size * chunk // n_chunks, starts.size * (chunk + 1) // n_chunks):
            if pread(fd, buf[offsets[i]:].ctypes.data, lengths[i], starts[i]) != lengths[i]:
                short[chunk] += 1
    return short.sum()


class LmdbDirectReader:
    """Locates values of named databases in ``data.mdb`` for a py-lmdb read transaction's snapshot.

    Parameters
    ----------
    path : Path
        The store directory.
    copy_reads : bool
        Values are then read with ``pread`` into private buffers (:meth:`read_values`)
        instead of in place, and the map's pages are dropped after every walk, so the
        process maps (and holds in its RSS) almost none of the file.
    """

    def __init__(self, path: Path, copy_reads: bool = False):
        self.path = Path(path) / "data.mdb"
        self.copy_reads = copy_reads
        self._copies = np.zeros(0, dtype=np.uint8)
        self._file = None
        self._map = None
        self.view = np.zeros(0, dtype=np.uint8)
        self.psize = 0
        self._remap()

    def _remap(self) -> None:
        self.close()
        self._file = open(self.path, "rb")
        size = os.fstat(self._file.fileno()).st_size
        self._map = mmap.mmap(self._file.fileno(), size, prot=mmap.PROT_READ)
        self._map.madvise(mmap.MADV_RANDOM)
        self.view = np.frombuffer(self._map, dtype=np.uint8)
        magic = int(self.view[_META_OFFSET : _META_OFFSET + 4].view(np.uint32)[0])
        version = int(self.view[_META_OFFSET + 4 : _META_OFFSET + 8].view(np.uint32)[0])
        if magic != MDB_MAGIC or version != MDB_DATA_VERSION:
            raise ValueError(f"{self.path}: LMDB meta magic {magic:#x} / version {version} not supported")
        self.psize = int(self.view[_META_OFFSET + 24 : _META_OFFSET + 28].view(np.uint32)[0])

    def _main_root(self, txn_id: int) -> int | None:
        base = (txn_id & 1) * self.psize + _META_OFFSET
        meta = self.view[base : base + 136 + _DB_RECORD]
        if int(meta[128:136].view(np.uint64)[0]) != txn_id:
            return None
        return int(meta[24 + _DB_RECORD + 40 : 24 + _DB_RECORD + 48].view(np.uint64)[0])

    def roots(self, txn, names: list[bytes]) -> dict[bytes, int] | None:
        """Root page of each named database in ``txn``'s snapshot; None if the snapshot's meta was reused."""
        for _ in range(2):
            main = self._main_root(txn.id())
            if main is None:
                return None
            found = {}
            for name in names:
                status, record = _find_named(self.view, self.psize, np.uint64(main), np.frombuffer(name, np.uint8))
                if status == OUT_OF_MAP:
                    break
                if status != FOUND:
                    raise KeyError(f"database {name!r} not in {self.path}")
                found[name] = int(self.view[record + 40 : record + 48].view(np.uint64)[0])
            else:
                return found
            self._remap()
        raise OSError(f"{self.path}: the B+tree points past the end of the file")

    def locate(self, root: int, keys: np.ndarray):
        """Offsets and lengths in :attr:`view` of the values of 8-byte keys; status per key (FOUND ...)."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        for _ in range(2):
            starts = np.empty(keys.size, dtype=np.int64)
            lengths = np.empty(keys.size, dtype=np.int64)
            status = np.empty(keys.size, dtype=np.int8)
            _find_u64(self.view, self.psize, np.uint64(root), keys, starts, lengths, status)
            if self.copy_reads:
                self._map.madvise(mmap.MADV_DONTNEED)
            if not np.any(status == OUT_OF_MAP):
                return starts, lengths, status
            self._remap()
        return starts, lengths, status

    def read_values(self, starts: np.ndarray, ends: np.ndarray):
        """Copy the values ``[starts[i], ends[i])`` of the file into one buffer with ``pread``, in parallel.

        Returns
        -------
        buf : uint8 ndarray
            The reader's copy buffer (grown as needed, reused): valid until the next call.
        value_starts, value_ends : int64 ndarrays
            Where each value sits in ``buf`` (8-aligned when the lengths are).
        """
        lengths = ends - starts
        bounds = np.zeros(starts.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        if self._copies.size < bounds[-1]:
            self._copies = np.empty(int(bounds[-1]) * 5 // 4, dtype=np.uint8)
        buf = self._copies
        n_chunks = max(1, min(numba.get_num_threads(), starts.size))
        if _pread_values(self._file.fileno(), starts, lengths, bounds, buf, n_chunks):
            raise OSError(f"{self.path}: short read (the file shrank under a reader?)")
        return buf, bounds[:-1], bounds[1:]

    def prefetch(self, starts: np.ndarray, ends: np.ndarray) -> None:
        """Start reading the values ``[starts[i], ends[i])`` from disk now, all at once (``MADV_WILLNEED``).

        Called for pages read for the first time: cold pages then arrive with the
        device's full queue depth instead of one page fault at a time per thread.
        """
        page = mmap.PAGESIZE
        first = starts - starts % page
        for lo, hi in zip(first.tolist(), ends.tolist()):
            self._map.madvise(mmap.MADV_WILLNEED, lo, hi - lo)

    def close(self) -> None:
        """Unmap and close the file."""
        self.view = np.zeros(0, dtype=np.uint8)
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass
        if self._file is not None:
            self._file.close()
        self._map = self._file = None


def open_direct(path, copy_reads: bool = False) -> LmdbDirectReader | None:
    """A direct reader for the store at ``path``, or None where it does not apply (then use py-lmdb)."""
    if os.environ.get("TIERSTORE_LMDB_DIRECT", "1") == "0" or sys.byteorder != "little" or sys.maxsize < 2**63 - 1:
        return None
    try:
        return LmdbDirectReader(path, copy_reads)
    except (OSError, ValueError):
        return None
