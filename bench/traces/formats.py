"""Format registry: pick a reader or writer by name or by file name."""

from __future__ import annotations

import os
from collections.abc import Iterable

from bench.traces import csvformat, dlrm, native, oracle

#: Format names, as the CLI, the README and errors spell them.
FORMATS = {"tstrace": native, "dlrm_datasets": dlrm, "oracleGeneral": oracle, "csv": csvformat}
#: Other accepted spellings (any letter case is accepted too).
ALIASES = {"dlrm": "dlrm_datasets", "oracle": "oracleGeneral"}
SUFFIXES = (
    (".tstrace", "tstrace"),
    (".pt", "dlrm_datasets"),
    (".pt.gz", "dlrm_datasets"),
    (".oraclegeneral", "oracleGeneral"),
    (".oraclegeneral.bin", "oracleGeneral"),
    (".bin", "oracleGeneral"),
    (".csv", "csv"),
)
#: Options each reader accepts.
READ_OPTIONS = {"tstrace": (), "dlrm_datasets": ("batch_size",), "oracleGeneral": ("batch_requests", "table_shift"),
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
        f"cannot tell the trace format of {path!r} from its name; pass a format, one of {', '.join(FORMATS)} "
        f"(suffixes: {', '.join(s for s, _ in SUFFIXES)})"
    )


def format_name(name: str) -> str:
    """The format name for ``name`` or one of its aliases, in any letter case; ValueError if unknown."""
    by_lower = {n.lower(): n for n in FORMATS} | {a: n for a, n in ALIASES.items()}
    try:
        return by_lower[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown trace format {name!r}; formats: {', '.join(FORMATS)}") from None


def _check_format(fmt: str) -> str:
    return format_name(fmt)


def open_trace(path, format: str | None = None, **options):
    """Open a trace for streaming; iterate the result for ``SparseBatch`` objects.

    Parameters
    ----------
    path : str or PathLike
        The trace file.
    format : str, optional
        One of ``tstrace, dlrm_datasets, oracleGeneral, csv`` (or an alias in :data:`ALIASES`);
        detected from the file when omitted.
    **options
        Reader options: ``batch_size`` (dlrm_datasets), ``batch_requests`` (oracleGeneral, csv),
        ``table_shift`` (oracleGeneral).  Options another format would take are ignored;
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
    batches: Iterable,
    format: str | None = None,
    metadata: dict | None = None,
    row_bytes: int | dict[str, int] = 1,
) -> dict:
    """Write batches in the format named (or implied by ``path``); return counts.

    ``batches`` yields ``SparseBatch`` objects or ``BatchPart`` parts of batches (see
    :mod:`bench.traces.batching`).  ``metadata`` is kept by ``tstrace`` only;
    ``row_bytes`` (the object size) by ``oracleGeneral`` only.  If writing fails, the
    partly written file is removed.
    """
    fmt = _check_format(format or detect_format(path))
    if fmt == "tstrace":
        return native.write(path, batches, metadata=metadata)
    try:
        if fmt == "oracleGeneral":
            return oracle.write(path, batches, row_bytes=row_bytes)
        return FORMATS[fmt].write(path, batches)
    except BaseException:
        if os.path.exists(path):
            os.remove(path)
        raise
