"""Placement against a real store: predictions equal measurements, layout rewrites are exact and atomic, CLI."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import placement as pl
import tierstore
from bench.place_cli import main as place_main
from bench.traces import write_trace
from tierstore import SparseBatch, TableConfig

SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture])


def zipf_trace(rng, tables, num_batches, bags, pooling):
    return [
        SparseBatch.from_tables(
            {n: ((rng.zipf(1.2, bags * pooling) - 1) % r, np.arange(0, bags * pooling + 1, pooling))
             for n, (r, _) in tables.items()}
        )
        for _ in range(num_batches)
    ]


def make_store(path, rng, tables, **page_options):
    store = tierstore.create(path, [TableConfig(n, r, d, **page_options) for n, (r, d) in tables.items()])
    data = {n: rng.standard_normal((r, d), dtype=np.float32) for n, (r, d) in tables.items()}
    for n, rows in data.items():
        store.load(n, rows, progress=False)
    specs = store_specs(store)
    store.close()
    return data, specs


def store_specs(store):
    return {n: pl.TableSpec(n, c.num_rows, c.cached_row_bytes, c.rows_per_page) for n, c in store.tables.items()}


@pytest.mark.parametrize("policy", ["s3fifo"])
def test_evaluate_predicts_the_store_exactly(tmp_path, policy):
    rng = np.random.default_rng(0)
    tables = {"a": (3000, 8), "b": (1000, 16)}
    trace = zipf_trace(rng, tables, 30, 100, 4)
    _, specs = make_store(tmp_path, rng, tables)
    plan = pl.make_plan(pl.profile(trace[:15], specs), pl.TierBudgets(0, 20_000),
                        config=pl.PlanConfig(assign_method="cache_only"))
    with tierstore.open(tmp_path, readonly=False) as writer:
        writer.apply_layout(plan.order, progress=False)
    predicted = pl.evaluate(plan, trace[15:], policy=policy, warmup_batches=2)
    with tierstore.open(tmp_path, dram_cache_bytes=plan.assignment.dram_cache_bytes, policy=policy) as store:
        for number, batch in enumerate(trace[15:]):
            if number == 2:
                store.reset_stats()
            store.lookup_batch(batch)
        stats = store.stats()
    assert stats["dram"]["hits"] == predicted.requests["dram_cache"]
    assert stats["dram"]["misses"] == predicted.requests["ssd"]
    assert stats["ssd"]["pages_read"] == predicted.ssd_pages_read


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 300), dim=st.sampled_from([1, 4, 24]),
       dtype=st.sampled_from(["float32", "float16", "int8"]), rows_per_page=st.integers(1, 9),
       layout=st.sampled_from(["frequency", "coaccess"]))
def test_applying_a_plan_keeps_every_row_and_lookup_bit_exact(tmp_path_factory, seed, rows, dim, dtype,
                                                              rows_per_page, layout):
    path = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(seed)
    tables = {"t": (rows, dim)}
    make_store(path, rng, tables, dtype=dtype, rows_per_page=rows_per_page)
    trace = zipf_trace(rng, tables, 4, 8, 3)
    with tierstore.open(path) as store:
        before_rows = store.get_rows("t", np.arange(rows))
        before_pooled = [store.lookup_batch(b) for b in trace]
        specs = store_specs(store)
    plan = pl.make_plan(pl.profile(trace, specs), pl.TierBudgets(0, 0), config=pl.PlanConfig(layout=layout))
    with tierstore.open(path, readonly=False) as writer:
        writer.apply_layout(plan.order, progress=False)
    with tierstore.open(path) as store:
        assert np.array_equal(store.row_positions("t"), plan.positions("t"))
        assert np.array_equal(store.get_rows("t", np.arange(rows)), before_rows)
        for batch, pooled in zip(trace, before_pooled):
            assert np.array_equal(store.lookup_batch(batch), pooled)


KILL_MID_APPLY = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import tierstore
    import tierstore.pages as pages

    encode = pages.encode_pages
    calls = []

    def encode_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return encode(*args, **kwargs)

    pages.encode_pages = encode_then_die
    with tierstore.open(sys.argv[1], readonly=False) as store:
        orders = {n: np.random.default_rng(1).permutation(c.num_rows) for n, c in store.tables.items()}
        store.apply_layout(orders, progress=False)
    """
)


def test_a_writer_killed_mid_apply_leaves_the_old_layout_readable(tmp_path):
    rng = np.random.default_rng(2)
    tables = {"a": (500, 8), "b": (400, 4)}
    data, _ = make_store(tmp_path, rng, tables)
    child = subprocess.run([sys.executable, "-c", KILL_MID_APPLY, str(tmp_path)], capture_output=True, text=True)
    assert child.returncode == -9, child.stderr
    with tierstore.open(tmp_path) as store:
        for name, rows in data.items():
            assert np.array_equal(store.row_positions(name), np.arange(rows.shape[0]))
            assert np.array_equal(store.get_rows(name, np.arange(rows.shape[0])), rows)


def test_place_cli_saves_the_plan_and_applies_its_layout(tmp_path, capsys):
    rng = np.random.default_rng(3)
    tables = {"a": (2000, 8), "b": (700, 16)}
    data, _ = make_store(tmp_path / "store", rng, tables)
    trace = zipf_trace(rng, tables, 12, 50, 4)
    write_trace(tmp_path / "trace.tstrace", trace)
    with tierstore.open(tmp_path / "store") as store:
        before = [store.lookup_batch(b) for b in trace]
    code = place_main([str(tmp_path / "store"), str(tmp_path / "trace.tstrace"), "--budgets", "gpu=1KiB,dram=10%",
                       "--evaluate", "--json", "--quiet"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["applied"] and result["profile"]["num_batches"] == 12
    plan = pl.PlacementPlan.load(tmp_path / "store" / "placement")
    total = sum(r * d * 4 for r, d in tables.values())
    assert plan.budgets == pl.TierBudgets(gpu_bytes=1024, dram_bytes=int(total * 0.10))
    assert plan.assignment.gpu_pinned_bytes <= 1024
    with tierstore.open(tmp_path / "store") as store:
        for name, rows in data.items():
            assert np.array_equal(store.row_positions(name), plan.positions(name))
            assert np.array_equal(store.get_rows(name, np.arange(rows.shape[0])), rows)
        for batch, pooled in zip(trace, before):
            assert np.array_equal(store.lookup_batch(batch), pooled)
    assert 0 <= result["predicted"]["hit_rate_requests"] <= 1


def test_place_cli_rejects_bad_budgets(tmp_path):
    make_store(tmp_path / "store", np.random.default_rng(4), {"a": (10, 4)})
    write_trace(tmp_path / "t.tstrace", zipf_trace(np.random.default_rng(5), {"a": (10, 4)}, 2, 3, 2))
    with pytest.raises(ValueError, match="TIER=SIZE"):
        place_main([str(tmp_path / "store"), str(tmp_path / "t.tstrace"), "--budgets", "l3=5%", "--quiet"])
