"""Shard plans, shard stores, and batch splitting and merging, without Ray (real stores in temp dirs).

The router's split and merge run here against :class:`ShardServer` objects in this
process (the code each Ray actor runs); ``test_distributed_ray.py`` runs the same
through Ray actors on a simulated cluster.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from distributed_cases import assert_equal_to_single_store, make_source, sharded_batches
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import pool, quantization_bound, stored_values

import placement as pl
import tierstore
from bench.traces import write_trace
from tierstore import SparseBatch, TableConfig
from tierstore.cli import main as cli_main
from tierstore.distributed import (BatchRouter, ShardPiece, ShardPlan, ShardPlanConfig, ShardServer, ShardWriteError,
                                   make_shard_plan, write_shards)
from tierstore.distributed.route import split_by_piece
from tierstore.validate import check_bags

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def table(name, rows, dim=4, dtype="float32"):
    return TableConfig(name, rows, dim, dtype)


def uniform_profile(tables, counts: dict):
    """An AccessProfile with the given exact per-row counts."""
    specs = {t.name: pl.TableSpec(t.name, t.num_rows, t.cached_row_bytes) for t in tables}
    return pl.AccessProfile(tables=specs, exact_counts=counts, sketches={}, coaccess=None)


def shard_totals(plan):
    d = plan.describe()
    return np.array([s["bytes"] for s in d["shards"]], float), np.array([s["load"] for s in d["shards"]])


# ----------------------------------------------------------------------------------------- plans
@st.composite
def plan_cases(draw):
    n_tables = draw(st.integers(1, 6))
    tables = [table(f"t{i}", draw(st.integers(1, 5000)), draw(st.integers(1, 64)),
                    draw(st.sampled_from(["float32", "float16", "int8"]))) for i in range(n_tables)]
    shards = draw(st.integers(1, 6))
    total = sum(t.num_rows * t.row_bytes for t in tables)
    largest_row = max(t.row_bytes for t in tables)
    cap = draw(st.one_of(st.none(), st.floats(1.0, 3.0).map(lambda f: int(f * total / shards) + 2 * largest_row)))
    profile = None
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        profile = uniform_profile(tables, {t.name: rng.zipf(1.3, t.num_rows).astype(np.int64) for t in tables})
    config = ShardPlanConfig(num_shards=shards, shard_bytes=cap, imbalance=draw(st.sampled_from([0.0, 0.1, 1.0])))
    return tables, config, profile


@SETTINGS
@given(case=plan_cases())
def test_plan_covers_every_row_once_fits_and_round_trips(case):
    tables, config, profile = case
    try:
        plan = make_shard_plan(tables, config, profile)
    except ValueError as err:  # only when the capacity is too tight for the greedy packing
        assert config.shard_bytes is not None and "room" in str(err)
        return
    for t in tables:  # ShardPlan checks coverage and distinct shards itself; check the counts too
        pieces = plan.pieces_of(t.name)
        assert sum(p.num_rows for p in pieces) == t.num_rows
        assert all(p.bytes == p.num_rows * t.row_bytes for p in pieces)
    shard_bytes, shard_load = shard_totals(plan)
    assert shard_bytes.sum() == sum(t.num_rows * t.row_bytes for t in tables)
    assert shard_load.sum() == pytest.approx(1.0)
    if config.shard_bytes is not None:
        assert shard_bytes.max() <= config.shard_bytes
    elif profile is None:  # balanced to within imbalance, plus rounding to whole rows at each cut
        slack = 2 * config.num_shards * max(t.row_bytes for t in tables)
        assert shard_bytes.max() <= (1 + config.imbalance) * shard_bytes.mean() + slack
    again = ShardPlan.from_json(plan.to_json())
    assert again == plan and again.to_json() == plan.to_json()


def test_tables_that_would_unbalance_a_shard_are_cut():
    tables = [table("a", 1467, 13), table("b", 855, 23), table("c", 1986, 11)]  # each under half of the bytes
    plan = make_shard_plan(tables, ShardPlanConfig(num_shards=2, imbalance=0.0))
    shard_bytes, _ = shard_totals(plan)
    assert shard_bytes.max() / shard_bytes.mean() < 1.01  # whole tables alone could not do better than 1.28
    assert len(plan.describe()["split_tables"]) == 1


def test_one_big_table_is_cut_to_even_out_bytes():
    tables = [table("big", 10_000, 16), table("small_a", 1000, 16), table("small_b", 500, 16)]
    plan = make_shard_plan(tables, ShardPlanConfig(num_shards=4))
    shard_bytes, _ = shard_totals(plan)
    assert len(plan.pieces_of("big")) == 4
    assert shard_bytes.max() / shard_bytes.mean() < 1.01
    assert plan.describe()["split_tables"] == ["big"]


def test_profile_spreads_a_hot_table_and_its_hot_rows():
    tables = [table("hot", 1000, 8), table("cold", 100_000, 8), table("warm", 20_000, 8)]
    counts = {"hot": np.zeros(1000, np.int64), "cold": np.ones(100_000, np.int64),
              "warm": np.full(20_000, 2, np.int64)}
    counts["hot"][:50] = 10_000  # Zipf-like: a few very hot rows at the front
    counts["hot"][50:] = 100
    plan = make_shard_plan(tables, ShardPlanConfig(num_shards=4), uniform_profile(tables, counts))
    assert plan.load_source == "profile"
    hot = plan.pieces_of("hot")
    assert len(hot) >= 2 and len({p.shard for p in hot}) == len(hot)
    assert hot[0].num_rows < hot[-1].num_rows  # equal-load cuts: the range holding the hot rows is narrow
    _, shard_load = shard_totals(plan)
    assert shard_load.max() / shard_load.mean() <= 1.1
    without = make_shard_plan(tables, ShardPlanConfig(num_shards=4))
    assert len(without.pieces_of("hot")) == 1  # by bytes alone it is a small table


def test_shard_bytes_cuts_a_table_that_would_fit_by_balance_and_too_little_room_is_an_error():
    tables = [table("a", 600, 4), table("b", 400, 4)]
    plan = make_shard_plan(tables, ShardPlanConfig(num_shards=2, shard_bytes=550 * 16, imbalance=1.0))
    assert len(plan.pieces_of("a")) == 2
    assert shard_totals(plan)[0].max() <= 550 * 16
    with pytest.raises(ValueError, match="do not fit 2 shards"):
        make_shard_plan(tables, ShardPlanConfig(num_shards=2, shard_bytes=499 * 16))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format=9), "format"),
    (lambda d: d["pieces"][0].update(stop=d["pieces"][0]["stop"] - 1), "cover rows"),
    (lambda d: d["pieces"][1].update(shard=d["pieces"][0]["shard"]), "distinct shards"),
    (lambda d: d["pieces"][0].update(table="nope"), "unknown tables"),
    (lambda d: d["pieces"][0].update(shard=7), "distinct shards"),
    (lambda d: d["shard_dirs"].pop(), "shard directories"),
])
def test_bad_plan_files_are_clear_errors(tmp_path, change, message):
    plan = make_shard_plan([table("a", 100)], ShardPlanConfig(num_shards=2))
    data = plan.to_dict()
    change(data)
    (tmp_path / "plan.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        ShardPlan.load(tmp_path)


# ----------------------------------------------------------------------------------------- split kernel
@SETTINGS
@given(data=st.data())
def test_split_by_piece_groups_ids_by_range_keeping_bag_order(data):
    rows = data.draw(st.integers(1, 300))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, rows - 1)), max_size=4))) - {rows})
    starts = np.array([0, *cuts, rows], dtype=np.int64)
    lengths = data.draw(st.lists(st.integers(0, 6), max_size=10))
    ids = np.array(data.draw(st.lists(st.integers(0, rows - 1), min_size=sum(lengths), max_size=sum(lengths))),
                   dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    local = np.empty(ids.size, dtype=np.int32)
    counts, order = split_by_piece(ids, bounds, starts, local)
    piece = np.searchsorted(starts[1:-1], ids, side="right")
    bag = np.repeat(np.arange(len(lengths)), lengths)
    expected = np.lexsort((np.arange(ids.size), bag, piece))  # range-major, then bag, then position
    np.testing.assert_array_equal(order, expected)
    np.testing.assert_array_equal(local, ids[expected] - starts[piece[expected]])
    np.testing.assert_array_equal(counts, np.array([[np.sum((piece == p) & (bag == b)) for b in range(len(lengths))]
                                                    for p in range(starts.size - 1)]).reshape(counts.shape))


# ----------------------------------------------------------------------------------------- shard stores
def test_shard_stores_hold_the_source_rows(tmp_path):
    rng = np.random.default_rng(1)
    tables = [table("f32", 700, 5), table("f16", 300, 3, "float16"), table("q8", 500, 6, "int8")]
    data = make_source(tmp_path / "src", rng, tables)
    plan = make_shard_plan(tables, ShardPlanConfig(num_shards=3, imbalance=0.0))
    assert all(len(plan.pieces_of(t.name)) > 1 for t in tables[:1])
    plan_file = write_shards(tmp_path / "src", tmp_path / "out", plan, chunk_bytes=1024)
    assert ShardPlan.load(plan_file) == plan
    for piece in plan.pieces:
        with tierstore.open(plan.shard_path(plan_file, piece.shard)) as shard:
            got = shard.get_rows(piece.table, np.arange(piece.num_rows))
        config = plan.table(piece.table)
        want = stored_values(data[piece.table], config.dtype)[piece.start : piece.stop]
        if config.dtype == "int8":  # quantized again from decoded rows: same codes, scale/bias within rounding
            span = want.max(axis=1, keepdims=True) - want.min(axis=1, keepdims=True)
            assert np.all(np.abs(got - want) <= 1e-6 * span + 1e-7)
            bound = quantization_bound(data[piece.table], "int8")[piece.start : piece.stop]
            assert np.all(np.abs(got - data[piece.table][piece.start : piece.stop]) <= bound + 1e-6 * span)
        else:
            np.testing.assert_array_equal(got, want)


def test_writing_shards_refuses_a_used_folder_and_a_foreign_plan(tmp_path):
    make_source(tmp_path / "src", np.random.default_rng(2), [table("a", 50)])
    plan = make_shard_plan([table("a", 50)], ShardPlanConfig(num_shards=2))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(FileExistsError, match="not empty"):
        write_shards(tmp_path / "src", tmp_path / "used", plan)
    with pytest.raises(tierstore.IncompatibleStoreError, match="tables differ"):
        write_shards(tmp_path / "src", tmp_path / "out", make_shard_plan([table("a", 51)], ShardPlanConfig()))
    assert not (tmp_path / "out" / "plan.json").exists()


def test_shard_command_profiles_a_trace_and_writes_the_plan(tmp_path, capsys):
    rng = np.random.default_rng(3)
    tables = [table("hot", 400, 4), table("cold", 4000, 4)]
    make_source(tmp_path / "src", rng, tables)
    trace = [SparseBatch.from_tables({"hot": (rng.integers(0, 400, 64), np.arange(0, 65, 4))}) for _ in range(5)]
    write_trace(tmp_path / "t.tstrace", trace)
    code = cli_main(["shard", str(tmp_path / "src"), str(tmp_path / "out"), "--shards", "3", "--profile",
                     str(tmp_path / "t.tstrace"), "--json", "--quiet"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["plan"]["load_source"] == "profile"
    assert result["plan"]["split_tables"] == ["cold", "hot"]  # cold by its bytes, hot by its load
    plan = ShardPlan.load(tmp_path / "out")
    for s in range(3):
        with tierstore.open(plan.shard_path(tmp_path / "out", s), tables=plan.shard_tables(s)):
            pass
    assert cli_main(["shard", str(tmp_path / "src"), str(tmp_path / "out"), "--shards", "2", "--quiet"]) == 1
    assert "not empty" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- split and merge
class InProcessShards:
    """The router's split and merge over ShardServers in this process (what ShardedStore does over Ray)."""

    def __init__(self, plan, plan_file, dram_cache_bytes, policy):
        self.router = BatchRouter(plan)
        self.servers = {s: ShardServer(str(plan.shard_path(plan_file, s)), s,
                                       [t.to_dict() for t in plan.shard_tables(s)], dram_cache_bytes, policy)
                        for s in range(plan.num_shards)}

    def lookup_batch(self, batch, modes, views):
        requests = []
        for key in batch.keys:
            idx, bounds, weights, _ = check_bags(key, self.router.plan.table(key).num_rows, *batch.table(key),
                                                 modes[key], True)
            requests.append((key, idx, bounds, weights, modes[key]))
        per_shard, merges = self.router.split(requests)
        replies = {s: self.servers[s].lookup(request)[0] for s, request in per_shard.items()}
        out = np.empty((batch.batch_size, sum(self.router.plan.table(k).dim for k in batch.keys)), np.float32)
        self.router.merge(merges, replies, views(out))
        return out

    def close(self):
        for server in self.servers.values():
            server.close()


