"""The ``tierstore`` command: one entry point, subcommands contributed by the packages.

``demo`` (bench.demo), ``trace gen|convert|stats``, ``replay``, ``compare`` (bench.cli),
``place`` (bench.place_cli) and ``warmup`` (tierstore.warmup) register themselves through
``add_subcommands``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = ("bench.demo", "bench.cli", "bench.place_cli", "tierstore.warmup")


def build_parser() -> argparse.ArgumentParser:
    """The full ``tierstore`` argument parser."""
    parser = argparse.ArgumentParser(prog="tierstore", description="Tiered embedding store: demo, traces, replay, "
                                     "cache-policy comparison and placement.")
    parser.add_argument("--version", action="version", version=f"tierstore {importlib.import_module('tierstore').__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_subcommands(subparsers)
    return parser


def main(argv=None) -> int:
    """Run ``tierstore`` with ``argv`` (default: the process arguments); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        print(f"tierstore {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
