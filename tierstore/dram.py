"""Exact DRAM tier: a byte-budgeted, fully associative cache over one or more tables, run by a
``cache_policies`` policy (fidelity to libCacheSim; the set-associative tier is the default).

The tier owns capacity; a ``cache_policies`` state machine owns ordering.  Rows sit
in one slab per table as records at their stored width (uint8 ``[slots,
cached_row_bytes]``, page aligned, allocated lazily by the OS, so untouched slots
cost no memory).  Keys are global row ids (the table's key base
plus its row); a dense ``row -> slot`` int32 array is the index: one 4-byte read per
probe, 4 bytes of DRAM per table row (see ARCHITECTURE.md for the choice).

When the budget covers every row of the tier's tables the tier is a *mirror*:
slot = row, nothing is ever evicted, and once a table is fully resident lookups
skip the probe and the policy altogether.

The policy is driven as the simulator drives it (``cache_policies.drive``): its
kernels run inside the probe, admission and invalidation loops, with no method call
per row.  Admission runs the policy sequentially and records each admitted row's
slot; one parallel pass then copies the rows into the slab.  The loops are plain
module functions, compiled once per policy kind and then loaded from numba's disk
cache by every later process.
"""

from __future__ import annotations

import numba
import numpy as np

from cache_policies.base import as_policy
from cache_policies.drive import kernels
from tierstore.kernels import _prefetch_item, _store_row, aligned_empty

INDEX_PREFETCH_DISTANCE = 8
"""Keys ahead whose index entry probes and admissions prefetch (each is a random read of the index)."""


@numba.njit(nogil=True, cache=True)
def _release(s, row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident):
    """Forget slot ``s`` (its row is no longer cached) and return it to its table's free stack.

    A table whose ``free_top`` is -1 is mirrored (slot = row) and keeps no free stack.
    """
    row2slot[slot_key[s]] = -1
    slot_key[s] = -1
    t = slot_table[s]
    if free_top[t] >= 0:
        free_stack[slot_base[t] + free_top[t]] = s
        free_top[t] += 1
    resident[t] -= 1


@numba.njit(inline="always")
def _drain(k, st, row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident):
    """Release the slots the policy evicted on its own."""
    while k.n_pending(st) > 0:
        _release(k.take_evicted(st), row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident)


@numba.njit(nogil=True, cache=True)
def _probe_run(kind, st, keys, t, slots, row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident):
    k = kernels(kind)
    for i in range(keys.size):
        if i + INDEX_PREFETCH_DISTANCE < keys.size:
            _prefetch_item(row2slot, keys[i + INDEX_PREFETCH_DISTANCE])
        s = row2slot[keys[i]]
        if s < 0:
            slots[i] = -1
            continue
        k.on_hit(st, s)
        _drain(k, st, row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident)
        slots[i] = s - slot_base[t]


@numba.njit(nogil=True, cache=True)
def _probe(state, keys, t, row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident):
    """Local slab slot of each key, -1 where absent; the policy hears of the hits."""
    slots = np.empty(keys.size, dtype=np.int64)
    _probe_run(state.kind, state.arrays, keys, t, slots, row2slot, slot_key, slot_table, slot_base, free_stack,
               free_top, resident)
    return slots


@numba.njit(nogil=True, cache=True)
def _admit_run(kind, st, start, keys, size, t, mirror, key_base, dest, row2slot, slot_key, slot_table, slot_base,
               free_stack, free_top, resident):
    k = kernels(kind)
    admitted = 0
    for i in range(start, keys.size):
        if i + INDEX_PREFETCH_DISTANCE < keys.size:
            _prefetch_item(row2slot, keys[i + INDEX_PREFETCH_DISTANCE])
        key = keys[i]
        dest[i] = -1
        if row2slot[key] >= 0:
            continue
        if not k.ready(st, size):
            return i, admitted
        admitted_now = k.admit(st, key, size)
        _drain(k, st, row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident)
        if not admitted_now:
            continue
        while k.used(st) + size > k.capacity(st):
            _release(k.victim(st), row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident)
            _drain(k, st, row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident)
        if mirror:
            s = key - key_base[t] + slot_base[t]
        else:
            free_top[t] -= 1
            s = free_stack[slot_base[t] + free_top[t]]
        row2slot[key] = s
        slot_key[s] = key
        resident[t] += 1
        k.on_insert(st, s, key, size)
        _drain(k, st, row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident)
        dest[i] = s
        admitted += 1
    return keys.size, admitted


