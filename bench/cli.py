"""``tierstore`` subcommands owned by bench: ``trace gen|convert|stats``, ``replay``, ``compare``.

``tierstore/cli.py`` calls :func:`add_subcommands` on its subparsers; every
subcommand stores its handler as ``func`` (``args.func(args)`` returns the exit
code).  ``python -m bench.cli ...`` runs the ``tierstore`` command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from bench.progress import batch_progress, part_progress
from bench.traces import detect_format, open_trace, write_trace
from bench.traces.formats import FORMATS, format_name
from bench.traces.generate import TraceSpec, generate_parts
from bench.traces.presets import PRESETS
from bench.traces.sizing import check_room, estimate_size
from bench.traces.stats import DEFAULT_DENSE_LIMIT, TraceStats
from cache_policies import available_policies
from tierstore.cli import (UsageError, add_output_options, emit, human_bytes, non_negative_float, non_negative_int,
                           note, policy_name, positive_int)


def format_arg(text: str) -> str:
    """argparse type: a trace format name or alias (any letter case)."""
    try:
        return format_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


FORMAT_HELP = "one of " + ", ".join(FORMATS)


def add_reader_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """Options that say how to read a trace file (format and batching for bag-less formats)."""
    parser.add_argument(f"--{prefix}format", dest="in_format", type=format_arg, metavar="FORMAT",
                        help=f"input trace format, {FORMAT_HELP} (default: detected from the file)")
    parser.add_argument("--batch-size", type=positive_int,
                        help="dlrm_datasets input: bags per table per batch (default: the whole file is one batch)")
    parser.add_argument("--batch-requests", type=positive_int,
                        help="oracleGeneral or csv input: requests per batch of single-index bags (default 4096)")
    parser.add_argument("--table-shift", type=positive_int,
                        help="oracleGeneral input: split each id into table (id >> SHIFT) and row "
                             "(default: every id is a row of one table t0)")


def reader_from_args(args, path=None):
    """Open the trace named by ``args.trace`` (or ``path``) with the reader options."""
    return open_trace(
        path or args.trace,
        format=args.in_format,
        batch_size=args.batch_size,
        batch_requests=args.batch_requests,
        table_shift=args.table_shift,
    )


def _spec_from_args(args) -> TraceSpec:
    if args.spec:
        with open(args.spec) as f:
            return TraceSpec.from_json(f.read())
    common = {"num_batches": args.batches, "seed": args.seed, "drift": args.drift, "shift_every": args.shift_every}
    if args.batch_size_gen:
        common["batch_size"] = args.batch_size_gen
    if args.tables:
        common["num_tables"] = args.tables
    if args.preset == "zipf":
        for name in ("rows", "zipf", "pooling"):
            if getattr(args, name) is not None:
                common["num_rows" if name == "rows" else name] = getattr(args, name)
    elif any(getattr(args, n) is not None for n in ("rows", "zipf", "pooling")):
        raise UsageError("--rows, --zipf and --pooling apply to --preset zipf; use --spec FILE for per-table control")
    return PRESETS[args.preset](**common)


def cmd_trace_gen(args) -> int:
    spec = _spec_from_args(args)
    if args.print_spec:
        sys.stdout.write(json.dumps(spec.to_dict(), indent=1) + "\n")
        return 0
    fmt = args.out_format or detect_format(args.out)
    metadata = {"generator": spec.to_dict()}
    size = estimate_size(spec, fmt, metadata)
    note(args, f"{spec.preset or 'spec'}: {len(spec.tables)} tables, {spec.num_batches:,} batches of "
               f"{spec.batch_size:,} bags per table, about {size.batch_requests:,.0f} requests per batch; "
               f"expected size about {human_bytes(size.file_bytes)} as {fmt}")
    if size.read_back_bytes > 1 << 30:
        note(args, f"note: each batch is large; reading it back (replay, stats) takes about "
                   f"{human_bytes(size.read_back_bytes)} of memory per batch")
    check_room(args.out, size)
    start = time.perf_counter()
    parts = part_progress(generate_parts(spec), "gen", total_requests=size.requests, enabled=not args.quiet)
    counts = write_trace(args.out, parts, format=fmt, metadata=metadata)
    seconds = time.perf_counter() - start
    result = {
        "out": args.out,
        "format": fmt,
        "batches": counts["batches"],
        "requests": counts["values"],
        "seconds": seconds,
        "requests_per_s": counts["values"] / seconds if seconds else None,
        "bytes": os.path.getsize(args.out),
        "expected_bytes": size.file_bytes,
        "spec": spec.to_dict(),
    }
    emit(args, result, f"wrote {args.out}: {counts['batches']:,} batches, {counts['values']:,} requests, "
                       f"{human_bytes(result['bytes'])} (expected {human_bytes(size.file_bytes)}) in {seconds:.1f} s "
                       f"({result['requests_per_s'] / 1e6:.1f} M requests/s)")
    return 0


def cmd_trace_convert(args) -> int:
    reader = reader_from_args(args)
    start = time.perf_counter()
    batches = batch_progress(reader, "convert", enabled=not args.quiet)
    counts = write_trace(args.out, batches, format=args.out_format, metadata=getattr(reader, "metadata", None),
                         row_bytes=args.row_bytes)
    seconds = time.perf_counter() - start
    result = {
        "in": args.trace,
        "out": args.out,
        "batches": counts["batches"],
        "requests": counts["values"],
        "seconds": seconds,
        "requests_per_s": counts["values"] / seconds if seconds else None,
        "in_bytes": os.path.getsize(args.trace),
        "out_bytes": os.path.getsize(args.out),
    }
    emit(args, result, f"converted {args.trace} -> {args.out}: {counts['batches']} batches, {counts['values']:,} "
                       f"requests in {seconds:.1f} s ({result['requests_per_s'] / 1e6:.2f} M requests/s); "
                       f"{result['in_bytes']:,} -> {result['out_bytes']:,} bytes")
    return 0


def format_stats(stats: dict, max_tables: int = 20) -> str:
    """Human-readable text of a :func:`bench.traces.stats.trace_stats` result."""
    lines = [
        f"requests {stats['requests']:,}  batches {stats['batches']:,}  tables {stats['num_tables']}  "
        f"distinct (table,row) {stats['distinct_rows']:,}",
        "skew (share of accesses to the top rows): "
        + "  ".join(f"{k} {v:.3f}" for k, v in stats["skew"].items()),
        "",
        f"{'table':<16}{'requests':>14}{'distinct':>12}{'top0.1%':>9}{'top1%':>8}{'top10%':>8}"
        f"{'pool mean':>10}{'p50':>6}{'p99':>6}{'max':>7}",
    ]
    tables = sorted(stats["tables"].items(), key=lambda kv: -kv[1]["requests"])
    for name, t in tables[:max_tables]:
        s, p = t["skew"], t["pooling"]
        lines.append(
            f"{name:<16}{t['requests']:>14,}{t['distinct_rows']:>12,}{s['top_0.1%']:>9.3f}{s['top_1%']:>8.3f}"
            f"{s['top_10%']:>8.3f}{p['mean']:>10.2f}{p['p50']:>6}{p['p99']:>6}{p['max']:>7}"
        )
    if len(tables) > max_tables:
        lines.append(f"... {len(tables) - max_tables} more tables (--json lists all)")
    hist = stats["reuse_time_histogram"]
    total = sum(hist["counts"]) + hist["first_accesses"]
    lines += ["", f"reuse time ({hist['unit']}):", f"  first access      {hist['first_accesses'] / max(total, 1):7.3f}"]
    for (lo, hi), c in zip(hist["bins"], hist["counts"]):
        lines.append(f"  {lo:>8,}-{hi:<8,} {c / max(total, 1):7.3f}")
    if "in_batch_reuse" in stats:
        ib = stats["in_batch_reuse"]
        lines += ["", f"in-batch reuse (Meta's statistic): mean accesses per touched row {ib['mean_reuse']:.2f}",
                  "  fraction of touched rows by accesses in the batch:"]
        edges = ib["bin_edges"]
        for i, f in enumerate(ib["frac_of_unique_rows"]):
            label = f"({edges[i]},{edges[i + 1]}]" if i + 1 < len(edges) else f"{edges[i]}+"
            lines.append(f"  {label:<16}{f:7.3f}")
    return "\n".join(lines)


def cmd_trace_stats(args) -> int:
    stats = TraceStats(dense_limit=args.dense_limit, in_batch=not args.no_in_batch)
    start = time.perf_counter()
    for batch in batch_progress(reader_from_args(args), "stats", enabled=not args.quiet):
        stats.add(batch)
    result = stats.result()
    result["trace"] = args.trace
    result["seconds"] = time.perf_counter() - start
    emit(args, result, format_stats(result))
    return 0


def add_trace_commands(subparsers) -> None:
    """``trace gen|convert|stats``."""
    trace = subparsers.add_parser("trace", help="generate, convert and describe access traces")
    sub = trace.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    gen = sub.add_parser("gen", help="write a seeded synthetic trace, a part of a batch at a time",
                         description="Write a seeded synthetic trace. Batches are generated and written a part "
                         "(some whole tables) at a time, so memory does not grow with --batches. The expected "
                         "size is printed first; the command refuses, writing nothing, when the output would "
                         "not fit on the disk.")
    gen.add_argument("out", help=f"output file; its format comes from --to or the file name ({FORMAT_HELP}; "
                     ".tstrace recommended)")
    gen.add_argument("--to", dest="out_format", type=format_arg, metavar="FORMAT",
                     help=f"output format, {FORMAT_HELP} (default: from the file name)")
    gen.add_argument("--preset", choices=sorted(PRESETS), default="meta2022",
                     help="meta2022 (default): calibrated to Meta's 2022 per-batch locality, 788 tables and "
                          "131,072 bags per table, 1.4 G requests per batch at full scale (scale down with "
                          "--tables and --batch-size together); zipf: identical Zipf tables")
    gen.add_argument("--spec", help="TraceSpec JSON file for per-table control; overrides the preset options")
    gen.add_argument("--tables", type=positive_int, help="number of tables (default: the preset's)")
    gen.add_argument("--batch-size", dest="batch_size_gen", type=positive_int,
                     help="bags per table per batch (default: the preset's)")
    gen.add_argument("--batches", type=non_negative_int, default=100, help="number of batches (default 100)")
    gen.add_argument("--rows", type=positive_int, help="zipf preset: rows per table (default 1,000,000)")
    gen.add_argument("--zipf", type=non_negative_float, help="zipf preset: Zipf exponent, 0 is uniform (default 1.05)")
    gen.add_argument("--pooling", type=non_negative_float, help="zipf preset: mean indices per bag (default 20)")
    gen.add_argument("--seed", type=int, default=0, help="random seed; the same seed and options give the same "
                     "trace (default 0)")
    gen.add_argument("--drift", type=non_negative_float, default=0.0,
                     help="popularity slide per batch, as a fraction of each table's rows (default 0)")
    gen.add_argument("--shift-every", type=non_negative_int, default=0,
                     help="batches between jumps to a new hot set (default 0: never)")
    gen.add_argument("--print-spec", action="store_true", help="print the TraceSpec JSON and exit, writing nothing")
    add_output_options(gen)
    gen.set_defaults(func=cmd_trace_gen)

    convert = sub.add_parser("convert", help="convert a trace between formats, streaming")
    convert.add_argument("trace", help="input trace file")
    convert.add_argument("out", help="output trace file")
    add_reader_options(convert, prefix="from-")
    convert.add_argument("--to", dest="out_format", type=format_arg, metavar="FORMAT",
                         help=f"output format, {FORMAT_HELP} (default: from the file name)")
    convert.add_argument("--row-bytes", type=positive_int, default=1,
                         help="oracleGeneral output: the object size written for every request (default 1)")
    add_output_options(convert)
    convert.set_defaults(func=cmd_trace_convert)

    stats = sub.add_parser("stats", help="requests, distinct rows, skew, pooling and reuse of a trace")
    stats.add_argument("trace", help="trace file")
    add_reader_options(stats)
    stats.add_argument("--dense-limit", type=positive_int, default=DEFAULT_DENSE_LIMIT,
                       help="largest row-id range per table counted in dense arrays, 16 bytes per row "
                            f"(default {DEFAULT_DENSE_LIMIT:,}); larger tables are counted in hash maps")
    stats.add_argument("--no-in-batch", action="store_true", help="skip the in-batch reuse histogram")
    add_output_options(stats)
    stats.set_defaults(func=cmd_trace_stats)


def _table_row_bytes(text: str | None) -> dict:
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        if not eq:
            raise UsageError(f"--table-row-bytes wants name=bytes,..., got {part!r}")
        out[name.strip()] = int(value)
    return out


def cmd_compare(args) -> int:
    from bench.compare import CompareConfig, compare
    from bench.report import markdown_summary, write_report

    try:
        config = CompareConfig(
            trace=args.trace,
            policies=tuple(p for p in args.policies.split(",") if p),
            sizes=tuple(s for s in args.sizes.split(",") if s),
            row_bytes=args.row_bytes,
            table_row_bytes=_table_row_bytes(args.table_row_bytes),
            windows=args.windows,
            reader={k: v for k, v in (("format", args.in_format), ("batch_size", args.batch_size),
                                      ("batch_requests", args.batch_requests), ("table_shift", args.table_shift)) if v},
        )
    except ValueError as err:
        raise UsageError(err) from None
    from tqdm import tqdm

    start = time.perf_counter()
    batches = batch_progress(reader_from_args(args), "read trace", enabled=not args.quiet)
    with tqdm(desc="simulate", unit="run", file=sys.stderr, disable=args.quiet) as bar:
        def progress(done, total, label):
            bar.total = total
            bar.set_postfix_str(label, refresh=False)
            bar.update(1)

        result = compare(batches, config, workdir=args.tmpdir, progress=progress)
    result["seconds"] = time.perf_counter() - start
    out_dir = args.out or f"compare-{os.path.basename(args.trace).split('.')[0]}"
    result["files"] = write_report(result, out_dir)
    emit(args, result, markdown_summary(result) + f"\nreport: {result['files']['report.html']}\n")
    return 0


def add_compare_command(subparsers) -> None:
    """``compare TRACE --policies ... --sizes ...``."""
    p = subparsers.add_parser("compare", help="simulate cache policies x sizes on a trace and write a report")
    p.add_argument("trace", help="trace file")
    add_reader_options(p)
    p.add_argument("--policies", default="lru,fifo,clock,arc,s3fifo,sieve",
                   help="comma-separated policies, optionally name:key=value:...; belady is always added")
    p.add_argument("--sizes", default="0.1%,1%,10%",
                   help="comma-separated cache sizes: percent of the working set, row counts, or bytes (64MiB)")
    p.add_argument("--row-bytes", type=positive_int,
                   help="byte mode: bytes per cached row (default 256 with byte sizes)")
    p.add_argument("--table-row-bytes", help="byte mode: per-table row bytes, name=bytes,...")
    p.add_argument("--windows", type=positive_int, default=100,
                   help="time windows for the hit ratio over time (default 100)")
    p.add_argument("--out", help="report directory (default compare-<trace name>)")
    p.add_argument("--tmpdir", help="where the temporary key stream goes (24 bytes per request)")
    add_output_options(p)
    p.set_defaults(func=cmd_compare)


def cmd_replay(args) -> int:
    from bench.replay import ReplayConfig, UnknownTablesError, format_replay, replay

    try:
        config = ReplayConfig(
            store=args.store,
            trace=args.trace,
            dram_cache=args.dram_cache,
            policy=args.policy,
            warmup_batches=args.warmup,
            interval=args.interval,
            mode=args.mode,
            fold=args.fold,
            max_batches=args.max_batches,
            reader={k: v for k, v in (("format", args.in_format), ("batch_size", args.batch_size),
                                      ("batch_requests", args.batch_requests), ("table_shift", args.table_shift)) if v},
        )
    except ValueError as err:
        raise UsageError(err) from None
    total = args.max_batches
    try:
        result = replay(reader_from_args(args), config,
                        progress=lambda b: batch_progress(b, "replay", total=total, enabled=not args.quiet))
    except UnknownTablesError as err:
        raise UsageError(err.args[0]) from None
    emit(args, result, format_replay(result))
    return 0


def add_replay_command(subparsers) -> None:
    """``replay STORE TRACE``."""
    p = subparsers.add_parser("replay", help="drive a store with a trace and report tier hit rates, "
                              "throughput, latency and SSD reads")
    p.add_argument("store", help="store directory (opened read-only)")
    p.add_argument("trace", help="trace file")
    add_reader_options(p)
    p.add_argument("--dram-cache", default="10%",
                   help="DRAM budget: bytes (256MiB) or a share of the tables' float32 size (default 10%%)")
    p.add_argument("--policy", type=policy_name, default="lru",
                   help=f"DRAM cache policy: {', '.join(available_policies())} (default lru)")
    p.add_argument("--warmup", type=non_negative_int, default=10,
                   help="warm-up batches, excluded from the figures (default 10)")
    p.add_argument("--interval", type=positive_int, default=10,
                   help="batches per point of the hit-rate time series (default 10)")
    p.add_argument("--mode", default="sum", choices=("sum", "mean", "max"), help="pooling mode (default sum)")
    p.add_argument("--fold", action="store_true",
                   help="map trace tables round-robin onto the store's tables and rows modulo their size "
                        "(needed when the trace's tables are not the store's)")
    p.add_argument("--max-batches", type=positive_int, help="stop after this many batches, warm-up included")
    add_output_options(p)
    p.set_defaults(func=cmd_replay)


def add_subcommands(subparsers) -> None:
    """Add bench's subcommands to the ``tierstore`` command's subparsers."""
    add_trace_commands(subparsers)
    add_compare_command(subparsers)
    add_replay_command(subparsers)


def main(argv=None) -> int:
    """``python -m bench.cli ...``: the ``tierstore`` command (same subcommands, errors and exit codes)."""
    from tierstore.cli import main as tierstore_main

    return tierstore_main(argv)


if __name__ == "__main__":
    sys.exit(main())
