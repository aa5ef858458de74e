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
    #: ``[LmdbDirectReader, Snapshot, root page or None until first needed]`` for the current read
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
            buf, starts, ends, check = self._locate_direct(page_ids)
            if check.size:
                reader.prefetch(starts[check], ends[check])
            if reader.copy_reads:
                buf, starts, ends = reader.read_values(starts, ends)
            if check.size:
                pages.verify_pages(buf, starts[check], ends[check], self.config, page_ids[check], expected_rows[check])
                self.spans[page_ids[check], 0] = np.abs(self.spans[page_ids[check], 0])
        else:
            buf, starts, ends = self._get_multi(txn, page_ids)
            pages.verify_pages(buf, starts, ends, self.config, page_ids, expected_rows)
        self.counters.pages += page_ids.size
        self.counters.bytes += int(np.sum(ends - starts))
        if self.config.compression == "zstd":
            buf, starts = pages.decompress_pages(buf, starts, self.config, page_ids, expected_rows)
        return buf, starts

    def _root(self) -> int:
        """This table's B+tree root in the read transaction's snapshot (found on first use)."""
        reader, snapshot, root = self.direct
        if root is None:
            record = reader.find_db(snapshot, self.db_name)
            if record is None:
                raise pages.CorruptPageError(f"table {self.config.name!r}: its page database {self.db_name!r} is "
                                             f"missing (the store is damaged)")
            root = self.direct[2] = record.root
        return root

    def _missing(self, page_ids):
        return pages.CorruptPageError(
            f"table {self.config.name!r}: page(s) {[int(p) for p in page_ids[:5]]} missing from the store "
            f"(the store is damaged)"
        )

    def _locate_direct(self, page_ids):
        reader, snapshot, _ = self.direct
        if self.spans is None:
            self.spans = np.zeros((self.n_pages, 2), dtype=np.int64)
        starts, ends, unknown, unverified = _known_spans(page_ids, self.spans)
        if unknown.size:
            todo = page_ids[unknown]
            found, lengths, status = reader.locate(snapshot, self._root(), todo.astype(np.uint64))
            if np.any(status != 0):
                raise self._missing(todo[status != 0])
            starts[unknown] = found
            ends[unknown] = found + lengths
            self.spans[todo, 0] = -found
            self.spans[todo, 1] = found + lengths
        return reader.view, starts, ends, unverified

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

    def read_rows(self, txn, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (int64, in range) as float32 ``[len(rows), dim]``; each page is read once."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.config.dim), dtype=np.float32)
        if rows.size:
            pages.decode_rows(*self._locate_rows(txn, rows), pages.DTYPE_CODES[self.config.dtype],
                              self.config.dim, out)
            self.counters.rows += rows.size
        return out

    def read_stored(self, txn, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` as stored records (uint8 ``[len(rows), row_bytes]``, what the DRAM caches hold):
        float32 rows through :meth:`read_rows` (one prefetching ``memcpy`` a row), others as
        :meth:`read_records`."""
        if self.config.dtype == "float32":
            return self.read_rows(txn, rows).view(np.uint8)
        rows = np.asarray(rows, dtype=np.int64)
        out = self.read_records(txn, rows)
        self.counters.rows += rows.size
        return out

    def read_records(self, txn, rows: np.ndarray) -> np.ndarray:
        """Stored records of ``rows`` (uint8 ``[len(rows), row_bytes]``), bit-exact, for rewrites."""
        rows = np.asarray(rows, dtype=np.int64)
        config = self.config
        out = np.empty((rows.size, config.row_bytes), dtype=np.uint8)
        if rows.size:
            pages.extract_records(*self._locate_rows(txn, rows), pages.DTYPE_CODES[config.dtype], config.dim, out)
        return out
