"""``ShardedStore`` on a simulated Ray cluster: a head and 3 nodes on this machine (``ray.cluster_utils``).

Results are compared with one store holding the same data; shard processes are
killed mid-stream and a node is removed and replaced.  Nodes get their own
loopback addresses (127.0.0.x; Ray swaps 127.0.0.1 for the host's external
address), token auth and usage stats are off, health checks are fast.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from distributed_cases import assert_equal_to_single_store, make_source, sharded_batches
from hypothesis import HealthCheck, given, settings

import tierstore
from tierstore import SparseBatch, TableConfig
from tierstore.distributed import (ShardedStore, ShardPlan, ShardPlanConfig, ShardUnavailableError, ShardWriteError,
                                   make_shard_plan, write_shards)

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'tierstore[ray]' (CI installs it)")
from ray.cluster_utils import Cluster  # noqa: E402

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
HEAD_IP = "127.0.0.2"
OBJECT_STORE_BYTES = 80 << 20
FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 200,
                      "health_check_timeout_ms": 200, "health_check_failure_threshold": 3}
SHARD_RESOURCE = "tierstore_shard_"
TABLES = [TableConfig("whole", 120, 6), TableConfig("split", 3000, 8), TableConfig("half", 900, 4, "float16")]


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as env:
        for name, value in RAY_ENV.items():
            env.setenv(name, value)
        sim = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "node_ip_address": HEAD_IP, "object_store_memory": OBJECT_STORE_BYTES,
            "include_dashboard": False, "_system_config": FAST_HEALTH_CHECKS})
        sim.next_ip = 3
        for shard in range(3):
            add_node(sim, shard)
        ray.init(address=sim.address, _node_ip_address=HEAD_IP, logging_level="WARNING")
        try:
            yield sim
        finally:
            ray.shutdown()
            sim.shutdown()


def add_node(sim, shard: int):
    """A node with 2 CPUs that holds (custom resource) shard ``shard``'s store."""
    node = sim.add_node(num_cpus=2, node_ip_address=f"127.0.0.{sim.next_ip}", object_store_memory=OBJECT_STORE_BYTES,
                        resources={f"{SHARD_RESOURCE}{shard}": 1})
    sim.next_ip += 1
    return node


@pytest.fixture(scope="module")
def stores(cluster, tmp_path_factory):
    """``(sharded, single, plan, plan_file)``: 3 shards, each on the node holding its custom resource, and the
    source store.  No DRAM tier: a restarted actor would compile its policy again (seconds); the DRAM tiers are
    tested through a placement group below."""
    tmp = tmp_path_factory.mktemp("ray")
    make_source(tmp / "src", np.random.default_rng(7), TABLES)
    plan = make_shard_plan(TABLES, ShardPlanConfig(num_shards=3, imbalance=0.0))
    assert len(plan.pieces_of("split")) == 3 and len(plan.pieces_of("whole")) == 1
    plan_file = write_shards(tmp / "src", tmp / "out", plan)
    sharded = ShardedStore.open(plan_file, dram_cache_bytes=0, shard_resource=SHARD_RESOURCE, attempt_timeout_s=2.0,
                                retry_deadline_s=60.0)
    single = tierstore.open(tmp / "src")
    yield sharded, single, plan, plan_file
    sharded.close()
    single.close()


def fixed_batch(seed: int, bags: int = 16) -> SparseBatch:
    rng = np.random.default_rng(seed)
    parts = {}
    for t in TABLES:
        lengths = rng.integers(0, 6, bags)
        parts[t.name] = (rng.integers(0, t.num_rows, lengths.sum()), np.concatenate([[0], np.cumsum(lengths)]))
    return SparseBatch.from_tables(parts)


MODES = {"whole": "mean", "split": "max", "half": "sum"}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=sharded_batches(TABLES))
def test_sharded_lookups_equal_a_single_store(stores, case):
    sharded, single, plan, _ = stores
    batch, modes = case
    got = sharded.lookup_batch(batch, mode=modes)
    want = single.lookup_batch(batch, mode=modes)
    assert_equal_to_single_store(plan, batch, modes, got, want, lambda out: single.table_views(batch.keys, out))


