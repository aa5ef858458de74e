"""The GPU tier against the numpy reference, on a GPU or numba's CUDA simulator (see conftest.py).

Shapes are small: under the simulator every CUDA thread is a Python thread.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import pool, quantization_bound, stored_values

import placement as pl
import tierstore
from cache_policies.setassoc import SetAssociative, simulate_setassoc
from tierstore import SparseBatch, TableConfig
from tierstore.gpu.records import device_row_bytes
from tierstore.gpu.runtime import simulated, torch_cuda

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MODES = ("sum", "mean", "max")
TABLES = {"f32": (60, 8, "float32"), "f16": (40, 6, "float16"), "i8": (50, 10, "int8")}
ROW_BYTES = max(device_row_bytes(dtype, dim) for _, dim, dtype in TABLES.values())


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A store of one table per dtype (7 rows per page) and the values it holds."""
    path = tmp_path_factory.mktemp("gpu") / "store"
    rng = np.random.default_rng(7)
    store = tierstore.create(path, [TableConfig(n, r, d, dt, rows_per_page=7) for n, (r, d, dt) in TABLES.items()])
    data = {}
    for name, (rows, dim, dtype) in TABLES.items():
        values = rng.standard_normal((rows, dim)).astype(np.float32)
        store.load(name, values, progress=False)
        data[name] = values
    store.close()
    return path, data


def _bags(rng, rows, n_bags, longest):
    lengths = rng.integers(0, longest + 1, n_bags)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return rng.integers(0, rows, offsets[-1]), offsets


def _check(got, data, name, idx, offsets, weights=None, mode="sum"):
    dtype = TABLES[name][2]
    want = pool(stored_values(data[name], dtype), idx, offsets, weights, mode)
    scale = np.abs(pool(np.abs(stored_values(data[name], dtype)), idx, offsets, None if weights is None else
                        np.abs(weights), "sum" if mode == "max" else mode))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 + 1e-5 * float(scale.max(initial=0)))


def _host(array):
    """A device output as numpy."""
    return array.cpu().numpy() if hasattr(array, "cpu") else array.copy_to_host()


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), budget_rows=st.sampled_from([0, 1, 17, 40, 150]),
       rule=st.sampled_from(["lru", "lfu"]), ways=st.sampled_from([1, 4, 16]), dram_rows=st.sampled_from([0, 30]))
def test_pooled_lookups_equal_the_reference(made, seed, budget_rows, rule, ways, dram_rows):
    """Every mode and dtype, weights, batches over several tables; caches from no rows to all of them."""
    path, data = made
    rng = np.random.default_rng(seed)
    budget = {name: budget_rows * ROW_BYTES for name in TABLES}
    with tierstore.open(path, dram_cache_bytes=dram_rows * 40 * 4, gpu_cache_bytes=budget,
                        gpu_policy=SetAssociative(rule, ways, "none")) as store:
        for step in range(3):
            for mode in MODES:
                name = list(TABLES)[(step + MODES.index(mode)) % 3]
                idx, offsets = _bags(rng, TABLES[name][0], 5, 6)
                _check(store.lookup(name, idx, offsets[:-1], mode=mode), data, name, idx, offsets, mode=mode)
            name = list(TABLES)[step]
            idx, offsets = _bags(rng, TABLES[name][0], 4, 5)
            weights = rng.standard_normal(idx.size).astype(np.float32)
            got = store.lookup(name, idx, offsets, weights, include_last_offset=True)
            _check(got, data, name, idx, offsets, weights)
            batch = SparseBatch(("i8", "f32"), np.concatenate([rng.integers(0, 50, 9), rng.integers(0, 60, 7)]),
                                lengths=np.array([3, 0, 6, 4, 2, 1]))
            out = store.lookup_batch(batch, mode={"i8": "mean", "f32": "max"})
            views = store.table_views(batch.keys, out)
            for key, mode in (("i8", "mean"), ("f32", "max")):
                idx, offsets, _ = batch.table(key)
                _check(views[key], data, key, idx, offsets, mode=mode)
        stats = store.stats()
    gpu = stats["gpu"]
    assert gpu["hits"] + gpu["misses"] == stats["lookups"]
    if budget_rows == 0:
        assert gpu["hits"] == 0 and gpu["bytes_used"] == 0


def test_empty_batches(made):
    """No bags, and bags with no ids, on the device and back."""
    path, _ = made
    with tierstore.open(path, gpu_cache_bytes=8 * ROW_BYTES) as store:
        for device in (None, "cuda"):
            none = store.lookup("f16", np.zeros(0, np.int64), np.array([0]), include_last_offset=True,
                                device=device)
            assert tuple(none.shape) == (0, 6)
            empty = store.lookup("i8", np.zeros(0, np.int64), np.zeros(3, np.int64), mode="max", device=device)
            np.testing.assert_array_equal(empty if device is None else _host(empty), np.zeros((3, 10)))