@numba.njit(nogil=True, cache=True)
def _admit(state, keys, size, t, mirror, key_base, dest, row2slot, slot_key, slot_table, slot_base, free_stack,
           free_top, resident):
    """Offer each missed key to the policy, recording the slot of those cached in ``dest`` (-1 for the others);
    returns how many were cached.  Each run stops before a miss the policy needs room for, which it then gets."""
    start = np.int64(0)  # not a literal 0, which would compile _admit_run twice
    admitted = 0
    while True:
        start, more = _admit_run(state.kind, state.arrays, start, keys, size, t, mirror, key_base, dest, row2slot,
                                 slot_key, slot_table, slot_base, free_stack, free_top, resident)
        admitted += more
        if start == keys.size:
            return admitted
        state.arrays = kernels(state.kind).grow(state.arrays, size)


@numba.njit(nogil=True, cache=True)
def _invalidate(state, keys, row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident):
    """Drop the cached ones of ``keys`` (no ghost: the policy's ``remove``)."""
    k, st = kernels(state.kind), state.arrays
    for i in range(keys.size):
        s = row2slot[keys[i]]
        if s >= 0:
            k.remove(st, s)
            _release(s, row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident)
            _drain(k, st, row2slot, slot_key, slot_table, slot_base, free_stack, free_top, resident)


@numba.njit(nogil=True, cache=True, parallel=True)
def _copy_admitted(slab, slab_base, values, keys, dest, slot_key):
    """Copy ``values[i]`` into slab slot ``dest[i]`` where that slot still holds ``keys[i]``
    (a row admitted and evicted again within one admission has no slot left)."""
    for i in numba.prange(keys.size):
        s = dest[i]
        if s >= 0 and slot_key[s] == keys[i]:
            _store_row(slab, s - slab_base, values[i])


