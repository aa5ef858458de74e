"""Compile ahead: fill numba's disk cache with every kernel a store uses.

numba compiles each kernel for the argument types it is first called with and
keeps the result in its disk cache, so a fresh install's first lookup waits for
the compiler (tens of seconds) and every later process only loads the code (see
``bench/bench_coldstart.py``).  ``warmup`` pays that once, ahead: it builds a
small store in a temporary folder, with the tables of a given store (their
dims, dtypes, codecs and page sizes) or, without one, a set covering every
specialised pooling width, a generic width and each dtype and codec, and drives
it through the public API the way a service does:

- for each ``io`` mode, the default (set-associative) DRAM tier smaller than
  the tables (SSD reads, probe, admission) and a tier holding them all
  (``warm``, then lookups that skip the probe), with every pooling mode, with
  and without per-sample weights, rows both missed and hit, and ``get_rows``;
- the set-associative default, then each exact policy and each admission filter
  asked for in front of it, a tier driven through lookups, ``update_rows``
  (which invalidates cached rows) and ``stats``;
- the set-associative decisions on int64 tags (tiers whose keys pass 2**31);
- a B+tree of two levels read with many keys at once, in each ``io`` mode (the
  walk then announces the keys' leaf pages first).

It runs in the calling process, so the code lands in the cache that process
uses (``NUMBA_CACHE_DIR``, else next to the installed sources).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cache_policies.setassoc import SetAssociative, SetAssocState
from placement._json import JsonDataclass
from tierstore.cli import add_output_options, emit, policy_name
from tierstore.batch import SparseBatch
from tierstore.config import TableConfig
from tierstore.kernels import MODE_NAMES, SPECIALIZED_DIMS
from tierstore.lmdb_direct import ANNOUNCE_LEAVES_FROM
from tierstore.pages import default_rows_per_page
from tierstore.store import IO_MODES, create
from tierstore.store import open as open_store

#: Tables warmed when no store is given: every specialised pooling width, one other width, each dtype and codec.
DEFAULT_TABLES = tuple(TableConfig(f"f32_{dim}", 1, dim) for dim in (*SPECIALIZED_DIMS, 40)) + (
    TableConfig("f16_zstd", 1, 64, "float16", compression="zstd"),
    TableConfig("i8", 1, 32, "int8"),
)
PAGES_PER_TABLE = 4
#: Pooling modes and whether with per-sample weights: each compiles its own kernels.
POOLINGS = tuple((mode, False) for mode in MODE_NAMES.values()) + (("sum", True),)


@dataclass(frozen=True)
class WarmupConfig(JsonDataclass):
    """What ``warmup`` compiles: a store's tables (``None``: ``DEFAULT_TABLES``), the
    policies (empty: every registered one), the admission filters to put in front of
    each (``"second_hit"``, ``"tinylfu"``; none by default) and the ``io`` modes."""

    store: str | None = None
    policies: tuple[str, ...] = ()
    admission: tuple[str, ...] = ()
    io_modes: tuple[str, ...] = IO_MODES
    seed: int = 0
    tables: tuple[dict, ...] = field(default=(), repr=False)


def _policies(names, admission) -> list:
    """The set-associative default (``None``), then each exact policy to drive, bare, then behind each
    filter (an unknown name raises, listing the known ones)."""
    from cache_policies import available_policies, make_policy

    names = list(names) or available_policies()
    return [None] + [make_policy(name, admission=a) for a in ("none", *admission) for name in names]


def _policy_label(policy) -> str:
    if policy is None:
        return "set-associative default"
    admission = policy.params["admission"]
    return policy.name + ("" if admission == "none" else f" behind {admission}")


def _serve_wide_tags() -> None:
    """Serve, find and remove keys on a set-associative state with int64 tags (no key limit)."""
    state = SetAssocState(SetAssociative(), 64)
    keys = np.arange(0, 1 << 40, 1 << 34, dtype=np.int64)
    for _ in range(2):
        state.serve(keys)
    state.find(keys)
    state.remove(keys)


def _small_tables(store: str | None) -> list[TableConfig]:
    """The tables to build: the store's (or the defaults), each a few pages long."""
    if store is None:
        configs = DEFAULT_TABLES
    else:
        with open_store(store) as opened:
            configs = tuple(opened.tables.values())
    small = []
    for config in configs:
        rows_per_page = config.rows_per_page or default_rows_per_page(config.dtype, config.dim)
        small.append(dataclasses.replace(config, num_rows=PAGES_PER_TABLE * rows_per_page,
                                         rows_per_page=rows_per_page))
    return small