def test_lookup_get_rows_and_stats_follow_the_single_store(stores):
    sharded, single, *_ = stores
    indices, offsets = np.array([5, 2999, 0, 1500, 1501, 7]), np.array([0, 2, 2, 5])
    for mode in ("sum", "mean", "max"):
        np.testing.assert_allclose(sharded.lookup("split", indices, offsets, mode=mode),
                                   single.lookup("split", indices, offsets, mode=mode), rtol=1e-6)
    ids = np.array([2999, 0, 1000, 2000, 17, 2999])
    np.testing.assert_array_equal(sharded.get_rows("split", ids), single.get_rows("split", ids))
    assert sharded.get_rows("whole", []).shape == (0, 6)
    sharded.reset_stats()
    sharded.lookup_batch(fixed_batch(1), mode=MODES)
    stats = sharded.stats()
    assert stats["batches"] == 1 and stats["bags"] == 3 * 16
    router = stats["router"]
    served = sum(s["lookups"] for s in stats["shards"])
    assert stats["lookups"] == fixed_batch(1).values.size
    # a read resent after a slow attempt (a loaded machine: attempt_timeout_s is 2 s here) is served twice
    assert served == stats["lookups"] if router["retries"] == 0 else served > stats["lookups"]
    assert stats["ssd"]["hits"] == served  # no DRAM tier: every row from the shards' SSD tier
    assert router["bytes_to_shards"] > 0 and router["bytes_from_shards"] >= 16 * (6 + 8 + 4) * 4
    assert router["call_s"] >= router["shard_s"] > 0


@pytest.mark.parametrize("call, error, message", [
    (lambda s: s.lookup("split", [3000], [0]), ValueError, "out of range"),
    (lambda s: s.lookup("nope", [0], [0]), KeyError, "unknown table"),
    (lambda s: s.lookup("split", [1, 2], [0], per_sample_weights=[1.0, 2.0], mode="max"), ValueError, "only supported"),
    (lambda s: s.lookup("split", [1, 2, 3], [0, 2, 1]), ValueError, "non-decreasing"),
    (lambda s: s.update_rows("split", [1, 1], np.zeros((2, 8))), ValueError, "distinct"),
    (lambda s: s.update_rows("split", [1], np.zeros((1, 7))), ValueError, r"float \[1, 8\]"),
])
def test_bad_input_raises_and_reaches_no_shard(stores, call, error, message):
    sharded, *_ = stores
    before = sharded.stats()
    with pytest.raises(error, match=message):
        call(sharded)
    after = sharded.stats()
    assert [s["batches"] for s in after["shards"]] == [s["batches"] for s in before["shards"]]
    assert after["batches"] == before["batches"]


def test_update_rows_over_several_shards_is_seen_by_lookups(stores):
    sharded, single, plan, _ = stores
    ids = np.array([0, 1499, 1500, 2999])
    assert len({p.shard for p in plan.pieces_of("split") for i in ids if p.start <= i < p.stop}) >= 2
    old = single.get_rows("split", ids)
    new = np.arange(ids.size * 8, dtype=np.float32).reshape(-1, 8) - 100
    sharded.update_rows("split", ids, new)
    try:
        np.testing.assert_array_equal(sharded.get_rows("split", ids), new)
        pooled = sharded.lookup("split", ids, [0, 2], mode="max")
        np.testing.assert_array_equal(pooled, [np.maximum(new[0], new[1]), np.maximum(new[2], new[3])])
    finally:
        sharded.update_rows("split", ids, old)
    np.testing.assert_array_equal(sharded.get_rows("split", ids), old)


def shard_of(plan, table: str, row: int) -> int:
    return next(p.shard for p in plan.pieces_of(table) if p.start <= row < p.stop)


