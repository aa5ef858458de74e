"""Trace simulation: replay a key sequence through a policy state.

Keys are remapped to dense ids ``0..n_keys-1`` that serve as slot ids, so a
state is built with ``max_slots = n_keys``.  The replay loop is one ``njit``
function (``_replay``), specialised by numba for each policy's kind and
cached on disk like every kernel it runs (see ``drive``).  It runs the
policy's kernels on its arrays, with each key's slot id as its key where
the policy allows it (``key_by_slot``), else the original keys.  The request
loop follows libCacheSim's ``cache_get_base``: a hit calls ``on_hit``; a
miss asks ``admit`` and, if admitted, evicts while ``used + size >
capacity`` and then inserts.  A refused miss still counts as a miss.  After
``on_hit``, ``admit`` and the eviction loop, slots from ``take_evicted``
are dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from .base import Policy, as_policy
from .drive import kernels
from .setassoc import is_setassoc, simulate_setassoc

NEVER = -1


HIT = 1
INSERTED = 0
REFUSED = 2
INVALIDATED = 3


@dataclass(frozen=True)
class ReplayLog:
    """Per-request record of a simulation (``simulate(..., record=True)``).

    Attributes
    ----------
    outcome : ndarray of int8
        ``HIT`` (1), ``INSERTED`` (0: a miss that was cached), ``REFUSED``
        (2: a miss the policy did not cache) or ``INVALIDATED`` (3: an
        invalidation, not a lookup), per request.
    n_evicted : ndarray of int64
        Objects that left the cache while serving each request.
    evicted_keys : ndarray of int64
        The keys that left, in order (``n_evicted.sum()`` entries).
    final_used, final_n_resident : int
        The state's ``used`` and ``n_resident`` after the last request.
    """

    outcome: np.ndarray
    n_evicted: np.ndarray
    evicted_keys: np.ndarray
    final_used: int
    final_n_resident: int


@dataclass(frozen=True)
class SimResult:
    """Outcome of one simulation.

    Attributes
    ----------
    hits, misses : int
        Request counts.
    byte_hits, byte_misses : int
        Sums of the requested sizes of hit and missed requests.
    n_requests : int
        ``hits + misses``.
    config : dict
        The policy (``Policy.to_dict()``), capacity and trace shape it ran with.
    log : ReplayLog or None
        Per-request record, only with ``record=True`` (not serialised).
    """

    hits: int
    misses: int
    byte_hits: int
    byte_misses: int
    n_requests: int
    config: dict[str, Any] = field(default_factory=dict)
    log: ReplayLog | None = field(default=None, repr=False, compare=False)

    @property
    def miss_ratio(self) -> float:
        return self.misses / self.n_requests if self.n_requests else 0.0

    @property
    def byte_miss_ratio(self) -> float:
        total = self.byte_hits + self.byte_misses
        return self.byte_misses / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Counts, ratios and config, JSON-ready."""
        out = {
            "hits": self.hits,
            "misses": self.misses,
            "byte_hits": self.byte_hits,
            "byte_misses": self.byte_misses,
            "n_requests": self.n_requests,
            "config": self.config,
        }
        out["miss_ratio"] = self.miss_ratio
        out["byte_miss_ratio"] = self.byte_miss_ratio
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@numba.njit(cache=True)
def _dense_ids_in_range(keys, lo, span):
    """``_dense_ids`` for keys in ``[lo, lo + span)``: a direct table."""
    table = np.full(span, -1, dtype=np.int64)
    out = np.empty(keys.shape[0], dtype=np.int64)
    n_ids = 0
    for i in range(keys.shape[0]):
        j = keys[i] - lo
        if table[j] == -1:
            table[j] = n_ids
            n_ids += 1
        out[i] = table[j]
    return out, n_ids