def _batch(tables, rng, weighted: bool) -> SparseBatch:
    """Four bags of 24 ids per table (the last bag empty), from the first half of its rows, which a tier
    of half the rows can hold."""
    per_table = {}
    for t in tables:
        ids = rng.integers(0, max(t.num_rows // 2, 1), 24)
        weights = (np.ones(ids.size, dtype=np.float32),) if weighted else ()
        per_table[t.name] = (ids, np.array([0, 8, 12, 24, 24]), *weights)
    return SparseBatch.from_tables(per_table)


def _serve(open_tier, tables, rng) -> None:
    """Lookups in every pooling mode (sum also with weights) of a batch of every table (each pooled into a
    view of one output) and of each table alone (into an array of its own: numba compiles the two layouts
    apart), each twice on a tier of its own from ``open_tier()``: misses, then hits; and ``get_rows``."""
    for mode, weighted in POOLINGS:
        batch = _batch(tables, rng, weighted)
        with open_tier() as store:
            for _ in range(2):
                store.lookup_batch(batch, mode=mode)
        with open_tier() as store:
            for _ in range(2):
                for name in batch.keys:
                    ids, offsets, weights = batch.table(name)
                    store.lookup(name, ids, offsets, weights, mode=mode, include_last_offset=True)
    with open_tier() as store:
        for _ in range(2):
            for t in tables:
                store.get_rows(t.name, np.arange(min(t.num_rows, 8)))


def _read_deep_tree(folder: Path, io_modes) -> None:
    """``get_rows`` of more keys than ``lmdb_direct.ANNOUNCE_LEAVES_FROM`` from a table of one row per page,
    whose pages fill more than one B+tree leaf (the small tables above fit in one)."""
    rows = 4 * ANNOUNCE_LEAVES_FROM
    table = TableConfig("deep", rows, 4, rows_per_page=1)
    with create(folder / "deep", [table]) as store:
        store.load("deep", np.zeros((rows, 4), dtype=np.float32), progress=False)
    for io in io_modes:
        with open_store(folder / "deep", io=io) as store:
            store.get_rows("deep", np.arange(0, rows, 2))


def warmup(config: WarmupConfig = WarmupConfig(), progress: bool = False) -> dict:
    """Compile (or load) every kernel a store of ``config`` uses into numba's disk cache.

    Returns
    -------
    dict
        ``seconds`` (wall time), ``steps`` (what was driven) and ``config``
        (with the tables built).
    """
    started = time.perf_counter()
    policies = _policies(config.policies, config.admission)
    for io in config.io_modes:
        if io not in IO_MODES:
            raise ValueError(f"io mode must be one of {IO_MODES}, got {io!r}")
    tables = _small_tables(config.store)
    rng = np.random.default_rng(config.seed)
    cached_bytes = sum(t.num_rows * t.cached_row_bytes for t in tables)
    steps = []

    def step(name: str) -> None:
        steps.append(name)
        if progress:
            print(f"warmup: {name} ({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="tierstore-warmup-") as tmp:
        path = Path(tmp) / "store"
        store = create(path, tables)
        for t in tables:
            store.load(t.name, rng.standard_normal((t.num_rows, t.dim)).astype(np.float32), progress=False)
        store.close()
        step("create and load")
        for io in config.io_modes:
            _serve(lambda: open_store(path, dram_cache_bytes=cached_bytes // 2, io=io), tables, rng)
            with open_store(path, dram_cache_bytes=cached_bytes, io=io) as store:
                for t in tables:
                    store.warm(t.name)
                _serve(lambda: nullcontext(store), tables, rng)
            step(f"io={io}: partial and whole-table DRAM tiers")
        for policy in policies:
            with open_store(path, readonly=False, dram_cache_bytes=cached_bytes // 2, policy=policy) as store:
                batch = _batch(tables, rng, False)
                for _ in range(2):
                    store.lookup_batch(batch)
                t = tables[0]
                store.update_rows(t.name, [0, 1], store.get_rows(t.name, [1, 0]))
                store.stats()
            step(f"policy {_policy_label(policy)}")
        _serve_wide_tags()
        step("set-associative int64 tags")
        _read_deep_tree(Path(tmp), config.io_modes)
        step("a two-level B+tree read with many keys")
    names = tuple(dict.fromkeys(p.name for p in policies[1:]))
    config = dataclasses.replace(config, policies=names, tables=tuple(t.to_dict() for t in tables))
    return {"seconds": time.perf_counter() - started, "steps": steps, "config": config.to_dict()}


def cmd_warmup(args) -> int:
    config = WarmupConfig(store=args.store, policies=tuple(args.policies or ()),
                          admission=tuple(args.admission or ()), io_modes=tuple(args.io))
    result = warmup(config, progress=not args.quiet and not args.json)
    done = result["config"]
    behind = "".join(f", behind {f}" for f in done["admission"])
    emit(args, result, f"warmup: every kernel compiled or loaded for {len(done['tables'])} tables, "
         f"{len(done['policies'])} policies (bare{behind}), io {', '.join(done['io_modes'])}: "
         f"{result['seconds']:.1f} s")
    return 0


def add_subcommands(subparsers) -> None:
    """Register ``warmup`` on the ``tierstore`` subparsers."""
    parser = subparsers.add_parser("warmup", help="compile every kernel a store uses into numba's disk cache",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("store", nargs="?", help="store whose tables to warm up for (default: a set covering "
                        "every pooling width, dtype and codec)")
    parser.add_argument("--policies", nargs="+", type=policy_name,
                        help="DRAM cache policies (default: every registered one)")
    parser.add_argument("--admission", nargs="+", choices=("second_hit", "tinylfu"),
                        help="also warm each policy behind these admission filters")
    parser.add_argument("--io", nargs="+", choices=IO_MODES, default=list(IO_MODES), help="SSD read modes")
    add_output_options(parser)
    parser.set_defaults(func=cmd_warmup)
