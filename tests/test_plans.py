"""Placement plans applied live: pinned rows stay, SSD-only rows never enter the cache, and the live
per-tier counts equal ``placement.evaluate``'s prediction on a held-out half of the trace."""

from __future__ import annotations

import numpy as np
import pytest
from reference import pool

import placement as pl
import tierstore
from tierstore import SparseBatch, TableConfig
from tierstore.plans import ROUTE_SSD_ONLY

TABLES = {"a": (3000, 8), "b": (1000, 8)}


def zipf_trace(rng, num_batches, bags=100, pooling=4):
    return [
        SparseBatch.from_tables({n: ((rng.zipf(1.2, bags * pooling) - 1) % r, np.arange(0, bags * pooling + 1, pooling))
                                 for n, (r, _) in TABLES.items()})
        for _ in range(num_batches)
    ]


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """A store, a trace, and a plan made from the trace's first half that pins, caches and leaves rows on SSD."""
    path = tmp_path_factory.mktemp("plans") / "store"
    rng = np.random.default_rng(0)
    store = tierstore.create(path, [TableConfig(n, r, d) for n, (r, d) in TABLES.items()])
    data = {n: rng.standard_normal((r, d)).astype(np.float32) for n, (r, d) in TABLES.items()}
    for n, rows in data.items():
        store.load(n, rows, progress=False)
    specs = {n: pl.TableSpec(n, c.num_rows, c.cached_row_bytes, c.rows_per_page) for n, c in store.tables.items()}
    store.close()
    trace = zipf_trace(rng, 60)
    plan = pl.make_plan(pl.profile(trace[:30], specs), pl.TierBudgets(0, 32 * 700),
                        config=pl.PlanConfig(assign_method="cost", dynamic_fraction=0.5, min_cache_count=2,
                                             layout="identity"))
    counts = plan.assignment.counts()
    assert all(counts[n]["pinned_dram"] and counts[n]["ssd_only"] and counts[n]["cached"] for n in TABLES)
    return path, data, trace, plan


@pytest.mark.parametrize("policy", [None, "setassoc-lru:ways=4", "lru", "s3fifo"])
def test_live_tiers_equal_evaluate_on_held_out_half(planned, policy):
    path, data, trace, plan = planned
    held_out = trace[30:]
    predicted = pl.evaluate(plan, held_out, policy=policy if policy is not None else "setassoc", warmup_batches=5)
    with tierstore.open(path, plan=plan, policy=policy) as store:
        for number, batch in enumerate(held_out):
            if number == 5:
                store.reset_stats()
            out = store.lookup_batch(batch)
            views = store.table_views(batch.keys, out)
            for name in batch.keys:
                indices, offsets, _ = batch.table(name)
                np.testing.assert_allclose(views[name], pool(data[name], indices, offsets), rtol=1e-5, atol=1e-5)
        stats = store.stats()
    requests = predicted.requests
    assert stats["dram"]["pinned_hits"] == requests["dram_pinned"] > 0
    assert stats["dram"]["hits"] - stats["dram"]["pinned_hits"] == requests["dram_cache"] > 0
    assert stats["dram"]["misses"] == requests["ssd"]
    assert stats["ssd"]["pages_read"] == predicted.ssd_pages_read
    assert stats["dram"]["bytes_used"] <= stats["dram"]["budget_bytes"] == plan.budgets.dram_bytes


def test_pinned_rows_stay_and_ssd_only_rows_never_enter(tmp_path, planned):
    path, data, trace, plan = planned
    saved = plan.save(tmp_path / "plan")
    with tierstore.open(path, plan=saved, dram_cache_bytes=plan.budgets.dram_bytes) as store:
        tier = store._tier_of["a"]
        pinned = {n: np.flatnonzero(plan.tier(n) == pl.PINNED_DRAM) for n in TABLES}
        ssd_only = {n: np.flatnonzero(plan.tier(n) == pl.SSD_ONLY) for n in TABLES}
        for batch in trace:
            store.lookup_batch(batch)
            for n in TABLES:
                assert not tier.cached(n, ssd_only[n]).any()
        read_before = store.stats()["ssd"]["rows_decoded"]
        for n in TABLES:
            got = store.get_rows(n, pinned[n])
            np.testing.assert_array_equal(got, data[n][pinned[n]])
            np.testing.assert_array_equal(tier.slab(n)[tier.pinned_slots(n, pinned[n])].view(np.float32),
                                          data[n][pinned[n]])
            assert np.all(store._routes[n][ssd_only[n]] == ROUTE_SSD_ONLY)
        assert store.stats()["ssd"]["rows_decoded"] == read_before  # pinned rows never touch SSD


def test_updated_pinned_rows_are_read_again(tmp_path, planned):
    path, data, trace, plan = planned
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("data.mdb", "lock.mdb"):
        (copy / name).write_bytes((path / name).read_bytes())
    row = int(np.flatnonzero(plan.tier("a") == pl.PINNED_DRAM)[0])
    new = np.full((1, 8), 7.0, dtype=np.float32)
    with tierstore.open(copy, plan=plan, readonly=False) as store:
        store.update_rows("a", [row], new)
        np.testing.assert_array_equal(store.get_rows("a", [row]), new)
        np.testing.assert_array_equal(store.lookup("a", np.array([row, row]), np.array([0])), 2 * new)


def test_bad_plans_are_clear_errors(planned):
    path, _, _, plan = planned
    with pytest.raises(ValueError, match="more than the DRAM budget"):
        tierstore.open(path, plan=plan, dram_cache_bytes=64)
    with pytest.raises(ValueError, match="one budget"):
        tierstore.open(path, plan=plan, dram_cache_bytes={"a": 1000})
    one_table = [SparseBatch.from_tables({"a": (np.arange(10), np.array([0, 10]))})]
    other = pl.make_plan(pl.profile(one_table, {"a": pl.TableSpec("a", 2999, 32)}), pl.TierBudgets(0, 3200))
    with pytest.raises(ValueError, match="2999 rows"):
        tierstore.open(path, plan=other)
