"""Check a whole store: ``Store.check()`` and ``tierstore check STORE [--json]``.

Everything a lookup could read is read and verified, through the bounded B+tree
reader only (LMDB itself trusts its pages, so it is not asked to read them):

- LMDB's meta pages against the file size; the main tree, the free-page tree and
  every database's tree, page by page; every page used by exactly one tree or
  listed free exactly once, and the page counts LMDB keeps for each database;
- the metadata (checksum, fields), the commit counter and the commit record;
- each table's pages: exactly the page ids ``0 .. n_pages - 1``, each page's header,
  payload size and checksum (zstd pages decompressed to their size);
- each position array: chunk checksums, length, range, and that it is a permutation.

Problems are collected, never raised: the report names table and page where one is
involved, and the command exits non-zero when there is any.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lmdb
import numpy as np

from tierstore import environment, pages
from tierstore.config import TableConfig
from tierstore.errors import CorruptStoreError, IncompatibleStoreError
from tierstore.lmdb_direct import DB_RECORD, F_BIGDATA, F_SUBDATA, DbRecord, LmdbDirectReader, read_meta, supported
from tierstore.meta import COMMIT_FILE, decode_meta, decode_positions, read_commit

META_DB = b"__meta__"
LEAVES_PER_STEP = 2048
"""Leaf pages of a table verified per step (bounds the memory a check of a huge table needs)."""
MAX_PROBLEMS_PER_TABLE = 20


@dataclass
class Problem:
    """One thing wrong: where (a table and page when there is one) and what."""

    message: str
    table: str | None = None
    page: int | None = None

    def __str__(self) -> str:
        where = "" if self.table is None else f"table {self.table!r}" + ("" if self.page is None else f", page {self.page}")
        return f"{where}: {self.message}" if where else self.message


@dataclass
class TableReport:
    """What the check found of one table."""

    name: str
    rows: int
    dim: int
    dtype: str
    layout: int
    identity: bool
    ready: bool
    pages: int = 0
    bytes: int = 0


@dataclass
class CheckReport:
    """The outcome of a check: what the store holds and every problem found."""

    path: str
    format_version: int | None = None
    commit: int | None = None
    lmdb: dict = field(default_factory=dict)
    tables: list[TableReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def to_dict(self) -> dict:
        """JSON-ready form (``ok`` included)."""
        return {**asdict(self), "ok": self.ok}

    def summary(self) -> str:
        """Human-readable summary: the store, one line per table, then the problems."""
        lines = [f"store {self.path}: format {self.format_version}, commit {self.commit}, "
                 + ", ".join(f"{k} {v}" for k, v in self.lmdb.items())]
        for t in self.tables:
            state = "not loaded" if not t.ready else f"{t.pages} pages, {t.bytes} bytes"
            lines.append(f"  table {t.name!r}: {t.rows} x {t.dim} {t.dtype}, layout {t.layout}"
                         f"{' (identity)' if t.identity else ''}: {state}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.ok:
            lines.append("no problems found")
        else:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def check_store(path, txn_id: int | None = None, progress: bool = False) -> CheckReport:
    """Check the store at ``path``; never raises on damaged bytes.

    Parameters
    ----------
    path : str or Path
    txn_id : int, optional
        A read transaction (held by the caller) whose snapshot to check; else the
        check opens the store's environment and holds one itself, so that writers
        in other processes cannot reuse the pages it reads.
    progress : bool
        A progress bar over each table's pages.
    """
    path = Path(path)
    report = CheckReport(str(path))
    if not (path / "data.mdb").is_file():
        raise FileNotFoundError(f"no tierstore store at {path} (no data.mdb)")
    if not supported():
        report.problems.append(Problem("the checker reads LMDB's 64-bit little-endian layout, which this platform "
                                       "does not use"))
        return report
    try:
        meta = read_meta(path)
    except CorruptStoreError as err:
        report.problems.append(Problem(str(err)))
        return report
    report.lmdb = {"page size": meta.psize, "txn": meta.txn_id, "pages in use": meta.n_pages}
    if txn_id is not None:
        _check_snapshot(path, txn_id, report, progress)
        return report
    try:
        env = environment.acquire(path, readonly=True, map_size=meta.n_pages * meta.psize)
    except (lmdb.Error, CorruptStoreError, IncompatibleStoreError, ValueError) as err:
        report.problems.append(Problem(f"LMDB cannot open the store: {err}"))
        return report
    try:
        with env.begin() as txn:
            _check_snapshot(path, txn.id(), report, progress)
    finally:
        environment.release(env)
    return report


def _check_snapshot(path: Path, txn_id: int, report: CheckReport, progress: bool) -> None:
    reader = LmdbDirectReader(path)
    try:
        _Checker(path, reader, report, progress).run(txn_id)
    except CorruptStoreError as err:
        report.problems.append(Problem(str(err)))
    finally:
        reader.close()


class _Checker:
    def __init__(self, path: Path, reader: LmdbDirectReader, report: CheckReport, progress: bool):
        self.path = path
        self.reader = reader
        self.report = report
        self.progress = progress

    def problem(self, message: str, table: str | None = None, page: int | None = None) -> None:
        self.report.problems.append(Problem(message, table, page))

    def run(self, txn_id: int) -> None:
        reader = self.reader
        snapshot = reader.pin(txn_id)
        if snapshot is None:
            self.problem(f"the snapshot of transaction {txn_id} is gone (a writer reused its meta page)")
            return
        self.snapshot = snapshot
        self.seen = np.zeros(snapshot.n_pages, dtype=np.uint8)
        self.seen[:2] = 1
        main = self.tree_entries(snapshot.main_root, "LMDB's main database")
        databases = {}
        for k, n, v, size, flags in zip(main.key_off.tolist(), main.key_len.tolist(), main.val_off.tolist(),
                                        main.val_len.tolist(), main.flags.tolist()):
            name = reader.view[k : k + n].tobytes()
            if size != DB_RECORD or not flags & F_SUBDATA or flags & F_BIGDATA:
                self.problem(f"the main database holds {name!r}, which is not a database record")
                continue
            databases[name] = DbRecord.parse(reader.view[v : v + DB_RECORD].tobytes())
        self.check_free_pages()
        if META_DB not in databases:
            self.problem("no tierstore metadata (__meta__): not a tierstore store")
            return
        meta = self.check_meta(databases.pop(META_DB))
        if meta is not None:
            for entry in meta["tables"]:
                self.check_table(entry, meta["format_version"], databases)
        for name, record in databases.items():
            owned = self.count_pages(record.root, f"database {name!r}")
            if meta is not None:
                self.report.notes.append(f"database {name.decode(errors='replace')!r} is used by no table (left by "
                                         f"a crashed writer?): {owned} pages; the next load of its table drops it")
        unaccounted = np.flatnonzero(self.seen == 0)
        if unaccounted.size:
            self.problem(f"{unaccounted.size} pages are neither in use nor free (first: {int(unaccounted[0])}): "
                         f"LMDB's free list is damaged")
        self.report.lmdb["free pages"] = self.free_pages

    def tree_entries(self, root: int, what: str, searchable: bool = True):
        """Every node of the tree at ``root``, its pages marked; with ``searchable`` (memcmp-ordered trees),
        a search for each key must find that very node."""
        leaves = self.reader.leaves(self.snapshot, root, what, self.seen)
        found = self.reader.leaf_entries(self.snapshot, leaves, what, self.seen)
        view = self.reader.view
        for k, n, v in zip(found.key_off.tolist(), found.key_len.tolist(), found.val_off.tolist()):
            key = view[k : k + n].tobytes()
            if searchable and self.reader.find(self.snapshot, root, key)[1] != v:
                self.problem(f"{what}: a search for key {key!r} does not find it (LMDB's branch pages are damaged)")
        return found

    def count_pages(self, root: int, what: str) -> int:
        """Walk the whole tree at ``root`` (checking it, marking its pages); the pages it uses."""
        before = int(np.count_nonzero(self.seen))
        leaves = self.reader.leaves(self.snapshot, root, what, self.seen)
        for start in range(0, leaves.size, LEAVES_PER_STEP):
            self.reader.leaf_entries(self.snapshot, leaves[start : start + LEAVES_PER_STEP], what, self.seen)
        return int(np.count_nonzero(self.seen)) - before

    def check_free_pages(self) -> None:
        """LMDB's free-page lists: every page number listed once, in range, and on no tree."""
        self.free_pages = 0
        try:
            listed = self.reader.free_pages(self.snapshot, seen=self.seen)
        except CorruptStoreError as err:
            self.problem(str(err))
            return
        if np.any(self.seen[listed]) or np.unique(listed).size != listed.size:
            self.problem("LMDB's free-page lists name pages that are in use, or a page twice")
            return
        self.seen[listed] = 1
        self.free_pages = listed.size

    def check_meta(self, record: DbRecord) -> dict | None:
        values = self.reader.items(self.snapshot, record.root, "the store's metadata")
        self.tree_entries(record.root, "the store's metadata")
        raw, epoch = values.get(b"store"), values.get(b"epoch")
        if raw is None or epoch is None or epoch.size != 8:
            self.problem("the store's metadata or commit counter is missing")
            return None
        try:
            meta = decode_meta(raw.tobytes(), self.path)
        except (CorruptStoreError, IncompatibleStoreError) as err:
            self.problem(str(err))
            return None
        counter = int(epoch.view(np.uint64)[0])
        self.report.format_version = meta["format_version"]
        self.report.commit = counter
        if meta["format_version"] < 2:
            self.report.notes.append("format 1: metadata and positions carry no checksums (open the store "
                                     "writable once to upgrade it)")
        elif meta["epoch"] != counter:
            self.problem(f"the commit counter ({counter}) disagrees with the metadata ({meta['epoch']})")
        recorded = read_commit(self.path)
        if recorded is not None and counter < recorded:
            self.problem(f"the store is at commit {counter}, but commit {recorded} was made durable before "
                         f"({COMMIT_FILE}): LMDB went back to an older snapshot")
        return meta

    def check_table(self, entry: dict, format_version: int, databases: dict) -> None:
        config = TableConfig.from_dict(entry["config"])
        table = TableReport(config.name, config.num_rows, config.dim, config.dtype, entry["layout"],
                            entry["identity"], entry["ready"])
        self.report.tables.append(table)
        if not entry["ready"]:
            return
        record = databases.pop(f"pages:{config.name}:{entry['layout']}".encode(), None)
        if record is None:
            self.problem(f"its page database (layout {entry['layout']}) is missing", config.name)
            return
        before = len(self.report.problems)
        self.check_pages(config, record, table)
        if not entry["identity"]:
            self.check_positions(config, entry["layout"], format_version, databases)
        extra = len(self.report.problems) - before - MAX_PROBLEMS_PER_TABLE
        if extra > 0:
            del self.report.problems[before + MAX_PROBLEMS_PER_TABLE :]
            self.problem(f"... and {extra} more problems", config.name)

    def check_pages(self, config: TableConfig, record: DbRecord, table: TableReport) -> None:
        reader = self.reader
        what = f"table {config.name!r}'s page database"
        n_pages = -(-config.num_rows // config.rows_per_page)
        leaves = reader.leaves(self.snapshot, record.root, what, self.seen)
        steps = range(0, leaves.size, LEAVES_PER_STEP)
        if self.progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"check {config.name}", leave=False)
        expected = 0
        for start in steps:
            found = reader.leaf_entries(self.snapshot, leaves[start : start + LEAVES_PER_STEP], what, self.seen)
            keys = _page_ids(reader.view, found.key_off, found.key_len)
            want = np.arange(expected, expected + keys.size)
            if not np.array_equal(keys, want):
                bad = int(np.argmax(keys != want))
                self.problem(f"page ids out of sequence: page {int(want[bad])} expected, key {int(keys[bad])} found",
                             config.name, int(want[bad]))
                return
            starts, lengths, status = reader.locate(self.snapshot, record.root, keys.astype(np.uint64))
            lost = np.flatnonzero((status != 0) | (starts != found.val_off))
            if lost.size:
                self.problem("a search for the page does not find it (LMDB's branch pages are damaged)",
                             config.name, int(keys[lost[0]]))
                return
            expected += keys.size
            keep = keys < n_pages
            keys, starts = keys[keep], found.val_off[keep]
            ends = starts + found.val_len[keep]
            rows = np.minimum(config.rows_per_page, config.num_rows - keys * config.rows_per_page)
            status = pages.page_status(reader.view, starts, ends, config, rows)
            for i in np.flatnonzero(status)[:MAX_PROBLEMS_PER_TABLE + 1]:
                self.problem(pages.status_message(status[i]), config.name, int(keys[i]))
            good = status == 0
            if config.compression == "zstd" and np.any(good):
                self.check_decompression(config, keys[good], starts[good], rows[good])
            table.pages += keys.size
            table.bytes += int(np.sum(ends - starts))
        if expected != n_pages:
            self.problem(f"{expected} pages stored, {n_pages} expected", config.name,
                         min(expected, n_pages))

    def check_decompression(self, config, keys, starts, rows) -> None:
        try:
            pages.decompress_pages(self.reader.view, starts, config, keys, rows)
        except pages.CorruptPageError:
            for k, s, n in zip(keys, starts, rows):
                try:
                    pages.decompress_pages(self.reader.view, np.array([s]), config, np.array([k]), np.array([n]))
                except pages.CorruptPageError as err:
                    self.problem(str(err).split(": ", 1)[-1], config.name, int(k))

    def check_positions(self, config: TableConfig, layout: int, format_version: int, databases: dict) -> None:
        record = databases.pop(f"pos:{config.name}:{layout}".encode(), None)
        if record is None:
            self.problem(f"its position database (layout {layout}) is missing", config.name)
            return
        what = f"table {config.name!r}'s positions"
        items = list(self.reader.items(self.snapshot, record.root, what).items())
        self.tree_entries(record.root, what)
        try:
            positions = decode_positions(items, config, format_version >= 2, self.path)
        except CorruptStoreError as err:
            self.problem(str(err).split(f"table {config.name!r}: ", 1)[-1], config.name)
            return
        if np.bincount(positions, minlength=config.num_rows).max(initial=0) > 1:
            self.problem("the position array is not a permutation (two rows share a position)", config.name)


def _page_ids(view, key_off, key_len) -> np.ndarray:
    """8-byte big-endian keys as page ids (-1 where a key is not 8 bytes)."""
    ids = np.full(key_off.size, -1, dtype=np.int64)
    ok = key_len == 8
    if np.any(ok):
        raw = view[key_off[ok, None] + np.arange(8)]
        ids[ok] = raw.copy().view(">u8").ravel().astype(np.int64)
    return ids


# --------------------------------------------------------------------- command line
def add_subcommands(subparsers) -> None:
    """Add ``tierstore check STORE [--json]``."""
    parser = subparsers.add_parser("check", help="verify every page, position chunk and the metadata of a store; "
                                   "exits 1 if anything is wrong")
    parser.add_argument("store", help="store directory")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    report = check_store(args.store, progress=not args.quiet and not args.json and sys.stderr.isatty())
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1
