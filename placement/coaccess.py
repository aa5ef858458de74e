"""Co-access statistics: a bounded uniform sample of hyperedges.

A hyperedge is the set of distinct rows of one table read together: the rows of
one bag (``granularity="bag"``) or of one batch (``granularity="batch"``).  Every
hyperedge enters the sample independently with the current sampling rate; when
the sample holds more than ``max_pins`` row entries the rate halves and edges
whose random priority no longer passes are dropped, so memory stays bounded and
the sample stays uniform over all hyperedges seen.
"""

from __future__ import annotations

import numba
import numpy as np

GRANULARITIES = ("bag", "batch")


@numba.njit(cache=True, nogil=True)
def _distinct_bag_rows(indices, offsets, keep):
    """Sorted distinct rows of each kept bag with two or more distinct rows.

    Returns
    -------
    lengths : int64 array, one entry per emitted edge
    rows : int64 array, the edges' rows concatenated
    bag_ids : int64 array, the bag each edge came from
    """
    total = 0
    for b in range(keep.size):
        if keep[b]:
            total += offsets[b + 1] - offsets[b]
    rows = np.empty(total, dtype=np.int64)
    lengths = np.empty(keep.size, dtype=np.int64)
    bag_ids = np.empty(keep.size, dtype=np.int64)
    n_edges = 0
    n_rows = 0
    for b in range(keep.size):
        if not keep[b] or offsets[b + 1] - offsets[b] < 2:
            continue
        bag = np.sort(indices[offsets[b] : offsets[b + 1]])
        start = n_rows
        rows[n_rows] = bag[0]
        n_rows += 1
        for i in range(1, bag.size):
            if bag[i] != bag[i - 1]:
                rows[n_rows] = bag[i]
                n_rows += 1
        if n_rows - start < 2:
            n_rows = start
            continue
        lengths[n_edges] = n_rows - start
        bag_ids[n_edges] = b
        n_edges += 1
    return lengths[:n_edges], rows[:n_rows], bag_ids[:n_edges]


class EdgeSample:
    """A bounded, uniform sample of co-access hyperedges over several tables.

    Parameters
    ----------
    table_names : sequence of str
        Tables, in the order used by :attr:`edge_table`.
    granularity : {"bag", "batch"}
        What one hyperedge is.
    max_pins : int
        Most row entries kept over all edges.
    seed : int
        Seeds the sampling.
    """

    def __init__(self, table_names, granularity: str = "bag", max_pins: int = 8_000_000, seed: int = 0):
        if granularity not in GRANULARITIES:
            raise ValueError(f"co-access granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if max_pins < 2:
            raise ValueError(f"max_pins must be at least 2, got {max_pins}")
        self.table_names = tuple(table_names)
        self.granularity = granularity
        self.max_pins = int(max_pins)
        self.sample_rate = 1.0
        self.edges_seen = 0
        self._rng = np.random.default_rng(seed)
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._pins = 0
        self._compacted: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, table_index: int, indices: np.ndarray, offsets: np.ndarray) -> None:
        """Offer one table's bags of one batch to the sample."""
        num_bags = offsets.size - 1
        if self.granularity == "batch":
            num_bags = 1 if indices.size else 0
            offsets = np.array([0, indices.size], dtype=np.int64)
        if num_bags == 0:
            return
        priority = self._rng.random(num_bags)
        keep = priority < self.sample_rate
        self.edges_seen += int(np.count_nonzero(np.diff(offsets) >= 2))
        if not keep.any():
            return
        lengths, rows, bag_ids = _distinct_bag_rows(indices, offsets, keep)
        if lengths.size == 0:
            return
        tables = np.full(lengths.size, table_index, dtype=np.int32)
        self._chunks.append((tables, priority[bag_ids], lengths, rows))
        self._compacted = None
        self._pins += rows.size
        while self._pins > self.max_pins:
            self._halve()

    def _halve(self) -> None:
        tables, priority, lengths, rows = self._concatenated()
        self.sample_rate /= 2.0
        keep = priority < self.sample_rate
        self._chunks = [(tables[keep], priority[keep], lengths[keep], rows[np.repeat(keep, lengths)])]
        self._compacted = None
        self._pins = int(self._chunks[0][3].size)

    def _concatenated(self):
        if self._compacted is None:
            if self._chunks:
                parts = list(zip(*self._chunks))
                self._compacted = tuple(np.concatenate(p) for p in parts)
            else:
                self._compacted = (
                    np.zeros(0, np.int32), np.zeros(0, np.float64), np.zeros(0, np.int64), np.zeros(0, np.int64)
                )
            self._chunks = [self._compacted]
        return self._compacted

    @property
    def num_edges(self) -> int:
        """Edges held."""
        return int(self._concatenated()[2].size)

    @property
    def num_pins(self) -> int:
        """Row entries held over all edges."""
        return self._pins

    def table_edges(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """One table's sampled edges as CSR: ``(ptr[num_edges + 1], rows)``, rows sorted within an edge."""
        if name not in self.table_names:
            raise KeyError(f"no table {name!r} in the co-access sample; tables: {list(self.table_names)}")
        tables, _, lengths, rows = self._concatenated()
        mine = tables == self.table_names.index(name)
        mine_lengths = lengths[mine]
        ptr = np.zeros(mine_lengths.size + 1, dtype=np.int64)
        np.cumsum(mine_lengths, out=ptr[1:])
        return ptr, rows[np.repeat(mine, lengths)]
