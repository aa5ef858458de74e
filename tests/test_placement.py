"""Tests of the placement package: profile, tier assignment, layouts, plans and evaluation."""

from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import placement as pl
from placement.coaccess import EdgeSample
from tierstore.batch import SparseBatch

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_trace(rng, tables, num_batches, batch_size, max_bag):
    """Batches of random bags (Zipf-ish, so rows repeat) over ``tables`` = {name: num_rows}."""
    trace = []
    for _ in range(num_batches):
        parts = {}
        for name, rows in tables.items():
            lengths = rng.integers(0, max_bag + 1, batch_size)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            parts[name] = ((rng.zipf(1.3, offsets[-1]) - 1) % rows, offsets)
        trace.append(SparseBatch.from_tables(parts))
    return trace


trace_params = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "rows": st.lists(st.integers(1, 60), min_size=1, max_size=3),
        "num_batches": st.integers(1, 6),
        "batch_size": st.integers(1, 5),
        "max_bag": st.integers(0, 6),
    }
)


def build(params):
    rng = np.random.default_rng(params["seed"])
    rows = {f"t{i}": n for i, n in enumerate(params["rows"])}
    return rng, rows, random_trace(rng, rows, params["num_batches"], params["batch_size"], params["max_bag"])


# --- profile -------------------------------------------------------------------------------------


@SETTINGS
@given(trace_params)
def test_profile_counts_match_bincount(params):
    rng, rows, trace = build(params)
    tables = {n: (r, 8) for n, r in rows.items()}
    prof = pl.profile(trace, tables)
    assert prof.num_batches == len(trace)
    for name, r in rows.items():
        everything = np.concatenate([b.table(name)[0] for b in trace])
        assert np.array_equal(prof.row_counts(name), np.bincount(everything, minlength=r))
        assert prof.requests[name] == everything.size
        assert prof.count_error(name) == (0.0, 1.0)


def bag_sets(trace, name):
    out = []
    for batch in trace:
        idx, off, _ = batch.table(name)
        for b in range(off.size - 1):
            rows = np.unique(idx[off[b] : off[b + 1]])
            if rows.size >= 2:
                out.append(tuple(rows))
    return out


@SETTINGS
@given(trace_params)
def test_unbounded_coaccess_sample_holds_every_bag(params):
    rng, rows, trace = build(params)
    prof = pl.profile(trace, {n: (r, 8) for n, r in rows.items()}, max_pins=10**6)
    for name in rows:
        ptr, edge_rows = prof.coaccess.table_edges(name)
        got = sorted(tuple(edge_rows[ptr[e] : ptr[e + 1]]) for e in range(ptr.size - 1))
        assert got == sorted(bag_sets(trace, name))


def test_bounded_coaccess_sample_stays_bounded_and_is_made_of_real_bags():
    rng = np.random.default_rng(1)
    trace = random_trace(rng, {"a": 500}, 40, 50, 12)
    sample = EdgeSample(["a"], max_pins=300, seed=3)
    for batch in trace:
        idx, off, _ = batch.table("a")
        sample.add(0, idx, off)
        assert sample.num_pins <= 300
    assert sample.sample_rate < 1.0 and sample.num_edges > 0
    real = set(bag_sets(trace, "a"))
    ptr, rows = sample.table_edges("a")
    assert all(tuple(rows[ptr[e] : ptr[e + 1]]) in real for e in range(ptr.size - 1))


def test_batch_granularity_edges_are_the_distinct_rows_of_each_batch():
    rng = np.random.default_rng(2)
    trace = random_trace(rng, {"a": 50}, 5, 4, 5)
    prof = pl.profile(trace, {"a": (50, 4)}, granularity="batch")
    ptr, rows = prof.coaccess.table_edges("a")
    expect = [tuple(np.unique(b.table("a")[0])) for b in trace]
    expect = [e for e in expect if len(e) >= 2]
    assert [tuple(rows[ptr[e] : ptr[e + 1]]) for e in range(ptr.size - 1)] == expect