@numba.njit(cache=True)
def _dense_ids(keys):
    """Map keys to ids ``0..n-1`` in order of first appearance: a direct table
    when the keys span no more values than there are requests (row ids
    usually do), else open addressing, table doubled at half load, so it
    stays as small as the key space."""
    n = keys.shape[0]
    if n > 0:
        lo = keys.min()
        last = np.uint64(keys.max()) - np.uint64(lo)  # exact in two's complement
        if last < np.uint64(max(n, 1024)):
            return _dense_ids_in_range(keys, lo, np.int64(last) + 1)
    size = 1024
    mask = size - 1
    table_keys = np.empty(size, dtype=np.int64)
    table_ids = np.full(size, -1, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    n_ids = 0
    for i in range(n):
        k = keys[i]
        h = k * np.int64(-7046029254386353131)
        j = (h ^ (h >> 29)) & mask
        while table_ids[j] != -1 and table_keys[j] != k:
            j = (j + 1) & mask
        if table_ids[j] != -1:
            out[i] = table_ids[j]
            continue
        table_keys[j] = k
        table_ids[j] = n_ids
        out[i] = n_ids
        n_ids += 1
        if 2 * n_ids > size:
            old_keys = table_keys
            old_ids = table_ids
            size *= 2
            mask = size - 1
            table_keys = np.empty(size, dtype=np.int64)
            table_ids = np.full(size, -1, dtype=np.int64)
            for t in range(old_ids.shape[0]):
                if old_ids[t] != -1:
                    kk = old_keys[t]
                    hh = kk * np.int64(-7046029254386353131)
                    jj = (hh ^ (hh >> 29)) & mask
                    while table_ids[jj] != -1:
                        jj = (jj + 1) & mask
                    table_keys[jj] = kk
                    table_ids[jj] = old_ids[t]
    return out, n_ids


def dense_ids(keys) -> tuple[np.ndarray, int]:
    """Remap arbitrary int64 keys to dense ids in order of first appearance.

    Returns
    -------
    ids : ndarray of int64
    n_keys : int
        Number of distinct keys.
    """
    keys = _as_keys(keys)
    ids, n = _dense_ids(keys)
    return ids, int(n)


@numba.njit(cache=True)
def _next_access(ids, n_keys):
    n = ids.shape[0]
    out = np.empty(n, dtype=np.int64)
    last = np.full(n_keys, NEVER, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        out[i] = last[ids[i]]
        last[ids[i]] = i
    return out


def next_access_times(ids: np.ndarray, n_keys: int) -> np.ndarray:
    """Index of the next request to the same id, ``-1`` if none (Belady's input)."""
    return _next_access(np.ascontiguousarray(ids, dtype=np.int64), int(n_keys))


@numba.njit(inline="always")
def _drop(slot, resident):
    """Mark evicted ``slot`` not resident (one array: no reference counting
    is left in the loop)."""
    if slot < 0 or slot >= resident.shape[0] or not resident[slot]:
        raise RuntimeError("policy evicted a slot that is not resident")
    resident[slot] = False


@numba.njit(inline="always")
def _log_eviction(key, n_evicted, evicted_keys, i):
    evicted_keys[evicted_keys[-1]] = key
    evicted_keys[-1] += 1
    n_evicted[i] += 1


@numba.njit(inline="always")
def _evict(slot, keys_of_slot, resident, record, n_evicted, evicted_keys, i):
    _drop(slot, resident)
    if record:
        _log_eviction(keys_of_slot[slot], n_evicted, evicted_keys, i)


@numba.njit(nogil=True, cache=True)
def _run(kind, st, slot_keys, start, keys, ids, sizes, next_access, invalidate, resident, keys_of_slot, outcome,
         n_evicted, evicted_keys):
    """Replay from request ``start`` through the kernels of ``kind`` on view ``st``;
    stop before a miss that ``ready`` says needs room first.  With ``slot_keys``
    the policy is told each request's dense id (its slot) as the key.  ``st`` is
    never reassigned here: numba would otherwise reference count it on every
    request."""
    k = kernels(kind)
    hits = 0
    byte_hits = 0
    byte_misses = 0
    use_next = next_access.shape[0] > 0
    unit = sizes.shape[0] == 0
    use_invalidate = invalidate.shape[0] > 0
    record = outcome.shape[0] > 0
    for i in range(start, ids.shape[0]):
        slot = ids[i]
        size = 1 if unit else sizes[i]
        if use_invalidate and invalidate[i]:
            if resident[slot]:
                k.remove(st, slot)
                resident[slot] = False
            if record:
                outcome[i] = INVALIDATED
            continue
        if use_next:
            k.set_next_access(st, next_access[i])
        if resident[slot]:
            k.on_hit(st, slot)
            while k.n_pending(st) > 0:
                _evict(k.take_evicted(st), keys_of_slot, resident, record, n_evicted, evicted_keys, i)
            hits += 1
            byte_hits += size
            if record:
                outcome[i] = HIT
            continue
        if not k.ready(st, size):
            return i, hits, byte_hits, byte_misses
        byte_misses += size
        key = slot if slot_keys else keys[i]
        admitted = k.admit(st, key, size)
        while k.n_pending(st) > 0:
            _evict(k.take_evicted(st), keys_of_slot, resident, record, n_evicted, evicted_keys, i)
        if record:
            outcome[i] = INSERTED if admitted else REFUSED
        if not admitted:
            continue
        while k.used(st) + size > k.capacity(st):
            evicted = k.victim(st)
            _drop(evicted, resident)
            if record:
                _log_eviction(keys_of_slot[evicted], n_evicted, evicted_keys, i)
        while k.n_pending(st) > 0:
            _evict(k.take_evicted(st), keys_of_slot, resident, record, n_evicted, evicted_keys, i)
        k.on_insert(st, slot, key, size)
        resident[slot] = True
        if k.used(st) > k.capacity(st):
            raise RuntimeError("policy exceeded its capacity after an insert")
    return ids.shape[0], hits, byte_hits, byte_misses


@numba.njit(nogil=True, cache=True)
def _replay(state, keys, ids, sizes, next_access, invalidate, resident, keys_of_slot, outcome, n_evicted,
            evicted_keys):
    """Replay every request through fresh ``state``, growing its view whenever a
    miss needs room; returns hits, byte hits and byte misses."""
    k = kernels(state.kind)
    slot_keys = k.key_by_slot(state.arrays)
    hits = 0
    byte_hits = 0
    byte_misses = 0
    start = np.int64(0)  # not a literal 0, which would compile _run twice
    while True:
        start, h, bh, bm = _run(
            state.kind, state.arrays, slot_keys, start, keys, ids, sizes, next_access, invalidate, resident,
            keys_of_slot, outcome, n_evicted, evicted_keys,
        )
        hits += h
        byte_hits += bh
        byte_misses += bm
        if start == ids.shape[0]:
            return hits, byte_hits, byte_misses
        state.arrays = k.grow(state.arrays, 1 if sizes.shape[0] == 0 else sizes[start])


def _as_keys(keys) -> np.ndarray:
    keys = np.asarray(keys)
    if keys.ndim != 1:
        raise ValueError(f"keys must be one-dimensional, got shape {keys.shape}")
    if keys.size and not np.issubdtype(keys.dtype, np.integer):
        raise ValueError(f"keys must be integers, got dtype {keys.dtype}")
    if keys.dtype == np.uint64:
        return np.ascontiguousarray(keys).view(np.int64)
    return np.ascontiguousarray(keys, dtype=np.int64)


def _as_sizes(sizes, n: int) -> np.ndarray:
    if sizes is None:
        return np.ones(n, dtype=np.int64)
    sizes = np.asarray(sizes)
    if sizes.shape != (n,):
        raise ValueError(f"sizes must have one entry per request ({n}), got shape {sizes.shape}")
    if n and not np.issubdtype(sizes.dtype, np.integer):
        raise ValueError(f"sizes must be integers, got dtype {sizes.dtype}")
    sizes = np.ascontiguousarray(sizes, dtype=np.int64)
    if n and sizes.min() < 1:
        raise ValueError(f"sizes must be >= 1, got minimum {sizes.min()}")
    return sizes


def simulate(
    keys,
    policy: Policy | str,
    capacity: int,
    sizes=None,
    next_access=None,
    record: bool = False,
    invalidate=None,
    batch_ends=None,
) -> SimResult:
    """Replay ``keys`` through ``policy`` with a cache of ``capacity``.

    A set-associative cache (``policy="setassoc..."`` or a
    ``cache_policies.setassoc.SetAssociative``; tierstore's default DRAM tier) is
    replayed by :func:`cache_policies.setassoc.simulate_setassoc`, batch by batch as
    the live tier serves them (``batch_ends``; default: every request its own
    batch), with ``capacity`` in slots; it counts each request of a batch's key
    missed at the batch's start as a miss, as the store does.  ``sizes``,
    ``next_access``, ``record`` and ``invalidate`` do not apply to it.

    Parameters
    ----------
    keys : array of int
        Requested keys, in order.
    policy : Policy or str
        A ``make_policy`` result or a policy name (default parameters).
    capacity : int
        Cache size in bytes; with ``sizes=None`` every object has size 1 and
        the capacity counts objects.
    sizes : array of int, optional
        Size of the requested object, per request.  A hit ignores it.
    next_access : array of int, optional
        Index of the next request to the same key (``-1`` for none), for
        Belady; computed from ``keys`` when needed and not given.
    record : bool
        Also return the per-request ``ReplayLog`` in ``SimResult.log``.
    invalidate : array of bool, optional
        Requests marked True are invalidations (a row update): the key is
        dropped through ``remove`` if cached.  They are not lookups and do
        not count in the statistics.
    batch_ends : array of int, optional
        Set-associative caches only: the end (exclusive) of each batch in ``keys``.

    Returns
    -------
    SimResult

    Raises
    ------
    RuntimeError
        If the policy breaks the protocol (evicts a slot that is not
        resident, or exceeds its capacity).
    """
    if is_setassoc(policy):
        if sizes is not None or next_access is not None or record or invalidate is not None:
            raise ValueError("a set-associative cache is simulated with unit sizes, no record and no invalidations")
        keys = _as_keys(keys)
        ends = np.arange(1, keys.size + 1) if batch_ends is None else batch_ends
        result = simulate_setassoc(keys, ends, policy, capacity)
        return SimResult(hits=result.hits, misses=result.misses, byte_hits=result.hits, byte_misses=result.misses,
                         n_requests=result.hits + result.misses, config=result.to_dict()["config"])
    if batch_ends is not None:
        raise ValueError("batch_ends applies to set-associative caches only")
    policy = as_policy(policy)
    keys = _as_keys(keys)
    n = keys.shape[0]
    unit_sizes = sizes is None
    sizes = np.empty(0, dtype=np.int64) if unit_sizes else _as_sizes(sizes, n)
    ids, n_keys = dense_ids(keys)
    if policy.needs_next_access:
        if next_access is None:
            next_access = next_access_times(ids, n_keys)
        next_access = np.ascontiguousarray(next_access, dtype=np.int64)
        if next_access.shape != (n,):
            raise ValueError(f"next_access must have one entry per request ({n}), got shape {next_access.shape}")
    else:
        next_access = np.empty(0, dtype=np.int64)
    if invalidate is None:
        invalidate = np.zeros(0, dtype=np.bool_)
    else:
        invalidate = np.ascontiguousarray(invalidate, dtype=np.bool_)
        if invalidate.shape != (n,):
            raise ValueError(f"invalidate must have one entry per request ({n}), got shape {invalidate.shape}")
    n_lookups = n - int(invalidate.sum())
    n_slots = max(n_keys, 1)
    state = policy.new_state(capacity, n_slots)
    resident = np.zeros(n_slots, dtype=np.bool_)
    keys_of_slot = np.zeros(n_slots if record else 0, dtype=np.int64)
    n_log = n if record else 0
    outcome = np.zeros(n_log, dtype=np.int8)
    n_evicted = np.zeros(n_log, dtype=np.int64)
    evicted_keys = np.zeros(n_log + 1, dtype=np.int64)  # last entry: fill cursor
    if record:
        keys_of_slot[ids] = keys
    hits, byte_hits, byte_misses = _replay(
        state, keys, ids, sizes, next_access, invalidate, resident, keys_of_slot, outcome, n_evicted, evicted_keys
    )
    log = None
    if record:
        log = ReplayLog(
            outcome=outcome,
            n_evicted=n_evicted,
            evicted_keys=evicted_keys[: int(n_evicted.sum())],
            final_used=int(state.used),
            final_n_resident=int(state.n_resident),
        )
    config = {
        "policy": policy.to_dict(),
        "capacity": int(capacity),
        "n_keys": n_keys,
        "unit_sizes": unit_sizes,
    }
    return SimResult(
        hits=int(hits),
        misses=int(n_lookups - hits),
        byte_hits=int(byte_hits),
        byte_misses=int(byte_misses),
        n_requests=int(n_lookups),
        config=config,
        log=log,
    )
