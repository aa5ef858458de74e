"""The ``tierstore`` command: one entry point, subcommands contributed by the packages.

Each module in ``COMMAND_MODULES`` has ``add_subcommands(subparsers)``, which adds its
subcommands and stores each one's handler as ``func`` (``args.func(args)`` returns
the exit code).  Adding a command is one line here plus its module.

Exit codes: 0 done; 1 the work failed (a missing or corrupt file, a full disk, bad
data); 2 the command line was wrong (argparse's own errors and :class:`UsageError`).
Every error is one line on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

import lmdb

COMMAND_MODULES = ("tierstore.store_cli", "tierstore.check", "bench.demo", "bench.cli", "bench.place_cli",
                   "bench.model_cli", "bench.shard_cli", "tierstore.warmup")

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """The command line asks for something that cannot work (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: what is wrong and where to find help."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _at_least(kind, low, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (underscores allowed: 10_000)."""
    return _at_least(int, 1, text)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _at_least(int, 0, text)


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    return _at_least(float, 0.0, text)


DEFAULT_POLICY = "setassoc"
"""``--policy`` when not given: the store's default DRAM tier (set-associative, its default rule and ways)."""


def policy_help() -> str:
    """The ``--policy`` help line of the commands that open a store's DRAM tier."""
    from cache_policies import available_policies

    return ("DRAM cache: setassoc (the store's default), setassoc-lru or setassoc-lfu with options as in "
            f"setassoc-lru:ways=32,admission=none, or an exact policy: {', '.join(available_policies())} "
            "(default setassoc)")


def policy_name(text: str) -> str:
    """argparse type: a DRAM tier's cache: a set-associative name (``setassoc``, ``setassoc-lru:ways=8``, ...)
    or the name of a registered exact policy."""
    from cache_policies import available_policies
    from cache_policies.setassoc import is_setassoc, parse

    if is_setassoc(text):
        try:
            parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return text
    if text not in available_policies():
        raise argparse.ArgumentTypeError(f"unknown policy {text!r}; set-associative: setassoc, setassoc-lru, "
                                         f"setassoc-lfu; exact: {', '.join(available_policies())}")
    return text


def add_output_options(parser: argparse.ArgumentParser, quiet: bool = True) -> None:
    """``--json`` (and ``--quiet``, no progress bars) as every command spells them."""
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no progress bars or notes on stderr")


def emit(args, result: dict, human: str) -> None:
    """Print ``result`` as JSON with ``--json``, else the human-readable text."""
    if args.json:
        json.dump(result, sys.stdout, indent=1, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(human.rstrip("\n") + "\n")


def note(args, text: str) -> None:
    """A line on stderr for the person watching (silenced by ``--quiet``)."""
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr, flush=True)


def human_bytes(n: float) -> str:
    """``n`` bytes in B, KiB, MiB, GiB or TiB, three significant digits."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


def build_parser() -> argparse.ArgumentParser:
    """The full ``tierstore`` argument parser."""
    parser = Parser(prog="tierstore", description="Tiered embedding store: make and inspect stores, demo, traces, "
                    "replay, cache-policy comparison and placement.")
    parser.add_argument("--version", action="version", help="print the version and exit",
                        version=f"tierstore {importlib.import_module('tierstore').__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_subcommands(subparsers)
    _describe_from_help(parser)
    return parser


def _describe_from_help(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand without a description its one-line help as description."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not sub.description:
                    sub.description = helps.get(name)
                _describe_from_help(sub)


def error_text(err: BaseException) -> str:
    """One line for an error: KeyError's message without the quotes repr() adds."""
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]
    return str(err) or type(err).__name__


def main(argv=None) -> int:
    """Run ``tierstore`` with ``argv`` (default: the process arguments); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    command = " ".join(filter(None, (args.command, getattr(args, "subcommand", None))))
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        print(f"tierstore {command}: error: {error_text(err)} (see tierstore {command} --help)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"tierstore {command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError, RuntimeError, ImportError, MemoryError, lmdb.Error) as err:
        print(f"tierstore {command}: error: {error_text(err)}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(importlib.import_module("tierstore.cli").main())  # the imported module, whose classes commands raise