def test_count_min_sketch_never_undercounts_and_stays_within_its_bound():
    rng = np.random.default_rng(3)
    trace = random_trace(rng, {"big": 5000}, 20, 64, 8)
    prof = pl.profile(trace, {"big": (5000, 4)}, exact_max_rows=1000, sketch_width=512, sketch_depth=4)
    assert "big" in prof.sketches
    exact = np.bincount(np.concatenate([b.table("big")[0] for b in trace]), minlength=5000)
    estimate = prof.row_counts("big")
    bound, confidence = prof.count_error("big")
    assert np.all(estimate >= exact)
    assert np.mean(estimate - exact <= bound) >= confidence - 0.05


def test_profile_rejects_bad_input():
    batch = SparseBatch.from_tables({"a": (np.array([0, 5]), np.array([0, 2]))})
    with pytest.raises(ValueError, match="index 5 outside"):
        pl.profile([batch], {"a": (5, 4)})
    with pytest.raises(KeyError, match="'a'"):
        pl.profile([batch], {"b": (5, 4)})
    with pytest.raises(ValueError, match="granularity"):
        pl.profile([batch], {"a": (6, 4)}, granularity="page")
    with pytest.raises(ValueError, match="num_rows"):
        pl.profile([batch], {"a": (0, 4)})


# --- tier assignment ------------------------------------------------------------------------------


assign_params = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "tables": st.lists(st.tuples(st.integers(1, 80), st.sampled_from([4, 16, 64, 100])), min_size=1, max_size=4),
        "gpu": st.integers(0, 3000),
        "dram": st.integers(0, 6000),
        "fraction": st.floats(0, 1),
        "method": st.sampled_from(pl.assign.METHODS),
    }
)


@SETTINGS
@given(assign_params)
def test_assignment_respects_budgets_and_places_every_row_once(p):
    rng = np.random.default_rng(p["seed"])
    tables = {f"t{i}": t for i, t in enumerate(p["tables"])}
    counts = {n: rng.zipf(1.5, r).astype(np.int64) - rng.integers(0, 2, r) for n, (r, _) in tables.items()}
    budgets = pl.TierBudgets(p["gpu"], p["dram"])
    a = pl.assign_tiers(counts, tables, budgets, method=p["method"], dynamic_fraction=p["fraction"])
    gpu = sum(np.count_nonzero(a.tier[n] == pl.PINNED_GPU) * b for n, (_, b) in tables.items())
    dram = sum(np.count_nonzero(a.tier[n] == pl.PINNED_DRAM) * b for n, (_, b) in tables.items())
    assert gpu == a.gpu_pinned_bytes <= budgets.gpu_bytes
    assert dram == a.dram_pinned_bytes <= budgets.dram_bytes * (1 - p["fraction"]) + 1e-9
    assert a.dram_cache_bytes == budgets.dram_bytes - dram
    for n, (r, _) in tables.items():
        tiers = a.tier[n]
        assert tiers.shape == (r,) and np.isin(tiers, [0, 1, 2, 3]).all()
        assert not np.any((tiers <= pl.PINNED_DRAM) & (counts[n] <= 0)), "rows never accessed are never pinned"
    if p["method"] == "cache_only":
        assert gpu == dram == 0
        assert all(np.all(a.tier[n] == (pl.CACHED if budgets.dram_bytes else pl.SSD_ONLY)) for n in tables)


def test_frequency_greedy_pins_the_most_accessed_rows_in_order():
    counts = {"a": np.array([5, 9, 1, 7, 3]), "b": np.array([8, 2, 6])}
    a = pl.assign_tiers(counts, {"a": (5, 10), "b": (3, 10)}, pl.TierBudgets(20, 40), method="frequency",
                        dynamic_fraction=0.25)
    assert list(a.tier["a"]) == [pl.PINNED_DRAM, pl.PINNED_GPU, pl.CACHED, pl.PINNED_DRAM, pl.CACHED]
    assert list(a.tier["b"]) == [pl.PINNED_GPU, pl.CACHED, pl.PINNED_DRAM]