def test_quantized_rows_stay_within_their_bounds(made):
    """fp16 and int8 rows pooled on the device are within quantization error of the original values."""
    path, data = made
    with tierstore.open(path, gpu_cache_bytes=10**6) as store:
        for name in ("f16", "i8"):
            rows = np.arange(TABLES[name][0])
            got = store.lookup(name, rows, rows)
            bound = quantization_bound(data[name], TABLES[name][2])
            assert np.all(np.abs(got - data[name]) <= bound + 1e-6)


@pytest.mark.parametrize("rule", ["lru", "lfu"])
def test_the_device_decides_what_simulate_setassoc_replays(made, rule):
    """Same batch stream, same hits and misses as the set-associative simulator (the DRAM tier's rules)."""
    path, _ = made
    rng = np.random.default_rng(3)
    cache = SetAssociative(rule, 4, "none")
    slots = 24
    batches = [(rng.zipf(1.3, 12) - 1) % 60 for _ in range(12)]
    with tierstore.open(path, gpu_cache_bytes={"f32": slots * device_row_bytes("float32", 8)},
                        gpu_policy=cache) as store:
        for batch in batches:
            store.lookup("f32", batch, np.arange(0, 12, 3))
        gpu = store.stats()["gpu"]
    keys = np.concatenate(batches)
    expected = simulate_setassoc(keys, np.cumsum([b.size for b in batches]), cache, slots)
    assert (gpu["hits"], gpu["misses"]) == (expected.hits, expected.misses)
    assert 0 < gpu["hits"] and 0 < gpu["misses"]


def test_device_outputs_equal_numpy_outputs(made):
    """``device="cuda"``: a device array (a torch CUDA tensor where torch has CUDA) holding the same values."""
    path, data = made
    rng = np.random.default_rng(5)
    idx, offsets = _bags(rng, 60, 6, 5)
    batch = SparseBatch(("f16", "f32"), np.concatenate([rng.integers(0, 40, 8), rng.integers(0, 60, 9)]),
                        lengths=np.array([3, 5, 0, 4, 5, 0]))
    with tierstore.open(path, gpu_cache_bytes=30 * ROW_BYTES) as store:
        on_device = store.lookup("f32", idx, offsets[:-1], device="cuda")
        assert hasattr(on_device, "__cuda_array_interface__") or simulated()
        np.testing.assert_array_equal(_host(on_device), store.lookup("f32", idx, offsets[:-1]))
        pooled = store.lookup_batch(batch, device="cuda")
        np.testing.assert_array_equal(_host(pooled), store.lookup_batch(batch))
        assert store.serves_cuda
        if torch_cuda() is not None:
            torch = torch_cuda()
            assert isinstance(pooled, torch.Tensor) and pooled.is_cuda
        with pytest.raises(ValueError, match="device must be"):
            store.lookup("f32", idx, offsets[:-1], device="tpu")


@pytest.mark.skipif(simulated() or torch_cuda() is None, reason="needs torch with CUDA on a GPU")
def test_torch_takes_device_outputs_without_a_copy(made):
    import torch
    from numba import cuda

    path, _ = made
    with tierstore.open(path, gpu_cache_bytes=10**6) as store:
        out = store.lookup("f32", np.arange(10), np.arange(0, 10, 2), device="cuda")
        view = cuda.as_cuda_array(out)
        assert torch.as_tensor(view, device="cuda").data_ptr() == out.data_ptr()


@pytest.mark.skipif(simulated() or torch_cuda() is None, reason="needs torch with CUDA on a GPU")
def test_torch_modules_on_cuda_pool_on_the_gpu(made):
    import torch

    from tierstore.torch import TieredEmbeddingBag, TieredEmbeddingBagCollection

    path, data = made
    with tierstore.open(path, gpu_cache_bytes=10**6) as store:
        module = TieredEmbeddingBag(store, "f32", mode="sum").to("cuda")
        idx = torch.tensor([1, 2, 3, 4, 5])
        with torch.inference_mode():
            out = module(idx, torch.tensor([0, 2]))
        assert out.is_cuda
        np.testing.assert_allclose(out.cpu().numpy(), pool(data["f32"], idx.numpy(), [0, 2, 5]), atol=1e-5)
        assert store.stats()["gpu"]["hits"] + store.stats()["gpu"]["misses"] == 5
        collection = TieredEmbeddingBagCollection(store).to("cuda")
        batch = SparseBatch(("f32", "f16"), np.array([1, 2, 3, 0, 7]), lengths=np.array([2, 1, 0, 2]))
        with torch.inference_mode():
            pooled = collection(batch)
        assert pooled.values().is_cuda
        np.testing.assert_array_equal(pooled.values().cpu().numpy(), store.lookup_batch(batch))


