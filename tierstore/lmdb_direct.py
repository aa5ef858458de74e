"""Read LMDB's data file from Numba, safely on any bytes: a bounded B+tree walk over a read-only map.

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

Nothing here trusts the file.  Before anything maps it, :func:`read_meta` reads
LMDB's two meta pages with ``pread`` and checks that the file holds every page the
newest one claims (a truncated file would otherwise fault with SIGBUS).  The walks
check every page number against the snapshot's last page, every page's own number
and type, every node offset, key and value size against its page, and every
overflow run against the file, so damaged bytes give :class:`CorruptStoreError`,
never an out-of-bounds read.  LMDB itself trusts its pages, so the store validates
the main tree with :meth:`LmdbDirectReader.pin` before py-lmdb reads it.

Only the on-disk format this was checked against is accepted: meta magic
``0xBEEFC0DE``, data version 1, 64-bit page numbers, little-endian headers.  Anything
else (or ``TIERSTORE_LMDB_DIRECT=0``) makes :func:`open_direct` return None and the
store reads through py-lmdb's ``getmulti`` instead.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from tierstore.errors import CorruptStoreError

MDB_MAGIC = 0xBEEFC0DE
MDB_DATA_VERSION = 1
PAGE_HEADER = 16
NODE_HEADER = 8
P_BRANCH, P_LEAF, P_OVERFLOW, P_META = 0x01, 0x02, 0x04, 0x08
P_LEAF2, P_SUBP = 0x20, 0x40
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
P_INVALID = (1 << 64) - 1
DB_RECORD = 48
_META_OFFSET = PAGE_HEADER
_META = struct.Struct("<QHH4xIIQQ48s48sQQ")  # page number, pad, flags | magic, version, address, map size,
#                                             free db, main db, last page, txn id
_DB = struct.Struct("<IHHQQQQQ")  # pad (page size in the free db), flags, depth, branch, leaf, overflow, entries, root
_MAX_DEPTH = 32
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 512, 1 << 16

FOUND, NOT_FOUND, BAD_PAGE = 0, 1, 3
_SCAN_OK, _SCAN_BAD, _SCAN_SHARED = 0, 1, 2


def supported() -> bool:
    """Whether this platform lays LMDB out as this module reads it (64-bit, little-endian)."""
    return sys.byteorder == "little" and sys.maxsize == 2**63 - 1


@dataclass(frozen=True)
class DbRecord:
    """A database's ``MDB_db`` record: its root page (``P_INVALID`` when empty) and page counts."""

    flags: int
    depth: int
    branch_pages: int
    leaf_pages: int
    overflow_pages: int
    entries: int
    root: int

    @classmethod
    def parse(cls, raw: bytes) -> "DbRecord":
        _, flags, depth, branch, leaf, overflow, entries, root = _DB.unpack(raw)
        return cls(flags, depth, branch, leaf, overflow, entries, root)


@dataclass(frozen=True)
class LmdbMeta:
    """The newest valid meta page of an LMDB data file."""

    psize: int
    txn_id: int
    last_page: int
    free: DbRecord
    main: DbRecord

    @property
    def n_pages(self) -> int:
        """Pages in use: every page number of this snapshot is below it."""
        return self.last_page + 1


def _parse_meta(raw: bytes, page: int) -> tuple[LmdbMeta | None, str]:
    pgno, _, flags, magic, version, _, _, free, main, last_page, txn_id = _META.unpack_from(raw)
    if magic != MDB_MAGIC or not flags & P_META or pgno != page:
        return None, f"LMDB meta page {page} is damaged (magic {magic:#x}, flags {flags:#x})"
    if version != MDB_DATA_VERSION:
        return None, f"LMDB data version {version} (meta page {page}) is not the one this tierstore reads"
    free_db = DbRecord.parse(free)
    psize = _DB.unpack(free)[0]
    if not MIN_PAGE_SIZE <= psize <= MAX_PAGE_SIZE or psize & (psize - 1):
        return None, f"LMDB meta page {page} names page size {psize}"
    return LmdbMeta(psize, txn_id, last_page, free_db, DbRecord.parse(main)), ""