@st.composite
def sharded_cases(draw):
    n_tables = draw(st.integers(1, 3))
    tables = [table(f"t{i}", draw(st.integers(1, 150)), draw(st.integers(1, 12)),
                    draw(st.sampled_from(["float32", "float16"]))) for i in range(n_tables)]
    config = ShardPlanConfig(num_shards=draw(st.integers(1, 4)), imbalance=draw(st.sampled_from([0.0, 0.5])))
    cache = draw(st.sampled_from([0, 256, 1 << 20]))  # none, a few rows, every row (mirror)
    policy = draw(st.sampled_from(["lru", "s3fifo"]))
    return tables, config, cache, policy


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=sharded_cases(), data=st.data())
def test_split_and_merge_equal_a_single_store(tmp_path_factory, case, data):
    tables, config, cache, policy = case
    tmp = tmp_path_factory.mktemp("shards")
    values = make_source(tmp / "src", np.random.default_rng(data.draw(st.integers(0, 99))), tables)
    plan = make_shard_plan(tables, config)
    plan_file = write_shards(tmp / "src", tmp / "out", plan)
    shards = InProcessShards(plan, plan_file, cache, policy)
    try:
        with tierstore.open(tmp / "src") as single:
            for _ in range(3):  # the same shards, several batches: caches fill and evict
                batch, modes = data.draw(sharded_batches(tables))
                got = shards.lookup_batch(batch, modes, lambda out: single.table_views(batch.keys, out))
                want = single.lookup_batch(batch, mode=modes)
                assert_equal_to_single_store(plan, batch, modes, got, want,
                                             lambda out: single.table_views(batch.keys, out))
                for key, view in single.table_views(batch.keys, got).items():
                    idx, off, w = batch.table(key)
                    ref = pool(stored_values(values[key], plan.table(key).dtype), idx, off, w, modes[key])
                    np.testing.assert_allclose(view, ref, rtol=1e-5, atol=1e-5 * (1 + np.abs(ref).max(initial=0)))
    finally:
        shards.close()


