"""Meta's dlrm_datasets format: ``torch.save((indices, offsets, lengths))``, table-major.

``lengths`` has shape ``(T, B)``; ``offsets`` has ``T * B + 1`` entries and table ``t``'s
bags are ``offsets[B*t : B*(t+1) + 1]``; ``indices`` holds rows local to each table.
A ``.gz`` suffix means gzip.  Tables are named ``t0, t1, ...``.  torch is imported only
here, lazily; without it these functions raise ``ImportError`` saying how to install it.

Memory: a dlrm_datasets file is one pickled tensor tuple, so reading loads its tensors
(memory-mapped when the file is an uncompressed zip-format ``torch.save``) and then
yields sub-batches of ``batch_size`` bags; writing concatenates all batches along the
batch dimension and therefore holds the whole trace in memory.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from collections.abc import Iterable, Iterator

import numpy as np

from bench.traces.batching import join_parts
from bench.traces.errors import TraceFormatError
from tierstore import SparseBatch


def _torch():
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            "the dlrm_datasets trace format needs torch: pip install 'tierstore[torch]'"
        ) from err
    return torch


class DlrmTraceReader:
    """Stream a dlrm_datasets file as batches of ``batch_size`` bags per table.

    Parameters
    ----------
    path : str or PathLike
        A ``.pt`` or ``.pt.gz`` file.
    batch_size : int, optional
        Bags per table in each yielded batch; default: the file's whole ``B`` (Meta's
        files are one batch each).
    """

    def __init__(self, path, batch_size: int | None = None):
        self.path = os.fspath(path)
        if batch_size is not None and int(batch_size) <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.metadata = {"format": "dlrm_datasets"}

    def _load(self):
        torch = _torch()
        size = os.path.getsize(self.path)
        try:
            if self.path.endswith(".gz"):
                with gzip.open(self.path, "rb") as f:
                    return torch.load(f, weights_only=True)
            mmap = zipfile.is_zipfile(self.path)
            return torch.load(self.path, weights_only=True, mmap=mmap)
        except (EOFError, OSError, RuntimeError, zipfile.BadZipFile, ValueError) as err:
            raise TraceFormatError(self.path, size, f"cannot load the torch.save data (truncated or corrupt): {err}")
        except Exception as err:  # the unpickler raises many types on corrupt input
            raise TraceFormatError(self.path, 0, f"not a dlrm_datasets file: {type(err).__name__}: {err}")

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Load and validate ``(indices, offsets, lengths[T, B])`` as numpy arrays."""
        data = self._load()
        if not (isinstance(data, (tuple, list)) and len(data) == 3):
            raise TraceFormatError(self.path, 0, "expected a tuple (indices, offsets, lengths)")
        indices, offsets, lengths = (np.asarray(x.numpy() if hasattr(x, "numpy") else x) for x in data)
        if lengths.ndim != 2:
            raise TraceFormatError(self.path, 0, f"lengths must have shape (T, B), got {lengths.shape}")
        t, b = lengths.shape
        if indices.ndim != 1 or offsets.shape != (t * b + 1,):
            raise TraceFormatError(
                self.path, 0, f"offsets must have T*B+1 = {t * b + 1} entries, got shape {offsets.shape}"
            )
        if offsets[0] != 0 or offsets[-1] != indices.size or np.any(np.diff(offsets) != lengths.reshape(-1)):
            raise TraceFormatError(self.path, 0, "offsets do not match lengths and indices (corrupt file)")
        return indices, offsets, lengths

    def __iter__(self) -> Iterator[SparseBatch]:
        indices, offsets, lengths = self.arrays()
        t, b = lengths.shape
        step = b if self.batch_size is None else int(self.batch_size)
        keys = tuple(f"t{i}" for i in range(t))
        table_starts = np.arange(t) * b
        for b0 in range(0, b, step):
            b1 = min(b, b0 + step)
            starts = offsets[table_starts + b0]
            stops = offsets[table_starts + b1]
            values = np.concatenate([indices[s:e] for s, e in zip(starts, stops)]).astype(np.int64)
            yield SparseBatch(keys=keys, values=values, lengths=lengths[:, b0:b1].reshape(-1).astype(np.int64))


def read(path, **options) -> DlrmTraceReader:
    """Open a dlrm_datasets file (see :class:`DlrmTraceReader`)."""
    return DlrmTraceReader(path, **options)


def write(path, batches: Iterable[SparseBatch]) -> dict:
    """Concatenate batches along the batch dimension and ``torch.save`` them table-major.

    Every batch must have the same keys in the same order; they are stored as tables
    ``0..T-1`` (names are not kept by the format).
    """
    torch = _torch()
    path = os.fspath(path)
    keys = None
    per_table_values: list[list[np.ndarray]] = []
    per_table_lengths: list[list[np.ndarray]] = []
    n_batches = 0
    for batch in join_parts(batches):
        if keys is None:
            keys = batch.keys
            per_table_values = [[] for _ in keys]
            per_table_lengths = [[] for _ in keys]
        elif batch.keys != keys:
            raise ValueError(f"dlrm_datasets needs the same tables in every batch: {keys} then {batch.keys}")
        bsz = batch.batch_size
        for i in range(len(keys)):
            per_table_values[i].append(batch.values[batch.offsets[i * bsz] : batch.offsets[(i + 1) * bsz]])
            per_table_lengths[i].append(batch.lengths[i * bsz : (i + 1) * bsz])
        n_batches += 1
    if keys is None:
        raise ValueError("dlrm_datasets cannot store an empty trace")
    lengths = np.stack([np.concatenate(x) for x in per_table_lengths]).astype(np.int64)
    indices = np.concatenate([np.concatenate(x) for x in per_table_values]).astype(np.int64)
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths.reshape(-1), out=offsets[1:])
    data = (torch.from_numpy(indices), torch.from_numpy(offsets), torch.from_numpy(lengths))
    if path.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            torch.save(data, f)
    else:
        torch.save(data, path)
    return {"batches": n_batches, "values": int(indices.size), "tables": list(keys), "batch_size": lengths.shape[1]}