def read_meta(path, attempts: int = 3) -> LmdbMeta:
    """LMDB's newest meta page of ``path``/data.mdb, read with ``pread`` (nothing is mapped).

    Raises :class:`CorruptStoreError` if a meta page is damaged or the file is
    shorter than the pages the newest meta page says are in use (a truncated file).
    A writer may be rewriting a meta page at that moment, so a failed check is
    repeated ``attempts`` times before it counts.
    """
    data = Path(path) / "data.mdb"
    problem = ""
    for _ in range(attempts):
        with open(data, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            metas, problem = _meta_pages(file.fileno(), size)
        if metas is None:
            continue
        newest = max(metas, key=lambda m: m.txn_id)
        need = newest.n_pages * newest.psize
        if size < need:
            problem = (f"{size} bytes, but LMDB's meta page (txn {newest.txn_id}) says {newest.n_pages} pages of "
                       f"{newest.psize} bytes ({need} bytes) are in use: the file was truncated")
            continue
        if not _root_ok(newest.main.root, newest.n_pages) or not _root_ok(newest.free.root, newest.n_pages):
            problem = f"LMDB's meta page (txn {newest.txn_id}) names a root page past its last page"
            continue
        return newest
    raise CorruptStoreError(f"{data}: {problem}")


def _meta_pages(fd: int, size: int):
    """Both meta pages of the open data file ``fd`` (``size`` bytes), or None and what is wrong."""
    metas = []
    for page in (0, 1):
        raw = os.pread(fd, _META.size, page and metas[0].psize)
        if len(raw) < _META.size:
            return None, f"{size} bytes, too short for LMDB's meta page {page} (truncated?)"
        meta, problem = _parse_meta(raw, page)
        if meta is None:
            return None, problem
        metas.append(meta)
    if metas[0].psize != metas[1].psize:
        return None, f"LMDB's meta pages disagree on the page size ({metas[0].psize}, {metas[1].psize})"
    return metas, ""


def _root_ok(root: int, n_pages: int) -> bool:
    return root == P_INVALID or 2 <= root < n_pages


# --------------------------------------------------------------------- kernels
@numba.njit(inline="always")
def _u16(m, off):
    return np.int64(m[off]) | (np.int64(m[off + 1]) << 8)


@numba.njit(inline="always")
def _u32(m, off):
    return _u16(m, off) | (_u16(m, off + 2) << 16)


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
def _page(m, psize, n_pages, pg):
    """Base offset, flags, node count and start of the node area of tree page ``pg``; base -1 if it is
    not a well-formed branch or leaf page of this snapshot."""
    if pg < np.uint64(2) or pg >= np.uint64(n_pages):
        return -1, 0, 0, 0
    base = np.int64(pg) * psize
    flags = _u16(m, base + 10)
    lower = _u16(m, base + 12)
    upper = _u16(m, base + 14)
    kind = flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_META | P_LEAF2 | P_SUBP)
    if (
        _u64le(m, base) != np.uint64(pg)
        or (kind != P_BRANCH and kind != P_LEAF)
        or lower < PAGE_HEADER
        or lower & 1
        or lower > upper
        or upper > psize
    ):
        return -1, 0, 0, 0
    n = (lower - PAGE_HEADER) >> 1
    if kind == P_BRANCH and n == 0:
        return -1, 0, 0, 0
    return base, flags, n, upper


@numba.njit(inline="always")
def _node(m, base, psize, upper, i):
    """Offset of node ``i`` of the page at ``base`` and its key size; -1 if the node or its key leaves the page."""
    off = _u16(m, base + PAGE_HEADER + 2 * i)
    if off < upper or off + NODE_HEADER > psize:
        return -1, 0
    ksize = _u16(m, base + off + 6)
    if off + NODE_HEADER + ksize > psize:
        return -1, 0
    return base + off, ksize


