"""Row sources for bulk loads: arrays, memory-mapped ``.npy`` files, iterators of chunks.

Each source is re-cut into float32 chunks of ``chunk_rows`` rows (a multiple of the
table's rows per page), so memory stays bounded whatever the table size.
"""

from __future__ import annotations

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
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"table {config.name!r}: no such .npy file {path}")
        source = np.load(path, mmap_mode="r")
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
