"""``tierstore create | load | info``: make, fill and inspect a store from the shell.

``create STORE --table NAME:ROWS:DIM[:DTYPE] ...`` makes an empty store;
``load STORE TABLE FILE.npy`` bulk-loads one table from a ``.npy`` file (memory-mapped,
a chunk at a time, with a progress bar); ``info STORE`` lists tables, shapes, dtypes,
sizes on disk, layout and data versions.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np

import tierstore
from tierstore.cli import UsageError, add_output_options, emit, human_bytes
from tierstore.config import DTYPES, TableConfig

TABLE_FORMAT = "NAME:ROWS:DIM[:DTYPE]"


def parse_table(text: str) -> TableConfig:
    """``"user:1_000_000:64:float16"`` -> TableConfig (dtype float32 when left out)."""
    fields = text.split(":")
    if len(fields) not in (3, 4) or not fields[0]:
        raise UsageError(f"--table {text!r}: expected {TABLE_FORMAT}, for example user:1000000:64:float16")
    name, rows, dim, *dtype = fields
    try:
        num_rows, width = int(rows), int(dim)
    except ValueError:
        raise UsageError(f"--table {text!r}: ROWS and DIM must be integers") from None
    if dtype and dtype[0] not in DTYPES:
        raise UsageError(f"--table {text!r}: DTYPE must be one of {', '.join(DTYPES)}, got {dtype[0]!r}")
    try:
        return TableConfig(name, num_rows, width, *dtype)
    except ValueError as err:
        raise UsageError(f"--table {text!r}: {err}") from None


def _tables_text(info: dict) -> str:
    lines = [f"{'table':<16}{'rows x dim':>20}  {'dtype':<8}{'rows/page':>10}{'pages':>12}{'on disk':>12}"
             f"{'layout':>8}{'data ver':>9}  state"]
    for name, t in info["tables"].items():
        c = t["config"]
        shape = f"{c['num_rows']:,} x {c['dim']}"
        state = ("loaded" if t["loaded"] else "empty") + ("" if t["identity_layout"] else ", placed layout")
        lines.append(f"{name:<16}{shape:>20}  {c['dtype']:<8}{c['rows_per_page']:>10,}{t['pages']:>12,}"
                     f"{human_bytes(t['bytes_on_disk']):>12}{t['layout']:>8}{t['data_version']:>9}  {state}")
    return "\n".join(lines)


def describe_store(path) -> dict:
    """:meth:`Store.describe` of the store at ``path``, opened read-only."""
    with tierstore.open(path) as store:
        return store.describe()


def cmd_create(args) -> int:
    tables = [parse_table(t) for t in args.table]
    names = [t.name for t in tables]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"--table names must differ; given twice: {', '.join(twice)}")
    tierstore.create(args.store, tables).close()
    info = describe_store(args.store)
    emit(args, info, f"created {args.store} with {len(tables)} tables (empty; fill each with "
                     f"tierstore load {args.store} TABLE FILE.npy)\n{_tables_text(info)}")
    return 0


def _check_npy(path: Path, table: TableConfig) -> None:
    """Fail before loading anything when the file's shape or dtype cannot fill ``table``."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        rows = np.load(path, mmap_mode="r")
    except ValueError as err:
        raise ValueError(f"{path} is not a .npy array file numpy can map ({err.args[0].split('.')[0]})") from None
    if rows.shape != (table.num_rows, table.dim) or rows.dtype.kind not in "fiu":
        raise ValueError(f"{path} holds {rows.dtype} {list(rows.shape)}; table {table.name!r} needs "
                         f"[{table.num_rows}, {table.dim}] numbers")


def cmd_load(args) -> int:
    source = Path(args.file)
    if source.suffix != ".npy":
        raise UsageError(f"{args.file}: load reads .npy files (numpy.save); got {source.suffix or 'no suffix'}")
    started = time.perf_counter()
    with tierstore.open(args.store, readonly=False) as store:
        if args.table not in store.tables:
            raise UsageError(f"{args.store} has no table {args.table!r}; its tables: {', '.join(store.tables)}")
        _check_npy(source, store.tables[args.table])
        store.load(args.table, source, progress=not args.quiet)
    seconds = time.perf_counter() - started
    info = describe_store(args.store)
    table = info["tables"][args.table]
    rows = table["config"]["num_rows"]
    result = {"store": args.store, "table": args.table, "file": args.file, "rows": rows, "seconds": seconds,
              "rows_per_s": rows / seconds if seconds else None, "file_bytes": source.stat().st_size,
              "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "after": table}
    emit(args, result, f"loaded {args.table}: {rows:,} rows from {args.file} ({human_bytes(result['file_bytes'])}) "
                       f"in {seconds:.1f} s ({rows / seconds / 1e6:.2f} M rows/s), peak RSS "
                       f"{human_bytes(result['peak_rss_bytes'])}; {args.table} now takes "
                       f"{human_bytes(table['bytes_on_disk'])} on disk, data version {table['data_version']}")
    return 0


def cmd_info(args) -> int:
    info = describe_store(args.store)
    emit(args, info, f"store {info['path']} (format version {info['format_version']}): data.mdb "
                     f"{human_bytes(info['file_bytes'])}, {human_bytes(info['used_bytes'])} of it in use\n"
                     f"{_tables_text(info)}")
    return 0


def add_subcommands(subparsers) -> None:
    """Register ``create``, ``load`` and ``info``."""
    create = subparsers.add_parser("create", help="make an empty store with the given tables")
    create.add_argument("store", help="store directory to create (must not exist, or be empty)")
    create.add_argument("--table", action="append", required=True, metavar=TABLE_FORMAT,
                        help="a table: name, rows, embedding dimension and storage dtype "
                             f"({', '.join(DTYPES)}; default float32); repeat for more tables")
    add_output_options(create, quiet=False)
    create.set_defaults(func=cmd_create)

    load = subparsers.add_parser("load", help="fill one table from a .npy file, a chunk at a time",
                                 description="Fill one table of a store from a .npy file of shape [rows, dim] "
                                 "(any float or integer dtype). The file is memory-mapped and read a chunk at a "
                                 "time, so memory stays bounded whatever its size; readers keep seeing the "
                                 "table's previous contents until the load commits.")
    load.add_argument("store", help="store directory")
    load.add_argument("table", help="table name")
    load.add_argument("file", help=".npy file with one row per table row")
    add_output_options(load)
    load.set_defaults(func=cmd_load)

    info = subparsers.add_parser("info", help="tables, shapes, dtypes, sizes on disk, layout and data versions")
    info.add_argument("store", help="store directory")
    add_output_options(info, quiet=False)
    info.set_defaults(func=cmd_info)

