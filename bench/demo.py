"""``tierstore demo``: build a synthetic store and serve a DLRM-like stream of batches from it.

Four tables (3.5 M rows in all, float32, float16 and int8) are written to a new
store, then Zipf-skewed batches of bags (2048 bags per table) go through
``Store.lookup_batch`` with a DRAM cache of a tenth of the tables' float32 size.
The run has named phases: build; warm-up, whose first batch compiles the lookup
and cache-policy code and whose other batches fill the cache; then the measured
batches, the only ones in the rates, latencies and progress-bar ETAs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import tierstore
from bench.progress import batch_progress
from bench.traces.generate import TableSpec, TraceSpec, generate
from bench.traces.native import NativeTraceWriter
from cache_policies import available_policies
from tierstore import TableConfig
from tierstore.cli import (UsageError, add_output_options, emit, human_bytes, non_negative_float, non_negative_int,
                           policy_name, positive_int)

DEMO_TABLES = (
    TableConfig("user", 2_000_000, 32, "float16"),
    TableConfig("item", 1_000_000, 64, "float32"),
    TableConfig("category", 200_000, 64, "int8"),
    TableConfig("geo", 300_000, 16, "float32"),
)
KEPT_STORE = "store"
KEPT_TRACE = "demo.tstrace"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs (printed with its results)."""

    tables: tuple = DEMO_TABLES
    batches: int = 300
    warmup_batches: int = 50
    batch_size: int = 2048
    pooling: float = 16.0
    zipf: float = 1.05
    cache_fraction: float = 0.10
    policy: str = "lru"
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.cache_fraction <= 1:
            raise ValueError(f"cache_fraction must be in [0, 1], got {self.cache_fraction}")

    def scaled(self, scale: float) -> "DemoConfig":
        """The same demo with every table's rows multiplied by ``scale`` (at least one row each)."""
        tables = tuple(replace(t, num_rows=max(1, int(t.num_rows * scale))) for t in self.tables)
        return replace(self, tables=tables)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tables"] = [t.to_dict() for t in self.tables]
        return data

    def trace_spec(self) -> TraceSpec:
        """The batch stream: warm-up batches, then measured ones."""
        return TraceSpec(
            tables=tuple(TableSpec(t.name, t.num_rows, zipf=self.zipf, pooling=self.pooling, pooling_dist="poisson")
                         for t in self.tables),
            batch_size=self.batch_size,
            num_batches=self.batches + self.warmup_batches,
            seed=self.seed,
        )


def _row_chunks(config: TableConfig, rng: np.random.Generator, chunk: int = 1 << 18):
    for start in range(0, config.num_rows, chunk):
        yield rng.standard_normal((min(chunk, config.num_rows - start), config.dim), dtype=np.float32)


def build_store(path, config: DemoConfig, progress: bool = True) -> None:
    """Create the demo store at ``path`` with random rows (bounded memory)."""
    rng = np.random.default_rng(config.seed)
    store = tierstore.create(path, list(config.tables))
    for table in config.tables:
        store.load(table.name, _row_chunks(table, rng), progress=progress)
    store.close()


