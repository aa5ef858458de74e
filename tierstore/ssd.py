"""SSD tier: one table's rows packed into pages in an LMDB named database.

Pages are keyed by 8-byte big-endian page ids, so LMDB keeps them in page order and
bulk loads append.  The row -> layout position mapping is an explicit array (or the
identity); position ``p`` lives in page ``p // rows_per_page``, slot ``p % rows_per_page``.
A read groups a batch's rows by page, fetches each page once with one
``Cursor.getmulti`` call (a C loop), verifies checksums and decodes the needed rows
in Numba.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lmdb
import numba
import numpy as np

from tierstore import pages
from tierstore.config import TableConfig
from tierstore.kernels import _prefetch, unique_inverse
from tierstore.errors import CorruptStoreError
from tierstore.lmdb_direct import FOUND, NOT_FOUND, PAGE_HEADER, runs_ok

PAGE_KEY = np.dtype(">u8")


def page_keys(page_ids: np.ndarray) -> list[bytes]:
    """LMDB keys (8-byte big-endian) of ``page_ids``."""
    raw = np.asarray(page_ids, dtype=PAGE_KEY).tobytes()
    return [raw[i : i + 8] for i in range(0, len(raw), 8)]


SPAN_PREFETCH_DISTANCE = 8
"""Pages ahead whose cached span :func:`_known_spans` prefetches (a random read per page)."""


@numba.njit(nogil=True, cache=True)
def _known_spans(page_ids, spans):
    """Cached file spans of ``page_ids`` (start 0 where unknown), and which positions are unknown / unverified.

    ``spans[page]`` is ``(start, end)`` of the page's value in the data file; a
    negative start marks a located page whose checksum is not verified yet.
    """
    n = page_ids.size
    starts = np.empty(n, dtype=np.int64)
    ends = np.empty(n, dtype=np.int64)
    unknown = np.empty(n, dtype=np.int64)
    unverified = np.empty(n, dtype=np.int64)
    n_unknown = n_unverified = 0
    for i in range(n):
        if i + SPAN_PREFETCH_DISTANCE < n:
            _prefetch(spans, page_ids[i + SPAN_PREFETCH_DISTANCE], 0)
        page = page_ids[i]
        start = spans[page, 0]
        starts[i] = abs(start)
        ends[i] = spans[page, 1]
        if start == 0:
            unknown[n_unknown] = i
            n_unknown += 1
        if start <= 0:
            unverified[n_unverified] = i
            n_unverified += 1
    return starts, ends, unknown[:n_unknown], unverified[:n_unverified]


@dataclass
class ReadCounters:
    """What the SSD tier read: LMDB values (pages), their bytes, and rows decoded."""

    pages: int = 0
    bytes: int = 0
    rows: int = 0


@dataclass
class SsdTable:
    """Read access to one table's pages.

    Parameters
    ----------
    config : TableConfig
        The table (``rows_per_page`` resolved).
    db : lmdb database handle
        The named database holding this layout's pages.
    positions : ndarray or None
        Row -> layout position; None means the identity.
    version : tuple
        ``(layout, data_version)``: what the direct-read caches below are valid for.

    With the direct reader, a per-page cache makes repeated misses cheap: where
    each page's value sits in the data file (LMDB never moves a value until its
    database is written, and any write gives the table a new version), and
    whether the page's checksum was verified (``spans``: ``(start, end)`` per page,
    start 0 while unknown and negated until verified: one random read per page).
    A page is verified on its first read by this store handle for this version,
    not on every read.
    """

    config: TableConfig
    db: object
    db_name: bytes
    positions: np.ndarray | None = None
    version: tuple = ()
    counters: ReadCounters = field(default_factory=ReadCounters)
    #: ``[LmdbDirectReader, Snapshot, DbRecord or None until first needed]`` for the current read
    #: transaction, or None to read through py-lmdb.
    direct: list | None = None
    spans: np.ndarray | None = None

    def keep_caches_of(self, old: "SsdTable | None") -> None:
        """Take over ``old``'s counters, and its direct-read caches if it is the same table version."""
        if old is None:
            return
        self.counters = old.counters
        if old.version == self.version:
            self.spans = old.spans

    @property
    def n_pages(self) -> int:
        """Pages of this table."""
        return -(-self.config.num_rows // self.config.rows_per_page)

    def page_rows(self, page_ids: np.ndarray) -> np.ndarray:
        """Rows stored in each page (the last page may be short)."""
        rpp = self.config.rows_per_page
        return np.minimum(rpp, self.config.num_rows - page_ids * rpp)

    def fetch_pages(self, txn, page_ids: np.ndarray):
        """Locate, read and verify pages ``page_ids`` (distinct); return raw pages ``(buf, starts)``.

        With a direct reader the pages are verified and decoded in place in the
        memory map (or in ``pread`` copies, with ``copy_reads``); otherwise one
        ``Cursor.getmulti`` call copies them out.
        """
        expected_rows = self.page_rows(page_ids)
        if self.direct is not None:
            reader = self.direct[0]
            if reader.copy_reads:
                buf, starts, ends, check, located = self.locate_direct(page_ids, check_runs=False)
                buf, starts, ends = self._read_copies(page_ids, starts, ends, located)
            else:
                buf, starts, ends, check, located = self.locate_direct(page_ids)
                announce = np.setdiff1d(check, located, assume_unique=True)  # located pages: announced by the walk
                if announce.size:
                    reader.prefetch(starts[announce], ends[announce])
            if check.size:
                pages.verify_pages(buf, starts[check], ends[check], self.config, page_ids[check], expected_rows[check])
                self.mark_verified(page_ids[check])
        else:
            buf, starts, ends = self._get_multi(txn, page_ids)
            pages.verify_pages(buf, starts, ends, self.config, page_ids, expected_rows)
        self.counters.pages += page_ids.size
        self.counters.bytes += int(np.sum(ends - starts))
        if self.config.compression == "zstd":
            buf, starts = pages.decompress_pages(buf, starts, self.config, page_ids, expected_rows)
        return buf, starts

    def _read_copies(self, page_ids, starts, ends, located):
        """``pread`` copies of the values ``[starts, ends)`` of pages ``page_ids`` (``io="pread"``): ``(buf, starts,
        ends)`` in the copy.  Overflow runs the walk located now (``located``) are copied with their header and
        checked on the copy, so nothing is read through the map (whose pages would count in the process's
        memory, with the neighbours the kernel maps around each fault)."""
        reader, snapshot, _ = self.direct
        lead = np.zeros(page_ids.size, dtype=np.int64)
        lead[located[self.spans[page_ids[located], 0] == 0]] = PAGE_HEADER
        buf, copy_starts, copy_ends = reader.read_values(starts - lead, ends)
        runs = np.flatnonzero(lead)
        if runs.size:
            ok = runs_ok(buf, copy_starts[runs], (starts[runs] - PAGE_HEADER) // reader.psize, ends[runs] - starts[runs],
                         reader.psize, snapshot.n_pages)
            if not ok.all():
                raise CorruptStoreError(f"table {self.config.name!r}: the LMDB overflow run holding page "
                                        f"{int(page_ids[runs[np.argmin(ok)]])} is damaged")
            self.spans[page_ids[runs], 0] = -starts[runs]
            self.spans[page_ids[runs], 1] = ends[runs]
        return buf, copy_starts + lead, copy_ends

    def _tree(self):
        """This table's page database record (root, depth) in the read transaction's snapshot (found on first use)."""
        reader, snapshot, record = self.direct
        if record is None:
            record = reader.find_db(snapshot, self.db_name)
            if record is None:
                raise pages.CorruptPageError(f"table {self.config.name!r}: its page database {self.db_name!r} is "
                                             f"missing (the store is damaged)")
            self.direct[2] = record
        return record

    def _missing(self, page_ids):
        return pages.CorruptPageError(
            f"table {self.config.name!r}: page(s) {[int(p) for p in page_ids[:5]]} missing from the store "
            f"(the store is damaged)"
        )

    def mark_verified(self, page_ids: np.ndarray) -> None:
        """Record that pages ``page_ids`` (located by :meth:`locate_direct`) passed their checks."""
        if self.spans is not None and page_ids.size:
            self.spans[page_ids, 0] = np.abs(self.spans[page_ids, 0])

    def locate_direct(self, page_ids, check_runs: bool = True):
        """Where pages ``page_ids`` are: the map, the file spans ``(starts, ends)`` of their values, which of them
        (indices) are not verified yet, and which were located now (a B+tree walk; the others' spans are cached).

        Without ``check_runs``, the values of pages located now that sit in LMDB overflow
        runs are not read (their run headers are the caller's to check, :func:`lmdb_direct.runs_ok`)
        and their spans are not cached.
        """
        reader, snapshot, _ = self.direct
        if self.spans is None:
            self.spans = np.zeros((self.n_pages, 2), dtype=np.int64)
        starts, ends, unknown, unverified = _known_spans(page_ids, self.spans)
        if unknown.size:
            todo = page_ids[unknown]
            tree = self._tree()
            found, lengths, status = reader.locate(snapshot, tree.root, todo.astype(np.uint64), check_runs, tree.depth)
            if np.any(status == NOT_FOUND):
                raise self._missing(todo[status == NOT_FOUND])
            starts[unknown] = found
            ends[unknown] = found + lengths
            checked = status == FOUND
            self.spans[todo[checked], 0] = -found[checked]
            self.spans[todo[checked], 1] = found[checked] + lengths[checked]
        return reader.view, starts, ends, unverified, unknown

    def learn_spans(self, page_ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        """Cache the file spans of pages ``page_ids`` whose values were read and verified elsewhere (prefetch)."""
        if self.spans is not None and page_ids.size:
            self.spans[page_ids, 0] = starts
            self.spans[page_ids, 1] = ends

    def _get_multi(self, txn, page_ids):
        try:
            found = txn.cursor(db=self.db).getmulti(page_keys(page_ids))
        except lmdb.Error as err:
            raise pages.CorruptPageError(f"table {self.config.name!r}: LMDB cannot read its pages ({err})") from None
        if len(found) != page_ids.size:
            have = {bytes(k) for k, _ in found}
            raise self._missing(np.array([p for p, k in zip(page_ids, page_keys(page_ids)) if k not in have]))
        lengths = np.fromiter((len(v) for _, v in found), dtype=np.int64, count=len(found))
        bounds = np.zeros(len(found) + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        return np.frombuffer(b"".join([v for _, v in found]), dtype=np.uint8), bounds[:-1], bounds[1:]

    def _locate_rows(self, txn, rows: np.ndarray):
        """Fetch the pages holding ``rows``: raw pages, page starts, and each row's page rank and slot."""
        position = rows if self.positions is None else self.positions[rows].astype(np.int64)
        rpp = self.config.rows_per_page
        page_ids, page_rank = unique_inverse(position // rpp)
        buf, starts = self.fetch_pages(txn, page_ids)
        return buf, starts, page_rank, position % rpp

    def read_stored(self, txn, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``rows`` as stored records (uint8 ``[len(rows), row_bytes]``, what the DRAM caches hold),
        written into ``out`` if given; see :meth:`records_from_pages`."""
        rows = np.asarray(rows, dtype=np.int64)
        if out is None:
            out = np.empty((rows.size, self.config.row_bytes), dtype=np.uint8)
        if rows.size:
            self.records_from_pages(*self._locate_rows(txn, rows), out)
            self.counters.rows += rows.size
        return out

    def records_from_pages(self, buf, starts, page_rank, slot, out: np.ndarray) -> None:
        """Stored records of row ``slot[i]`` of the raw page at ``starts[page_rank[i]]`` of ``buf`` into
        ``out[i]``: float32 rows with one prefetching ``memcpy`` a row (:func:`pages.decode_rows`),
        others with :func:`pages.extract_records`."""
        if self.config.dtype == "float32":
            pages.decode_rows(buf, starts, page_rank, slot, 0, self.config.dim, out.view(np.float32))
        else:
            pages.extract_records(buf, starts, page_rank, slot, pages.DTYPE_CODES[self.config.dtype],
                                  self.config.dim, out)

    def read_records(self, txn, rows: np.ndarray) -> np.ndarray:
        """Stored records of ``rows`` (uint8 ``[len(rows), row_bytes]``), bit-exact, for rewrites."""
        rows = np.asarray(rows, dtype=np.int64)
        config = self.config
        out = np.empty((rows.size, config.row_bytes), dtype=np.uint8)
        if rows.size:
            pages.extract_records(*self._locate_rows(txn, rows), pages.DTYPE_CODES[config.dtype], config.dim, out)
        return out