@numba.njit(inline="always")
def _child(m, node):
    return np.uint64(_u16(m, node) | (_u16(m, node + 2) << 16) | (_u16(m, node + 4) << 32))


@numba.njit(inline="always")
def _value(m, psize, n_pages, base, node, ksize):
    """Offset and size of a leaf node's value (in place or in its overflow run); offset -1 if out of bounds."""
    size = _u32(m, node)
    data = node + NODE_HEADER + ksize
    if _u16(m, node + 4) & F_BIGDATA:
        if data + 8 > base + psize:
            return -1, 0
        opg = _u64le(m, data)
        if opg < np.uint64(2) or opg >= np.uint64(n_pages):
            return -1, 0
        obase = np.int64(opg) * psize
        count = _u32(m, obase + 12)
        if (
            _u64le(m, obase) != opg
            or not _u16(m, obase + 10) & P_OVERFLOW
            or count < 1
            or np.int64(opg) + count > n_pages
            or PAGE_HEADER + size > count * psize
        ):
            return -1, 0
        return obase + PAGE_HEADER, size
    if data + size > base + psize:
        return -1, 0
    return data, size


@numba.njit(inline="always")
def _search_u64(m, base, psize, upper, lo, n, key, branch):
    """First node in ``[lo, n)`` whose 8-byte key is above ``key`` (branch pages) or not below it (leaves);
    -1 if a node on the way is malformed."""
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        node, ksize = _node(m, base, psize, upper, mid)
        if node < 0 or ksize != 8:
            return -1
        found = _u64be(m, node + NODE_HEADER)
        if found < key or (branch and found == key):
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(nogil=True)
def _walk_u64(m, psize, n_pages, root, key):
    """Find 8-byte big-endian ``key`` in the tree at ``root``: (status, value offset, value length)."""
    if root == np.uint64(P_INVALID):
        return NOT_FOUND, 0, 0
    pg = root
    for _ in range(_MAX_DEPTH):
        base, flags, n, upper = _page(m, psize, n_pages, pg)
        if base < 0:
            return BAD_PAGE, 0, 0
        branch = flags & P_BRANCH
        lo = _search_u64(m, base, psize, upper, 1 if branch else 0, n, key, branch)
        if lo < 0:
            return BAD_PAGE, 0, 0
        if branch:
            node, ksize = _node(m, base, psize, upper, lo - 1)
            if node < 0:
                return BAD_PAGE, 0, 0
            pg = _child(m, node)
            continue
        if lo == n:
            return NOT_FOUND, 0, 0
        node, ksize = _node(m, base, psize, upper, lo)
        if node < 0 or ksize != 8:
            return BAD_PAGE, 0, 0
        if _u64be(m, node + NODE_HEADER) != key:
            return NOT_FOUND, 0, 0
        if _u16(m, node + 4) & (F_SUBDATA | F_DUPDATA):
            return BAD_PAGE, 0, 0
        start, size = _value(m, psize, n_pages, base, node, ksize)
        if start < 0:
            return BAD_PAGE, 0, 0
        return FOUND, start, size
    return BAD_PAGE, 0, 0


@numba.njit(nogil=True, parallel=True, cache=True)
def _find_u64(m, psize, n_pages, root, keys, starts, lengths, status):
    for i in numba.prange(keys.size):
        status[i], starts[i], lengths[i] = _walk_u64(m, psize, n_pages, root, keys[i])


@numba.njit(inline="always")
def _compare(m, node, ksize, key):
    for k in range(min(ksize, key.size)):
        a, b = m[node + NODE_HEADER + k], key[k]
        if a != b:
            return 1 if a > b else -1
    return (ksize > key.size) - (ksize < key.size)


