"""The store: an LMDB environment holding every table's pages, read through DRAM tiers.

On disk (one directory): LMDB's ``data.mdb``/``lock.mdb`` with

- ``__meta__``: key ``store`` -> checksummed JSON metadata (format version, commit
  counter, tables, per-table layout and load state); key ``epoch`` -> the commit
  counter (8 bytes), bumped by every commit that changes what readers see;
- ``pages:<table>:<layout>``: the table's pages, keyed by 8-byte big-endian page id;
- ``pos:<table>:<layout>``: the row -> position array in checksummed 1 Mi-entry
  chunks (absent for the identity layout);

and the commit record ``commit`` (see :mod:`tierstore.meta`), which catches LMDB
rolling back to an older commit.

Everything a reader can see changes in one LMDB write transaction: a finished load,
a row update, a new layout.  A crash mid-way leaves the previous version intact.
Each lookup runs inside one read transaction, so it sees one layout, never a mix.
"""

from __future__ import annotations

import copy
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import lmdb
import numpy as np

from cache_policies.setassoc import SetAssociative, is_setassoc
from cache_policies.setassoc import parse as parse_setassoc
from tierstore import environment, kernels, pages
from tierstore.check import check_store
from tierstore.config import TableConfig
from tierstore.dram import DramTier
from tierstore.errors import CorruptStoreError, IncompatibleStoreError, StoreClosedError, StoreWriteError
from tierstore.gpu.serving import GpuServing
from tierstore.ingest import iter_row_chunks
from tierstore.lmdb_direct import open_direct, supported as direct_supported
from tierstore.meta import (
    COMMIT_FILE,
    FORMAT_VERSION,
    decode_meta,
    decode_positions,
    encode_meta,
    encode_positions,
    read_commit,
    write_commit,
)
from tierstore.model_info import ModelInfo
from tierstore.mirror import MirrorTier
from tierstore.plans import ROUTE_CACHED, live_plan
from tierstore.prefetch import PrefetchConfig, Prefetcher
from tierstore.pool_records import copy_records, gather_records, pool_record_ids, pool_records
from tierstore.setassoc import SetAssocTier
from tierstore.ssd import SsdTable, page_keys
from tierstore.stats import LookupStats, mapped_bytes
from tierstore.validate import as_ids, check_bags, check_update, raise_out_of_range

NO_RECORDS = np.zeros((0, 8), dtype=np.uint8)
"""An ``extra`` (or slab) with no records."""
META_DB = b"__meta__"
POSITIONS_CHUNK = 1 << 20
DEFAULT_MAP_SIZE = 1 << 40
IO_MODES = ("mmap", "pread")
SYNC_ATTEMPTS = 16
"""How often a reader retries catching up with other writers' commits before it gives up."""


class _Vanished(Exception):
    """A database the metadata names is gone from the snapshot at hand (a writer moved on): read again."""


def _pages_db(name: str, layout: int) -> bytes:
    return f"pages:{name}:{layout}".encode()


def _positions_db(name: str, layout: int) -> bytes:
    return f"pos:{name}:{layout}".encode()


def _resolve(table: TableConfig) -> TableConfig:
    if table.rows_per_page is not None:
        size = pages.HEADER_BYTES + pages.pad8(pages.raw_payload_bytes(table.dtype, table.dim, table.rows_per_page))
        if size > pages.LMDB_VALUE_LIMIT and table.rows_per_page > 1:
            raise ValueError(
                f"table {table.name!r}: {table.rows_per_page} rows per page make {size}-byte pages; LMDB spills values "
                f"over {pages.LMDB_VALUE_LIMIT} bytes into extra overflow pages (at most "
                f"{pages.default_rows_per_page(table.dtype, table.dim)} rows fit)"
            )
        return table
    return replace(table, rows_per_page=pages.default_rows_per_page(table.dtype, table.dim))


def create(path, tables, map_size: int = DEFAULT_MAP_SIZE) -> "Store":
    """Create an empty store at ``path`` (a new directory) and open it for writing.

    Parameters
    ----------
    path : str or Path
        Directory to create; it must not exist or be empty.
    tables : list of TableConfig
    map_size : int
        LMDB map size (address space reserved, not disk used).

    Raises
    ------
    StoreWriteError
        The files could not be written (a full disk, say); nothing is left behind.
    """
    path = Path(path)
    tables = [_resolve(t) for t in tables]
    names = [t.name for t in tables]
    if not tables:
        raise ValueError("a store needs at least one table")
    if len(set(names)) != len(names):
        raise ValueError(f"table names must be distinct, got {names}")
    if 2 * len(tables) + 1 > environment.MAX_DBS:
        raise ValueError(f"at most {(environment.MAX_DBS - 1) // 2} tables per store")
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty; tierstore.create needs a new directory")
    made_dir = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "epoch": 1,
        "tables": [
            {"config": t.to_dict(), "layout": 0, "identity": True, "ready": False, "data_version": 0} for t in tables
        ],
    }
    env = None
    try:
        env = environment.acquire(path, readonly=False, map_size=map_size, create=True)
        with env.begin(write=True) as txn:
            db = env.open_db(META_DB, txn=txn)
            txn.put(b"store", encode_meta(meta), db=db)
            txn.put(b"epoch", np.uint64(1).tobytes(), db=db)
        write_commit(path, 1)
    except (lmdb.Error, OSError) as err:
        reason = environment.write_failure(err, path, map_size)
        if env is not None:
            environment.release(env)
        environment.remove_new_store(path, made_dir)
        raise StoreWriteError(f"creating the store {path} failed: {reason}; nothing was left behind") from err
    try:
        return Store(path, env, readonly=False, dram_cache_bytes=0, policy="lru")
    except BaseException:
        environment.release(env)
        raise