def test_bad_input_raises_and_changes_nothing(made):
    path, data = made
    with tierstore.open(path, dram_cache_bytes=2000, gpu_cache_bytes=20 * ROW_BYTES) as store:
        store.lookup("f32", np.arange(8), np.array([0, 4]))
        before = store.stats()
        for idx, offsets in (([1, 60], [0]), ([-1, 2], [0]), ([1, 2, 3], [0, 5]), ([1, 2, 3], [2, 1])):
            with pytest.raises(ValueError):
                store.lookup("f32", np.array(idx), np.array(offsets), device="cuda")
        with pytest.raises(ValueError, match="per_sample_weights"):
            store.lookup("f32", np.arange(3), np.array([0]), np.ones(3, np.float32), mode="max")
        with pytest.raises(KeyError):
            store.lookup_batch(SparseBatch(("nope",), np.arange(2), lengths=np.array([2])))
        after = store.stats()
        assert after["gpu"] == before["gpu"] and after["dram"] == before["dram"]
        assert after["lookups"] == before["lookups"]
        _check(store.lookup("f32", np.arange(8), np.array([0, 4])), data, "f32", np.arange(8), [0, 4, 8])


def _plan(store_path, pinned: dict) -> pl.PlacementPlan:
    """A plan that pins ``pinned`` rows on the GPU and caches the rest."""
    with tierstore.open(store_path) as store:
        specs = {n: pl.TableSpec(n, c.num_rows, c.cached_row_bytes, c.rows_per_page) for n, c in store.tables.items()}
    tiers = {}
    for name, spec in specs.items():
        tier = np.full(spec.num_rows, pl.CACHED, dtype=np.int8)
        tier[pinned.get(name, [])] = pl.PINNED_GPU
        tiers[name] = tier
    assignment = pl.TierAssignment(tiers, 0, 0, 0, "test")
    return pl.PlacementPlan(specs, pl.TierBudgets(4096, 0), pl.CostModel(), pl.PlanConfig(), assignment,
                            {n: np.arange(s.num_rows) for n, s in specs.items()})


def test_pinned_rows_are_loaded_at_open_and_never_evicted(made, tmp_path):
    path, data = made
    pinned = {"f32": np.array([3, 9, 27]), "i8": np.array([0, 49])}
    plan = _plan(path, pinned)
    plan.save(tmp_path / "plan")
    rng = np.random.default_rng(11)
    with tierstore.open(path, gpu_cache_bytes=12 * ROW_BYTES, plan=tmp_path / "plan") as store:
        for _ in range(4):
            idx = rng.integers(0, 60, 12)
            _check(store.lookup("f32", idx, np.array([0, 5])), data, "f32", idx, [0, 5, 12])
        store.reset_stats()
        for name, rows in pinned.items():
            _check(store.lookup(name, rows, np.array([0])), data, name, rows, [0, rows.size])
        gpu = store.stats()["gpu"]
        assert gpu["misses"] == 0 and gpu["pinned_hits"] == gpu["hits"] == 5
    with pytest.raises(ValueError, match="pinned rows need"):
        tierstore.open(path, gpu_cache_bytes=4 * ROW_BYTES, plan=plan)


def test_updates_reach_cached_and_pinned_rows(made, tmp_path):
    """Rows updated after they were cached or pinned on the device read back new values."""
    import shutil

    path, data = made
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    plan = _plan(copy, {"f32": np.array([1, 2])})
    with tierstore.open(copy, readonly=False, gpu_cache_bytes=10 * ROW_BYTES, plan=plan) as store:
        ids = np.array([1, 2, 5, 6])
        store.lookup("f32", ids, np.array([0]))
        fresh = np.full((3, 8), 7.0, dtype=np.float32)
        store.update_rows("f32", np.array([2, 5, 40]), fresh)
        table = data["f32"].copy()
        table[[2, 5, 40]] = fresh
        got = store.lookup("f32", np.array([1, 2, 5, 6, 40]), np.arange(5))
        np.testing.assert_allclose(got, table[[1, 2, 5, 6, 40]], atol=1e-6)
        reloaded = -table
        store.load("f32", reloaded, progress=False)
        got = store.lookup("f32", np.array([1, 2, 5, 6, 40]), np.arange(5))
        np.testing.assert_allclose(got, reloaded[[1, 2, 5, 6, 40]], atol=1e-6)