@numba.njit(nogil=True, cache=True)
def _find_key(m, psize, n_pages, root, key):
    """Find byte-string ``key`` in a memcmp-ordered tree: (status, value offset, value length, node flags)."""
    if root == np.uint64(P_INVALID):
        return NOT_FOUND, 0, 0, 0
    pg = root
    for _ in range(_MAX_DEPTH):
        base, flags, n, upper = _page(m, psize, n_pages, pg)
        if base < 0:
            return BAD_PAGE, 0, 0, 0
        branch = flags & P_BRANCH
        lo, hi = (1 if branch else 0), n
        while lo < hi:
            mid = (lo + hi) >> 1
            node, ksize = _node(m, base, psize, upper, mid)
            if node < 0:
                return BAD_PAGE, 0, 0, 0
            cmp = _compare(m, node, ksize, key)
            if cmp < 0 or (branch and cmp == 0):
                lo = mid + 1
            else:
                hi = mid
        if branch:
            node, ksize = _node(m, base, psize, upper, lo - 1)
            if node < 0:
                return BAD_PAGE, 0, 0, 0
            pg = _child(m, node)
            continue
        if lo == n:
            return NOT_FOUND, 0, 0, 0
        node, ksize = _node(m, base, psize, upper, lo)
        if node < 0:
            return BAD_PAGE, 0, 0, 0
        if _compare(m, node, ksize, key) != 0:
            return NOT_FOUND, 0, 0, 0
        start, size = _value(m, psize, n_pages, base, node, ksize)
        if start < 0:
            return BAD_PAGE, 0, 0, 0
        return FOUND, start, size, _u16(m, node + 4)
    return BAD_PAGE, 0, 0, 0


@numba.njit(nogil=True, cache=True)
def _tree_leaves(m, psize, n_pages, root, seen, leaves):
    """Leaf pages of the tree at ``root`` in key order, checking every branch page on the way.

    With a non-empty ``seen`` (one byte per page) every page the tree uses is marked
    there, and a page already marked is damage (trees share no pages).  Without,
    the walk gives up after ``n_pages`` pages, so damaged pointers cannot make it
    loop.  Leaves past ``leaves.size`` are counted but not stored.  Returns
    (status, leaves found, the page where a problem is).
    """
    stack_pg = np.zeros(_MAX_DEPTH, dtype=np.uint64)
    stack_i = np.zeros(_MAX_DEPTH, dtype=np.int64)
    stack_n = np.zeros(_MAX_DEPTH, dtype=np.int64)
    count = visits = 0
    leaf_depth = -1
    depth = 0
    stack_pg[0] = root
    stack_i[0] = -1
    while depth >= 0:
        pg = stack_pg[depth]
        if stack_i[depth] < 0:
            base, flags, n, upper = _page(m, psize, n_pages, pg)
            visits += 1
            if base < 0 or visits > n_pages:
                return _SCAN_BAD, count, pg
            if seen.size:
                if seen[pg]:
                    return _SCAN_SHARED, count, pg
                seen[pg] = 1
            if flags & P_LEAF:
                if leaf_depth < 0:
                    leaf_depth = depth
                if depth != leaf_depth:
                    return _SCAN_BAD, count, pg
                if count < leaves.size:
                    leaves[count] = pg
                count += 1
                depth -= 1
                continue
            stack_n[depth] = n
            stack_i[depth] = 0
        i = stack_i[depth]
        if i == stack_n[depth]:
            depth -= 1
            continue
        stack_i[depth] = i + 1
        base = np.int64(pg) * psize
        node, ksize = _node(m, base, psize, _u16(m, base + 14), i)
        if node < 0 or depth + 1 == _MAX_DEPTH:
            return _SCAN_BAD, count, pg
        depth += 1
        stack_pg[depth] = _child(m, node)
        stack_i[depth] = -1
    return _SCAN_OK, count, 0


