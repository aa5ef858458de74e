"""``tierstore demo``: build a synthetic store and serve a DLRM-like stream of batches from it.

Everything is embedded: four tables (3.5 M rows in all, float32 / float16 / int8),
written to a temporary directory, then Zipf-skewed batches of bags (2048 bags per
table) go through ``Store.lookup_batch`` with a DRAM cache of a tenth of the tables'
float32 size.  It prints per-tier hit rates, pooled rows/s and batch latency.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

import tierstore
from bench.progress import batch_progress
from bench.traces.generate import TableSpec, TraceSpec, generate
from tierstore import TableConfig

DEMO_TABLES = (
    TableConfig("user", 2_000_000, 32, "float16"),
    TableConfig("item", 1_000_000, 64, "float32"),
    TableConfig("category", 200_000, 64, "int8"),
    TableConfig("geo", 300_000, 16, "float32"),
)


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

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tables"] = [t.to_dict() for t in self.tables]
        return data


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


def run_demo(config: DemoConfig, workdir=None, progress: bool = True) -> dict:
    """Build the store, stream the batches, return the figures."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="tierstore-demo-") as tmp:
        started = time.perf_counter()
        build_store(f"{tmp}/store", config, progress)
        build_seconds = time.perf_counter() - started
        budget = int(config.cache_fraction * sum(t.num_rows * t.cached_row_bytes for t in config.tables))
        spec = TraceSpec(
            tables=tuple(TableSpec(t.name, t.num_rows, zipf=config.zipf, pooling=config.pooling,
                                   pooling_dist="poisson") for t in config.tables),
            batch_size=config.batch_size,
            num_batches=config.batches + config.warmup_batches,
            seed=config.seed,
        )
        with tierstore.open(f"{tmp}/store", dram_cache_bytes=budget, policy=config.policy) as store:
            rows = 0
            timed = 0.0
            for i, batch in enumerate(batch_progress(generate(spec), "demo", spec.num_batches, progress)):
                if i == config.warmup_batches:
                    store.reset_stats()
                t0 = time.perf_counter()
                store.lookup_batch(batch)
                if i >= config.warmup_batches:
                    timed += time.perf_counter() - t0
                    rows += batch.values.size
            stats = store.stats()
    return {
        "config": config.to_dict(),
        "build_seconds": build_seconds,
        "dram_budget_bytes": budget,
        "pooled_rows_per_s": rows / timed if timed else 0.0,
        "batches_per_s": config.batches / timed if timed else 0.0,
        "stats": stats,
    }


def format_report(result: dict) -> str:
    """Human-readable summary of :func:`run_demo`'s result."""
    s = result["stats"]
    lookups = max(s["lookups"], 1)
    lat = s["latency"]
    return "\n".join([
        f"store: {sum(t['num_rows'] for t in result['config']['tables']):,} rows in "
        f"{len(result['config']['tables'])} tables, built in {result['build_seconds']:.1f} s",
        f"DRAM tier ({result['config']['policy']}, {result['dram_budget_bytes'] / 2**20:.0f} MiB): "
        f"hit rate {s['dram']['hit_rate']:.1%} ({s['dram']['hits']:,} of {lookups:,} pooled rows)",
        f"SSD tier (LMDB): served {s['ssd']['hits'] / lookups:.1%} of pooled rows; read {s['ssd']['pages_read']:,} "
        f"pages ({s['ssd']['bytes_read'] / 2**20:.1f} MiB), decoded {s['ssd']['rows_decoded']:,} rows",
        f"throughput: {result['pooled_rows_per_s'] / 1e6:.2f} M pooled rows/s, {result['batches_per_s']:.1f} batches/s",
        f"batch latency: p50 {lat['p50_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms",
    ])


def add_subcommands(subparsers) -> None:
    """Register ``demo``."""
    p = subparsers.add_parser("demo", help="build a synthetic store and serve a Zipf batch stream from it",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=DemoConfig.batches, help="timed batches")
    p.add_argument("--warmup", type=int, default=DemoConfig.warmup_batches, help="untimed warm-up batches")
    p.add_argument("--policy", default=DemoConfig.policy, help="DRAM cache policy (see cache_policies)")
    p.add_argument("--cache-fraction", type=float, default=DemoConfig.cache_fraction,
                   help="DRAM budget as a fraction of the tables' float32 size")
    p.add_argument("--zipf", type=float, default=DemoConfig.zipf, help="Zipf exponent of row popularity")
    p.add_argument("--seed", type=int, default=DemoConfig.seed)
    p.add_argument("--workdir", help="where the temporary store goes (default: the system temp dir)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args) -> int:
    config = DemoConfig(batches=args.batches, warmup_batches=args.warmup, policy=args.policy,
                        cache_fraction=args.cache_fraction, zipf=args.zipf, seed=args.seed)
    result = run_demo(config, args.workdir, progress=not args.no_progress)
    if args.json:
        json.dump(result, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(format_report(result))
    return 0
