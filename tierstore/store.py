"""The store: an LMDB environment holding every table's pages, read through DRAM tiers.

On disk (one directory): LMDB's ``data.mdb``/``lock.mdb`` with

- ``__meta__``: key ``store`` -> JSON metadata (format version, tables, per-table
  layout version and load state); key ``epoch`` -> 8-byte counter bumped by every
  commit that changes what readers see;
- ``pages:<table>:<layout>``: the table's pages, keyed by 8-byte big-endian page id;
- ``pos:<table>:<layout>``: the row -> position array in 1 Mi-entry chunks (absent for
  the identity layout).

Everything a reader can see changes in one LMDB write transaction: a finished load,
a row update, a new layout.  A crash mid-way leaves the previous version intact.
Each lookup runs inside one read transaction, so it sees one layout, never a mix.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import lmdb
import numpy as np

from tierstore import kernels, pages
from tierstore.config import TableConfig
from tierstore.dram import DramTier
from tierstore.ingest import iter_row_chunks
from tierstore.lmdb_direct import open_direct
from tierstore.ssd import SsdTable, page_keys
from tierstore.stats import LookupStats, mapped_bytes
from tierstore.validate import as_ids, check_bags, raise_out_of_range

FORMAT_VERSION = 1
META_DB = b"__meta__"
POSITIONS_CHUNK = 1 << 20
DEFAULT_MAP_SIZE = 1 << 40
MAX_DBS = 1024
IO_MODES = ("mmap", "pread")


class IncompatibleStoreError(ValueError):
    """The store was written by a newer format, or does not match what the caller expects."""


class StoreWriteError(OSError):
    """A write failed (for example the disk or the LMDB map is full); nothing of it was committed."""


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
    """
    path = Path(path)
    tables = [_resolve(t) for t in tables]
    names = [t.name for t in tables]
    if not tables:
        raise ValueError("a store needs at least one table")
    if len(set(names)) != len(names):
        raise ValueError(f"table names must be distinct, got {names}")
    if 2 * len(tables) + 1 > MAX_DBS:
        raise ValueError(f"at most {(MAX_DBS - 1) // 2} tables per store")
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty; tierstore.create needs a new directory")
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=map_size, max_dbs=MAX_DBS, readahead=False, meminit=False)
    meta = {
        "format_version": FORMAT_VERSION,
        "tables": [
            {"config": t.to_dict(), "layout": 0, "identity": True, "ready": False, "data_version": 0} for t in tables
        ],
    }
    with env.begin(write=True) as txn:
        db = env.open_db(META_DB, txn=txn)
        txn.put(b"store", json.dumps(meta).encode(), db=db)
        txn.put(b"epoch", np.uint64(1).tobytes(), db=db)
    return Store(path, env, readonly=False, dram_cache_bytes=0, policy="lru")


def open(path, dram_cache_bytes: int | dict = 0, policy="lru", readonly: bool = True, tables=None,
         map_size: int = DEFAULT_MAP_SIZE, io: str = "mmap") -> "Store":
    """Open an existing store.

    Parameters
    ----------
    path : str or Path
    dram_cache_bytes : int or dict
        An int is one DRAM budget shared by every table; a dict ``{table: bytes}``
        gives tables their own budgets (tables left out get no DRAM cache).
    policy : str or cache_policies.Policy
        DRAM eviction policy.
    readonly : bool
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
    """
    if io not in IO_MODES:
        raise ValueError(f"io must be one of {IO_MODES}, got {io!r}")
    path = Path(path)
    if not (path / "data.mdb").is_file():
        raise FileNotFoundError(f"no tierstore store at {path} (no data.mdb)")
    env = lmdb.open(str(path), map_size=map_size, max_dbs=MAX_DBS, readonly=readonly, readahead=False,
                    create=False, lock=True)
    try:
        store = Store(path, env, readonly=readonly, dram_cache_bytes=dram_cache_bytes, policy=policy, io=io)
    except BaseException:
        env.close()
        raise
    if tables is not None:
        expected = {t.name: _resolve(t) for t in tables}
        if expected != store.tables:
            store.close()
            raise IncompatibleStoreError(
                f"{path}: tables differ from the expected ones: store has {sorted(store.tables.values(), key=str)}"
            )
    return store


