"""``tierstore shard STORE OUT --shards N [--profile TRACE]``: plan shards and write the shard stores.

Cuts the store's tables into whole tables and row ranges for N shards, balanced
for stored bytes and for the load a trace puts on them (``--profile``; else every
row weighs the same), writes one tierstore store per shard under OUT and the plan
(``OUT/plan.json``) that ``tierstore.distributed.ShardedStore.open`` reads.
"""

from __future__ import annotations

import time

import placement as pl
from bench.cli import add_reader_options, reader_from_args
from bench.compare import parse_size
from bench.place_cli import store_tables
from bench.progress import batch_progress
from tierstore.cli import UsageError, add_output_options, emit, non_negative_float, positive_int

SHARD_DESCRIPTION = (
    "Cut a store's tables into whole tables and row ranges for N shards, balanced for stored bytes and for the "
    "load a trace puts on them (--profile; else every row weighs the same); write one tierstore store per shard "
    "under OUT and the plan OUT/plan.json that tierstore.distributed.ShardedStore.open reads."
)

#: Co-access entries the profile keeps: a shard plan needs per-row counts only.
PROFILE_MAX_PINS = 1024


def cmd_shard(args) -> int:
    import tierstore
    from tierstore.distributed import ShardPlanConfig, make_shard_plan, write_shards

    started = time.perf_counter()
    shard_bytes = None
    if args.shard_bytes:
        kind, value = parse_size(args.shard_bytes)
        if kind != "bytes":
            raise UsageError(f"--shard-bytes {args.shard_bytes!r}: give bytes, e.g. 64GiB")
        shard_bytes = int(value)
    config = ShardPlanConfig(num_shards=args.shards, shard_bytes=shard_bytes, imbalance=args.imbalance)
    with tierstore.open(args.store) as store:
        tables = list(store.tables.values())
        profile = None
        if args.profile:
            trace = batch_progress(reader_from_args(args, args.profile), "profile", enabled=not args.quiet)
            profile = pl.profile(trace, store_tables(store), max_pins=PROFILE_MAX_PINS)
    plan = make_shard_plan(tables, config, profile)
    planned = time.perf_counter()
    plan_file = write_shards(args.store, args.out, plan, progress=not args.quiet)
    written = time.perf_counter()
    result = {"store": str(args.store), "out": str(args.out), "plan_file": str(plan_file),
              "profile": None if profile is None else str(args.profile), "config": config.to_dict(),
              "plan": plan.describe(), "seconds": {"plan": planned - started, "write": written - planned}}
    emit(args, result, _human(result))
    return 0


def _human(result: dict) -> str:
    plan = result["plan"]
    lines = [f"{plan['num_shards']} shards ({plan['load_source']} load) planned in {result['seconds']['plan']:.1f}s, "
             f"written in {result['seconds']['write']:.1f}s; plan: {result['plan_file']}",
             f"largest shard / mean: bytes {plan['max_over_mean']['bytes']:.3f}, "
             f"load {plan['max_over_mean']['load']:.3f}; tables cut into row ranges: {plan['split_tables'] or 'none'}"]
    for shard in plan["shards"]:
        lines.append(f"  {shard['dir']}: {shard['bytes']:,} B, load {shard['load']:.3f}: {', '.join(shard['pieces'])}")
    return "\n".join(lines)


def add_subcommands(subparsers) -> None:
    """Register ``shard`` on the ``tierstore`` subparsers."""
    shard = subparsers.add_parser("shard", help="cut a store into N shard stores for ShardedStore (Ray)",
                                  description=SHARD_DESCRIPTION)
    shard.add_argument("store", help="source store directory")
    shard.add_argument("out", help="new folder for the shard stores and plan.json")
    shard.add_argument("--shards", type=positive_int, required=True, help="number of shards")
    shard.add_argument("--profile", metavar="TRACE", help="trace whose per-row access counts weigh the load")
    add_reader_options(shard)
    shard.add_argument("--shard-bytes", help="most stored bytes per shard, e.g. 64GiB (default: no limit)")
    shard.add_argument("--imbalance", type=non_negative_float, default=0.1,
                       help="cut tables holding more than (1 + IMBALANCE) / N of bytes or load (default 0.1)")
    add_output_options(shard)
    shard.set_defaults(func=cmd_shard)