def test_a_write_to_a_shard_that_died_is_an_error_naming_it_and_never_resent(stores):
    sharded, single, plan, _ = stores
    ids = np.array([10, 2990])
    dead, alive = shard_of(plan, "split", 10), shard_of(plan, "split", 2990)
    old = single.get_rows("split", ids)
    os.kill(sharded.where()[dead]["pid"], signal.SIGKILL)
    with pytest.raises(ShardWriteError, match=f"shard {dead}: outcome unknown") as caught:
        sharded.update_rows("split", ids, np.full((2, 8), 5.0, dtype=np.float32))
    assert caught.value.committed == [alive] and list(caught.value.unknown) == [dead]
    rows = sharded.get_rows("split", ids)  # waits for the restart: reads are resent
    assert np.array_equal(rows[0], old[0]) or np.all(rows[0] == 5.0)  # this shard: all of its part or none
    np.testing.assert_array_equal(rows[1], 5.0)
    sharded.update_rows("split", ids, old)


def stream_while(sharded, single, disrupt, batches: int = 40) -> int:
    """Run ``batches`` lookups in a thread while ``disrupt()`` runs here (Ray adds nodes from the main thread
    only); every result must be right.  Returns the reads the router resent."""
    expected = [(fixed_batch(i), single.lookup_batch(fixed_batch(i), mode=MODES)) for i in range(4)]
    before = sharded.stats()["router"]["retries"]
    checked, errors = [], []

    def stream():
        try:
            for i in range(batches):
                batch, want = expected[i % len(expected)]
                np.testing.assert_allclose(sharded.lookup_batch(batch, mode=MODES), want, rtol=1e-5, atol=1e-5)
                checked.append(i)
        except BaseException as err:  # handed to the test thread below
            errors.append(err)

    worker = threading.Thread(target=stream)
    worker.start()
    disrupt()
    worker.join()
    if errors:
        raise errors[0]
    assert len(checked) == batches
    return sharded.stats()["router"]["retries"] - before


def test_a_shard_killed_mid_stream_costs_latency_not_results(stores):
    sharded, single, *_ = stores
    victim = sharded.where()[1]

    def kill():
        time.sleep(0.05)
        os.kill(victim["pid"], signal.SIGKILL)

    assert stream_while(sharded, single, kill) >= 1
    now = sharded.where()[1]
    assert now["pid"] != victim["pid"] and now["node_id"] == victim["node_id"]


def test_a_lost_node_is_replaced_and_its_shard_moves_there(cluster, stores):
    sharded, single, *_ = stores
    victim = sharded.where()[2]
    node = next(n for n in cluster.worker_nodes if n.node_id == victim["node_id"])
    replacement = {}

    def lose_and_replace():
        cluster.remove_node(node, allow_graceful=False)
        try:  # a removed node's actor can answer for a moment: make sure it is gone
            os.kill(victim["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(1.0)  # no other node holds shard 2: it waits for the new one
        replacement["node"] = add_node(cluster, 2)

    assert stream_while(sharded, single, lose_and_replace) >= 1
    now = sharded.where()
    assert now[2]["node_id"] == replacement["node"].node_id != victim["node_id"]
    assert len({w["node_id"] for w in now}) == 3


def test_a_placement_group_spreads_shards_with_their_own_dram_tiers(cluster, stores):
    _, single, _, plan_file = stores
    with ShardedStore.open(plan_file, dram_cache_bytes=16 << 10, placement_strategy="SPREAD") as spread:
        assert len({w["node_id"] for w in spread.where()}) == 3
        for seed in range(6):  # 16 KiB per shard is a few hundred rows
            batch = fixed_batch(seed, bags=64)
            np.testing.assert_allclose(spread.lookup_batch(batch, mode=MODES),
                                       single.lookup_batch(batch, mode=MODES), rtol=1e-5, atol=1e-5)
        stats = spread.stats()
        assert stats["dram"]["budget_bytes"] == 3 * (16 << 10) and stats["dram"]["hits"] > 0
        assert stats["dram"]["hits"] + stats["dram"]["misses"] == stats["lookups"]


def test_a_shard_that_cannot_open_its_store_fails_open_naming_it(cluster, stores, tmp_path):
    *_, plan_file = stores
    plan = ShardPlan.load(plan_file)
    broken = ShardPlan(plan.config, plan.tables, plan.pieces,
                       (str(tmp_path / "missing"),) + tuple(str(plan.shard_path(plan_file, s)) for s in (1, 2)))
    with pytest.raises(ShardUnavailableError, match=r"shard 0 \(.*missing\) could not open its store"):
        ShardedStore.open(broken.save(tmp_path / "plan.json"))
