"""Prefetch: read the SSD pages a batch will miss on background threads, before its lookup.

``Store.prefetch(batch)`` returns a :class:`PrefetchHandle` at once.  A planner
thread then takes the store's lock briefly to see, per table, which of the batch's
distinct rows its DRAM tier lacks now, which pages hold them and where those pages
sit in ``data.mdb`` (the B+tree walk of the miss path, reading no data page), and
keeps that read transaction open; ``depth`` reader threads announce the pages
(``POSIX_FADV_WILLNEED``) and copy them with ``pread`` (a nogil Numba loop per
thread) into buffers of the handle's own, then check LMDB's overflow headers and the
pages the store has not verified yet.  None of this runs under the store's lock, so
lookups of other batches go on.

``Store.lookup_batch(batch)`` on the same batch object claims the handle: it waits
for that batch's reads still in flight, decodes the missed rows whose pages were
read ahead from the handle's buffers, and reads the others (rows evicted since, pages
over the memory bound) itself.  Pages are kept per table version ``(layout,
data_version)``: a commit that changed a table gives it a new version (the lookup
catches up with every commit first), and pages of any other version are dropped
unread, so a page read before a commit is never served after it.  A failed read
(an I/O error, a corrupt page) is kept with its pages and raised by the lookup that
needs them.  Buffers are held from planning until the lookup (or ``cancel``) and
bounded by ``max_bytes`` in all: pages past the bound are left to the lookup.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import numba
import numpy as np

from placement._json import JsonDataclass
from tierstore import kernels, pages
from tierstore.errors import CorruptStoreError, StoreClosedError
from tierstore.lmdb_direct import PAGE_HEADER, pread, runs_ok

COUNTERS = ("batches", "pages_read", "bytes_read", "rows_served", "rows_read_late", "pages_over_budget",
            "pages_stale", "cancelled")
"""Prefetch counters in ``Store.stats()["prefetch"]``: batches prefetched, pages and bytes read ahead, missed
rows a lookup took from them and rows it read itself, pages left out by ``max_bytes``, pages dropped for a
newer table version, handles cancelled."""
PAGE_OK, PAGE_BAD_RUN, PAGE_IO_ERROR = 0, 254, 255
"""Status of a page read ahead: verified (or verified before), its LMDB overflow header is damaged, or its
read failed; other codes are :func:`tierstore.pages.page_status` codes of a corrupt page."""


@dataclass(frozen=True)
class PrefetchConfig(JsonDataclass):
    """How a store reads ahead (``tierstore.open(..., prefetch=...)``).

    Parameters
    ----------
    max_bytes : int
        Most bytes of pages held for batches not looked up yet, all handles together
        (pages past it are read by the lookup instead).
    depth : int
        Reader threads.  Each announces its share of a batch's pages at once
        (``POSIX_FADV_WILLNEED``: the kernel queues them at the device's depth), then
        copies them with ``pread``, sleeping only on pages still on their way.
    """

    max_bytes: int = 256 << 20
    depth: int = 32

    def __post_init__(self):
        if int(self.max_bytes) < 0:
            raise ValueError(f"PrefetchConfig.max_bytes must be >= 0, got {self.max_bytes}")
        if int(self.depth) <= 0:
            raise ValueError(f"PrefetchConfig.depth must be positive, got {self.depth}")


_libc = ctypes.CDLL(None, use_errno=True)
_fadvise = _libc.posix_fadvise
_fadvise.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
_fadvise.restype = ctypes.c_int
WILLNEED = os.POSIX_FADV_WILLNEED if hasattr(os, "POSIX_FADV_WILLNEED") else 3


@numba.njit(nogil=True)
def _pread_pages(fd, starts, lengths, offsets, buf, stop):
    """``pread`` page ``i`` (``lengths[i]`` bytes at file offset ``starts[i]``) to ``buf[offsets[i]:]``, one
    after another, until ``stop[0]`` is set; returns how many were read, or ``-1 - i`` for a failed read.

    Every page is announced first (``POSIX_FADV_WILLNEED``: the kernel starts reading it
    and returns), so the thread rarely sleeps on a read: fewer wake-ups per page."""
    for i in range(starts.size):
        _fadvise(fd, starts[i], lengths[i], WILLNEED)
    for i in range(starts.size):
        if stop[0]:
            return i
        if pread(fd, buf[offsets[i]:].ctypes.data, lengths[i], starts[i]) != lengths[i]:
            return -1 - i
    return starts.size


def read_pages(fd: int, starts, lengths, offsets, buf, stop) -> tuple[int, OSError | None]:
    """Read pages into ``buf`` (see :func:`_pread_pages`) until one fails: how many were read, and the
    failed read's OSError (None if none failed).

    The one place prefetch reads the file (tests inject faults here)."""
    done = _pread_pages(fd, starts, lengths, offsets, buf, stop)
    if done >= 0:
        return done, None
    i = -1 - done
    try:
        got = os.pread(fd, int(lengths[i]), int(starts[i]))
    except OSError as err:
        return i, err
    return i, OSError(f"short read of {lengths[i]} bytes at offset {starts[i]} of data.mdb ({len(got)} bytes)")


class TablePages:
    """One table's pages read ahead for one batch: which, where in ``buf``, and how each read went.

    ``page_ids`` are sorted and distinct.  A page located by the planner's walk comes
    with its LMDB overflow page header (``lead`` bytes before the value), checked here
    rather than under the store's lock.  ``status[i]`` is ``PAGE_OK``, ``PAGE_IO_ERROR``
    (``errors[i]`` holds its OSError; none if it was cancelled), ``PAGE_BAD_RUN`` or a
    :func:`tierstore.pages.page_status` code.
    """

    def __init__(self, name: str, version: tuple, page_ids, file_starts, file_ends, lead, unverified, expected_rows,
                 psize: int, n_pages: int):
        self.name = name
        self.version = version
        self.page_ids = page_ids
        self.file_starts, self.file_ends, self.lead = file_starts, file_ends, lead
        bounds = np.zeros(page_ids.size + 1, dtype=np.int64)
        np.cumsum(file_ends - file_starts + lead, out=bounds[1:])
        self.offsets, self.ends = bounds[:-1], bounds[1:]
        self.starts = self.offsets + lead
        self.buf = np.empty(int(bounds[-1]), dtype=np.uint8)
        self.unverified = unverified
        self.expected_rows = expected_rows
        self.psize, self.n_pages = psize, n_pages
        self.status = np.full(page_ids.size, PAGE_IO_ERROR, dtype=np.uint8)
        self.errors: dict[int, OSError] = {}
        self.futures: list = []

    def read_chunk(self, fd: int, lo: int, hi: int, table, stop) -> None:
        """Read pages ``lo:hi`` and check their overflow headers and the pages the store has not verified yet
        (on this thread)."""
        at = lo
        while at < hi:
            done, error = read_pages(fd, self.file_starts[at:hi] - self.lead[at:hi],
                                     self.ends[at:hi] - self.offsets[at:hi], self.offsets[at:hi], self.buf, stop)
            self.status[at : at + done] = PAGE_OK
            if error is None:
                break
            self.errors[at + done] = error
            at += done + 1
        read = lo + np.flatnonzero(self.status[lo:hi] == PAGE_OK)
        runs = read[self.lead[read] > 0]
        if runs.size:
            ok = runs_ok(self.buf, self.offsets[runs], (self.file_starts[runs] - self.lead[runs]) // self.psize,
                         self.file_ends[runs] - self.file_starts[runs], self.psize, self.n_pages)
            self.status[runs[~ok]] = PAGE_BAD_RUN
        check = read[self.unverified[read] & (self.status[read] == PAGE_OK)]
        if check.size:
            self.status[check] = pages.page_status(self.buf, self.starts[check], self.ends[check], table,
                                                   self.expected_rows[check], parallel=False)

    def wait(self) -> None:
        """Until every read of this table has finished."""
        wait(self.futures)

    def failure(self, needed: np.ndarray) -> BaseException | None:
        """The error to raise for pages ``needed`` (indices into ``page_ids``), if any of them failed."""
        bad = needed[self.status[needed] != PAGE_OK]
        if not bad.size:
            return None
        first = int(bad.min())
        where = f"table {self.name!r}, page {int(self.page_ids[first])}"
        if self.status[first] == PAGE_IO_ERROR:
            return OSError(f"{where}: reading ahead failed: {self.errors.get(first, 'it was cancelled')}")
        if self.status[first] == PAGE_BAD_RUN:
            return CorruptStoreError(f"{where}: its LMDB overflow page header is damaged (read ahead by prefetch)")
        return pages.CorruptPageError(f"{where}: {pages.status_message(int(self.status[first]))} "
                                      f"(read ahead by prefetch)")


class PrefetchHandle:
    """A batch's reads ahead, as returned by ``Store.prefetch``: a future-like handle.

    The lookup of the same batch object (``Store.lookup_batch``) uses it; ``cancel``
    it for a batch that will not be looked up, to free its pages at once.
    """

    def __init__(self, prefetcher: "Prefetcher", batch):
        self.batch = batch
        self._prefetcher = prefetcher
        self._stop = np.zeros(1, dtype=np.uint8)
        self._tables: dict[str, TablePages] = {}
        self._reserved = 0
        self._txn = None
        self._remaining = 0
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._planned = None

    def done(self) -> bool:
        """Whether every read has finished (or the prefetch was cancelled)."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every read has finished (or ``timeout`` seconds passed); True if they have."""
        return self._finished.wait(timeout)

    def cancel(self) -> None:
        """Stop reading and free the pages (the batch's lookup then reads everything itself)."""
        self._prefetcher.discard(self)

    def pages(self, table: str) -> TablePages | None:
        """What was read ahead for ``table`` (None: nothing)."""
        return self._tables.get(table)

    def _chunk_finished(self) -> None:
        with self._lock:
            self._remaining -= 1
            last = self._remaining == 0
        if last:
            self._end_reads()

    def _end_reads(self) -> None:
        """Let LMDB reuse the snapshot's pages again, and say so."""
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.abort()
        self._finished.set()


class Prefetcher:
    """Runs a store's prefetches: one planner thread (under the store's lock, briefly), ``depth`` reader threads."""

    def __init__(self, store, config: PrefetchConfig):
        self._store = store
        self.config = config
        self._lock = threading.Lock()
        self._closed = False
        self._pending: dict[int, PrefetchHandle] = {}
        self._held = 0
        self._fd = os.open(store.path / "data.mdb", os.O_RDONLY)
        os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
        self._planner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierstore-prefetch-plan")
        self._readers = ThreadPoolExecutor(max_workers=config.depth, thread_name_prefix="tierstore-prefetch-read")
        self.reset_stats()

    def reset_stats(self) -> None:
        """Zero the counters (pages held stay counted)."""
        self.counts = dict.fromkeys(COUNTERS, 0)

    def stats(self) -> dict:
        """Counters (see :data:`COUNTERS`), pages held now (``bytes_held``, at most ``max_bytes``) and
        prefetches not looked up yet whose reads are running (``in_flight``)."""
        with self._lock:
            return {**self.counts, "bytes_held": self._held, "max_bytes": self.config.max_bytes,
                    "in_flight": sum(not h.done() for h in self._pending.values())}

    @staticmethod
    def idle_stats(config: PrefetchConfig) -> dict:
        """:meth:`stats` of a store that has not prefetched yet."""
        return {**dict.fromkeys(COUNTERS, 0), "bytes_held": 0, "max_bytes": config.max_bytes, "in_flight": 0}

    # ------------------------------------------------------------------ submit / claim
    def submit(self, batch) -> PrefetchHandle:
        """Start reading ``batch``'s missed pages; returns at once.  A batch prefetched again replaces its handle."""
        handle = PrefetchHandle(self, batch)
        with self._lock:
            if self._closed:
                raise StoreClosedError("the store handle is closed; open the store again to use it")
            previous = self._pending.pop(id(batch), None)
            self._pending[id(batch)] = handle
            self.counts["batches"] += 1
            handle._planned = self._planner.submit(self._plan, handle)
        if previous is not None:
            self.discard(previous)
        return handle

    def claim(self, batch) -> PrefetchHandle | None:
        """The handle of ``batch`` (the same object) once its reads have ended, for its lookup; None if there
        is none.

        A prefetch not yet planned is dropped (none of its reads is in flight).  Call
        outside the store's lock: planning takes it.
        """
        with self._lock:
            handle = self._pending.get(id(batch))
            if handle is None or handle.batch is not batch:
                return None
            del self._pending[id(batch)]
        if handle._planned.cancel():
            handle._finished.set()
            return None
        handle._planned.result()
        handle.wait()  # here, not under the store's lock: lookups of other batches go on meanwhile
        return handle

    def release(self, handle: PrefetchHandle) -> None:
        """Stop ``handle``'s reads, wait for those running, and free its pages."""
        handle._stop[0] = 1
        for table in handle._tables.values():
            for future in table.futures:
                if future.cancel():
                    handle._chunk_finished()
            table.wait()
        with self._lock:
            self._held -= handle._reserved
            handle._reserved = 0
        handle._tables = {}

    def discard(self, handle: PrefetchHandle) -> None:
        """Cancel a handle no lookup will claim."""
        with self._lock:
            if self._pending.get(id(handle.batch)) is handle:
                del self._pending[id(handle.batch)]
            self.counts["cancelled"] += 1
        if handle._planned is not None and handle._planned.cancel():
            handle._finished.set()
            return
        handle._planned.result()
        self.release(handle)

    # ------------------------------------------------------------------ planning (planner thread)
    def _plan(self, handle: PrefetchHandle) -> None:
        """Find the pages ``handle``'s batch misses now and start reading them (takes the store's lock)."""
        store = self._store
        try:
            with store._lock:
                if self._closed or store._closed or handle._stop[0]:
                    handle._finished.set()
                    return
                with store.reading(keep=True) as txn:
                    handle._txn = txn
                    plans = [plan for plan in (self._plan_table(handle, name) for name in handle.batch.keys) if plan]
        except BaseException:
            handle._end_reads()
            self.release(handle)
            raise
        if not plans:
            handle._end_reads()
            return
        handle._remaining = sum(len(chunks) for _, chunks in plans)
        for table_pages, chunks in plans:
            config = store.tables[table_pages.name]
            for lo, hi in chunks:
                table_pages.futures.append(self._readers.submit(self._read, handle, table_pages, lo, hi, config))

    def _plan_table(self, handle: PrefetchHandle, name: str):
        """``(TablePages, chunks)`` for table ``name`` of the batch, or None if nothing to read."""
        store = self._store
        ssd = store._ssd.get(name)
        tier = store._tier_of.get(name)
        if name in handle._tables or ssd is None or ssd.direct is None or (tier is not None and
                                                                          tier.fully_resident(name)):
            return None
        config = ssd.config
        rows = np.asarray(handle.batch.table(name)[0], dtype=np.int64)
        rows = kernels.unique_inverse(rows[(rows >= 0) & (rows < config.num_rows)])[0]
        if tier is not None and rows.size:
            rows = rows[~tier.cached(name, rows)]
        if not rows.size:
            return None
        position = rows if ssd.positions is None else ssd.positions[rows].astype(np.int64)
        page_ids = np.unique(position // config.rows_per_page)
        _, file_starts, file_ends, unverified_at, located = ssd.locate_direct(page_ids, check_runs=False)
        lead = np.zeros(page_ids.size, dtype=np.int64)
        lead[located[ssd.spans[page_ids[located], 0] == 0]] = PAGE_HEADER  # in unchecked overflow runs
        lengths = file_ends - file_starts + lead
        with self._lock:
            room = self.config.max_bytes - self._held
            fit = int(np.searchsorted(np.cumsum(lengths), room, side="right"))
            self.counts["pages_over_budget"] += page_ids.size - fit
            if not fit:
                return None
            self._held += int(lengths[:fit].sum())
            handle._reserved += int(lengths[:fit].sum())
        unverified = np.zeros(page_ids.size, dtype=np.bool_)
        unverified[unverified_at] = True
        table_pages = TablePages(name, ssd.version, page_ids[:fit], file_starts[:fit], file_ends[:fit], lead[:fit],
                                 unverified[:fit], ssd.page_rows(page_ids[:fit]), store._direct.psize,
                                 store._snapshot.n_pages)
        handle._tables[name] = table_pages
        bounds = np.linspace(0, fit, min(self.config.depth, fit) + 1).astype(np.int64)
        return table_pages, list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))

    def _read(self, handle, table_pages: TablePages, lo: int, hi: int, config) -> None:
        try:
            table_pages.read_chunk(self._fd, lo, hi, config, handle._stop)
            with self._lock:
                self.counts["pages_read"] += int(np.count_nonzero(table_pages.status[lo:hi] != PAGE_IO_ERROR))
                self.counts["bytes_read"] += int(table_pages.ends[hi - 1] - table_pages.offsets[lo])
        finally:
            handle._chunk_finished()

    # ------------------------------------------------------------------ lookup side (under the store's lock)
    def read_stored(self, table_pages: TablePages, ssd, txn, rows: np.ndarray):
        """Stored records of ``rows`` (a lookup's missed rows of ``table_pages``' table), from the pages read
        ahead where there are some, the rest through ``ssd``; waits for the reads still in flight.

        Returns the records in the order of ``rows`` (as :meth:`SsdTable.read_stored`: an exact DRAM tier
        admits them in that order), or None when the pages are of another table version (a commit
        changed the table since), which the caller then reads itself.
        Raises the error of a failed read ahead of a page it needs.
        """
        if table_pages.version != ssd.version:
            with self._lock:
                self.counts["pages_stale"] += table_pages.page_ids.size
            return None
        table_pages.wait()
        config = ssd.config
        position = rows if ssd.positions is None else ssd.positions[rows].astype(np.int64)
        page_of = position // config.rows_per_page
        rank = np.minimum(np.searchsorted(table_pages.page_ids, page_of), table_pages.page_ids.size - 1)
        ahead = table_pages.page_ids[rank] == page_of
        mine = np.flatnonzero(ahead)
        rest = np.flatnonzero(~ahead)
        rank = rank[mine]
        failure = table_pages.failure(np.unique(rank))
        if failure is not None:
            raise failure
        good = table_pages.status == PAGE_OK
        ssd.learn_spans(table_pages.page_ids[good], table_pages.file_starts[good], table_pages.file_ends[good])
        records = np.empty((rows.size, config.row_bytes), dtype=np.uint8)
        buf, starts = table_pages.buf, table_pages.starts
        if config.compression == "zstd" and mine.size:
            used, rank = np.unique(rank, return_inverse=True)
            buf, starts = pages.decompress_pages(buf, starts[used], config, table_pages.page_ids[used],
                                                 table_pages.expected_rows[used])
        if mine.size:
            ssd.records_from_pages(buf, starts, rank, position[mine] % config.rows_per_page, records[: mine.size])
            ssd.counters.rows += mine.size
        ssd.read_stored(txn, rows[rest], out=records[mine.size :])
        with self._lock:
            self.counts["rows_served"] += mine.size
            self.counts["rows_read_late"] += rest.size
        in_order = np.empty_like(records)
        in_order[np.concatenate([mine, rest])] = records
        return in_order

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Cancel every prefetch, wait for reads in flight, end the threads and close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = list(self._pending.values())
            self._pending.clear()
        for handle in handles:
            handle._stop[0] = 1
            if handle._planned.cancel():
                handle._finished.set()
        self._planner.shutdown(wait=True)
        for handle in handles:
            if not handle._planned.cancelled():
                self.release(handle)
        self._readers.shutdown(wait=True)
        os.close(self._fd)