@numba.njit(nogil=True, cache=True)
def _leaf_entries(m, psize, n_pages, leaves, seen, key_off, key_len, val_off, val_len, flags_out):
    """Every node of ``leaves`` (checked leaf pages, at most ``key_off.size`` nodes in all): key and value
    offsets and sizes, node flags.  Overflow runs are checked, and marked in a non-empty ``seen``.
    Returns (status, entries, problem page)."""
    count = 0
    for j in range(leaves.size):
        pg = leaves[j]
        base, _, n, upper = _page(m, psize, n_pages, pg)
        if base < 0 or count + n > key_off.size:
            return _SCAN_BAD, count, pg
        for i in range(n):
            node, ksize = _node(m, base, psize, upper, i)
            if node < 0:
                return _SCAN_BAD, count, pg
            start, size = _value(m, psize, n_pages, base, node, ksize)
            if start < 0:
                return _SCAN_BAD, count, pg
            flags = _u16(m, node + 4)
            if flags & F_BIGDATA and seen.size:
                first = (start - PAGE_HEADER) // psize
                for k in range(first, first + _u32(m, start - PAGE_HEADER + 12)):
                    if seen[k]:
                        return _SCAN_SHARED, count, k
                    seen[k] = 1
            key_off[count] = node + NODE_HEADER
            key_len[count] = ksize
            val_off[count] = start
            val_len[count] = size
            flags_out[count] = flags
            count += 1
    return _SCAN_OK, count, 0


# --------------------------------------------------------------------- pread
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


# --------------------------------------------------------------------- reader
@dataclass(frozen=True)
class Snapshot:
    """What a read transaction sees: its id, the main tree's root and how many pages are in use."""

    txn_id: int
    main_root: int
    n_pages: int


@dataclass
class TreeEntries:
    """Nodes of a tree's leaves: offsets in the map and sizes of keys and values, node flags."""

    key_off: np.ndarray
    key_len: np.ndarray
    val_off: np.ndarray
    val_len: np.ndarray
    flags: np.ndarray