def open(path, dram_cache_bytes: int | dict = 0, policy=None, readonly: bool = True, tables=None,
         map_size: int = DEFAULT_MAP_SIZE, io: str = "mmap", gpu_cache_bytes: int | dict = 0, gpu_policy=None,
         plan=None, prefetch: PrefetchConfig | None = None) -> "Store":
    """Open an existing store.

    Handles on the same store in one process share its LMDB environment (the first
    one opened decides whether it is writable: a writable handle cannot join a
    read-only one).  Opening checks the files first: a truncated or damaged data
    file, damaged metadata or a rolled-back commit raise :class:`CorruptStoreError`.

    Parameters
    ----------
    path : str or Path
    dram_cache_bytes : int or dict
        An int is one DRAM budget shared by every table; a dict ``{table: bytes}``
        gives tables their own budgets (tables left out get no DRAM cache).
    policy : None, str, SetAssociative or cache_policies.Policy
        What runs the DRAM cache, one of two kinds:

        - **set-associative** (the default, for speed): ``None`` (the default rule
          and ways), ``"setassoc"``, ``"setassoc-<rule>"`` (``lru``, ``lfu``),
          optionally with ``":ways=W,admission=tinylfu"``, or a
          :class:`cache_policies.setassoc.SetAssociative`.  Probe, victim choice and
          admission run in parallel kernels over sets of ``ways`` slots;
        - **exact** (fidelity to libCacheSim): any other name of
          ``cache_policies.available_policies()`` (``"lru"``, ``"s3fifo"``, ...) or a
          ``cache_policies.Policy``: the fully associative state machine that
          ``cache_policies.simulate`` replays, driven one row at a time.

        A budget that holds every row of its tables makes a mirror (slot = row,
        nothing evicted) under either kind.
    readonly : bool
        A writable open of a format 1 store upgrades it to the current format.
    tables : list of TableConfig, optional
        If given, the store's tables must match exactly (else IncompatibleStoreError).
    map_size : int
        LMDB map size (the most the store may grow to while open for writing).
    io : {"mmap", "pread"}
        How SSD pages are read.  ``"mmap"`` decodes them in place in a read-only map
        of the data file: fastest, but every page touched stays mapped, so the
        process's RSS counts up to the whole file (as page-cache pages the OS can
        reclaim).  ``"pread"`` copies each batch's pages with parallel ``pread``
        calls and drops the map's pages after each B+tree walk: RSS stays near the
        DRAM budget whatever the file size, at a syscall per page (see
        ``bench/bench_lookup.py`` for both).
    gpu_cache_bytes : int or dict
        A GPU tier above DRAM (:mod:`tierstore.gpu`; needs the ``gpu`` extra and a
        CUDA GPU, or numba's CUDA simulator): device memory for rows at their
        stored width, one budget shared by every table or ``{table: bytes}``.
        Lookups then pool on the device; ``device="cuda"`` keeps the output there.
        0 (the default): no GPU tier, and nothing CUDA is imported.
    gpu_policy : None, str or SetAssociative
        The GPU tier's set-associative rule and ways (``"setassoc-lru"`` or
        ``"setassoc-lfu"``, ``":ways=W"``); default the DRAM tier's rule and ways
        with no admission filter (``tierstore.gpu.serving.GPU_DEFAULT``).
    plan : placement.PlacementPlan or path, optional
        A placement plan (or a saved plan's directory) to apply (see
        :mod:`tierstore.plans`): its DRAM-pinned rows are read now and never
        evicted, its SSD-only rows are never admitted, the rest are cached; its
        tables share one DRAM budget, ``dram_cache_bytes`` if given (an int, which
        must hold the pinned rows) else the plan's DRAM budget.  Its ``PINNED_GPU`` rows
        are read into the GPU tier at open and never evicted (with no GPU tier, they
        are cached as any other row).  The plan's SSD layout is applied by
        :meth:`Store.apply_layout` (``tierstore place``), not here.
    prefetch : PrefetchConfig, optional
        Bound on the memory of pages read ahead by :meth:`Store.prefetch`, and its queue depth.
    """
    if io not in IO_MODES:
        raise ValueError(f"io must be one of {IO_MODES}, got {io!r}")
    path = Path(path)
    if not (path / "data.mdb").is_file():
        raise FileNotFoundError(f"no tierstore store at {path} (no data.mdb)")
    env = environment.acquire(path, readonly=readonly, map_size=map_size)
    try:
        store = Store(path, env, readonly=readonly, dram_cache_bytes=dram_cache_bytes, policy=policy, io=io,
                      plan=plan, prefetch=prefetch)
    except BaseException:
        environment.release(env)
        raise
    try:
        store._build_gpu_tiers(gpu_cache_bytes, gpu_policy, store._gpu_pinned)
    except BaseException:
        store.close()
        raise
    if tables is not None:
        expected = {t.name: _resolve(t) for t in tables}
        if expected != store.tables:
            store.close()
            raise IncompatibleStoreError(
                f"{path}: tables differ from the expected ones: store has {sorted(store.tables.values(), key=str)}"
            )
    return store