def test_max_over_negative_rows_ignores_shards_without_rows_in_the_bag(tmp_path):
    """A shard holding none of a bag's rows pools zeros; merging them would make max(negative rows) zero."""
    config = table("neg", 100, 3)
    with tierstore.create(tmp_path / "src", [config]) as store:
        store.load("neg", -1.0 - np.arange(300, dtype=np.float32).reshape(100, 3), progress=False)
    plan = make_shard_plan([config], ShardPlanConfig(num_shards=4, imbalance=0.0))
    plan_file = write_shards(tmp_path / "src", tmp_path / "out", plan)
    shards = InProcessShards(plan, plan_file, 0, "lru")
    batch = SparseBatch.from_tables({"neg": (np.array([3, 5, 90, 0, 99]), np.array([0, 2, 2, 3, 5]))})
    try:
        with tierstore.open(tmp_path / "src") as single:
            for mode in ("max", "mean", "sum"):
                got = shards.lookup_batch(batch, {"neg": mode}, lambda out: {"neg": out})
                want = single.lookup_batch(batch, mode=mode)
                np.testing.assert_allclose(got, want, rtol=1e-6)
                assert np.all(got[1] == 0.0)  # the empty bag stays zero
    finally:
        shards.close()


def test_write_error_names_committed_refused_and_unknown_shards():
    err = ShardWriteError("t", [2, 0], {1: ValueError("disk full")}, {3: RuntimeError("died")})
    text = str(err)
    assert err.committed == [0, 2] and "committed on shards [0, 2]" in text
    assert "shard 1: refused, nothing committed" in text and "disk full" in text
    assert "shard 3: outcome unknown" in text and "not retried" in text


def test_shard_piece_round_trips():
    piece = ShardPiece("t", 3, 9, 1, 96, 0.25)
    assert ShardPiece.from_json(piece.to_json()) == piece and piece.num_rows == 6


def test_router_takes_weights_for_every_table_or_none():
    plan = make_shard_plan([table("a", 10), table("b", 10)], ShardPlanConfig(num_shards=2))
    ids, bounds = np.array([1, 2]), np.array([0, 2])
    with pytest.raises(ValueError, match="every table of a batch or for none"):
        BatchRouter(plan).split([("a", ids, bounds, np.ones(2, np.float32), "sum"), ("b", ids, bounds, None, "sum")])