def test_cost_method_ranks_by_value_per_byte_across_dims():
    # Same counts; rows of table "wide" are 8x larger, so the narrow table wins every byte.
    counts = {"narrow": np.full(10, 5), "wide": np.full(10, 6)}
    tables = {"narrow": (10, 16), "wide": (10, 128)}
    a = pl.assign_tiers(counts, tables, pl.TierBudgets(0, 160), method="cost", dynamic_fraction=0.0)
    assert np.all(a.tier["narrow"] == pl.PINNED_DRAM) and not np.any(a.tier["wide"] == pl.PINNED_DRAM)
    f = pl.assign_tiers(counts, tables, pl.TierBudgets(0, 160), method="frequency", dynamic_fraction=0.0)
    assert np.count_nonzero(f.tier["wide"] == pl.PINNED_DRAM) == 1


def test_uniform_split_gives_each_table_its_share():
    counts = {"a": np.arange(1, 101), "b": np.arange(1, 301)}
    a = pl.assign_tiers(counts, {"a": (100, 8), "b": (300, 8)}, pl.TierBudgets(0, 800), method="uniform",
                        dynamic_fraction=0.0)
    assert np.count_nonzero(a.tier["a"] == pl.PINNED_DRAM) == 25
    assert np.count_nonzero(a.tier["b"] == pl.PINNED_DRAM) == 75
    assert np.all(a.tier["a"][-25:] == pl.PINNED_DRAM)


def test_assignment_rejects_bad_input():
    counts = {"a": np.ones(4)}
    with pytest.raises(ValueError, match="SSD budget"):
        pl.assign_tiers(counts, {"a": (4, 8)}, pl.TierBudgets(0, 0, ssd_bytes=10))
    with pytest.raises(ValueError, match="unknown tier-assignment method"):
        pl.assign_tiers(counts, {"a": (4, 8)}, pl.TierBudgets(), method="magic")
    with pytest.raises(KeyError, match="'b'"):
        pl.assign_tiers(counts, {"a": (4, 8), "b": (2, 8)}, pl.TierBudgets())
    with pytest.raises(ValueError, match="shape"):
        pl.assign_tiers({"a": np.ones(3)}, {"a": (4, 8)}, pl.TierBudgets())
    with pytest.raises(ValueError, match="gpu_bytes"):
        pl.TierBudgets(gpu_bytes=-1)


def test_configs_round_trip_through_json():
    for config in (pl.CostModel(ssd_latency_us=55.5), pl.TierBudgets(1, 2, 3), pl.PlanConfig(layout="frequency"),
                   pl.TableSpec("t", 10, 64, 7)):
        assert type(config).from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown fields"):
        pl.CostModel.from_dict({"ssd_latency": 1})


# --- layouts --------------------------------------------------------------------------------------


def clustered_bags(rng, num_rows, cluster, per_bag, num_bags):
    """Bags drawn from hidden clusters of ``cluster`` rows (a random permutation of row ids)."""
    perm = rng.permutation(num_rows)
    members = perm.reshape(-1, cluster)
    picks = rng.integers(0, members.shape[0], num_bags)
    bags = [np.sort(members[c][rng.choice(cluster, per_bag, replace=False)]) for c in picks]
    ptr = np.arange(num_bags + 1, dtype=np.int64) * per_bag
    return bags, ptr, np.concatenate(bags)


