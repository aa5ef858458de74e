"""Stores' LMDB environments: one per store per process, opened only once the files check out.

LMDB forbids opening one environment twice in a process (closing the second
handle would drop the first one's locks), so store handles on the same directory
share one ``lmdb.Environment``, counted here; the first handle decides whether it
is writable.

Before LMDB maps anything, the data file's meta pages are read with ``pread`` and
its size checked against them (a truncated file would fault with SIGBUS in
LMDB), and the lock file gets its blocks allocated (LMDB maps it; on a full disk
a sparse lock file faults with SIGBUS on first touch).

Write failures are named (:func:`write_failure`): a full LMDB map, a full disk
(LMDB reports a short write on a full disk as an I/O error), or the error itself.
:func:`release_pages` gives a failed write's pages back to the file system.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import lmdb
import numpy as np

from tierstore.errors import CorruptStoreError, IncompatibleStoreError
from tierstore.lmdb_direct import read_meta, supported
from tierstore.meta import COMMIT_FILE

MAX_DBS = 1024
LOCK_FILE_BYTES = 8192
"""What LMDB's lock file needs for its default 126 readers (it maps that much)."""
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


@dataclass
class _Shared:
    env: lmdb.Environment
    readonly: bool
    handles: int
    writer: threading.RLock = field(default_factory=threading.RLock)


_OPEN: dict[str, _Shared] = {}
_GUARD = threading.Lock()


def acquire(path: Path, readonly: bool, map_size: int, create: bool = False) -> lmdb.Environment:
    """The environment of the store at ``path``: this process's open one, or a new one after checking the files.

    Raises
    ------
    CorruptStoreError
        LMDB's meta pages are damaged, or the data file is shorter than they say.
    IncompatibleStoreError
        The data file is of another LMDB format.
    ValueError
        The store is open read-only in this process and a writable handle is asked for.
    """
    key = os.path.realpath(path)
    with _GUARD:
        shared = _OPEN.get(key)
        if shared is not None:
            if shared.readonly and not readonly:
                raise ValueError(f"{path} is already open read-only in this process: close that handle first, or "
                                 f"open the writable handle first (later handles share it)")
            shared.handles += 1
            return shared.env
        if not create and supported():
            read_meta(path)
        _reserve_lock_file(Path(path))
        try:
            env = lmdb.open(str(path), map_size=map_size, max_dbs=MAX_DBS, readonly=readonly, readahead=False,
                            meminit=False, create=create, lock=True)
        except lmdb.VersionMismatchError as err:
            raise IncompatibleStoreError(f"{path}: not an LMDB format this tierstore reads ({err})") from None
        except (lmdb.InvalidError, lmdb.CorruptedError, lmdb.PageNotFoundError) as err:
            raise CorruptStoreError(f"{path}: LMDB cannot open the store ({err})") from None
        _OPEN[key] = _Shared(env, readonly, 1)
        return env


def writer_lock(env: lmdb.Environment) -> threading.RLock:
    """This process's lock around ``env``'s write transactions, shared by every handle on it.

    LMDB lets one write transaction run at a time and py-lmdb waits for LMDB's
    writer lock holding Python's GIL (``Environment.open_db`` without a
    transaction begins one of its own): a thread waiting there while another
    thread's write transaction needs the GIL to go on would wait for ever.
    Every write transaction, and every ``open_db`` outside one, is begun under
    this lock, so threads of one process queue here, where waiting releases the GIL.
    """
    with _GUARD:
        for shared in _OPEN.values():
            if shared.env is env:
                return shared.writer
    raise ValueError("not an environment opened by tierstore.environment.acquire")


def release(env: lmdb.Environment) -> None:
    """Drop one handle's claim on ``env``; the last one closes it."""
    with _GUARD:
        for key, shared in _OPEN.items():
            if shared.env is env:
                shared.handles -= 1
                if shared.handles == 0:
                    del _OPEN[key]
                    env.close()
                return