class Store:
    """An open store: pooled lookups through the DRAM tier(s) over the LMDB pages.

    Built by :func:`tierstore.create` or :func:`tierstore.open`.  Lookups are
    serialized per store (a lock); the kernels inside use every Numba thread.
    """

    def __init__(self, path: Path, env, readonly: bool, dram_cache_bytes, policy, io: str = "mmap"):
        self.path = Path(path)
        self.env = env
        self.readonly = readonly
        self._lock = threading.RLock()
        self._stats = LookupStats()
        self._epoch = None
        self._tier_of: dict[str, DramTier] = {}
        self._tiers: list[DramTier] = []
        self._direct = open_direct(self.path, copy_reads=io == "pread")
        if io == "pread" and self._direct is None:
            raise ValueError("io='pread' needs the direct LMDB reader, which is off (TIERSTORE_LMDB_DIRECT=0) or "
                             "does not support this platform or LMDB format; use io='mmap'")
        self._read_meta_and_layouts()
        self._build_tiers(dram_cache_bytes, policy)

    # ----------------------------------------------------------------- metadata
    def _read_meta_and_layouts(self) -> None:
        try:
            self._meta_db = self._open_db(META_DB)
        except lmdb.NotFoundError:
            raise IncompatibleStoreError(f"{self.path} is an LMDB environment but not a tierstore store") from None
        self._meta = None
        self._ssd: dict[str, SsdTable] = {}
        self.read_txn().abort()

    def _open_db(self, name: bytes):
        """A handle on an existing named database, usable by transactions begun afterwards.

        py-lmdb drops handles opened inside a read transaction when it ends, and a
        transaction never sees handles opened after it began, so handles are opened
        on their own (a short write transaction in a writable environment) before
        the read transaction that uses them.
        """
        return self.env.open_db(name, create=False)

    def _check_version(self, meta) -> None:
        version = meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise IncompatibleStoreError(
                f"{self.path}: store format version {version} is newer than this tierstore reads "
                f"(format {FORMAT_VERSION}); upgrade tierstore"
            )

    def read_txn(self):
        """A read transaction (MVCC snapshot) in which this handle's view of metadata and layouts is current.

        When another writer committed since the last look (new layout, load, row
        updates), the handle first reloads layouts and drops cached rows of tables
        whose data changed, then retries.
        """
        while True:
            txn = self.env.begin(buffers=True)
            epoch = bytes(txn.get(b"epoch", db=self._meta_db))
            if epoch == self._epoch:
                return txn
            raw = txn.get(b"store", db=self._meta_db)
            txn.abort()
            if raw is None:
                raise IncompatibleStoreError(f"{self.path} is an LMDB environment but not a tierstore store")
            meta = json.loads(bytes(raw))
            self._check_version(meta)
            previous = self._meta
            try:
                self._adopt(meta, epoch)
            except lmdb.NotFoundError:
                continue
            self._invalidate_changed(previous, meta)

    @contextmanager
    def reading(self):
        """A read transaction in which tables read their pages through the direct reader when available.

        Each table finds its B+tree root in the snapshot on its first page read.
        """
        txn = self.read_txn()
        if self._direct is not None:
            for ssd in self._ssd.values():
                ssd.direct = [self._direct, None]
        try:
            yield txn
        finally:
            for ssd in self._ssd.values():
                ssd.direct = None
            txn.abort()

    def _invalidate_changed(self, previous, meta) -> None:
        if previous is None:
            return
        before = {e["config"]["name"]: e["data_version"] for e in previous["tables"]}
        for entry in meta["tables"]:
            name = entry["config"]["name"]
            tier = self._tier_of.get(name)
            if tier is not None and entry["data_version"] != before[name]:
                tier.invalidate(name, np.arange(self.tables[name].num_rows, dtype=np.int64))

    def _adopt(self, meta, epoch: bytes) -> None:
        """Make ``meta`` (committed at ``epoch``) this handle's view: tables, page databases, positions."""
        tables, ssd_tables, ready = {}, {}, []
        for entry in meta["tables"]:
            config = TableConfig.from_dict(entry["config"])
            tables[config.name] = config
            if entry["ready"]:
                ready.append((entry, config, self._open_db(_pages_db(config.name, entry["layout"]))))
        with self.env.begin() as txn:
            for entry, config, db in ready:
                positions = None if entry["identity"] else self._read_positions(txn, config, entry["layout"])
                name = _pages_db(config.name, entry["layout"])
                table = SsdTable(config, db, name, positions, (entry["layout"], entry["data_version"]))
                table.keep_caches_of(self._ssd.get(config.name))
                ssd_tables[config.name] = table
        self._meta, self.tables, self._ssd, self._epoch = meta, tables, ssd_tables, epoch

    def _read_positions(self, txn, config: TableConfig, layout: int) -> np.ndarray:
        db = self.env.open_db(_positions_db(config.name, layout), txn=txn, create=False)
        chunks = [np.frombuffer(v, dtype=np.int64) for _, v in txn.cursor(db=db)]
        positions = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
        if positions.size != config.num_rows:
            raise pages.CorruptPageError(f"table {config.name!r}: position array has {positions.size} entries")
        return positions

    def _publish(self, txn, meta) -> bytes:
        """Write ``meta`` and bump the epoch inside the caller's write transaction; returns the new epoch."""
        txn.put(b"store", json.dumps(meta).encode(), db=self._meta_db)
        epoch = (np.frombuffer(txn.get(b"epoch", db=self._meta_db), dtype=np.uint64)[0] + np.uint64(1)).tobytes()
        txn.put(b"epoch", epoch, db=self._meta_db)
        return epoch

    @staticmethod
    def _entry(meta, name: str) -> dict:
        return next(e for e in meta["tables"] if e["config"]["name"] == name)

    # ----------------------------------------------------------------- tiers
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
            tier = DramTier(tables, budget, policy)
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
    def _locate(self, txn, name: str, idx: np.ndarray):
        """Where each index's row is: ``loc`` (>= 0 slab slot, < 0 row of ``extra``), the slab, ``extra``,
        and the rows to offer the DRAM tier once the batch is pooled (None: nothing to offer)."""
        tier = self._tier_of.get(name)
        ssd = self._ssd_of(name)
        if self._fully_resident(name):
            self._stats.dram_hits += idx.size
            return idx, tier.slab(name), kernels.NO_ROWS, None
        uniq, inverse = kernels.unique_inverse(idx)
        slots = tier.probe(name, uniq) if tier is not None else np.full(uniq.size, -1, dtype=np.int64)
        miss = slots < 0
        miss_rows = uniq[miss]
        extra = ssd.read_rows(txn, miss_rows)
        slots[miss] = -1 - np.arange(miss_rows.size, dtype=np.int64)
        loc = slots[inverse]
        hits = int(np.count_nonzero(loc >= 0))
        self._stats.dram_hits += hits
        self._stats.dram_misses += idx.size - hits
        if tier is None:
            return loc, kernels.NO_ROWS, extra, None
        return loc, tier.slab(name), extra, (miss_rows, extra)

    def _admit(self, name: str, pending) -> None:
        """Offer a batch's missed rows to the DRAM tier (after pooling: evictions cannot touch its rows)."""
        if pending is not None:
            self._stats.rows_admitted += self._tier_of[name].admit(name, *pending)

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
               include_last_offset: bool = False) -> np.ndarray:
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

        Returns
        -------
        ndarray, float32 [B, dim]
        """
        return self._run_batch([(table, indices, offsets, per_sample_weights, mode, include_last_offset)], None)[0]

    def lookup_batch(self, batch, mode: str | dict = "sum") -> np.ndarray:
        """Pooled lookups of every key of a ``SparseBatch``.

        Returns
        -------
        ndarray, float32 [B, sum(dims)]
            Key order; :meth:`table_views` splits it per table without copies.
        """
        modes = mode if isinstance(mode, dict) else {k: mode for k in batch.keys}
        requests = []
        for key in batch.keys:
            self._table(key)
            indices, offsets, weights = batch.table(key)
            requests.append((key, indices, offsets, weights, modes.get(key, "sum"), True))
        dims = [self.tables[k].dim for k in batch.keys]
        out = np.empty((batch.batch_size, int(sum(dims))), dtype=np.float32)
        self._run_batch(requests, self.table_views(batch.keys, out))
        return out

    def table_views(self, keys, pooled: np.ndarray) -> dict[str, np.ndarray]:
        """Per-table views ``{key: pooled[:, a:b]}`` of a :meth:`lookup_batch` result."""
        views, start = {}, 0
        for key in keys:
            dim = self._table(key).dim
            views[key] = pooled[:, start : start + dim]
            start += dim
        return views

    def _run_batch(self, requests, views):
        with self._lock:
            started = self._stats.start_batch()
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
                        loc, slab, extra, pending = self._locate(txn, name, idx)
                        kernels.pool_rows_unchecked(slab, extra, loc, off, weights, mode_code, out)
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
            if not kernels.pool_ids(self._tier_of[name].slab(name), idx, off, weights, mode_code, out):
                raise_out_of_range("indices", idx, self.tables[name].num_rows, name)
        for name, idx, *_ in checked:
            self._stats.dram_hits += idx.size

    def get_rows(self, table: str, ids) -> np.ndarray:
        """Rows ``ids`` of ``table`` as float32 ``[len(ids), dim]`` (through the caches)."""
        config = self._table(table)
        idx = as_ids("ids", ids, config.num_rows, table)
        self._ssd_of(table)
        with self._lock, self.reading() as txn:
            loc, slab, extra, pending = self._locate(txn, table, idx)
            out = np.empty((idx.size, config.dim), dtype=np.float32)
            kernels.gather_rows(slab, extra, loc, out)
            self._admit(table, pending)
            return out

    def warm(self, table: str, progress: bool = False) -> None:
        """Read every row of ``table`` into its DRAM tier (which must be able to hold the whole table)."""
        config = self._table(table)
        tier = self._tier_of.get(table)
        if tier is None or not tier.mirror:
            raise ValueError(f"table {table!r}: warm() needs a DRAM budget that holds every row of its tier")
        ssd = self._ssd_of(table)
        step = max(config.rows_per_page, (64 << 20) // max(config.row_bytes, 1) // config.rows_per_page
                   * config.rows_per_page)
        with self._lock, self.reading() as txn:
            for start in _progress(range(0, config.num_rows, step), progress, f"warm {table}"):
                rows = np.arange(start, min(start + step, config.num_rows), dtype=np.int64)
                tier.admit(table, rows, ssd.read_rows(txn, rows))

    # ----------------------------------------------------------------- stats
    def stats(self) -> dict:
        """Per-tier hits and misses, SSD reads, lookups and batch latency percentiles."""
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
                "rows_admitted": s.rows_admitted,
                "bytes_used": sum(t.used_bytes for t in self._tiers),
                "budget_bytes": sum(t.budget_bytes for t in self._tiers),
            },
            "ssd": {**ssd, "hits": s.dram_misses},
            "lookups": s.lookups,
            "bags": s.bags,
            "batches": s.batches,
            "latency": s.latency_percentiles(),
        }

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
        for table in self._ssd.values():
            table.counters = type(table.counters)()

    # ----------------------------------------------------------------- writes
    def _writable(self) -> None:
        if self.readonly:
            raise PermissionError(f"{self.path} is open read-only; open it with readonly=False to write")

    def load(self, table: str, source, progress: bool = True, chunk_bytes: int = 64 << 20) -> None:
        """Bulk-load every row of ``table`` from an array, a ``.npy`` path or an iterator of row chunks.

        Memory stays bounded by ``chunk_bytes`` whatever the table size (a ``.npy``
        file is memory-mapped).  Rows are written in chunks into a new layout;
        readers keep seeing the table's previous contents until the final commit
        publishes the new ones, so a crash mid-load loses nothing.
        """
        self._writable()
        config = self._table(table)
        meta = copy.deepcopy(self._meta)
        entry = self._entry(meta, table)
        new_layout = entry["layout"] + 1
        chunk_rows = max(1, chunk_bytes // (config.dim * 4) // config.rows_per_page) * config.rows_per_page
        name = _pages_db(table, new_layout)
        with self._lock:
            try:
                with self.env.begin(write=True) as txn:
                    db = self.env.open_db(name, txn=txn)
                    txn.drop(db, delete=False)
                loaded = 0
                bar = _progress_bar(progress, config.num_rows, f"load {table}")
                for rows in iter_row_chunks(source, config, chunk_rows):
                    buf, starts = pages.encode_pages(pages.to_records(rows, config.dtype), config.dtype, config.dim,
                                                     config.rows_per_page, config.compression)
                    first_page = loaded // config.rows_per_page
                    with self.env.begin(write=True, db=db) as txn:
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
                with self.env.begin(write=True) as txn:
                    self._retire_layout(txn, table, entry)
                    entry.update(layout=new_layout, identity=True, ready=True, data_version=entry["data_version"] + 1)
                    epoch = self._publish(txn, meta)
            except lmdb.Error as err:
                raise StoreWriteError(f"loading table {table!r} into {self.path} failed ({err}); "
                                      "its previous contents are unchanged") from err
            self._adopt(meta, epoch)
            tier = self._tier_of.get(table)
            if tier is not None:
                tier.invalidate(table, np.arange(config.num_rows, dtype=np.int64))

    def _retire_layout(self, txn, table: str, entry: dict) -> None:
        if entry["ready"]:
            txn.drop(self.env.open_db(_pages_db(table, entry["layout"]), txn=txn), delete=True)
            if not entry["identity"]:
                txn.drop(self.env.open_db(_positions_db(table, entry["layout"]), txn=txn), delete=True)

    def update_rows(self, table: str, ids, values) -> None:
        """Replace rows ``ids`` with ``values`` (float [n, dim]) in one transaction.

        The other rows of the touched pages keep their stored bytes exactly; cached
        copies of the updated rows are dropped (other processes drop the table's).
        """
        self._writable()
        config = self._table(table)
        ssd = self._ssd_of(table)
        idx = as_ids("ids", ids, config.num_rows, table)
        values = np.asarray(values)
        if values.shape != (idx.size, config.dim) or values.dtype.kind != "f":
            raise ValueError(f"table {table!r}: values must be float [{idx.size}, {config.dim}], "
                             f"got {values.dtype} {values.shape}")
        if np.unique(idx).size != idx.size:
            raise ValueError(f"table {table!r}: update ids must be distinct")
        values = values.astype(np.float32)
        rpp = config.rows_per_page
        position = idx if ssd.positions is None else ssd.positions[idx].astype(np.int64)
        page_ids = np.unique(position // rpp)
        meta = copy.deepcopy(self._meta)
        self._entry(meta, table)["data_version"] += 1
        with self._lock:
            try:
                with self.env.begin(write=True, buffers=True) as txn:
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
                raise StoreWriteError(f"updating table {table!r} failed ({err}); nothing was changed") from err
            self._adopt(meta, epoch)
            tier = self._tier_of.get(table)
            if tier is not None:
                tier.invalidate(table, idx)

    def row_positions(self, table: str) -> np.ndarray:
        """Row -> SSD layout position of ``table`` (int64 [num_rows])."""
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
        meta = copy.deepcopy(self._meta)
        with self._lock:
            try:
                with self.env.begin(write=True, buffers=True) as txn:
                    for table, order in checked.items():
                        self._write_layout(txn, self._entry(meta, table), order, progress)
                    epoch = self._publish(txn, meta)
            except lmdb.Error as err:
                raise StoreWriteError(f"rewriting layouts in {self.path} failed ({err}); old layouts kept") from err
            self._adopt(meta, epoch)

    def _write_layout(self, txn, entry: dict, order: np.ndarray, progress: bool) -> None:
        table = entry["config"]["name"]
        config = self.tables[table]
        ssd = self._ssd[table]
        new_layout = entry["layout"] + 1
        db = self.env.open_db(_pages_db(table, new_layout), txn=txn)
        txn.drop(db, delete=False)
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
        positions = _inverse_positions(order)
        pos_db = self.env.open_db(_positions_db(table, new_layout), txn=txn)
        txn.drop(pos_db, delete=False)
        for k, start in enumerate(range(0, positions.size, POSITIONS_CHUNK)):
            txn.put(page_keys(np.array([k]))[0], positions[start : start + POSITIONS_CHUNK].tobytes(), db=pos_db)
        self._retire_layout(txn, table, entry)
        entry.update(layout=new_layout, identity=False)

    # ----------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close the LMDB environment."""
        if self._direct is not None:
            self._direct.close()
        self.env.close()

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