class DramTier:
    """A DRAM cache over ``tables`` with one byte budget and one policy.

    Parameters
    ----------
    tables : list of TableConfig
        Tables sharing this budget.
    budget_bytes : int
        Bytes of cached rows (records at their stored width, ``TableConfig.cached_row_bytes`` each).
    policy : str or cache_policies.Policy
        Eviction/admission policy.
    pinned : dict of str to int, optional
        Rows of each table pinned by a placement plan: slab rows reserved after the
        table's cache slots (:meth:`pinned_slots`), outside ``budget_bytes``; the
        policy never sees them.
    """

    def __init__(self, tables, budget_bytes: int, policy="lru", pinned: dict | None = None):
        if budget_bytes <= 0:
            raise ValueError(f"DRAM budget must be positive, got {budget_bytes}")
        self.policy = as_policy(policy)
        self.budget_bytes = int(budget_bytes)
        self.names = [t.name for t in tables]
        self.position = {t.name: i for i, t in enumerate(tables)}
        self.row_bytes = np.array([t.cached_row_bytes for t in tables], dtype=np.int64)
        num_rows = np.array([t.num_rows for t in tables], dtype=np.int64)
        self.mirror = bool(np.sum(num_rows * self.row_bytes) <= self.budget_bytes)
        slots = num_rows if self.mirror else np.minimum(num_rows, self.budget_bytes // self.row_bytes)
        self.num_rows = num_rows
        self.key_base = np.concatenate([[0], np.cumsum(num_rows)]).astype(np.int64)
        self.slot_base = np.concatenate([[0], np.cumsum(slots)]).astype(np.int64)
        total_slots = int(self.slot_base[-1])
        pinned = pinned or {}
        self.pinned_base = {t.name: int(s) for s, t in zip(slots, tables)}
        self.pinned_bytes = int(sum(pinned.get(t.name, 0) * t.cached_row_bytes for t in tables))
        self.slabs = [aligned_empty((int(s) + pinned.get(t.name, 0), t.cached_row_bytes), np.uint8)
                      for s, t in zip(slots, tables)]
        self.row2slot = np.full(int(self.key_base[-1]), -1, dtype=np.int32)
        self.slot_key = np.full(max(total_slots, 1), -1, dtype=np.int64)
        self.slot_table = np.repeat(np.arange(len(tables), dtype=np.int64), slots)
        self.free_stack = np.concatenate([np.arange(s, dtype=np.int64)[::-1] + b for s, b in zip(slots, self.slot_base)])
        self.free_top = np.full(len(tables), -1, dtype=np.int64) if self.mirror else slots.astype(np.int64).copy()
        self.resident = np.zeros(len(tables), dtype=np.int64)
        self.state = self.policy.new_state(self.budget_bytes, max(total_slots, 1))

    def _index_args(self):
        return (self.row2slot, self.slot_key, self.slot_table, self.slot_base, self.free_stack, self.free_top,
                self.resident)

    def slab(self, table: str) -> np.ndarray:
        """The slab holding ``table``'s cached records (uint8; row ``slot`` of it is slot ``slot``)."""
        return self.slabs[self.position[table]]

    def fully_resident(self, table: str) -> bool:
        """True when every row of ``table`` is cached in a mirror tier (lookups skip the probe)."""
        t = self.position[table]
        return self.mirror and self.resident[t] == self.num_rows[t]

    def probe(self, table: str, rows: np.ndarray) -> np.ndarray:
        """Local slab slot of each (distinct) row, -1 where absent; tells the policy about the hits."""
        t = self.position[table]
        return _probe(self.state, rows + self.key_base[t], t, *self._index_args())

    def cached(self, table: str, rows: np.ndarray) -> np.ndarray:
        """Whether each of ``rows`` is cached now (the policy is not told)."""
        return self.row2slot[rows + self.key_base[self.position[table]]] >= 0

    def pinned_slots(self, table: str, rows: np.ndarray) -> np.ndarray:
        """Slab rows of ``table``'s pinned ``rows`` (the plan's pinned rows, in increasing order)."""
        return self.pinned_base[table] + np.arange(len(rows), dtype=np.int64)

    def place(self, table: str, rows: np.ndarray, allowed: np.ndarray | None = None,
              occurrences: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Probe ``rows`` (distinct): ``(hit_slots, slots)`` as the other tiers return them, but this
        tier admits its misses only after pooling (:meth:`after_pool`, which the caller hands only
        the ``allowed`` ones), so both are the hit slots."""
        slots = self.probe(table, rows)
        return slots, slots

    def after_pool(self, table: str, rows: np.ndarray, values: np.ndarray) -> int:
        """Offer the batch's missed ``rows`` once it is pooled (an eviction cannot touch its rows)."""
        return self.admit(table, rows, values)

    def admit(self, table: str, rows: np.ndarray, values: np.ndarray) -> int:
        """Offer missed ``rows`` (distinct) with their records ``values``; returns how many were cached."""
        t = self.position[table]
        keys = rows + self.key_base[t]
        dest = np.empty(keys.size, dtype=np.int64)
        admitted = _admit(self.state, keys, int(self.row_bytes[t]), t, self.mirror, self.key_base, dest,
                          *self._index_args())
        _copy_admitted(self.slabs[t], self.slot_base[t], values, keys, dest, self.slot_key)
        return int(admitted)

    def invalidate(self, table: str, rows: np.ndarray) -> None:
        """Drop ``rows`` of ``table`` from the cache."""
        t = self.position[table]
        _invalidate(self.state, np.asarray(rows, dtype=np.int64) + self.key_base[t], *self._index_args())

    def resident_rows(self, table: str) -> int:
        """Rows of ``table`` currently cached."""
        return int(self.resident[self.position[table]])

    @property
    def used_bytes(self) -> int:
        """Bytes of rows in DRAM now (cached and pinned)."""
        return int(self.state.used) + self.pinned_bytes
