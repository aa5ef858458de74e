"""Mirror DRAM tier: a budget that holds every row of its tables, so slot = row and nothing is ever evicted.

No replacement rule is involved: a row read once stays.  Once a table is fully
resident (:meth:`tierstore.Store.warm`, or by use), lookups skip dedup and probe
and pool straight from the slab.  The set-associative default uses this tier
whenever its budget covers its tables; the exact policies keep their own mirror
mode (:class:`tierstore.dram.DramTier`), so that they stay exactly what
``cache_policies`` simulates.
"""

from __future__ import annotations

import numpy as np

from tierstore.kernels import aligned_empty


class MirrorTier:
    """Every row of ``tables`` in DRAM, at its row number.

    Parameters
    ----------
    tables : list of TableConfig
    budget_bytes : int
        At least the rows of every table.
    """

    mirror = True
    pinned_bytes = 0

    def __init__(self, tables, budget_bytes: int):
        needed = sum(t.num_rows * t.cached_row_bytes for t in tables)
        if budget_bytes < needed:
            raise ValueError(f"a mirror tier needs {needed} bytes for its tables, got a budget of {budget_bytes}")
        self.budget_bytes = int(budget_bytes)
        self.names = [t.name for t in tables]
        self.row_bytes = {t.name: t.cached_row_bytes for t in tables}
        self.slabs = {t.name: aligned_empty((t.num_rows, t.cached_row_bytes), np.uint8) for t in tables}
        self.resident = {t.name: np.zeros(t.num_rows, dtype=np.bool_) for t in tables}
        self.n_resident = {t.name: 0 for t in tables}

    def slab(self, table: str) -> np.ndarray:
        """``table``'s records (uint8; row ``i`` at slot ``i``)."""
        return self.slabs[table]

    def fully_resident(self, table: str) -> bool:
        """True when every row of ``table`` is in DRAM (lookups skip the probe)."""
        return self.n_resident[table] == self.resident[table].size

    def place(self, table: str, rows: np.ndarray, allowed: np.ndarray | None = None,
              occurrences: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Probe ``rows`` (distinct) and admit the missed ones (only those ``allowed``, if given) at their
        own slots.

        Returns ``(hit_slots, slots)`` as :meth:`tierstore.setassoc.SetAssocTier.place`:
        every admitted row must be written to its slot before it is read.
        """
        resident = self.resident[table]
        hit_slots = np.where(resident[rows], rows, -1)
        admit = hit_slots < 0 if allowed is None else (hit_slots < 0) & allowed
        self.n_resident[table] += int(np.count_nonzero(admit))
        resident[rows[admit]] = True
        return hit_slots, np.where(admit, rows, hit_slots)

    def cached(self, table: str, rows: np.ndarray) -> np.ndarray:
        """Whether each of ``rows`` is in DRAM now."""
        return self.resident[table][rows]

    def after_pool(self, table: str, rows: np.ndarray, values: np.ndarray) -> int:
        """Nothing to do after pooling; returns 0."""
        return 0

    def invalidate(self, table: str, rows: np.ndarray) -> None:
        """Forget ``rows`` of ``table`` (they are read again on their next lookup)."""
        self.resident[table][np.asarray(rows, dtype=np.int64)] = False
        self.n_resident[table] = int(np.count_nonzero(self.resident[table]))

    def resident_rows(self, table: str) -> int:
        """Rows of ``table`` in DRAM now."""
        return self.n_resident[table]

    @property
    def used_bytes(self) -> int:
        """Bytes of rows in DRAM now."""
        return sum(self.n_resident[n] * self.row_bytes[n] for n in self.names)
