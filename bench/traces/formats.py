"""Format registry: pick a reader or writer by name or by file name."""

from __future__ import annotations

import os
from collections.abc import Iterable

from bench.traces import csvformat, dlrm, native, oracle
from tierstore import SparseBatch

FORMATS = {"tstrace": native, "dlrm": dlrm, "oracle": oracle, "csv": csvformat}
SUFFIXES = (
    (".tstrace", "tstrace"),
    (".pt", "dlrm"),
    (".pt.gz", "dlrm"),
    (".oraclegeneral", "oracle"),
    (".oraclegeneral.bin", "oracle"),
    (".bin", "oracle"),
    (".csv", "csv"),
)
#: Options each reader accepts.
READ_OPTIONS = {"tstrace": (), "dlrm": ("batch_size",), "oracle": ("batch_requests", "table_shift"),
                "csv": ("batch_requests",)}


def detect_format(path) -> str:
    """Format name for ``path``: by its first bytes for ``.tstrace``, else by suffix."""
    path = os.fspath(path)
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read(len(native.MAGIC)) == native.MAGIC:
                return "tstrace"
    lower = path.lower()
    for suffix, name in sorted(SUFFIXES, key=lambda s: -len(s[0])):
        if lower.endswith(suffix):
            return name
    raise ValueError(
        f"cannot tell the trace format of {path!r} from its name; pass format= one of {sorted(FORMATS)} "
        f"(suffixes: {', '.join(s for s, _ in SUFFIXES)})"
    )


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown trace format {fmt!r}; known formats: {sorted(FORMATS)}")
    return fmt


def open_trace(path, format: str | None = None, **options):
    """Open a trace for streaming; iterate the result for ``SparseBatch`` objects.

    Parameters
    ----------
    path : str or PathLike
        The trace file.
    format : str, optional
        One of ``tstrace, dlrm, oracle, csv``; detected from the file when omitted.
    **options
        Reader options: ``batch_size`` (dlrm), ``batch_requests`` (oracle, csv),
        ``table_shift`` (oracle).  Options another format would take are ignored;
        unknown ones raise ``ValueError``.
    """
    fmt = _check_format(format or detect_format(path))
    known = {o for opts in READ_OPTIONS.values() for o in opts}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown trace reader options {sorted(unknown)}; allowed: {sorted(known)}")
    used = {k: v for k, v in options.items() if k in READ_OPTIONS[fmt] and v is not None}
    return FORMATS[fmt].read(path, **used)


def write_trace(
    path,
    batches: Iterable[SparseBatch],
    format: str | None = None,
    metadata: dict | None = None,
    row_bytes: int | dict[str, int] = 1,
) -> dict:
    """Write batches in the format named (or implied by ``path``); return counts.

    ``metadata`` is kept by ``tstrace`` only; ``row_bytes`` (the object size) by
    ``oracle`` only.
    """
    fmt = _check_format(format or detect_format(path))
    if fmt == "tstrace":
        return native.write(path, batches, metadata=metadata)
    if fmt == "oracle":
        return oracle.write(path, batches, row_bytes=row_bytes)
    return FORMATS[fmt].write(path, batches)