def test_a_warm_gpu_mirror_sees_another_processs_commit(made, tmp_path):
    """A table held whole on the device pools without a read transaction; a commit by another process must
    still reach the next lookup (the commit-counter check runs on the GPU path too)."""
    import os
    import shutil
    import subprocess
    import sys

    path, data = made
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    with tierstore.open(copy, gpu_cache_bytes=10**6) as store:
        store.warm("f32")
        ids, offsets = np.array([3, 4]), np.array([0, 1])
        _check(store.lookup("f32", ids, offsets), data, "f32", ids, [0, 1, 2])
        writer = ("import sys, numpy as np, tierstore\n"
                  "with tierstore.open(sys.argv[1], readonly=False) as s:\n"
                  "    s.update_rows('f32', [3], np.full((1, 8), 9.0, dtype=np.float32))\n")
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
        done = subprocess.run([sys.executable, "-c", writer, str(copy)], capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        table = data["f32"].copy()
        table[3] = 9.0
        np.testing.assert_allclose(store.lookup("f32", ids, offsets), table[[3, 4]], atol=1e-6)


def test_prefetch_is_refused_with_a_gpu_tier(made):
    path, _ = made
    batch = SparseBatch(keys=["f32"], values=np.array([1, 2]), lengths=np.array([2]))
    with tierstore.open(path, gpu_cache_bytes=10**6) as store:
        with pytest.raises(ValueError, match="GPU tier"):
            store.prefetch(batch)


def test_warm_fills_a_gpu_mirror(made):
    path, data = made
    with tierstore.open(path, gpu_cache_bytes=10**6) as store:
        store.warm("f16")
        store.reset_stats()
        idx = np.array([0, 39, 5, 5])
        _check(store.lookup("f16", idx, np.array([0, 1])), data, "f16", idx, [0, 1, 4])
        assert store.stats()["gpu"]["hits"] == 4
        with pytest.raises(ValueError, match="out of range"):
            store.lookup("f16", np.array([40]), np.array([0]))
    with tierstore.open(path, gpu_cache_bytes=4 * ROW_BYTES) as store, pytest.raises(ValueError, match="warm"):
        store.warm("f16")


def test_gpu_options_are_checked(made):
    path, _ = made
    with pytest.raises(ValueError, match="admission"):
        tierstore.open(path, gpu_cache_bytes=1000, gpu_policy="setassoc-lru:admission=tinylfu")
    with pytest.raises(KeyError, match="unknown tables"):
        tierstore.open(path, gpu_cache_bytes={"nope": 1000})
    with pytest.raises(ValueError, match=">= 0"):
        tierstore.open(path, gpu_cache_bytes=-1)


def test_a_failed_read_changes_no_counter_and_admits_nothing(tmp_path):
    """A corrupt page met while fetching a batch's misses raises, naming it; rows read before are still served."""
    values = np.full((64, 8), 1234.5, dtype=np.float32)
    values[40:48] = 4321.25
    store = tierstore.create(tmp_path / "s", [TableConfig("t", 64, 8, rows_per_page=8)])
    store.load("t", values, progress=False)
    store.close()
    data = bytearray((tmp_path / "s" / "data.mdb").read_bytes())
    marker = np.full(8, 4321.25, dtype=np.float32).tobytes()
    at = data.find(marker)
    while at > 0:  # every copy: the file may also hold stale ones in pages LMDB freed
        data[at + 3] ^= 0x40
        at = data.find(marker, at + 1)
    (tmp_path / "s" / "data.mdb").write_bytes(bytes(data))
    with tierstore.open(tmp_path / "s", gpu_cache_bytes=16 * 32) as store:
        np.testing.assert_array_equal(store.lookup("t", np.array([0, 39]), np.arange(2)), values[[0, 39]])
        before = store.stats()["gpu"]
        with pytest.raises(tierstore.CorruptPageError, match=r"table 't', page 5: checksum"):
            store.lookup("t", np.array([1, 41]), np.array([0]), device="cuda")
        after = store.stats()["gpu"]
        assert {k: after[k] for k in ("hits", "misses", "rows_admitted", "bytes_used")} == \
            {k: before[k] for k in ("hits", "misses", "rows_admitted", "bytes_used")}
        np.testing.assert_array_equal(store.lookup("t", np.array([0, 39]), np.arange(2)), values[[0, 39]])
        assert store.stats()["gpu"]["hits"] == before["hits"] + 2
