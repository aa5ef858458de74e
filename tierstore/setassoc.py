"""Set-associative DRAM tier: the serving default, as in FBGEMM's and HugeCTR's embedding caches.

A byte budget over one or more tables becomes ``n_sets * ways`` slots of one
slab of records (rows at their stored width: float32, float16, int8 with its
scale and bias; :mod:`tierstore.pool_records` dequantizes them as it pools), each
slot as wide as the tier's widest record.  Which row a slot holds, and which
row to replace, is decided by :mod:`cache_policies.setassoc` (tags, ticks and
counters per set; no per-row index, so the tier costs memory per cached row
only); rows are keyed by the table's key base plus the row id.

A batch's distinct rows are probed and its misses admitted *before* its rows are
read (:meth:`SetAssocTier.place`): ways the batch touches are never victims, so
the missed rows can be read straight into their new slots and pooled from the
slab with the hits.  Misses whose set has no way to give (every way touched by
this batch) are read into the batch's extra buffer instead.
"""

from __future__ import annotations

import numpy as np

from cache_policies.setassoc import SetAssociative, SetAssocState
from tierstore.kernels import aligned_empty


class SetAssocTier:
    """A set-associative DRAM cache over ``tables`` with one byte budget.

    Parameters
    ----------
    tables : list of TableConfig
        Tables sharing this budget.
    budget_bytes : int
        Bytes of cached rows: every slot costs the widest table's row.
    cache : cache_policies.setassoc.SetAssociative
        Rule, ways and admission filter.
    pinned : dict of str to int, optional
        Rows of each table pinned by a placement plan: slab rows reserved after the
        cache's slots (:meth:`pinned_slots`), outside ``budget_bytes``, never evicted.
    """

    mirror = False

    def __init__(self, tables, budget_bytes: int, cache: SetAssociative, pinned: dict | None = None):
        if budget_bytes < 0 or (budget_bytes == 0 and not pinned):
            raise ValueError(f"DRAM budget must be positive, got {budget_bytes}")
        self.cache = cache
        self.budget_bytes = int(budget_bytes)
        self.names = [t.name for t in tables]
        self.position = {t.name: i for i, t in enumerate(tables)}
        self.num_rows = {t.name: t.num_rows for t in tables}
        self.slot_bytes = max(t.cached_row_bytes for t in tables)
        self.key_base = dict(zip(self.names, np.cumsum([0] + [t.num_rows for t in tables]).tolist()))
        self.state = SetAssocState(cache, self.budget_bytes // self.slot_bytes, sum(self.num_rows.values()))
        pinned = pinned or {}
        counts = [pinned.get(name, 0) for name in self.names]
        self.pinned_base = dict(zip(self.names, (self.state.slots + np.cumsum([0] + counts)).tolist()))
        self.pinned_bytes = sum(counts) * self.slot_bytes
        self._slab = aligned_empty((self.state.slots + sum(counts), self.slot_bytes), np.uint8)

    def slab(self, table: str) -> np.ndarray:
        """The slab of records (uint8 ``[slots, slot_bytes]``; ``table``'s record starts each row it holds)."""
        return self._slab

    def fully_resident(self, table: str) -> bool:
        """Never: a set-associative tier is for tables larger than its budget."""
        return False

    def pinned_slots(self, table: str, rows: np.ndarray) -> np.ndarray:
        """Slab rows of ``table``'s pinned ``rows`` (the plan's pinned rows, in increasing order)."""
        return self.pinned_base[table] + np.arange(len(rows), dtype=np.int64)

    def place(self, table: str, rows: np.ndarray, allowed: np.ndarray | None = None,
              occurrences: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Probe ``rows`` (distinct; ``occurrences``: how often each occurs in the batch) and admit the
        missed ones (only those ``allowed``, if given).

        Returns
        -------
        hit_slots : int64[n]
            Slot of each row found cached, ``-1`` for a miss.
        slots : int64[n]
            Slot of each row after the batch: a missed row admitted here must be
            written to its slot before it is read; ``-1`` where it was not admitted.
        """
        return self.state.serve(rows + self.key_base[table], allowed, occurrences)

    def cached(self, table: str, rows: np.ndarray) -> np.ndarray:
        """Whether each of ``rows`` is cached now (no replacement state changes)."""
        return self.state.find(rows + self.key_base[table]) >= 0

    def after_pool(self, table: str, rows: np.ndarray, values: np.ndarray) -> int:
        """Nothing to do after pooling (misses were admitted by :meth:`place`); returns 0."""
        return 0

    def invalidate(self, table: str, rows: np.ndarray) -> None:
        """Drop ``rows`` of ``table`` from the cache."""
        self.state.remove(np.asarray(rows, dtype=np.int64) + self.key_base[table])

    def resident_rows(self, table: str) -> int:
        """Rows of ``table`` cached now."""
        base = self.key_base[table]
        keys = self.state.keys()
        return int(np.count_nonzero((keys >= base) & (keys < base + self.num_rows[table])))

    @property
    def used_bytes(self) -> int:
        """Bytes of rows in DRAM now (cached and pinned)."""
        return self.state.occupied * self.slot_bytes + self.pinned_bytes
