"""Predict a plan's per-tier hit rates and SSD pages read per batch by replaying a trace.

Per batch and table the replay follows the engine's pipeline: the batch's
distinct rows (in order of first occurrence) are probed once each, then the misses are read and
offered to the cache.  Pinned rows always hit
their tier.  The others go through one DRAM cache of ``dram_cache_bytes``
shared by all tables, run by a cache policy through the slot protocol of
``cache_policies`` (``admit``, ``victim``, ``on_insert``, ``on_hit``; slot =
row's global id).  A miss reads the row's SSD page (at its position in the
plan's layout); pages are counted once per batch and table.  Only ``CACHED``
rows are offered to the cache; ``SSD_ONLY`` rows never are.

The cache may also be a set-associative one (``policy="setassoc..."`` or a
``cache_policies.setassoc.SetAssociative``, tierstore's default): each batch's
non-pinned distinct rows of a table are then served by
``cache_policies.setassoc.SetAssocState.serve``, as the live tier serves them, with
slots as wide as the widest table's rows (pinned rows too, as in the store).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from cache_policies.setassoc import SetAssocState, batch_distinct, is_setassoc
from cache_policies.setassoc import parse as parse_setassoc

from .assign import CACHED, PINNED_DRAM, TIER_NAMES
from .plan import PlacementPlan
from .profile import check_indices

#: Counter columns: distinct-row outcomes per tier, request outcomes per tier, pages read.
_N_TIERS = len(TIER_NAMES)
_PAGES = 2 * _N_TIERS
HIT_SOURCES = ("gpu", "dram_pinned", "dram_cache", "ssd")


@numba.njit(nogil=True, cache=True)
def _replay_table(indices, slot_base, row_bytes, tier, positions, rows_per_page, page_stamp, stamp, state, resident, counters):
    """Replay one table's indices of one batch; adds to ``counters`` (see module constants).

    Like the engine: probe every distinct row, in order of first occurrence (hits
    touch the policy), then read the misses' pages and offer the missed ``CACHED``
    rows to the policy in the same order.
    """
    by_row = np.argsort(indices, kind="mergesort")
    rows = np.empty(indices.size, dtype=np.int64)
    first = np.empty(indices.size, dtype=np.int64)
    count = np.empty(indices.size, dtype=np.int64)
    n_rows = 0
    for k in range(indices.size):
        row = indices[by_row[k]]
        if n_rows and rows[n_rows - 1] == row:
            count[n_rows - 1] += 1
        else:
            rows[n_rows] = row
            first[n_rows] = by_row[k]
            count[n_rows] = 1
            n_rows += 1
    missed = np.empty(n_rows, dtype=np.int64)
    n_missed = 0
    for g in np.argsort(first[:n_rows]):
        row = rows[g]
        multiplicity = count[g]
        t = tier[row]
        if t < 2:
            outcome = t
        elif resident[slot_base + row]:
            state.on_hit(slot_base + row)
            outcome = 2
        else:
            outcome = 3
            page = positions[row] // rows_per_page
            if page_stamp[page] != stamp:
                page_stamp[page] = stamp
                counters[_PAGES] += 1
            if t == CACHED:
                missed[n_missed] = row
                n_missed += 1
        counters[outcome] += 1
        counters[_N_TIERS + outcome] += multiplicity
    if row_bytes > state.capacity:
        return
    for k in range(n_missed):
        slot = slot_base + missed[k]
        if state.admit(slot, row_bytes):
            while state.used + row_bytes > state.capacity:
                resident[state.victim()] = False
            state.on_insert(slot, slot, row_bytes)
            resident[slot] = True


def _replay_table_setassoc(indices, key_base, tier, positions, rows_per_page, state, counters):
    """:func:`_replay_table` for a set-associative cache: the batch's distinct rows in order of first
    occurrence; pinned ones hit their tier, the others are served by ``state`` (only ``CACHED`` ones
    may be admitted)."""
    rows, multiplicity = batch_distinct(indices)
    outcome = tier[rows].astype(np.int64)
    to_cache = np.flatnonzero(outcome >= CACHED)
    hit_slots, _ = state.serve(rows[to_cache] + key_base, outcome[to_cache] == CACHED, multiplicity[to_cache])
    outcome[to_cache] = np.where(hit_slots >= 0, 2, 3)
    counters[:_N_TIERS] += np.bincount(outcome, minlength=_N_TIERS)
    counters[_N_TIERS:_PAGES] += np.bincount(outcome, weights=multiplicity, minlength=_N_TIERS).astype(np.int64)
    counters[_PAGES] += np.unique(positions[rows[outcome == 3]] // rows_per_page).size


def _setassoc_state(plan: PlacementPlan, cache, n_keys: int) -> SetAssocState:
    """The set-associative cache the store builds for ``plan``: slots as wide as the widest row, its
    pinned rows taking their share of the DRAM budget first."""
    width = max(spec.row_bytes for spec in plan.tables.values())
    n_pinned = sum(int(np.count_nonzero(plan.tier(name) == PINNED_DRAM)) for name in plan.tables)
    return SetAssocState(parse_setassoc(cache), max(plan.budgets.dram_bytes - n_pinned * width, 0) // width, n_keys)


@dataclass
class Evaluation:
    """Predicted outcome of a plan on a trace (warm-up batches excluded).

    Attributes
    ----------
    batches : int
        Batches measured.
    distinct : dict of str to int
        Distinct (batch, table, row) lookups served by each source in ``HIT_SOURCES``.
    requests : dict of str to int
        Index occurrences served by each source (a row repeated in a batch counts each time).
    ssd_pages_read : int
        Distinct SSD pages read, summed over batches and tables.
    per_table : dict
        The same counts per table.
    config : dict
        Policy, plan and warm-up used.
    """

    batches: int
    distinct: dict[str, int]
    requests: dict[str, int]
    ssd_pages_read: int
    per_table: dict[str, dict] = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def hit_rates(self, per: str = "distinct") -> dict[str, float]:
        """Share served by each source, per distinct lookup (``"distinct"``) or per request (``"requests"``)."""
        counts = self.distinct if per == "distinct" else self.requests
        total = sum(counts.values())
        return {k: (v / total if total else 0.0) for k, v in counts.items()}

    def hit_rate(self, per: str = "distinct") -> float:
        """Share served from GPU or DRAM (pinned or cached)."""
        return 1.0 - self.hit_rates(per)["ssd"]

    @property
    def pages_per_batch(self) -> float:
        """Distinct SSD pages read per batch (all tables)."""
        return self.ssd_pages_read / self.batches if self.batches else 0.0

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "batches": self.batches,
            "distinct": self.distinct,
            "requests": self.requests,
            "hit_rate_distinct": self.hit_rate("distinct"),
            "hit_rate_requests": self.hit_rate("requests"),
            "hit_rates_distinct": self.hit_rates("distinct"),
            "hit_rates_requests": self.hit_rates("requests"),
            "ssd_pages_read": self.ssd_pages_read,
            "ssd_pages_per_batch": self.pages_per_batch,
            "per_table": self.per_table,
            "config": self.config,
        }


def evaluate(plan: PlacementPlan, trace, *, policy="lru", warmup_batches: int = 0) -> Evaluation:
    """Replay ``trace`` against ``plan`` and count where every lookup is served.

    Parameters
    ----------
    plan : PlacementPlan
    trace : iterable of batches
        ``SparseBatch``-like (``keys``, ``table(key)``); tables outside the plan raise ``KeyError``.
    policy : str or policy object
        The DRAM cache policy: a ``cache_policies`` name, or any object with
        ``new_state(capacity, max_slots)`` returning a slot-protocol state; or a
        set-associative cache (``"setassoc..."``, ``SetAssociative``).
    warmup_batches : int
        Leading batches replayed but left out of the counts.

    Returns
    -------
    Evaluation
    """
    setassoc = is_setassoc(policy)
    if setassoc:
        policy = parse_setassoc(policy)
    elif isinstance(policy, str):
        from cache_policies import make_policy

        policy = make_policy(policy)
    names = list(plan.tables)
    starts = np.cumsum([0] + [plan.tables[n].num_rows for n in names])
    if setassoc:
        state = _setassoc_state(plan, policy, int(starts[-1]))
    else:
        state = policy.new_state(plan.assignment.dram_cache_bytes, int(starts[-1]))
    resident = np.zeros(int(starts[-1]), dtype=np.bool_)
    positions = {n: plan.positions(n) for n in names}
    tiers = {n: np.ascontiguousarray(plan.tier(n)) for n in names}
    page_stamp = {n: np.full(plan.tables[n].num_pages, -1, dtype=np.int64) for n in names}
    counters = np.zeros((len(names), _PAGES + 1), dtype=np.int64)
    warm = np.zeros_like(counters)
    batches = 0
    for batch in trace:
        if batches == warmup_batches:
            warm = counters.copy()
        for key in batch.keys:
            if key not in plan.tables:
                raise KeyError(f"trace batch {batches} has table {key!r} that the plan does not cover: {names}")
            k = names.index(key)
            spec = plan.tables[key]
            indices = check_indices(batch.table(key)[0], spec, batches)
            if setassoc:
                _replay_table_setassoc(indices, int(starts[k]), tiers[key], positions[key], spec.rows_per_page, state,
                                       counters[k])
                continue
            _replay_table(
                indices, int(starts[k]), spec.row_bytes, tiers[key], positions[key], spec.rows_per_page,
                page_stamp[key], batches, state, resident, counters[k],
            )
        batches += 1
    if batches <= warmup_batches:
        warm = counters.copy()
    counts = counters - warm

    def by_source(row, offset):
        return {s: int(row[offset + i]) for i, s in enumerate(HIT_SOURCES)}

    total = counts.sum(axis=0)
    return Evaluation(
        batches=max(0, batches - warmup_batches),
        distinct=by_source(total, 0),
        requests=by_source(total, _N_TIERS),
        ssd_pages_read=int(total[_PAGES]),
        per_table={
            n: {"distinct": by_source(counts[k], 0), "ssd_pages_read": int(counts[k, _PAGES])}
            for k, n in enumerate(names)
        },
        config={"policy": policy.to_dict() if hasattr(policy, "to_dict") else repr(policy),
                "warmup_batches": warmup_batches, "plan": plan.describe()},
    )
