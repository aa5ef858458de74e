"""Row sources for bulk loads: arrays, ``.npy`` files (mapped, a chunk at a time), iterators of chunks.

Each source is re-cut into float32 chunks of ``chunk_rows`` rows (a multiple of the
table's rows per page), so memory stays bounded whatever the table size.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from tierstore.config import TableConfig


def _check_chunk(chunk, config: TableConfig, what: str) -> np.ndarray:
    arr = np.asarray(chunk)
    if arr.ndim != 2 or arr.shape[1] != config.dim:
        raise ValueError(f"table {config.name!r}: {what} must be [rows, {config.dim}], got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"table {config.name!r}: {what} must be numeric, got dtype {arr.dtype}")
    return arr


def iter_row_chunks(source, config: TableConfig, chunk_rows: int) -> Iterator[np.ndarray]:
    """Yield float32 ``[k, dim]`` chunks of ``source``; every chunk but the last has ``chunk_rows`` rows.

    Parameters
    ----------
    source : ndarray, str or Path (``.npy``), or iterable of 2-D arrays
    config : TableConfig
    chunk_rows : int
    """
    if isinstance(source, (str, Path)):
        yield from _npy_chunks(Path(source), config, chunk_rows)
        return
    if isinstance(source, np.ndarray):
        arr = _check_chunk(source, config, "the source array")
        if arr.shape[0] != config.num_rows:
            raise ValueError(f"table {config.name!r}: source has {arr.shape[0]} rows, the table has {config.num_rows}")
        for start in range(0, arr.shape[0], chunk_rows):
            yield np.ascontiguousarray(arr[start : start + chunk_rows], dtype=np.float32)
        return
    if not isinstance(source, Iterable):
        raise TypeError(f"table {config.name!r}: cannot load from {type(source).__name__}")
    yield from _rechunk(source, config, chunk_rows)


def _npy_chunks(path: Path, config: TableConfig, chunk_rows: int) -> Iterator[np.ndarray]:
    """Chunks of a ``.npy`` file (copies) read through a private read-only map.

    Before each chunk the map's pages are dropped (``MADV_DONTNEED``; they stay in
    the OS page cache), so the file's pages do not pile up in the process's RSS.
    """
    if not path.is_file():
        raise FileNotFoundError(f"table {config.name!r}: no such .npy file {path}")
    header = np.load(path, mmap_mode="r")
    shape, dtype, offset = header.shape, header.dtype, header.offset
    order = "F" if header.flags.f_contiguous and not header.flags.c_contiguous else "C"
    del header
    with open(path, "rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    rows = _check_chunk(np.ndarray(shape, dtype=dtype, buffer=mapped, offset=offset, order=order), config,
                        "the source array")
    if rows.shape[0] != config.num_rows:
        raise ValueError(f"table {config.name!r}: source has {rows.shape[0]} rows, the table has {config.num_rows}")
    for start in range(0, rows.shape[0], chunk_rows):
        mapped.madvise(mmap.MADV_DONTNEED)
        yield np.array(rows[start : start + chunk_rows], dtype=np.float32, order="C")


def _rechunk(chunks: Iterable, config: TableConfig, chunk_rows: int) -> Iterator[np.ndarray]:
    pending: list[np.ndarray] = []
    held = total = 0
    for chunk in chunks:
        arr = _check_chunk(chunk, config, "each chunk")
        total += arr.shape[0]
        if total > config.num_rows:
            raise ValueError(f"table {config.name!r}: source gives more than {config.num_rows} rows")
        pending.append(arr)
        held += arr.shape[0]
        while held >= chunk_rows:
            block = np.concatenate(pending).astype(np.float32, copy=False)
            yield block[:chunk_rows]
            rest = block[chunk_rows:]
            pending, held = ([rest] if rest.shape[0] else []), rest.shape[0]
    if held:
        yield np.concatenate(pending).astype(np.float32, copy=False)
