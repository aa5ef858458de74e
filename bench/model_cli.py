"""``tierstore import`` (a saved model's tables into a store) and ``tierstore dlrm-demo`` (torchrec's DLRM served
from a store, beside torchrec's own EBC).  PyTorch is imported only when one of them runs."""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

from tierstore.cli import add_output_options, emit, positive_int
from tierstore.config import DTYPES

DLRM_DEMO = """\
A Criteo-like torchrec DLRM (13 dense, 26 sparse features, dim 64) with random
weights, its tables exported to a temporary store, served three ways side by side:
torchrec's own EmbeddingBagCollection, tierstore with every row in DRAM, and
tierstore with a small DRAM cache over the SSD tier (each also with the pipelined
loop).  Prints samples/s, p50/p99 batch latency and per-tier hit rates.  Needs
torchrec; the full-size run is python -m bench.bench_dlrm."""


def add_subcommands(subparsers) -> None:
    """Register ``import`` and ``dlrm-demo``."""
    p = subparsers.add_parser(
        "import", help="export a saved model's embedding tables (torch.save) into a new store",
        description="Write every embedding table of MODEL (a state dict, or with --allow-pickle a whole module, saved "
                    "with torch.save) into a new store, recording feature names and pooling (tierstore.from_torch).")
    p.add_argument("model", help="file written by torch.save")
    p.add_argument("store", help="new store directory (must not exist or be empty)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="storage dtype of every table")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load a pickled module (runs code from the file: only for files you trust)")
    add_output_options(p)
    p.set_defaults(func=_run_import)

    d = subparsers.add_parser("dlrm-demo", help="torchrec's DLRM with its embeddings in tierstore, beside torchrec's EBC",
                              description=DLRM_DEMO, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--max-rows", type=positive_int, default=200_000, help="cap on the Criteo table sizes")
    d.add_argument("--batches", type=positive_int, default=10, help="timed batches per case per repeat")
    d.add_argument("--repeats", type=positive_int, default=2, help="repeats of every case, interleaved")
    d.add_argument("--cache-fraction", type=float, default=0.10,
                   help="DRAM cache of the 'cache' case, as a fraction of the tables' bytes")
    d.add_argument("--dtype", choices=DTYPES, default="float32", help="storage dtype of every table")
    d.add_argument("--device", default="auto", help="dense part's device: cpu, cuda, or auto")
    d.add_argument("--workdir", help="where the temporary stores go (default: the system temp dir)")
    add_output_options(d, quiet=False)
    d.set_defaults(func=_run_dlrm_demo)


def _run_import(args) -> int:
    try:
        from tierstore.torch import from_torch, load_saved
    except ImportError as err:
        raise RuntimeError(str(err)) from err

    try:
        info = from_torch(load_saved(args.model, allow_pickle=args.allow_pickle), args.store, dtype=args.dtype,
                          progress=not args.quiet)
    except TypeError as err:  # the file holds something from_torch cannot export: report it like other bad input
        raise ValueError(str(err)) from err
    lines = [f"{args.store}: {len(info.tables)} tables from {info.source}, {args.dtype}"
             f"{', weighted features' if info.weighted else ''}"]
    lines += [f"  {t.table}: features {', '.join(t.feature_names)} ({t.pooling})" for t in info.tables]
    emit(args, info.to_dict(), "\n".join(lines))
    return 0


def _run_dlrm_demo(args) -> int:
    try:
        from bench.bench_dlrm import DlrmBenchConfig, format_report, run_bench
    except ImportError as err:
        raise RuntimeError(f"dlrm-demo needs PyTorch and torchrec: {err}") from err

    config = DlrmBenchConfig(max_rows=args.max_rows, batches=args.batches, repeats=args.repeats,
                             warm_batches=5 * args.batches, cache_fraction=args.cache_fraction, dtype=args.dtype,
                             device=args.device)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="tierstore-dlrm-") as tmp:
        result = run_bench(replace(config, workdir=tmp), log=(lambda line: None) if args.json else print)
    emit(args, result, format_report(result))
    return 0
