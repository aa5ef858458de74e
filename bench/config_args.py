"""Benchmark configs on the command line: one ``--flag`` per dataclass field, and back."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields


def add_config_flags(parser: argparse.ArgumentParser, config_class) -> None:
    """Add ``--field-name`` (typed by the field's default) for every field of ``config_class``."""
    defaults = config_class()
    for field in fields(config_class):
        default = getattr(defaults, field.name)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(default), default=default)


def config_from_args(config_class, args: argparse.Namespace):
    """The ``config_class`` instance that the flags added by :func:`add_config_flags` describe."""
    return config_class(**{field.name: getattr(args, field.name) for field in fields(config_class)})


def config_flags(config) -> list[str]:
    """Command-line flags that rebuild ``config`` (for a child process)."""
    return [part for name, value in asdict(config).items() for part in (f"--{name.replace('_', '-')}", str(value))]


def print_result(result: dict, out=None) -> None:
    """Print ``result`` as one JSON line, and write the same text to ``out`` (a Path) if given."""
    text = json.dumps(result)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def benchmark_main(benchmark: str, config_class, run, argv, prog: str, description: str) -> dict:
    """Build the ``config_class`` instance that ``argv`` describes (one ``--flag`` per field; a bad value
    exits with the usage message), call ``run(config)``, print one JSON line with the benchmark's name,
    its config, the results and Numba's threading layer, and return the results."""
    import numba

    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_config_flags(parser, config_class)
    try:
        config = config_from_args(config_class, parser.parse_args(argv))
    except ValueError as error:
        parser.error(str(error))
    results = run(config)
    print(json.dumps({"benchmark": benchmark, "config": config.to_dict(), "results": results,
                      "numba_threading_layer": numba.threading_layer()}))
    return results