def mean_pages(order, bags, rows_per_page):
    pos = pl.positions_of(order)
    return np.mean([np.unique(pos[b] // rows_per_page).size for b in bags])


@pytest.mark.parametrize("cluster, per_bag, rows_per_page, at_most", [(8, 4, 8, 1.2), (3, 3, 9, 1.0)])
def test_coaccess_layout_recovers_hidden_clusters(cluster, per_bag, rows_per_page, at_most):
    rng = np.random.default_rng(4)
    bags, ptr, rows = clustered_bags(rng, 4104, cluster, per_bag, 6000)
    counts = np.bincount(rows, minlength=4104)
    order = pl.coaccess_layout(counts, ptr, rows, rows_per_page)
    pl.check_layout(order, 4104)
    assert mean_pages(order, bags, rows_per_page) <= at_most
    assert mean_pages(pl.identity_layout(4104), bags, rows_per_page) >= 0.8 * per_bag
    assert mean_pages(pl.frequency_layout(counts), bags, rows_per_page) >= 0.8 * per_bag


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, 200), st.integers(1, 9), st.integers(0, 40))
def test_coaccess_layout_is_a_permutation_with_excluded_rows_first(seed, num_rows, rows_per_page, num_edges):
    rng = np.random.default_rng(seed)
    edges = [np.unique(rng.integers(0, num_rows, rng.integers(2, 30))) for _ in range(num_edges)]
    edges = [e for e in edges if e.size >= 2]
    ptr = np.concatenate([[0], np.cumsum([e.size for e in edges])]).astype(np.int64)
    rows = np.concatenate(edges) if edges else np.zeros(0, np.int64)
    counts = rng.integers(0, 10, num_rows)
    exclude = rng.random(num_rows) < 0.2
    order = pl.coaccess_layout(counts, ptr, rows, rows_per_page, exclude=exclude, pairs_per_row=2, max_degree=4)
    assert np.array_equal(np.sort(order), np.arange(num_rows))
    full_pages = int(exclude.sum()) // rows_per_page * rows_per_page
    assert np.all(exclude[order[:full_pages]])
    assert np.all(np.diff(counts[order[:full_pages]]) <= 0)
    assert np.all(np.diff(counts[order[exclude[order]]]) <= 0)


def test_layout_helpers():
    assert np.array_equal(pl.frequency_layout(np.array([1, 5, 5, 0])), [1, 2, 0, 3])
    order = np.array([2, 0, 1])
    assert np.array_equal(pl.positions_of(order), [1, 2, 0])
    with pytest.raises(ValueError, match="not a permutation"):
        pl.check_layout(np.array([0, 0, 1]), 3)
    with pytest.raises(ValueError, match="shape"):
        pl.check_layout(np.array([0, 1]), 3)


# --- plans and evaluation -------------------------------------------------------------------------


def reference_replay(plan, trace, warmup):
    """Plain-Python replay: pinned tiers, a byte-capacity LRU OrderedDict, distinct SSD pages per batch."""
    cache, used = OrderedDict(), 0
    capacity = plan.assignment.dram_cache_bytes
    distinct = {"gpu": 0, "dram_pinned": 0, "dram_cache": 0, "ssd": 0}
    pages = 0
    for number, batch in enumerate(trace):
        seen = dict.fromkeys(distinct, 0)
        batch_pages = 0
        for name in batch.keys:
            spec = plan.tables[name]
            tier, pos = plan.tier(name), plan.positions(name)
            touched, missed = set(), []
            for row in dict.fromkeys(batch.table(name)[0].tolist()):
                if tier[row] == pl.PINNED_GPU:
                    seen["gpu"] += 1
                elif tier[row] == pl.PINNED_DRAM:
                    seen["dram_pinned"] += 1
                elif (name, row) in cache:
                    cache.move_to_end((name, row))
                    seen["dram_cache"] += 1
                else:
                    seen["ssd"] += 1
                    touched.add(pos[row] // spec.rows_per_page)
                    if tier[row] == pl.CACHED and spec.row_bytes <= capacity:
                        missed.append(row)
            for row in missed:
                while used + spec.row_bytes > capacity:
                    used -= cache.popitem(last=False)[1]
                cache[(name, row)] = spec.row_bytes
                used += spec.row_bytes
            batch_pages += len(touched)
        if number >= warmup:
            for k in distinct:
                distinct[k] += seen[k]
            pages += batch_pages
    return distinct, pages


plan_params = st.fixed_dictionaries(
    {
        "trace": trace_params,
        "dims": st.lists(st.sampled_from([4, 16, 40]), min_size=3, max_size=3),
        "gpu": st.integers(0, 200),
        "dram": st.integers(0, 800),
        "fraction": st.floats(0, 1),
        "method": st.sampled_from(pl.assign.METHODS),
        "layout": st.sampled_from(["identity", "frequency", "coaccess"]),
        "rows_per_page": st.integers(1, 8),
        "warmup": st.integers(0, 3),
    }
)


@SETTINGS
@given(plan_params)
def test_evaluate_matches_a_plain_python_replay(p):
    rng, rows, trace = build(p["trace"])
    tables = {n: (r, p["dims"][i], p["rows_per_page"]) for i, (n, r) in enumerate(rows.items())}
    prof = pl.profile(trace[: len(trace) // 2 + 1], tables)
    config = pl.PlanConfig(assign_method=p["method"], layout=p["layout"], dynamic_fraction=p["fraction"])
    plan = pl.make_plan(prof, pl.TierBudgets(p["gpu"], p["dram"]), config=config)
    result = pl.evaluate(plan, trace, warmup_batches=p["warmup"])
    distinct, pages = reference_replay(plan, trace, p["warmup"])
    assert result.distinct == distinct
    assert result.ssd_pages_read == pages
    assert result.batches == max(0, len(trace) - p["warmup"])
    assert sum(result.requests.values()) == sum(b.values.size for b in trace[p["warmup"] :])


def test_plan_saves_and_loads_identically(tmp_path):
    rng = np.random.default_rng(5)
    trace = random_trace(rng, {"a": 300, "b": 100}, 10, 16, 6)
    prof = pl.profile(trace, {"a": (300, 16), "b": (100, 64, 3)})
    plan = pl.make_plan(prof, pl.TierBudgets(256, 2048), pl.CostModel(ssd_latency_us=50.0))
    plan.save(tmp_path / "plan")
    loaded = pl.PlacementPlan.load(tmp_path / "plan")
    assert loaded.describe() == plan.describe()
    for name in plan.tables:
        assert np.array_equal(loaded.order[name], plan.order[name])
        assert np.array_equal(loaded.tier(name), plan.tier(name))
    assert pl.evaluate(loaded, trace).to_dict() == pl.evaluate(plan, trace).to_dict()
    np.save(tmp_path / "plan" / "order_0.npy", np.zeros(300, dtype=np.int64))
    with pytest.raises(ValueError, match="not a permutation"):
        pl.PlacementPlan.load(tmp_path / "plan")
    with pytest.raises(FileNotFoundError):
        pl.PlacementPlan.load(tmp_path / "nothing")


def test_evaluate_rejects_tables_outside_the_plan():
    trace = [SparseBatch.from_tables({"a": (np.array([0, 1]), np.array([0, 2]))})]
    plan = pl.make_plan(pl.profile(trace, {"a": (2, 4)}), pl.TierBudgets(0, 8))
    with pytest.raises(KeyError, match="'z'"):
        pl.evaluate(plan, [SparseBatch.from_tables({"z": (np.array([0]), np.array([0, 1]))})])


def test_plans_from_sketched_counts_respect_budgets():
    rng = np.random.default_rng(6)
    trace = random_trace(rng, {"big": 3000, "small": 50}, 10, 32, 6)
    prof = pl.profile(trace, {"big": (3000, 16), "small": (50, 64)}, exact_max_rows=1000, sketch_width=256)
    assert set(prof.sketches) == {"big"} and set(prof.exact_counts) == {"small"}
    plan = pl.make_plan(prof, pl.TierBudgets(160, 1600))
    assert plan.assignment.gpu_pinned_bytes <= 160
    assert plan.assignment.dram_pinned_bytes <= 1600 * 0.8
    for name, spec in plan.tables.items():
        pl.check_layout(plan.order[name], spec.num_rows)
    assert pl.evaluate(plan, trace).batches == 10