class Store(GpuServing):
    """An open store: pooled lookups through the GPU and DRAM tier(s) over the LMDB pages.

    Built by :func:`tierstore.create` or :func:`tierstore.open`.  Lookups are
    serialized per store (a lock); the kernels inside use every Numba thread.
    """

    def __init__(self, path: Path, env, readonly: bool, dram_cache_bytes, policy, io: str = "mmap", plan=None,
                 prefetch: PrefetchConfig | None = None):
        self.path = Path(path)
        self.env = env
        self.readonly = readonly
        self._closed = False
        self._lock = threading.RLock()
        self._writer = environment.writer_lock(env)
        self._stats = LookupStats()
        self._epoch = None
        self._synced_txn = None
        self._snapshot = None
        self._meta_db = None
        self._tier_of: dict = {}
        self._tiers: list = []
        self._routes: dict[str, np.ndarray] = {}
        self._pinned: dict[str, np.ndarray] = {}
        self._stale_pinned: set[str] = set()
        self._pinned_hits = 0
        self._gpu_tiers, self._gpu_of = [], {}
        self._gpu_pinned: dict[str, np.ndarray] = {}
        self._prefetch_config = PrefetchConfig() if prefetch is None else prefetch
        self._prefetcher = None
        self._direct = open_direct(self.path, copy_reads=io == "pread")
        try:
            if io == "pread" and self._direct is None:
                raise ValueError("io='pread' needs the direct LMDB reader, which is off (TIERSTORE_LMDB_DIRECT=0) or "
                                 "does not support this platform; use io='mmap'")
            self._read_meta_and_layouts()
            if plan is None:
                self._build_tiers(dram_cache_bytes, policy)
            else:
                plan = live_plan(plan, self.tables)
                self._apply_plan(plan, dram_cache_bytes, policy)
                self._gpu_pinned = plan.gpu_pinned
        except BaseException:
            if self._direct is not None:
                self._direct.close()
            raise

    # ----------------------------------------------------------------- metadata
    def _read_meta_and_layouts(self) -> None:
        self._meta = None
        self._ssd: dict[str, SsdTable] = {}
        self.read_txn().abort()
        recorded = read_commit(self.path)
        if recorded is not None and self._meta.get("epoch", 0) < recorded:
            raise CorruptStoreError(
                f"{self.path}: the store is at commit {self._meta.get('epoch')}, but commit {recorded} was made "
                f"durable before (see {self.path / COMMIT_FILE}): LMDB went back to an older snapshot (a damaged or "
                f"rolled-back meta page).  Restore a backup, or delete {COMMIT_FILE} to accept the older state"
            )
        if not self.readonly and self._meta["format_version"] < FORMAT_VERSION:
            self._upgrade()

    def _open_db(self, name: bytes):
        """A handle on an existing named database, usable by transactions begun afterwards.

        py-lmdb drops handles opened inside a read transaction when it ends, and a
        transaction never sees handles opened after it began, so handles are opened
        on their own (a short write transaction in a writable environment) before
        the read transaction that uses them.  Raises :class:`_Vanished` if there is none.
        """
        try:
            with self._writer:
                return self.env.open_db(name, create=False)
        except lmdb.NotFoundError:
            raise _Vanished(name) from None
        except lmdb.Error as err:
            raise CorruptStoreError(f"{self.path}: LMDB cannot open database {name!r} ({err})") from None

    def _meta_handle(self):
        if self._meta_db is None:
            try:
                self._meta_db = self._open_db(META_DB)
            except _Vanished:
                raise IncompatibleStoreError(f"{self.path} is an LMDB environment but not a tierstore store") from None
        return self._meta_db

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store handle on {self.path} is closed; open the store again to use it")

    def read_txn(self):
        """A read transaction (MVCC snapshot) in which this handle's view of metadata and layouts is current.

        When another writer committed since the last look (new layout, load, row
        updates), the handle first reloads layouts and drops cached rows of tables
        whose data changed, then retries (at most ``SYNC_ATTEMPTS`` times).
        """
        self._check_open()
        if self._direct is None:
            self._meta_handle()  # before the transaction, which would not see a handle opened after it began
        for _ in range(SYNC_ATTEMPTS):
            txn = self._begin()
            try:
                if self._direct is not None:
                    self._snapshot = self._direct.pin(txn.id())
                    if self._snapshot is None:  # two commits since it began reused its meta page: begin again
                        txn.abort()
                        continue
                if txn.id() == self._synced_txn:
                    return txn
                epoch, raw = self._meta_values(txn)
                if epoch == self._epoch:
                    self._synced_txn = txn.id()
                    return txn
            except BaseException:
                txn.abort()
                raise
            txn.abort()
            meta = decode_meta(raw, self.path)
            self._check_epoch(meta, epoch)
            previous = self._meta
            try:
                self._adopt(meta, epoch)
            except _Vanished:
                continue
            self._invalidate_changed(previous, meta)
        if self._snapshot is None and self._direct is not None:
            raise CorruptStoreError(f"{self.path}: LMDB's meta page for its last transaction holds another "
                                    f"transaction id ({SYNC_ATTEMPTS} tries): a damaged meta page")
        raise CorruptStoreError(f"{self.path}: the metadata names databases that are not in the store (or other "
                                f"writers commit faster than this reader follows: {SYNC_ATTEMPTS} tries)")

    def _begin(self):
        try:
            return self.env.begin(buffers=True)
        except lmdb.Error as err:
            raise CorruptStoreError(f"{self.path}: LMDB cannot begin a read transaction ({err})") from None

    def _meta_values(self, txn) -> tuple[bytes, bytes]:
        """The stored commit counter and metadata in ``txn``'s snapshot."""
        if self._direct is not None:
            record = self._direct.find_db(self._snapshot, META_DB)
            if record is None:
                raise IncompatibleStoreError(f"{self.path} is an LMDB environment but not a tierstore store")
            values = self._direct.items(self._snapshot, record.root, "the store's metadata")
            epoch, raw = values.get(b"epoch"), values.get(b"store")
            epoch = None if epoch is None else epoch.tobytes()
        else:
            try:
                epoch, raw = txn.get(b"epoch", db=self._meta_db), txn.get(b"store", db=self._meta_db)
            except lmdb.Error as err:
                raise CorruptStoreError(f"{self.path}: LMDB cannot read the store's metadata ({err})") from None
            epoch = None if epoch is None else bytes(epoch)
        if raw is None or epoch is None or len(epoch) != 8:
            raise CorruptStoreError(f"{self.path}: the store's metadata or commit counter is missing or damaged")
        return epoch, raw

    def _check_epoch(self, meta: dict, epoch: bytes) -> None:
        """The counter key must match the (checksummed) metadata's copy and never go back."""
        counter = int(np.frombuffer(epoch, np.uint64)[0])
        if meta["format_version"] >= 2 and meta["epoch"] != counter:
            raise CorruptStoreError(f"{self.path}: the commit counter ({counter}) disagrees with the metadata "
                                    f"({meta['epoch']}): damaged")
        if self._epoch is not None and counter < int(np.frombuffer(self._epoch, np.uint64)[0]):
            raise CorruptStoreError(f"{self.path}: the commit counter went back from "
                                    f"{int(np.frombuffer(self._epoch, np.uint64)[0])} to {counter}: LMDB returned "
                                    f"an older snapshot (damaged meta page, or the files were replaced)")

    @contextmanager
    def reading(self, keep: bool = False):
        """A read transaction in which tables read their pages through the direct reader when available.

        Each table finds its B+tree root in the snapshot on its first page read.
        With ``keep`` the transaction outlives the block (unless it raised): the caller aborts it.
        """
        txn = self.read_txn()
        if self._direct is not None:
            for ssd in self._ssd.values():
                ssd.direct = [self._direct, self._snapshot, None]
        try:
            yield txn
        except BaseException:
            keep = False
            raise
        finally:
            for ssd in self._ssd.values():
                ssd.direct = None
            if not keep:
                txn.abort()

    def _catch_up(self) -> None:
        """Raise if closed; else pick up other writers' commits since this handle last read.

        The all-DRAM path opens no read transaction, so it compares LMDB's last
        committed transaction id (from the meta pages in the map, or
        ``Environment.info``) with the one it last synced to: well under a microsecond.
        """
        self._check_open()
        newest = self._direct.last_txn_id() if self._direct is not None else self.env.info()["last_txnid"]
        if newest != self._synced_txn:
            self.read_txn().abort()

    def _invalidate_changed(self, previous, meta) -> None:
        if previous is None:
            return
        before = {e["config"]["name"]: e["data_version"] for e in previous["tables"]}
        for entry in meta["tables"]:
            name = entry["config"]["name"]
            if entry["data_version"] != before.get(name):
                self._drop_cached(name, np.arange(self.tables[name].num_rows, dtype=np.int64))

    def _adopt(self, meta, epoch: bytes) -> None:
        """Make ``meta`` (committed at ``epoch``) this handle's view: tables, page databases, positions.

        Position arrays of layouts this handle already holds are kept, not read again.
        """
        tables, ssd_tables = {}, {}
        for entry in meta["tables"]:
            config = TableConfig.from_dict(entry["config"])
            tables[config.name] = config
            if not entry["ready"]:
                continue
            name = _pages_db(config.name, entry["layout"])
            old = self._ssd.get(config.name)
            if entry["identity"]:
                positions = None
            elif old is not None and old.version[0] == entry["layout"] and old.positions is not None:
                positions = old.positions
            else:
                positions = self._read_positions(config, entry["layout"], meta["format_version"] >= 2)
            table = SsdTable(config, self._open_db(name), name, positions, (entry["layout"], entry["data_version"]))
            table.keep_caches_of(old)
            ssd_tables[config.name] = table
        self._meta, self.tables, self._ssd, self._epoch = meta, tables, ssd_tables, epoch

    def _read_positions(self, config: TableConfig, layout: int, checksummed: bool) -> np.ndarray:
        name = _positions_db(config.name, layout)
        with self.env.begin(buffers=True) as txn:
            if self._direct is not None:
                snapshot = self._direct.pin(txn.id())
                record = None if snapshot is None else self._direct.find_db(snapshot, name)
                if record is None:
                    raise _Vanished(name)
                items = list(self._direct.items(snapshot, record.root, f"positions of table {config.name!r}").items())
            else:
                try:
                    db = self.env.open_db(name, txn=txn, create=False)
                    items = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
                except lmdb.NotFoundError:
                    raise _Vanished(name) from None
                except lmdb.Error as err:
                    raise CorruptStoreError(f"{self.path}: LMDB cannot read {name!r} ({err})") from None
        return decode_positions(items, config, checksummed, self.path)

    def _publish(self, txn, meta) -> bytes:
        """Write ``meta`` and bump the commit counter inside the caller's write transaction
        (from :meth:`_write_txn`); returns the new counter."""
        meta["epoch"] = int(np.frombuffer(self._epoch, np.uint64)[0]) + 1
        epoch = np.uint64(meta["epoch"]).tobytes()
        txn.put(b"store", encode_meta(meta), db=self._meta_handle())
        txn.put(b"epoch", epoch, db=self._meta_handle())
        return epoch

    def _after_commit(self, meta, epoch: bytes) -> None:
        """Record a finished commit (the commit record, for rollback detection) and make it this handle's view."""
        try:
            write_commit(self.path, int(np.frombuffer(epoch, np.uint64)[0]))
        except OSError as err:
            warnings.warn(f"{self.path}: committed, but the commit record could not be written ({err}); a rollback "
                          f"of this commit would go unnoticed", RuntimeWarning, stacklevel=3)
        self._adopt(meta, epoch)

    @contextmanager
    def _write_txn(self):
        """A write transaction in which this handle's view is the last committed one (committed if the block
        ends normally, aborted if it raises), under the environment's writer lock.

        Another process may commit between this handle's last read and the write
        transaction's start; then the view is brought up to date and the write begun again.
        """
        with self._writer:
            for _ in range(SYNC_ATTEMPTS):
                self.read_txn().abort()
                meta_db = self._meta_handle()  # opening a handle needs a write transaction of its own: before ours
                txn = self.env.begin(write=True, buffers=True)
                if bytes(txn.get(b"epoch", db=meta_db)) == self._epoch:
                    break
                txn.abort()
            else:
                raise StoreWriteError(f"{self.path}: other writers kept committing; {SYNC_ATTEMPTS} tries to write "
                                      "failed")
            with txn:
                yield txn

    @contextmanager
    def _writing(self, **options):
        """A plain write transaction (``env.begin(write=True, **options)``) under the environment's writer lock
        (see :func:`environment.writer_lock`), committed if the block ends normally."""
        with self._writer, self.env.begin(write=True, **options) as txn:
            yield txn

    def _write_failed(self, err, what: str, kept: str, wanted: int = 0, clean_up=None) -> StoreWriteError:
        """The StoreWriteError for a failed write: ``what`` failed, why (see :func:`environment.write_failure`,
        judged before anything is freed), ``kept``, what is unchanged, and what ``clean_up()`` (default:
        :meth:`_release_unused`) freed."""
        reason = environment.write_failure(err, self.path, self.env.info()["map_size"], wanted)
        return StoreWriteError(f"{what} failed: {reason}; {kept}{(clean_up or self._release_unused)()}")

    def _release_unused(self) -> str:
        """Give the disk back the blocks of pages no one uses: what a failed commit wrote past the last
        committed page, and free pages no reader can reach (a failed commit may have filled them); says how much.

        A write transaction is held meanwhile (only for LMDB's writer lock): no
        other writer is filling those pages or can be handed them.
        """
        if self._direct is None:
            return ""
        try:
            with self._writer:
                txn = self.env.begin(write=True)
                try:
                    committed = txn.id() - 1
                    snapshot = self._direct.pin(committed)
                    oldest = min([committed, *environment.reader_txn_ids(self.env)])
                    free = self._direct.free_pages(snapshot, older_than=oldest)
                    released = environment.release_tail(self.path) + environment.release_pages(
                        self.path, environment.page_runs(free), self._direct.psize)
                finally:
                    txn.abort()
        except (lmdb.Error, OSError, CorruptStoreError) as err:
            return f"; what it wrote could not be freed ({err})"
        return f"; {released / (1 << 20):.1f} MiB of unused pages were given back to the disk" if released else ""

    @staticmethod
    def _entry(meta, name: str) -> dict:
        return next(e for e in meta["tables"] if e["config"]["name"] == name)

    # ----------------------------------------------------------------- tiers
    @staticmethod
    def _make_tier(tables, budget: int, policy, pinned: dict | None = None):
        """The tier for ``policy`` (see :func:`open`) over ``tables`` with ``budget`` bytes for cached rows
        (and ``pinned`` rows per table besides, never in a mirror)."""
        if policy is not None and not is_setassoc(policy):
            return DramTier(tables, budget, policy, pinned)
        cache = parse_setassoc(policy if policy is not None else SetAssociative())
        if not pinned and sum(t.num_rows * t.cached_row_bytes for t in tables) <= budget:
            return MirrorTier(tables, budget)
        return SetAssocTier(tables, budget, cache, pinned)

    def _apply_plan(self, plan, dram_cache_bytes, policy) -> None:
        """One DRAM tier over the plan's tables (then the store's others) with the plan's pinned rows read
        into it and its routes in place."""
        if isinstance(dram_cache_bytes, dict) or int(dram_cache_bytes) < 0:
            raise ValueError("with a plan, dram_cache_bytes is one budget (an int >= 0) for the plan's tables")
        total = int(dram_cache_bytes) or plan.dram_bytes
        tables = [self.tables[n] for n in plan.tables] + [t for n, t in self.tables.items() if n not in plan.tables]
        counts = {n: rows.size for n, rows in plan.pinned.items()}
        widths = {t.name: t.cached_row_bytes for t in tables}
        if policy is None or is_setassoc(policy):
            widths = dict.fromkeys(widths, max(widths.values()))
        pinned_bytes = sum(counts[n] * widths[n] for n in counts)
        if pinned_bytes > total:
            raise ValueError(f"the plan pins {pinned_bytes} bytes of rows, more than the DRAM budget of {total}")
        tier = self._make_tier(tables, total - pinned_bytes, policy, counts)
        self._tiers.append(tier)
        for t in tables:
            self._tier_of[t.name] = tier
        self._routes = plan.routes(tier.pinned_slots)
        self._pinned = plan.pinned
        with self.reading() as txn:
            for name in plan.tables:
                self._load_pinned(txn, name)

    def _load_pinned(self, txn, name: str) -> None:
        """Read ``name``'s pinned rows into their slab rows."""
        rows = self._pinned[name]
        if rows.size:
            tier = self._tier_of[name]
            ssd = self._ssd_of(name)
            step = max(1, (64 << 20) // max(ssd.config.cached_row_bytes, 1))
            for start in range(0, rows.size, step):
                chunk = rows[start : start + step]
                copy_records(tier.slab(name), tier.pinned_slots(name, rows)[start : start + step],
                             ssd.read_stored(txn, chunk))
        self._stale_pinned.discard(name)

    def _drop_cached(self, name: str, rows: np.ndarray) -> None:
        """Forget cached copies of ``rows`` of ``name`` (their data changed); pinned ones are read again."""
        tier = self._tier_of.get(name)
        if tier is not None:
            tier.invalidate(name, rows)
        route = self._routes.get(name)
        if route is not None and np.any(route[rows] >= 0):
            self._stale_pinned.add(name)
        self._gpu_invalidate(name, rows)

    def _build_tiers(self, dram_cache_bytes, policy) -> None:
        if isinstance(dram_cache_bytes, dict):
            unknown = set(dram_cache_bytes) - set(self.tables)
            if unknown:
                raise KeyError(f"dram_cache_bytes names unknown tables {sorted(unknown)}; tables: {sorted(self.tables)}")
            groups = [([self.tables[n]], b) for n, b in dram_cache_bytes.items() if b > 0]
        elif int(dram_cache_bytes) > 0:
            groups = [(list(self.tables.values()), int(dram_cache_bytes))]
        elif int(dram_cache_bytes) == 0:
            groups = []
        else:
            raise ValueError(f"dram_cache_bytes must be >= 0, got {dram_cache_bytes}")
        for tables, budget in groups:
            tier = self._make_tier(tables, budget, policy)
            self._tiers.append(tier)
            for t in tables:
                self._tier_of[t.name] = tier

    def _table(self, name: str) -> TableConfig:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"unknown table {name!r}; tables: {sorted(self.tables)}") from None

    def _ssd_of(self, name: str) -> SsdTable:
        ssd = self._ssd.get(name)
        if ssd is None:
            raise ValueError(f"table {name!r} has no data yet: load it first (Store.load)")
        return ssd

    # ----------------------------------------------------------------- reads
    def _locate(self, txn, name: str, idx: np.ndarray, count: bool = True, ahead=None):
        """Where each index's row is: ``loc`` (>= 0 slab slot, < 0 row of ``extra``), the slab, ``extra``,
        and what to hand the DRAM tier once the batch is pooled (None: nothing).

        The tier places the batch's distinct rows first (hits, and misses it admits
        now); missed rows are then read (from ``ahead``, the table's pages read ahead
        by :meth:`prefetch`, where it has them), and those admitted copied into their
        slots.  If the read fails, the rows admitted for it are dropped again.
        """
        tier = self._tier_of.get(name)
        ssd = self._ssd_of(name)
        if self._fully_resident(name):
            if count:
                self._stats.dram_hits += idx.size
            return idx, tier.slab(name), NO_RECORDS, None
        if name in self._stale_pinned:
            self._load_pinned(txn, name)
        uniq, inverse, occurrences = kernels.unique_inverse_counts(idx)
        if tier is None:
            hit_slots = slots = np.full(uniq.size, -1, dtype=np.int64)
            allowed = pinned = None
        else:
            hit_slots, slots, allowed, pinned = self._place(tier, name, uniq, occurrences)
        missed = np.flatnonzero(hit_slots < 0)
        miss_rows = uniq[missed]
        dest = slots[missed]
        try:
            extra = None if ahead is None else self._prefetcher.read_stored(ahead, ssd, txn, miss_rows)
            if extra is None:
                extra = ssd.read_stored(txn, miss_rows)
        except BaseException:
            if tier is not None:
                tier.invalidate(name, miss_rows[dest >= 0])
            raise
        loc_of_row = hit_slots.copy()
        loc_of_row[missed] = -1 - np.arange(missed.size, dtype=np.int64)
        loc = loc_of_row[inverse]
        if count:
            hits = int(np.count_nonzero(loc >= 0))
            self._stats.dram_hits += hits
            self._stats.dram_misses += idx.size - hits
            if pinned is not None:
                self._pinned_hits += int(np.count_nonzero(pinned[inverse]))
        if tier is None:
            return loc, NO_RECORDS, extra, None
        copy_records(tier.slab(name), dest, extra)
        if count:
            self._stats.rows_admitted += int(np.count_nonzero(dest >= 0))
        if allowed is not None:
            offered = allowed[missed]
            return loc, tier.slab(name), extra, (miss_rows[offered], extra[offered])
        return loc, tier.slab(name), extra, (miss_rows, extra)

    def _place(self, tier, name: str, uniq: np.ndarray, occurrences: np.ndarray):
        """``tier.place`` of a batch's distinct rows (occurring ``occurrences`` times each) under the plan's
        routes, if any: ``(hit_slots, slots, allowed, pinned)``, where pinned rows hit their own slab
        rows and SSD-only rows are not ``allowed`` into the cache (both None without a plan)."""
        route = self._routes.get(name)
        if route is None:
            hit_slots, slots = tier.place(name, uniq, occurrences=occurrences)
            return hit_slots, slots, None, None
        to_tier = route[uniq].astype(np.int64)
        pinned = to_tier >= 0
        rest = np.flatnonzero(~pinned)
        allowed = np.ones(uniq.size, dtype=np.bool_)
        allowed[rest] = to_tier[rest] == ROUTE_CACHED
        hit_slots, slots = to_tier, to_tier.copy()
        hit_slots[rest], slots[rest] = tier.place(name, uniq[rest], allowed[rest], occurrences[rest])
        return hit_slots, slots, allowed, pinned

    def _admit(self, name: str, pending, count: bool = True) -> None:
        """Hand a batch's missed rows to the DRAM tier once the batch is pooled (the exact tier admits
        them then: its evictions cannot touch rows the batch reads)."""
        if pending is not None:
            admitted = self._tier_of[name].after_pool(name, *pending)
            if count:
                self._stats.rows_admitted += admitted

    def _gpu_records(self, txn, name: str, rows: np.ndarray, count: bool = True) -> np.ndarray:
        """Stored records (uint8 ``[len(rows), row_bytes]``) of distinct ``rows`` the GPU tier missed, read
        through the DRAM tier (which counts, and may admit, them as one access each) and SSD: DRAM and SSD
        hold rows at their stored width, so records pass through bit-exact for every dtype."""
        width = self.tables[name].row_bytes
        loc, slab, extra, pending = self._locate(txn, name, rows, count)
        out = np.empty((rows.size, width), dtype=np.uint8)
        hit, missed = np.flatnonzero(loc >= 0), np.flatnonzero(loc < 0)
        if hit.size:
            out[hit] = slab[loc[hit], :width]
        if missed.size:
            out[missed] = extra[-1 - loc[missed], :width]
        self._admit(name, pending, count)
        return out

    def _check_request(self, name, indices, offsets, per_sample_weights, mode, include_last_offset, out,
                       check_range=True):
        config = self._table(name)
        idx, off, weights, mode_code = check_bags(name, config.num_rows, indices, offsets, per_sample_weights, mode,
                                                  include_last_offset, check_range)
        self._ssd_of(name)
        if out is None:
            out = np.empty((off.size - 1, config.dim), dtype=np.float32)
        elif out.shape[0] != off.size - 1:
            raise ValueError(f"table {name!r}: {off.size - 1} bags, but the batch has {out.shape[0]}")
        return idx, off, weights, mode_code, out

    def _fully_resident(self, name: str) -> bool:
        tier = self._tier_of.get(name)
        return tier is not None and tier.fully_resident(name)

    def lookup(self, table: str, indices, offsets, per_sample_weights=None, mode: str = "sum",
               include_last_offset: bool = False, device=None) -> np.ndarray:
        """Pooled lookup of one table's bags, as ``torch.nn.functional.embedding_bag``.

        Parameters
        ----------
        table : str
        indices : 1-D int array
            Row ids, all in ``[0, num_rows)``.
        offsets : 1-D int array
            Bag starts (length B), or B + 1 entries ending at ``len(indices)`` with
            ``include_last_offset=True``.  Non-decreasing, starting at 0.
        per_sample_weights : 1-D float array, optional
            One weight per index (``mode="sum"`` only).
        mode : {"sum", "mean", "max"}
            Empty bags give zeros in every mode.
        device : {None, "cpu", "cuda"}
            ``"cuda"`` (a store with a GPU tier) returns the output on the device: a
            torch CUDA tensor where torch has CUDA, else a numba device array
            (``__cuda_array_interface__``, taken by ``torch.as_tensor`` without a copy).

        Returns
        -------
        ndarray, float32 [B, dim] (or the device array above)
        """
        request = (table, indices, offsets, per_sample_weights, mode, include_last_offset)
        if self._uses_gpu(device):
            return self._run_gpu_batch([request], device)
        return self._run_batch([request], None)[0]

    def lookup_batch(self, batch, mode: str | dict = "sum", device=None) -> np.ndarray:
        """Pooled lookups of every key of a ``SparseBatch``.

        ``device="cuda"`` returns the output on the device, as :meth:`lookup`.

        Returns
        -------
        ndarray, float32 [B, sum(dims)]
            Key order; :meth:`table_views` splits it per table without copies.
        """
        modes = mode if isinstance(mode, dict) else {k: mode for k in batch.keys}
        unknown = set(modes) - set(self.tables)
        if unknown:
            raise KeyError(f"mode names unknown tables {sorted(unknown)}; tables: {sorted(self.tables)}")
        requests = []
        for key in batch.keys:
            self._table(key)
            indices, offsets, weights = batch.table(key)
            requests.append((key, indices, offsets, weights, modes.get(key, "sum"), True))
        if self._uses_gpu(device):
            return self._run_gpu_batch(requests, device)
        dims = [self.tables[k].dim for k in batch.keys]
        out = np.empty((batch.batch_size, int(sum(dims))), dtype=np.float32)
        handle = None if self._prefetcher is None else self._prefetcher.claim(batch)
        try:
            self._run_batch(requests, self.table_views(batch.keys, out), handle)
        finally:
            if handle is not None:
                self._prefetcher.release(handle)
        return out

    def prefetch(self, batch):
        """Start reading the SSD pages ``batch`` (a ``SparseBatch``) will miss, on background threads; returns
        a :class:`tierstore.prefetch.PrefetchHandle` at once.

        The next :meth:`lookup_batch` of this very batch object uses the pages read
        ahead and waits only for reads still in flight; it reads whatever was not read
        ahead itself.  Rows are the same as without prefetching: pages of a table
        changed by a commit since are dropped, and a failed read ahead (I/O error,
        corrupt page) is raised by that lookup if it needs the page.  Pages held are
        bounded by ``PrefetchConfig.max_bytes`` (``open(..., prefetch=...)``) and
        counted in ``stats()["prefetch"]``.  ``cancel()`` the handle of a batch that
        will not be looked up.  Reads ahead need the direct LMDB reader (with
        ``TIERSTORE_LMDB_DIRECT=0`` nothing is read ahead).  A store with a GPU tier
        refuses it: its lookups read their misses through the GPU path, which does not
        take pages read ahead.
        """
        self._check_open()
        if self._gpu_tiers:
            raise ValueError("prefetch() does not serve stores with a GPU tier (gpu_cache_bytes): their lookups "
                             "read misses through the GPU path, which takes no pages read ahead")
        for key in batch.keys:
            self._table(key)
        with self._lock:
            self._check_open()
            if self._prefetcher is None:
                self._prefetcher = Prefetcher(self, self._prefetch_config)
        return self._prefetcher.submit(batch)

    def table_views(self, keys, pooled: np.ndarray) -> dict[str, np.ndarray]:
        """Per-table views ``{key: pooled[:, a:b]}`` of a :meth:`lookup_batch` result."""
        views, start = {}, 0
        for key in keys:
            dim = self._table(key).dim
            views[key] = pooled[:, start : start + dim]
            start += dim
        return views

    def _run_batch(self, requests, views, prefetched=None):
        with self._lock:
            started = self._stats.start_batch()
            self._catch_up()
            resident = all(self._fully_resident(r[0]) for r in requests)
            checked = [
                (r[0],) + self._check_request(*r, None if views is None else views[r[0]], check_range=not resident)
                for r in requests
            ]
            if resident:
                self._pool_resident(checked)
            else:
                with self.reading() as txn:
                    for name, idx, off, weights, mode_code, out in checked:
                        loc, slab, extra, pending = self._locate(txn, name, idx, ahead=prefetched and
                                                                 prefetched.pages(name))
                        config = self.tables[name]
                        pool_records(slab, extra, loc, off, weights, mode_code, pages.DTYPE_CODES[config.dtype],
                                     config.dim, out)
                        self._admit(name, pending)
            for _, idx, off, *_ in checked:
                self._stats.lookups += idx.size
                self._stats.bags += off.size - 1
            self._stats.record_batch(time.perf_counter() - started)
            return [c[-1] for c in checked]

    def _pool_resident(self, checked) -> None:
        """Pool requests whose tables are wholly in DRAM: no read transaction, and the kernel checks
        the ids' range as it reads them (their one other pass); a bad id raises before any count changes."""
        for name, idx, off, weights, mode_code, out in checked:
            config = self.tables[name]
            if not pool_record_ids(self._tier_of[name].slab(name), idx, off, weights, mode_code,
                                   pages.DTYPE_CODES[config.dtype], config.dim, out):
                raise_out_of_range("indices", idx, self.tables[name].num_rows, name)
        for name, idx, *_ in checked:
            self._stats.dram_hits += idx.size

    def get_rows(self, table: str, ids) -> np.ndarray:
        """Rows ``ids`` of ``table`` as float32 ``[len(ids), dim]`` (through the caches)."""
        self._check_open()
        config = self._table(table)
        idx = as_ids("ids", ids, config.num_rows, table)
        self._ssd_of(table)
        with self._lock, self.reading() as txn:
            loc, slab, extra, pending = self._locate(txn, table, idx)
            out = np.empty((idx.size, config.dim), dtype=np.float32)
            gather_records(slab, extra, loc, pages.DTYPE_CODES[config.dtype], config.dim, out)
            self._admit(table, pending)
            return out

    def warm(self, table: str, progress: bool = False) -> None:
        """Read every row of ``table`` into its GPU tier if that holds the whole table, else into its DRAM tier
        (which must then hold the whole table)."""
        self._check_open()
        config = self._table(table)
        tier = self._tier_of.get(table)
        if self._gpu_warm(table):
            return
        if tier is None or not tier.mirror:
            raise ValueError(f"table {table!r}: warm() needs a DRAM (or GPU) budget that holds every row of its tier")
        self._ssd_of(table)
        step = max(config.rows_per_page, (64 << 20) // max(config.row_bytes, 1) // config.rows_per_page
                   * config.rows_per_page)
        with self._lock, self.reading() as txn:
            for start in _progress(range(0, config.num_rows, step), progress, f"warm {table}"):
                rows = np.arange(start, min(start + step, config.num_rows), dtype=np.int64)
                _, _, _, pending = self._locate(txn, table, rows, count=False)
                self._admit(table, pending, count=False)

    # ----------------------------------------------------------------- stats
    def stats(self) -> dict:
        """Per-tier hits and misses, SSD reads, lookups and batch latency percentiles.

        With a GPU tier, ``"gpu"`` counts every access (hits, misses, pinned hits),
        and the DRAM tier counts the distinct rows the GPU tier fetched from it per batch;
        batch latencies of ``device="cuda"`` lookups end when the host has queued the
        kernels (the device may still be pooling).
        """
        s = self._stats
        accesses = s.dram_hits + s.dram_misses
        ssd = {"pages_read": 0, "bytes_read": 0, "rows_decoded": 0}
        for table in self._ssd.values():
            ssd["pages_read"] += table.counters.pages
            ssd["bytes_read"] += table.counters.bytes
            ssd["rows_decoded"] += table.counters.rows
        return {
            "dram": {
                "hits": s.dram_hits,
                "misses": s.dram_misses,
                "hit_rate": s.dram_hits / accesses if accesses else 0.0,
                "pinned_hits": self._pinned_hits,
                "rows_admitted": s.rows_admitted,
                "bytes_used": sum(t.used_bytes for t in self._tiers),
                "budget_bytes": sum(t.budget_bytes + t.pinned_bytes for t in self._tiers),
            },
            "ssd": {**ssd, "hits": s.dram_misses},
            **({"gpu": self._gpu_stats()} if self._gpu_tiers else {}),
            "lookups": s.lookups,
            "bags": s.bags,
            "batches": s.batches,
            "latency": s.latency_percentiles(),
            "prefetch": (self._prefetcher.stats() if self._prefetcher is not None else
                         Prefetcher.idle_stats(self._prefetch_config)),
        }

    def describe(self) -> dict:
        """What is stored, from one snapshot: format, file sizes and, per table, its config, layout and data versions.

        Per table: ``config``, ``loaded``, ``layout`` (its id: the LMDB transaction that wrote it), ``identity_layout``
        (rows in id order), ``data_version`` (bumped by every load and row update),
        ``pages`` and ``bytes_on_disk`` (the LMDB pages of its page and position databases).
        """
        self._check_open()
        with self._lock:
            txn = self.read_txn()
            try:
                psize = self.env.stat()["psize"]
                tables = {}
                for entry in self._meta["tables"]:
                    name = entry["config"]["name"]
                    info = {"config": self.tables[name].to_dict(), "loaded": entry["ready"], "layout": entry["layout"],
                            "identity_layout": entry["identity"], "data_version": entry["data_version"],
                            "pages": 0, "bytes_on_disk": 0}
                    if entry["ready"]:
                        stat = txn.stat(self._ssd[name].db)
                        info["pages"] = stat["entries"]
                        dbs = [stat] if entry["identity"] else [stat, txn.stat(self.env.open_db(
                            _positions_db(name, entry["layout"]), txn=txn, create=False))]
                        info["bytes_on_disk"] = psize * sum(
                            d["branch_pages"] + d["leaf_pages"] + d["overflow_pages"] for d in dbs)
                    tables[name] = info
                used = (self.env.info()["last_pgno"] + 1) * psize
            finally:
                txn.abort()
        return {"path": str(self.path), "format_version": self._meta["format_version"],
                "file_bytes": (self.path / "data.mdb").stat().st_size, "used_bytes": used, "tables": tables}

    def data_file_mapped_bytes(self) -> int | None:
        """How much of the LMDB data file this process holds mapped, or None where ``/proc`` is missing.

        That is RSS the OS can reclaim as page cache: large with ``io="mmap"``, small
        with ``io="pread"``.  Parses ``/proc/self/smaps`` (milliseconds), so it is
        kept out of :meth:`stats`.
        """
        return mapped_bytes(self.path / "data.mdb")

    def reset_stats(self) -> None:
        """Zero every counter (cache contents stay)."""
        self._stats.reset()
        self._pinned_hits = 0
        self._reset_gpu_stats()
        if self._prefetcher is not None:
            self._prefetcher.reset_stats()
        for table in self._ssd.values():
            table.counters = type(table.counters)()

    # ----------------------------------------------------------------- writes
    def _writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise PermissionError(f"{self.path} is open read-only; open it with readonly=False to write")

    @property
    def model_info(self) -> ModelInfo | None:
        """Features and pooling of the model the tables came from (recorded by ``from_torch``), or None."""
        self._check_open()
        with self._lock:
            self.read_txn().abort()
            raw = self._meta.get("model")
        return None if raw is None else ModelInfo.from_dict(raw)

    def set_model_info(self, info: ModelInfo | None) -> None:
        """Record ``info`` (None: forget it) in the store's metadata, in one write transaction.

        Every table it names must be in the store (else ``KeyError``, nothing written).
        """
        self._writable()
        if info is not None:
            for table in info.tables:
                self._table(table.table)
        with self._lock:
            try:
                with self._write_txn() as txn:
                    meta = copy.deepcopy(self._meta)
                    meta.pop("model", None)
                    if info is not None:
                        meta["model"] = info.to_dict()
                    epoch = self._publish(txn, meta)
            except lmdb.Error as err:
                raise self._write_failed(err, "recording model info", "nothing was changed") from err
            self._after_commit(meta, epoch)

    def load(self, table: str, source, progress: bool = True, chunk_bytes: int = 64 << 20) -> None:
        """Bulk-load every row of ``table`` from an array, a ``.npy`` path or an iterator of row chunks.

        Memory stays bounded by ``chunk_bytes`` whatever the table size (a ``.npy``
        file is memory-mapped).  Rows are written in chunks into a new layout (named
        after the transaction that starts it, so two loads never share one);
        readers keep seeing the table's previous contents until the final commit
        publishes the new ones, so a crash mid-load loses nothing.  A load that
        fails drops what it wrote and gives its pages back to the disk, and the
        :class:`StoreWriteError` says why it failed (a full disk, a full map...).
        """
        self._writable()
        config = self._table(table)
        chunk_rows = max(1, chunk_bytes // (config.dim * 4) // config.rows_per_page) * config.rows_per_page
        with self._lock:
            name = None
            try:
                with self._writing() as txn:
                    layout = txn.id()
                    name = _pages_db(table, layout)
                    db = self.env.open_db(name, txn=txn)
                loaded = 0
                bar = _progress_bar(progress, config.num_rows, f"load {table}")
                for rows in iter_row_chunks(source, config, chunk_rows):
                    buf, starts = pages.encode_pages(pages.to_records(rows, config.dtype), config.dtype, config.dim,
                                                     config.rows_per_page, config.compression)
                    first_page = loaded // config.rows_per_page
                    with self._writing(db=db) as txn:
                        items = zip(page_keys(np.arange(first_page, first_page + starts.size - 1)),
                                    (memoryview(buf)[starts[i] : starts[i + 1]] for i in range(starts.size - 1)))
                        txn.cursor().putmulti(items, append=True)
                    loaded += rows.shape[0]
                    if bar is not None:
                        bar.update(rows.shape[0])
                if bar is not None:
                    bar.close()
                if loaded != config.num_rows:
                    raise ValueError(f"table {table!r}: source gave {loaded} rows, the table has {config.num_rows}")
                with self._write_txn() as txn:
                    self._open_existing(txn, name)
                    meta = copy.deepcopy(self._meta)
                    entry = self._entry(meta, table)
                    self._retire_layout(txn, table, entry)
                    entry.update(layout=layout, identity=True, ready=True, data_version=entry["data_version"] + 1)
                    self._drop_unpublished(txn, table, meta)
                    epoch = self._publish(txn, meta)
            except lmdb.Error as err:
                raise self._write_failed(err, f"loading table {table!r} into {self.path}",
                                         "its previous contents are unchanged", chunk_bytes,
                                         lambda: self._discard(name)) from err
            except BaseException:
                self._discard(name)
                raise
            self._after_commit(meta, epoch)
            self._drop_cached(table, np.arange(config.num_rows, dtype=np.int64))

    def _open_existing(self, txn, name: bytes):
        """Handle on database ``name`` in write transaction ``txn``; StoreWriteError if another writer dropped it."""
        try:
            return self.env.open_db(name, txn=txn, create=False)
        except lmdb.NotFoundError:
            raise StoreWriteError(f"{self.path}: database {name!r} was dropped by another writer (a concurrent "
                                  f"load or layout change of the same table); nothing was published") from None

    def _retire_layout(self, txn, table: str, entry: dict) -> None:
        if entry["ready"]:
            txn.drop(self.env.open_db(_pages_db(table, entry["layout"]), txn=txn), delete=True)
            if not entry["identity"]:
                txn.drop(self.env.open_db(_positions_db(table, entry["layout"]), txn=txn), delete=True)

    def _drop_unpublished(self, txn, table: str, meta: dict) -> None:
        """Drop ``table``'s databases that ``meta`` does not name (left by a writer that crashed mid-load)."""
        entry = self._entry(meta, table)
        keep = {_pages_db(table, entry["layout"]), _positions_db(table, entry["layout"])}
        prefixes = (f"pages:{table}:".encode(), f"pos:{table}:".encode())
        names = [bytes(key) for key in txn.cursor().iternext(values=False)]
        for name in names:
            if name.startswith(prefixes) and name not in keep:
                txn.drop(self.env.open_db(name, txn=txn), delete=True)

    def _discard(self, name: bytes | None) -> str:
        """Drop the database a failed load was filling and give its pages back to the disk; says what was freed.

        A read transaction is held meanwhile: LMDB reuses no page freed after it
        began, so no other writer can be handed the pages before their blocks are
        released.  Blocks past the last committed page (the failed commit's
        writes) are released inside the write transaction, under LMDB's writer lock.
        """
        if name is None:
            return ""
        try:
            with self.env.begin() as guard:
                runs, psize = self._owned_pages(guard, name)
                with self._writing() as txn:
                    try:
                        db = self.env.open_db(name, txn=txn, create=False)
                    except lmdb.NotFoundError:
                        return ""
                    txn.drop(db, delete=True)
                    released = environment.release_tail(self.path) if direct_supported() else 0
                released += environment.release_pages(self.path, runs, psize)
        except (lmdb.Error, OSError, CorruptStoreError) as err:
            return f"; what it wrote could not be freed ({err})"
        return f"; what it wrote was dropped ({released / (1 << 20):.1f} MiB given back to the disk)"

    def _owned_pages(self, txn, name: bytes):
        """Runs ``(first page, count)`` of every page of database ``name`` in ``txn``'s snapshot, and the page size."""
        if self._direct is None:
            return [], 0
        snapshot = self._direct.pin(txn.id())
        record = None if snapshot is None else self._direct.find_db(snapshot, name)
        if record is None:
            return [], 0
        seen = np.zeros(snapshot.n_pages, dtype=np.uint8)
        what = f"database {name!r}"
        self._direct.leaf_entries(snapshot, self._direct.leaves(snapshot, record.root, what, seen), what, seen)
        return environment.page_runs(np.flatnonzero(seen)), self._direct.psize

    def update_rows(self, table: str, ids, values) -> None:
        """Replace rows ``ids`` with ``values`` (float [n, dim]) in one transaction.

        The other rows of the touched pages keep their stored bytes exactly; cached
        copies of the updated rows are dropped (other processes drop the table's).
        """
        self._writable()
        config = self._table(table)
        self._ssd_of(table)
        idx, values = check_update(table, config.num_rows, config.dim, ids, values)
        values = values.astype(np.float32)
        rpp = config.rows_per_page
        with self._lock:
            try:
                with self._write_txn() as txn:
                    ssd = self._ssd_of(table)
                    position = idx if ssd.positions is None else ssd.positions[idx].astype(np.int64)
                    page_ids = np.unique(position // rpp)
                    meta = copy.deepcopy(self._meta)
                    self._entry(meta, table)["data_version"] += 1
                    first = page_ids * rpp
                    span = (first[:, None] + np.arange(rpp)).ravel()
                    span = span[span < config.num_rows]
                    rows_at = span if ssd.positions is None else _inverse_positions(ssd.positions)[span]
                    records = ssd.read_records(txn, rows_at)
                    records[np.searchsorted(span, position)] = pages.to_records(values, config.dtype)
                    for page in page_ids:
                        sel = (span >= page * rpp) & (span < (page + 1) * rpp)
                        buf, _ = pages.encode_pages(records[sel], config.dtype, config.dim, rpp, config.compression)
                        txn.put(page_keys(np.array([page]))[0], buf.tobytes(), db=ssd.db)
                    epoch = self._publish(txn, meta)
            except lmdb.Error as err:
                raise self._write_failed(err, f"updating table {table!r}", "nothing was changed") from err
            self._after_commit(meta, epoch)
            self._drop_cached(table, idx)

    def row_positions(self, table: str) -> np.ndarray:
        """Row -> SSD layout position of ``table`` (int64 [num_rows])."""
        self._check_open()
        ssd = self._ssd_of(table)
        return np.arange(ssd.config.num_rows, dtype=np.int64) if ssd.positions is None else ssd.positions.copy()

    def apply_layout(self, orders: dict, progress: bool = True) -> None:
        """Rewrite tables' SSD layouts in one transaction.

        Parameters
        ----------
        orders : dict
            ``{table: order}`` where ``order`` (int [num_rows]) is a permutation:
            position ``i`` will hold row ``order[i]``.

        Readers see the old layout or the new one, never a mix; a crash mid-way
        leaves the old layout.  Rows move as stored bytes: every row reads back bit-exactly.
        """
        self._writable()
        checked = {}
        for table, order in orders.items():
            config = self._table(table)
            self._ssd_of(table)
            order = as_ids("order", order, config.num_rows, table)
            if order.size != config.num_rows or np.bincount(order, minlength=config.num_rows).max(initial=0) != 1:
                raise ValueError(f"table {table!r}: order must be a permutation of range({config.num_rows})")
            checked[table] = order
        with self._lock:
            try:
                with self._write_txn() as txn:
                    meta = copy.deepcopy(self._meta)
                    for table, order in checked.items():
                        self._write_layout(txn, self._entry(meta, table), order, progress)
                        self._drop_unpublished(txn, table, meta)
                    epoch = self._publish(txn, meta)
            except lmdb.Error as err:
                raise self._write_failed(err, f"rewriting layouts in {self.path}", "old layouts kept") from err
            self._after_commit(meta, epoch)

    def _write_layout(self, txn, entry: dict, order: np.ndarray, progress: bool) -> None:
        table = entry["config"]["name"]
        config = self.tables[table]
        ssd = self._ssd_of(table)
        new_layout = txn.id()
        db = self.env.open_db(_pages_db(table, new_layout), txn=txn)
        rpp = config.rows_per_page
        step = max(1, (32 << 20) // (config.dim * 4) // rpp) * rpp
        cursor = txn.cursor(db=db)
        for start in _progress(range(0, config.num_rows, step), progress, f"layout {table}"):
            rows = order[start : start + step]
            buf, starts = pages.encode_pages(ssd.read_records(txn, rows), config.dtype, config.dim, rpp,
                                             config.compression)
            first_page = start // rpp
            cursor.putmulti(
                zip(page_keys(np.arange(first_page, first_page + starts.size - 1)),
                    (buf[starts[i] : starts[i + 1]].tobytes() for i in range(starts.size - 1))),
                append=True,
            )
        self._put_positions(txn, _positions_db(table, new_layout), _inverse_positions(order))
        self._retire_layout(txn, table, entry)
        entry.update(layout=new_layout, identity=False)

    def _put_positions(self, txn, name: bytes, positions: np.ndarray) -> None:
        """Write ``positions`` as checksummed chunks into (emptied) database ``name``."""
        db = self.env.open_db(name, txn=txn)
        txn.drop(db, delete=False)
        for k, start in enumerate(range(0, positions.size, POSITIONS_CHUNK)):
            txn.put(page_keys(np.array([k]))[0], encode_positions(positions[start : start + POSITIONS_CHUNK]), db=db)

    def _upgrade(self) -> None:
        """Bring a format 1 store to the current format: checksummed metadata and position chunks, in one transaction."""
        with self._lock:
            try:
                with self._write_txn() as txn:
                    meta = copy.deepcopy(self._meta)
                    for entry in meta["tables"]:
                        if entry["ready"] and not entry["identity"]:
                            name = entry["config"]["name"]
                            self._put_positions(txn, _positions_db(name, entry["layout"]), self._ssd[name].positions)
                    meta["format_version"] = FORMAT_VERSION
                    epoch = self._publish(txn, meta)
            except lmdb.Error as err:
                raise self._write_failed(err, f"upgrading {self.path} to format {FORMAT_VERSION}",
                                         "it is unchanged (format 1)") from err
            self._after_commit(meta, epoch)

    # ----------------------------------------------------------------- checking
    def check(self, progress: bool = False):
        """Read and verify the whole store: LMDB's structure, metadata, every position chunk and page.

        Returns a :class:`tierstore.check.CheckReport` (``ok``, tables, pages, bytes,
        problems naming table and page); never raises on damaged bytes.
        """
        self._check_open()
        with self._lock, self.env.begin() as txn:
            return check_store(self.path, txn_id=txn.id(), progress=progress)

    # ----------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close this handle (again: nothing happens); later calls on it raise :class:`StoreClosedError`.

        Prefetches in flight are cancelled first and their threads ended."""
        if self._prefetcher is not None:
            self._prefetcher.close()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._direct is not None:
                self._direct.close()
            environment.release(self.env)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, tables={list(self.tables)}, readonly={self.readonly})"


def _inverse_positions(order: np.ndarray) -> np.ndarray:
    positions = np.empty(order.size, dtype=np.int64)
    positions[order] = np.arange(order.size, dtype=np.int64)
    return positions


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="row", unit_scale=True, leave=False)


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False)