class PagesTouched:
    """Distinct SSD pages holding rows the stream asked for (identity layout: page = row // rows per page).

    The cache starts empty, so a row's first request misses and reads its page:
    these are exactly the distinct pages the run read.
    """

    def __init__(self, tables: dict):
        self.rows_per_page = {name: t.rows_per_page for name, t in tables.items()}
        self.seen = {name: np.zeros(-(-t.num_rows // t.rows_per_page), dtype=bool) for name, t in tables.items()}

    def add(self, batch) -> None:
        b = batch.batch_size
        for k, name in enumerate(batch.keys):
            rows = batch.values[batch.offsets[k * b] : batch.offsets[(k + 1) * b]]
            self.seen[name][rows // self.rows_per_page[name]] = True

    @property
    def count(self) -> int:
        return int(sum(s.sum() for s in self.seen.values()))


def _serve(store, batches, pages: PagesTouched, writer) -> tuple[int, float]:
    """Look every batch up; return (pooled rows, seconds inside lookup_batch)."""
    rows, seconds = 0, 0.0
    for batch in batches:
        pages.add(batch)
        if writer is not None:
            writer.write(batch)
        started = time.perf_counter()
        store.lookup_batch(batch)
        seconds += time.perf_counter() - started
        rows += batch.values.size
    return rows, seconds


def _note(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def run_demo(config: DemoConfig, workdir=None, progress: bool = True, keep=None) -> dict:
    """Build the store, serve the batches phase by phase, return the figures.

    Parameters
    ----------
    config : DemoConfig
    workdir : str, optional
        Where the temporary store goes (ignored with ``keep``).
    progress : bool
        Progress bars and phase notes on stderr.
    keep : str or Path, optional
        A new (or empty) directory that keeps the store (``KEPT_STORE``) and the
        batch stream as a trace (``KEPT_TRACE``) after the demo.
    """
    if keep is not None:
        keep = Path(keep)
        if keep.exists() and any(keep.iterdir()):
            raise FileExistsError(f"{keep} exists and is not empty; --keep needs a new or empty directory")
        keep.mkdir(parents=True, exist_ok=True)
    holder = nullcontext(str(keep)) if keep is not None else tempfile.TemporaryDirectory(dir=workdir,
                                                                                        prefix="tierstore-demo-")
    spec = config.trace_spec()
    with holder as folder:
        path = Path(folder) / KEPT_STORE
        started = time.perf_counter()
        _note(progress, f"build: {sum(t.num_rows for t in config.tables):,} random rows into {path}")
        build_store(path, config, progress)
        build_seconds = time.perf_counter() - started
        budget = int(config.cache_fraction * sum(t.num_rows * t.cached_row_bytes for t in config.tables))
        trace_path = Path(folder) / KEPT_TRACE
        writer = NativeTraceWriter(trace_path, metadata={"generator": spec.to_dict()}) if keep is not None else None
        with tierstore.open(path, dram_cache_bytes=budget, policy=config.policy) as store, \
                writer if writer is not None else nullcontext():
            described = store.describe()
            pages = PagesTouched(store.tables)
            batches = generate(spec)
            warming = progress and config.warmup_batches > 0
            _note(warming, "warm-up: the first batch compiles the lookup and cache-policy code ...")
            t0 = time.perf_counter()
            compile_rows, _ = _serve(store, [next(batches)] if config.warmup_batches else [], pages, writer)
            compile_seconds = time.perf_counter() - t0
            _note(warming, f"warm-up: compiled in {compile_seconds:.1f} s; the other batches fill the DRAM cache")
            filling = max(config.warmup_batches - 1, 0)
            fill_rows, _ = _serve(store, batch_progress((next(batches) for _ in range(filling)), "warm-up", filling,
                                                        progress), pages, writer)
            warmup_seconds = time.perf_counter() - t0
            warm_stats = store.stats()
            store.reset_stats()
            t1 = time.perf_counter()
            rows, lookup_seconds = _serve(store, batch_progress(batches, "measured", config.batches, progress),
                                          pages, writer)
            measure_seconds = time.perf_counter() - t1
            stats = store.stats()
    store_pages = sum(t["pages"] for t in described["tables"].values())
    page_reads = warm_stats["ssd"]["pages_read"] + stats["ssd"]["pages_read"]
    return {
        "config": config.to_dict(),
        "store": {"rows": sum(t.num_rows for t in config.tables), "tables": len(config.tables),
                  "file_bytes": described["file_bytes"], "pages": store_pages},
        "kept": None if keep is None else {"store": str(keep / KEPT_STORE), "trace": str(keep / KEPT_TRACE)},
        "dram_budget_bytes": budget,
        "seconds": {"build": build_seconds, "compile": compile_seconds, "warmup": warmup_seconds,
                    "measured": measure_seconds, "measured_lookups": lookup_seconds,
                    "total": build_seconds + warmup_seconds + measure_seconds},
        "warmup": {"batches": config.warmup_batches, "compile_requests": compile_rows, "fill_batches": filling,
                   "fill_requests": fill_rows, "stats": warm_stats},
        "measured": {"batches": config.batches, "requests": rows, "stats": stats},
        "pooled_rows_per_s": rows / lookup_seconds if lookup_seconds else 0.0,
        "batches_per_s": config.batches / lookup_seconds if lookup_seconds else 0.0,
        "ssd_whole_run": {"page_reads": page_reads, "distinct_pages": pages.count, "re_reads": page_reads - pages.count,
                          "bytes_read": warm_stats["ssd"]["bytes_read"] + stats["ssd"]["bytes_read"]},
    }


def format_report(result: dict) -> str:
    """Human-readable summary of :func:`run_demo`'s result: every count says what it counts."""
    s, m, w, sec = result["measured"]["stats"], result["measured"], result["warmup"], result["seconds"]
    store, ssd, lat = result["store"], result["ssd_whole_run"], s["latency"]
    accesses = max(s["dram"]["hits"] + s["dram"]["misses"], 1)
    lines = [
        f"store: {store['rows']:,} rows in {store['tables']} tables, {human_bytes(store['file_bytes'])} on disk in "
        f"{store['pages']:,} LMDB pages; built in {sec['build']:.1f} s",
        f"warm-up, not counted below: the first batch ({w['compile_requests']:,} requests) compiled the lookup and "
        f"cache-policy code in {sec['compile']:.1f} s; {w['fill_batches']} more batches ({w['fill_requests']:,} "
        f"requests) filled the cache in {sec['warmup'] - sec['compile']:.1f} s",
        f"measured: {m['batches']} batches, {m['requests']:,} requests (a request is one index of one bag: one row "
        f"read and pooled), {sec['measured']:.1f} s wall, {sec['measured_lookups']:.1f} s of it in lookups",
        f"DRAM tier ({result['config']['policy']}, {human_bytes(result['dram_budget_bytes'])}): served "
        f"{s['dram']['hits'] / accesses:.1%} of the measured requests ({s['dram']['hits']:,} of {accesses:,})",
        f"SSD tier (LMDB): served {s['ssd']['hits'] / accesses:.1%} ({s['ssd']['hits']:,} requests) with "
        f"{s['ssd']['pages_read']:,} page reads ({human_bytes(s['ssd']['bytes_read'])}); {s['ssd']['rows_decoded']:,} "
        "rows decoded",
        f"SSD pages over the whole run (warm-up included): {ssd['page_reads']:,} page reads "
        f"({human_bytes(ssd['bytes_read'])}) of {ssd['distinct_pages']:,} distinct pages "
        f"({ssd['distinct_pages'] / max(store['pages'], 1):.0%} of the store); {ssd['re_reads']:,} re-reads, each a "
        "page read again for a row the DRAM cache does not hold",
        f"throughput (measured lookups): {result['pooled_rows_per_s'] / 1e6:.2f} M requests (pooled rows)/s, "
        f"{result['batches_per_s']:.1f} batches/s",
        f"batch latency (measured): p50 {lat['p50_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms",
        f"total: {sec['total']:.1f} s (build {sec['build']:.1f}, warm-up {sec['warmup']:.1f}, "
        f"measured {sec['measured']:.1f})",
    ]
    if result["kept"]:
        kept = result["kept"]
        lines += [f"kept the store in {kept['store']} and the batch stream in {kept['trace']}; try:",
                  f"  tierstore info {kept['store']}",
                  f"  tierstore replay {kept['store']} {kept['trace']} --warmup {w['batches']}",
                  f"  tierstore place {kept['store']} {kept['trace']}"]
    return "\n".join(lines)


def add_subcommands(subparsers) -> None:
    """Register ``demo``."""
    p = subparsers.add_parser("demo", help="build a synthetic store and serve a Zipf batch stream from it",
                              description=__doc__.split("\n\n", 1)[1].replace("``", ""))
    p.add_argument("--batches", type=positive_int, default=DemoConfig.batches,
                   help=f"measured batches (default {DemoConfig.batches})")
    p.add_argument("--warmup", type=non_negative_int, default=DemoConfig.warmup_batches,
                   help="warm-up batches before them: the first compiles, the rest fill the cache "
                        f"(default {DemoConfig.warmup_batches})")
    p.add_argument("--policy", type=policy_name, default=DemoConfig.policy,
                   help=f"DRAM cache policy: {', '.join(available_policies())} (default lru)")
    p.add_argument("--cache-fraction", type=non_negative_float, default=DemoConfig.cache_fraction,
                   help="DRAM budget as a fraction of the tables' float32 size (default 0.1)")
    p.add_argument("--zipf", type=float, default=DemoConfig.zipf,
                   help="Zipf exponent of row popularity (default 1.05)")
    p.add_argument("--seed", type=int, default=DemoConfig.seed,
                   help="random seed for the rows and the batches (default 0)")
    p.add_argument("--scale", type=non_negative_float, default=1.0,
                   help="multiply every table's rows by this (default 1: 3.5 M rows; 0.01 gives a quick run)")
    p.add_argument("--keep", metavar="DIR", help="keep the store (DIR/store) and the batch stream (DIR/demo.tstrace) "
                   "for info, replay and place; DIR must be new or empty")
    p.add_argument("--workdir", help="where the temporary store goes without --keep (default: the system temp dir)")
    add_output_options(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    if not 0 <= args.cache_fraction <= 1:
        raise UsageError(f"--cache-fraction must be between 0 and 1, got {args.cache_fraction}")
    if args.scale <= 0:
        raise UsageError(f"--scale must be above 0, got {args.scale}")
    config = DemoConfig(batches=args.batches, warmup_batches=args.warmup, policy=args.policy,
                        cache_fraction=args.cache_fraction, zipf=args.zipf, seed=args.seed).scaled(args.scale)
    result = run_demo(config, args.workdir, progress=not args.quiet, keep=args.keep)
    emit(args, result, format_report(result))
    return 0