_NOT_TRACKED = np.zeros(0, dtype=np.uint8)
_SCAN_PROBLEMS = {
    _SCAN_BAD: "is not a well-formed B+tree page",
    _SCAN_SHARED: "is reached twice (pages of the tree overlap)",
}


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
        self._checked_main: tuple[int, int] | None = None
        self.view = np.zeros(0, dtype=np.uint8)
        self.psize = read_meta(path).psize
        self._remap()

    def _remap(self) -> None:
        """Map the whole file as it is now (it only grows; the meta pages were checked before)."""
        self.close()
        self._file = open(self.path, "rb")
        size = os.fstat(self._file.fileno()).st_size
        self._map = mmap.mmap(self._file.fileno(), size, prot=mmap.PROT_READ)
        self._map.madvise(mmap.MADV_RANDOM)
        self.view = np.frombuffer(self._map, dtype=np.uint8)

    def _fail(self, problem: str):
        raise CorruptStoreError(f"{self.path}: {problem}")

    def last_txn_id(self) -> int:
        """The newest committed transaction id, from the two meta pages (well under a microsecond).

        LMDB writes a commit's meta page last, so a larger id than a reader last saw
        means some commit finished since.
        """
        return max(struct.unpack_from("<Q", self._map, _META_OFFSET + 128)[0],
                   struct.unpack_from("<Q", self._map, self.psize + _META_OFFSET + 128)[0])

    def pin(self, txn_id: int) -> Snapshot | None:
        """The snapshot of read transaction ``txn_id``, its main tree checked; None if its meta page was reused.

        The map is grown to cover the snapshot's pages first.  The main tree is
        walked (once per snapshot) because py-lmdb reads it to open databases.
        """
        base = (txn_id & 1) * self.psize
        pgno, _, flags, magic, version, _, _, _, main, last_page, meta_txn = _META.unpack_from(self._map, base)
        if meta_txn != txn_id:
            return None
        if magic != MDB_MAGIC or not flags & P_META or version != MDB_DATA_VERSION or pgno != txn_id & 1:
            self._fail(f"LMDB meta page {txn_id & 1} is damaged")
        n_pages = last_page + 1
        if n_pages * self.psize > self.view.size:
            self._remap()
            if n_pages * self.psize > self.view.size:
                self._fail(f"{self.view.size} bytes, but LMDB's meta page (txn {txn_id}) says {n_pages} pages of "
                           f"{self.psize} bytes are in use: the file was truncated")
        root = DbRecord.parse(main).root
        if not _root_ok(root, n_pages):
            self._fail(f"LMDB's meta page (txn {txn_id}) names main root {root}, past its last page")
        snapshot = Snapshot(txn_id, root, n_pages)
        if self._checked_main != (txn_id, root):
            self.entries(snapshot, root, "LMDB's main database")
            self._checked_main = (txn_id, root)
        return snapshot

    def find_db(self, snapshot: Snapshot, name: bytes) -> DbRecord | None:
        """The record of named database ``name`` in ``snapshot``, or None if there is none."""
        status, start, size, flags = self.find(snapshot, snapshot.main_root, name)
        if status == NOT_FOUND:
            return None
        if size != DB_RECORD or not flags & F_SUBDATA or flags & F_BIGDATA:
            self._fail(f"the record of database {name!r} is damaged")
        record = DbRecord.parse(self.view[start : start + DB_RECORD].tobytes())
        if not _root_ok(record.root, snapshot.n_pages):
            self._fail(f"database {name!r} names root page {record.root}, past the last page {snapshot.n_pages - 1}")
        return record

    def find(self, snapshot: Snapshot, root: int, key: bytes):
        """(status, value offset, value size, node flags) of ``key`` in the memcmp-ordered tree at ``root``."""
        status, start, size, flags = _find_key(self.view, self.psize, snapshot.n_pages, np.uint64(root),
                                               np.frombuffer(key, np.uint8))
        if status == BAD_PAGE:
            self._fail(f"a B+tree page on the way to key {key!r} is damaged")
        return status, start, size, flags

    def locate(self, snapshot: Snapshot, root: int, keys: np.ndarray):
        """Offsets and lengths in :attr:`view` of the values of 8-byte keys; status per key (FOUND ...)."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        starts = np.empty(keys.size, dtype=np.int64)
        lengths = np.empty(keys.size, dtype=np.int64)
        status = np.empty(keys.size, dtype=np.int8)
        _find_u64(self.view, self.psize, snapshot.n_pages, np.uint64(root), keys, starts, lengths, status)
        if self.copy_reads:
            self._map.madvise(mmap.MADV_DONTNEED)
        if np.any(status == BAD_PAGE):
            self._fail(f"a B+tree page on the way to page key {int(keys[np.argmax(status == BAD_PAGE)])} is damaged")
        return starts, lengths, status

    def leaves(self, snapshot: Snapshot, root: int, what: str, seen: np.ndarray | None = None) -> np.ndarray:
        """Leaf pages of the tree at ``root``, every branch page checked (``what`` names the tree in errors).

        ``seen`` (uint8 per page of the snapshot) collects the pages the tree uses and
        finds a page used twice, across trees too.
        """
        if root == P_INVALID:
            return np.zeros(0, dtype=np.uint64)
        seen = _NOT_TRACKED if seen is None else seen
        leaves = np.empty(64, dtype=np.uint64)
        status, count, page = _tree_leaves(self.view, self.psize, snapshot.n_pages, np.uint64(root), seen, leaves)
        if status == _SCAN_OK and count > leaves.size:
            leaves = np.empty(count, dtype=np.uint64)
            status, count, page = _tree_leaves(self.view, self.psize, snapshot.n_pages, np.uint64(root),
                                               _NOT_TRACKED, leaves)
        if status != _SCAN_OK:
            self._fail(f"{what}: page {int(page)} {_SCAN_PROBLEMS[status]}")
        return leaves[:count]

    def leaf_entries(self, snapshot: Snapshot, leaves: np.ndarray, what: str,
                     seen: np.ndarray | None = None) -> TreeEntries:
        """Every node of ``leaves`` (from :meth:`leaves`), checked, with their overflow runs."""
        bases = leaves.astype(np.int64) * self.psize + 12
        lower = self.view[bases].astype(np.int64) | (self.view[bases + 1].astype(np.int64) << 8)
        out = [np.empty(int(np.sum((lower - PAGE_HEADER) >> 1)), dtype=np.int64) for _ in range(5)]
        status, count, page = _leaf_entries(self.view, self.psize, snapshot.n_pages, leaves,
                                            _NOT_TRACKED if seen is None else seen, *out)
        if status != _SCAN_OK:
            self._fail(f"{what}: page {int(page)} {_SCAN_PROBLEMS[status]}")
        return TreeEntries(*(a[:count] for a in out))

    def entries(self, snapshot: Snapshot, root: int, what: str) -> TreeEntries:
        """Every node of the (small) tree at ``root``, all of it checked."""
        return self.leaf_entries(snapshot, self.leaves(snapshot, root, what), what)

    def items(self, snapshot: Snapshot, root: int, what: str) -> dict[bytes, np.ndarray]:
        """``{key: value}`` of the (small) tree at ``root``, values copied out of the map."""
        found = self.entries(snapshot, root, what)
        view = self.view
        return {view[k : k + n].tobytes(): view[v : v + size].copy()
                for k, n, v, size in zip(found.key_off.tolist(), found.key_len.tolist(), found.val_off.tolist(),
                                         found.val_len.tolist())}

    def free_pages(self, snapshot: Snapshot, older_than: int | None = None,
                   seen: np.ndarray | None = None) -> np.ndarray:
        """Pages on LMDB's free-page lists in ``snapshot`` (only those freed by transactions before
        ``older_than``: LMDB lets no reader reach them, so it may reuse them), every list checked.

        The free-page database maps a transaction id (native 8-byte integer key) to
        the pages it freed (an ``IDL``: a count, then the page numbers).
        """
        base = (snapshot.txn_id & 1) * self.psize + _META_OFFSET + 24
        root = DbRecord.parse(self.view[base : base + DB_RECORD].tobytes()).root
        if not _root_ok(root, snapshot.n_pages):
            self._fail(f"LMDB's meta page (txn {snapshot.txn_id}) names free-page root {root}, past its last page")
        what = "LMDB's free-page database"
        found = self.leaf_entries(snapshot, self.leaves(snapshot, root, what, seen), what, seen)
        lists = []
        for k, n, v, size in zip(found.key_off.tolist(), found.key_len.tolist(), found.val_off.tolist(),
                                 found.val_len.tolist()):
            ids = self.view[v : v + size - size % 8].view(np.uint64)
            if n != 8 or size % 8 or ids.size == 0 or int(ids[0]) != ids.size - 1:
                self._fail(f"{what} holds a malformed list")
            if older_than is None or int(self.view[k : k + 8].view(np.uint64)[0]) < older_than:
                lists.append(ids[1:])
        pages = np.concatenate(lists).astype(np.int64) if lists else np.zeros(0, np.int64)
        if pages.size and (pages.min() < 2 or pages.max() >= snapshot.n_pages):
            self._fail(f"{what} lists pages past the end of the file")
        return pages

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
    """A direct reader for the store at ``path``, or None where it does not apply (then use py-lmdb).

    A damaged file raises :class:`CorruptStoreError` rather than falling back.
    """
    if os.environ.get("TIERSTORE_LMDB_DIRECT", "1") == "0" or not supported():
        return None
    return LmdbDirectReader(path, copy_reads)
