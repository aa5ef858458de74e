"""``SparseBatch``: many tables' bags in the layout of torchrec's KeyedJaggedTensor.

``keys`` names the tables; ``values`` holds every index, key-major (all bags of
the first key, then the second ...); ``lengths`` holds, key-major, the number of
indices in each bag, ``B`` bags per key.  ``offsets`` (length ``len(keys) * B + 1``)
may be given instead of ``lengths``.  ``weights`` are optional per-sample weights
aligned with ``values``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseBatch:
    """A batch of bags over several tables, KeyedJaggedTensor-style.

    Parameters
    ----------
    keys : sequence of str
        Table names, in output order.
    values : ndarray of int
        All indices, key-major.
    lengths : ndarray of int, optional
        Bag sizes, key-major, ``len(keys) * B`` entries.
    offsets : ndarray of int, optional
        Bag starts, ``len(keys) * B + 1`` entries; used when ``lengths`` is None.
    weights : ndarray of float, optional
        Per-sample weights, same length as ``values``.
    """

    keys: tuple[str, ...]
    values: np.ndarray
    lengths: np.ndarray | None = None
    offsets: np.ndarray | None = None
    weights: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "keys", tuple(self.keys))
        if len(set(self.keys)) != len(self.keys):
            raise ValueError(f"SparseBatch keys must be distinct, got {list(self.keys)}")
        if self.lengths is None and self.offsets is None:
            raise ValueError("SparseBatch needs lengths or offsets")
        values = np.asarray(self.values)
        if values.ndim != 1:
            raise ValueError(f"SparseBatch values must be 1-D, got shape {values.shape}")
        object.__setattr__(self, "values", values)
        if self.lengths is not None:
            lengths = np.asarray(self.lengths)
            if lengths.ndim != 1 or (len(self.keys) and lengths.size % len(self.keys)):
                raise ValueError(
                    f"SparseBatch lengths must be 1-D with a multiple of len(keys)={len(self.keys)} entries, "
                    f"got shape {lengths.shape}"
                )
            if lengths.size and lengths.min() < 0:
                raise ValueError("SparseBatch lengths must be non-negative")
            offsets = np.zeros(lengths.size + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            if self.offsets is not None and not np.array_equal(offsets, np.asarray(self.offsets)):
                raise ValueError("SparseBatch lengths and offsets disagree")
            object.__setattr__(self, "offsets", offsets)
        else:
            offsets = np.asarray(self.offsets, dtype=np.int64)
            if offsets.ndim != 1 or offsets.size < 1 or (len(self.keys) and (offsets.size - 1) % len(self.keys)):
                raise ValueError(
                    f"SparseBatch offsets must be 1-D with len(keys)*B+1 entries, got shape {offsets.shape}"
                )
            if offsets[0] != 0 or offsets[-1] != values.size or np.any(np.diff(offsets) < 0):
                raise ValueError("SparseBatch offsets must start at 0, end at len(values) and never decrease")
            object.__setattr__(self, "offsets", offsets)
            object.__setattr__(self, "lengths", np.diff(offsets))
        if self.offsets[-1] != values.size:
            raise ValueError(f"SparseBatch lengths sum to {self.offsets[-1]} but there are {values.size} values")
        if self.weights is not None:
            weights = np.asarray(self.weights)
            if weights.shape != values.shape:
                raise ValueError(f"SparseBatch weights shape {weights.shape} != values shape {values.shape}")
            object.__setattr__(self, "weights", weights)

    @property
    def batch_size(self) -> int:
        """Bags per key (``B``)."""
        return 0 if not self.keys else (self.offsets.size - 1) // len(self.keys)

    def table(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Indices, offsets (``B + 1``, starting at 0) and weights of one key's bags."""
        k = self.keys.index(key)
        b = self.batch_size
        start, stop = self.offsets[k * b], self.offsets[(k + 1) * b]
        offsets = self.offsets[k * b : (k + 1) * b + 1] - start
        weights = None if self.weights is None else self.weights[start:stop]
        return self.values[start:stop], offsets, weights

    @classmethod
    def from_tables(cls, tables: dict[str, tuple]) -> "SparseBatch":
        """Build from ``{key: (indices, offsets[B+1]) or (indices, offsets, weights)}``, all with the same B."""
        keys = list(tables)
        parts = [tuple(tables[k]) + (None,) * (3 - len(tables[k])) for k in keys]
        sizes = {len(p[1]) - 1 for p in parts}
        if len(sizes) > 1:
            raise ValueError(f"every table needs the same batch size, got {sorted(sizes)}")
        lengths = np.concatenate([np.diff(np.asarray(p[1], dtype=np.int64)) for p in parts]) if parts else np.zeros(0, np.int64)
        values = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in parts]) if parts else np.zeros(0, np.int64)
        with_w = [p[2] is not None for p in parts]
        if any(with_w) and not all(with_w):
            raise ValueError("weights must be given for every table or for none")
        weights = np.concatenate([np.asarray(p[2], dtype=np.float32) for p in parts]) if parts and all(with_w) else None
        return cls(keys=tuple(keys), values=values, lengths=lengths, weights=weights)
