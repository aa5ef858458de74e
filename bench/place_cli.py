"""``tierstore place STORE TRACE``: profile a trace, plan tiers and SSD layout, save the plan, rewrite the layout.

The plan goes to ``STORE/placement/`` (``plan.json`` plus per-table ``tier_<i>.npy``
and ``order_<i>.npy``); the layout is applied with ``Store.apply_layout`` in one
LMDB write transaction, so readers see the old layout or the new one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import placement as pl
from bench.cli import add_reader_options, emit, reader_from_args
from bench.compare import parse_size
from bench.progress import batch_progress
from tierstore.cli import UsageError

PLAN_DIR = "placement"
BUDGET_TIERS = ("gpu", "dram", "ssd")


def parse_budgets(text: str, total_bytes: int) -> pl.TierBudgets:
    """``"gpu=0,dram=5%,ssd=2GiB"`` -> TierBudgets; a percentage is of the tables' total bytes, a bare number is bytes."""
    budgets = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        tier, eq, size = part.partition("=")
        if not eq or tier not in BUDGET_TIERS:
            raise ValueError(f"budget {part!r}: expected TIER=SIZE with TIER one of {BUDGET_TIERS}")
        kind, value = parse_size(size)
        budgets[f"{tier}_bytes"] = int(value * total_bytes if kind == "fraction" else value)
    return pl.TierBudgets(**budgets)


def store_tables(store) -> dict[str, pl.TableSpec]:
    """The store's tables as the placement package sees them (DRAM bytes per row, rows per SSD page)."""
    return {
        name: pl.TableSpec(name, c.num_rows, c.cached_row_bytes, c.rows_per_page) for name, c in store.tables.items()
    }


def cmd_place(args) -> int:
    import tierstore

    started = time.perf_counter()
    cost = pl.CostModel.from_json(Path(args.cost_model).read_text()) if args.cost_model else pl.CostModel()
    config = pl.PlanConfig(assign_method=args.method, layout=args.layout, dynamic_fraction=args.dynamic_fraction,
                           min_cache_count=args.min_cache_count, seed=args.seed)
    with tierstore.open(args.store, readonly=args.dry_run) as store:
        tables = store_tables(store)
        try:
            budgets = parse_budgets(args.budgets, sum(t.total_bytes for t in tables.values()))
        except ValueError as err:
            raise UsageError(err) from None
        trace = batch_progress(reader_from_args(args), "profile", enabled=not args.quiet)
        profile = pl.profile(trace, tables, granularity=args.granularity, max_pins=args.max_pins, seed=args.seed)
        profiled = time.perf_counter()
        plan = pl.make_plan(profile, budgets, cost, config)
        planned = time.perf_counter()
        plan_file = None if args.dry_run else plan.save(Path(store.path) / PLAN_DIR)
        if not args.dry_run:
            store.apply_layout(plan.order, progress=not args.quiet)
    applied = time.perf_counter()
    result = {
        "store": str(args.store),
        "trace": str(args.trace),
        "plan_file": None if plan_file is None else str(plan_file),
        "applied": not args.dry_run,
        "profile": profile.summary(),
        "plan": plan.describe(),
        "seconds": {"profile": profiled - started, "plan": planned - profiled, "apply": applied - planned},
    }
    if args.evaluate:
        trace = batch_progress(reader_from_args(args), "evaluate", enabled=not args.quiet)
        result["predicted"] = pl.evaluate(plan, trace, policy=args.policy).to_dict()
        del result["predicted"]["config"]
    emit(args, result, _human(result))
    return 0


def _human(result: dict) -> str:
    a = result["plan"]["assignment"]
    lines = [
        f"profiled {result['profile']['num_batches']} batches in {result['seconds']['profile']:.1f}s; "
        f"planned in {result['seconds']['plan']:.1f}s ({a['method']} tiers, {result['plan']['config']['layout']} layout)",
        f"pinned: GPU {a['gpu_pinned_bytes']:,} B, DRAM {a['dram_pinned_bytes']:,} B; "
        f"policy-managed DRAM cache {a['dram_cache_bytes']:,} B",
    ]
    for name, tiers in a["rows_per_tier"].items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {v:,}" for k, v in tiers.items()))
    if result["applied"]:
        lines.append(f"plan saved to {result['plan_file']}; layout applied in {result['seconds']['apply']:.1f}s")
    else:
        lines.append("dry run: nothing saved or applied")
    if "predicted" in result:
        p = result["predicted"]
        lines.append(f"predicted on the same trace: hit rate {p['hit_rate_requests']:.4f}, "
                     f"SSD pages per batch {p['ssd_pages_per_batch']:.1f}")
    return "\n".join(lines)


def add_subcommands(subparsers) -> None:
    """Register ``place`` on the ``tierstore`` subparsers."""
    place = subparsers.add_parser("place", help="plan tiers and SSD layout from a trace and apply the layout",
                                  description="Profile a trace, plan tiers and SSD layout, save the plan in "
                                  "STORE/placement/ and rewrite the store's SSD layout in one transaction.")
    place.add_argument("store", help="store directory (opened writable)")
    place.add_argument("trace", help="access trace to profile")
    add_reader_options(place)
    place.add_argument("--budgets", default="gpu=0,dram=5%",
                       help="tier budgets, e.g. gpu=1GiB,dram=5%%,ssd=2TB (%% of the tables' bytes; default gpu=0,dram=5%%)")
    place.add_argument("--method", choices=pl.assign.METHODS, default="cost", help="tier assignment (default cost)")
    place.add_argument("--layout", choices=pl.layout.LAYOUTS, default="coaccess", help="SSD layout (default coaccess)")
    place.add_argument("--dynamic-fraction", type=float, default=0.2,
                       help="DRAM share kept for the policy-managed cache (default 0.2)")
    place.add_argument("--min-cache-count", type=int, default=1,
                       help="unpinned rows seen fewer times are SSD-only (default 1)")
    place.add_argument("--cost-model", help="CostModel JSON file (default: built-in figures)")
    place.add_argument("--granularity", choices=["bag", "batch"], default="bag", help="co-access unit (default bag)")
    place.add_argument("--max-pins", type=int, default=8_000_000, help="co-access sample bound, row entries")
    place.add_argument("--seed", type=int, default=0, help="random seed of the co-access sample (default 0)")
    place.add_argument("--evaluate", action="store_true", help="replay the trace again and print predicted figures")
    place.add_argument("--policy", default="lru", help="DRAM cache policy for --evaluate (default lru)")
    place.add_argument("--dry-run", action="store_true", help="plan only: save and apply nothing")
    place.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    place.add_argument("--quiet", action="store_true", help="no progress bars")
    place.set_defaults(func=cmd_place)


def main(argv=None) -> int:
    """``python -m bench.place_cli STORE TRACE ...``."""
    parser = argparse.ArgumentParser(prog="tierstore")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["place", *(argv if argv is not None else __import__("sys").argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