def _reserve_lock_file(path: Path) -> None:
    """Allocate the lock file's blocks now, so that a full disk is an error here and not a SIGBUS in LMDB.

    Only called while no handle of this process has the store open (closing a
    descriptor of the lock file would drop LMDB's locks on it).
    """
    try:
        fd = os.open(path / "lock.mdb", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return  # a read-only directory: LMDB reports what it needs
    try:
        os.posix_fallocate(fd, 0, LOCK_FILE_BYTES)
    finally:
        os.close(fd)


def disk_full(err: BaseException, path: Path, wanted: int = 0) -> bool:
    """Whether the write that raised ``err`` failed for want of disk space.

    LMDB reports a write that fills the disk part-way as an I/O error (a short
    write), so the device's free space decides as well: less than ``wanted``
    bytes, or under 1 MiB, counts as full.
    """
    if isinstance(err, OSError) and err.errno == 28 or "No space left" in str(err):
        return True
    if isinstance(err, lmdb.MapFullError):
        return False
    return shutil.disk_usage(path).free < max(wanted, 1 << 20)


def write_failure(err: BaseException, path: Path, map_size: int, wanted: int = 0) -> str:
    """Why a write failed, in words an operator can act on."""
    if isinstance(err, lmdb.MapFullError):
        return (f"the LMDB map is full (map_size={map_size} bytes): open the store with a larger map_size "
                f"({err})")
    if disk_full(err, path, wanted):
        return (f"no space left on the device holding {path} ({shutil.disk_usage(path).free} bytes free) "
                f"({err})")
    return str(err)


def reader_txn_ids(env: lmdb.Environment) -> list[int]:
    """Snapshots (transaction ids) that live read transactions of every process hold, from LMDB's reader table."""
    ids = []
    for line in env.readers().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 3 and fields[2].isdigit():
            ids.append(int(fields[2]))
    return ids


def page_runs(pages: np.ndarray) -> list[tuple[int, int]]:
    """Distinct page numbers as runs ``(first page, count)``."""
    pages = np.unique(pages)
    if not pages.size:
        return []
    breaks = np.flatnonzero(np.diff(pages) != 1) + 1
    firsts = pages[np.concatenate([[0], breaks])]
    lasts = pages[np.concatenate([breaks - 1, [pages.size - 1]])]
    return list(zip(firsts.tolist(), (lasts - firsts + 1).tolist()))


def release_pages(path: Path, runs, psize: int) -> int:
    """Give the file system back the blocks of pages ``runs`` ((first page, count) pairs) of data.mdb.

    The file keeps its size (``FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE``); the
    pages read back as zeros until LMDB reuses them.  The caller makes sure nothing
    reads them and LMDB cannot hand them out before this returns.  Returns the
    bytes the file gave back (0 where the file system cannot punch holes).
    """
    fd = os.open(Path(path) / "data.mdb", os.O_RDWR)
    try:
        before = os.fstat(fd).st_blocks
        for first, count in runs:
            if count > 0:
                _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, first * psize, count * psize)
        return (before - os.fstat(fd).st_blocks) * 512
    finally:
        os.close(fd)


def release_tail(path: Path) -> int:
    """Release data.mdb's blocks past the last page the newest commit uses (a failed commit's writes).

    Only safe under LMDB's writer lock (inside a write transaction): then no
    writer is filling those pages.  Returns the bytes released.
    """
    meta = read_meta(path)
    size = os.stat(Path(path) / "data.mdb").st_size
    pages = size // meta.psize - meta.n_pages
    return release_pages(path, [(meta.n_pages, pages)], meta.psize) if pages > 0 else 0


def remove_new_store(path: Path, made_dir: bool) -> None:
    """Delete what a failed :func:`tierstore.create` left (its files, and the directory if it made it)."""
    for name in ("data.mdb", "lock.mdb", COMMIT_FILE):
        try:
            (Path(path) / name).unlink()
        except FileNotFoundError:
            pass
    if made_dir:
        try:
            Path(path).rmdir()
        except OSError:
            pass
