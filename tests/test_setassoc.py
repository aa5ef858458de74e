"""The set-associative cache: its kernels against a plain Python model, its simulation against the live tier."""

from __future__ import annotations

import json
import threading

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import pool

import tierstore
from cache_policies.setassoc import (EMPTY, SetAssociative, SetAssocState, batch_distinct, geometry, is_setassoc,
                                     parse, set_of, simulate_setassoc)
from tierstore import TableConfig

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class ModelCache:
    """The set-associative rules written plainly, one key at a time (no sketch: ``admission="none"``);
    a hit adds the key's occurrences in the batch to its way's counter."""

    def __init__(self, config: SetAssociative, slots: int, age_per_way: int):
        self.rule = config.rule
        self.n_sets, self.ways = geometry(slots, config.ways)
        self.sets = [[None] * self.ways for _ in range(self.n_sets)]  # per way: [key, tick, count]
        self.inserts = [0] * self.n_sets
        self.age_every = age_per_way * self.ways
        self.tick = 0

    def serve(self, keys, occurrences):
        self.tick += 1
        if not self.n_sets:
            return np.zeros(len(keys), dtype=bool)
        sets = set_of(np.asarray(keys, dtype=np.int64), self.n_sets)
        hit = []
        for key, s, occurs in zip(keys, sets, occurrences):
            way = next((w for w, e in enumerate(self.sets[s]) if e is not None and e[0] == key), None)
            hit.append(way is not None)
            if way is not None:
                entry = self.sets[s][way]
                entry[1] = self.tick
                entry[2] = min(entry[2] + occurs, 255)
        for key, s, was_hit in zip(keys, sets, hit):
            if was_hit:
                continue
            ways = self.sets[s]
            empty = [w for w, e in enumerate(ways) if e is None]
            if empty:
                way = empty[0]
            else:
                untouched = [w for w, e in enumerate(ways) if e[1] != self.tick]
                if not untouched:
                    continue
                if self.rule == "lru":
                    way = min(untouched, key=lambda w: (ways[w][1], w))
                else:
                    way = min(untouched, key=lambda w: (ways[w][2], ways[w][1], w))
            ways[way] = [key, self.tick, 1]
            if self.rule == "lfu":
                self.inserts[s] += 1
                if self.inserts[s] >= self.age_every:
                    self.inserts[s] = 0
                    for e in ways:
                        if e is not None:
                            e[2] >>= 1
        return np.array(hit, dtype=bool)

    def contents(self):
        return sorted(e[0] for ways in self.sets for e in ways if e is not None)


def batches_of(draw, n_keys, n_batches):
    return [np.array(draw(st.lists(st.integers(0, n_keys - 1), min_size=0, max_size=40)), dtype=np.int64)
            for _ in range(n_batches)]


@SETTINGS
@given(rule=st.sampled_from(["lru", "lfu"]), ways=st.sampled_from([1, 2, 3, 4, 8]), slots=st.integers(0, 40),
       data=st.data())
def test_kernels_decide_as_the_plain_model(rule, ways, slots, data):
    from cache_policies.setassoc import AGE_PER_WAY

    config = SetAssociative(rule, ways, "none")
    n_keys = data.draw(st.integers(1, 80))
    state = SetAssocState(config, slots, data.draw(st.sampled_from([None, n_keys])))  # int64 or int32 tags
    model = ModelCache(config, slots, AGE_PER_WAY)
    for batch in batches_of(data.draw, n_keys, data.draw(st.integers(1, 12))):
        uniq, occurrences = batch_distinct(batch)
        hit_slots, slots_after = state.serve(uniq, occurrences=occurrences)
        np.testing.assert_array_equal(hit_slots >= 0, model.serve(list(uniq), list(occurrences)))
        found = slots_after >= 0
        assert np.all(state.keys()[slots_after[found]] == uniq[found])
        assert np.all(state.stamps.reshape(-1)[slots_after[found]] == state.tick)
        held = state.keys()[state.keys() != EMPTY]
        assert sorted(held.tolist()) == model.contents()
        assert held.size == np.unique(held).size == state.occupied <= state.slots


@SETTINGS
@given(config=st.builds(SetAssociative, st.sampled_from(["lru", "lfu"]), st.sampled_from([1, 2, 4, 16]),
                        st.sampled_from(["none", "tinylfu"])),
       slots=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_outcome_does_not_depend_on_the_thread_count(config, slots, seed):
    rng = np.random.default_rng(seed)
    batches = [batch_distinct((rng.zipf(1.2, 200) - 1) % 1000)[0] for _ in range(8)]
    runs = []
    before = numba.get_num_threads()
    for threads in (1, before):
        numba.set_num_threads(threads)
        try:
            state = SetAssocState(config, slots)
            runs.append([state.serve(b) for b in batches] + [(state.record.copy(),)])
        finally:
            numba.set_num_threads(before)
    for one, other in zip(*runs):
        for a, b in zip(one, other):
            np.testing.assert_array_equal(a, b)


def test_ways_touched_by_a_batch_are_never_victims():
    state = SetAssocState(SetAssociative("lru", 4, "none"), 4)  # one set of four ways
    first, _ = state.serve(np.arange(4))
    assert np.all(first < 0) and state.occupied == 4
    hit_slots, slots = state.serve(np.array([0, 1, 2, 3, 10, 11]))
    assert np.all(hit_slots[:4] >= 0)
    np.testing.assert_array_equal(slots[4:], [-1, -1])  # every way was touched: nothing admitted
    _, slots = state.serve(np.array([2, 20]))
    assert slots[1] == hit_slots[0]  # the least recently touched untouched way (key 0's) goes


def test_removed_keys_free_their_slots():
    state = SetAssocState(SetAssociative("lfu", 8, "none"), 64)
    keys = np.arange(50, dtype=np.int64)
    _, slots = state.serve(keys)
    freed = state.remove(np.array([3, 4, 1000]))
    np.testing.assert_array_equal(freed[:2], slots[[3, 4]])
    assert freed[2] == -1 and state.occupied == np.count_nonzero(slots >= 0) - 2
    hit_slots, _ = state.serve(np.array([3, 5]))
    assert hit_slots[0] < 0 and (hit_slots[1] >= 0) == (slots[5] >= 0)


def test_names_and_configs_round_trip():
    config = SetAssociative("lru", 32, "none")
    assert SetAssociative.from_json(config.to_json()) == config
    assert parse("setassoc-lru:ways=32,admission=none") == config
    assert parse("setassoc-lfu") == SetAssociative("lfu", 16, "tinylfu")
    assert parse("setassoc") == SetAssociative()
    assert parse(config) is config
    assert is_setassoc("setassoc-lru") and is_setassoc(config) and not is_setassoc("lru")
    for bad in ("setassoc-fifo", "setassoc-lru:ways=0", "setassoc-lru:ways=x", "setassoc-lru:size=3",
                "setassoc:admission=bloom"):
        with pytest.raises(ValueError):
            parse(bad)
    with pytest.raises(ValueError):
        parse("lru")


def make_store(path, config, values):
    store = tierstore.create(path, [config])
    store.load(config.name, values, progress=False)
    store.close()
    return path


CACHES = ["setassoc-lru:ways=4,admission=none", "setassoc-lfu:ways=8,admission=none", "setassoc-lru:ways=2",
          "setassoc"]


@pytest.mark.parametrize("cache", CACHES)
def test_live_tier_misses_what_simulation_predicts(tmp_path, cache):
    """Two tables share one tier: the simulated stream is each (batch, table)'s rows under global keys."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((400, 8)).astype(np.float32)
    b = rng.standard_normal((300, 8)).astype(np.float32)
    store = tierstore.create(tmp_path / "s", [TableConfig("a", 400, 8, rows_per_page=5), TableConfig("b", 300, 8)])
    store.load("a", a, progress=False)
    store.load("b", b, progress=False)
    store.close()
    budget = 8 * 4 * 150
    keys, ends = [], []
    with tierstore.open(tmp_path / "s", dram_cache_bytes=budget, policy=cache) as store:
        for _ in range(40):
            ia, ib = (rng.zipf(1.2, 120) - 1) % 400, (rng.zipf(1.1, 100) - 1) % 300
            oa, ob = np.arange(0, 121, 6), np.arange(0, 101, 5)
            batch = tierstore.SparseBatch.from_tables({"a": (ia, oa), "b": (ib, ob)})
            out = store.lookup_batch(batch, mode="sum")
            views = store.table_views(batch.keys, out)
            np.testing.assert_allclose(views["a"], pool(a, ia, oa), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(views["b"], pool(b, ib, ob), rtol=1e-5, atol=1e-5)
            for part in (ia, ib + 400):  # the tier serves each table of a batch on its own
                keys.append(part)
                ends.append(sum(k.size for k in keys))
        stats = store.stats()
    simulated = simulate_setassoc(np.concatenate(keys), ends, cache, budget // (8 * 4))
    assert stats["dram"]["hits"] > 0
    assert (stats["dram"]["hits"], stats["dram"]["misses"]) == (simulated.hits, simulated.misses)
    assert stats["ssd"]["rows_decoded"] == simulated.distinct_misses
    assert stats["dram"]["bytes_used"] <= stats["dram"]["budget_bytes"]
    assert json.loads(json.dumps(simulated.to_dict()))["config"]["cache"] == parse(cache).to_dict()


def test_default_cache_is_set_associative_and_exact_names_stay_exact(tmp_path):
    from tierstore.dram import DramTier
    from tierstore.mirror import MirrorTier
    from tierstore.setassoc import SetAssocTier

    values = np.ones((100, 4), dtype=np.float32)
    path = make_store(tmp_path / "s", TableConfig("t", 100, 4), values)
    with tierstore.open(path, dram_cache_bytes=400) as store:
        assert isinstance(store._tier_of["t"], SetAssocTier)
        assert store._tier_of["t"].cache == SetAssociative()
    with tierstore.open(path, dram_cache_bytes=400, policy="lru") as store:
        assert isinstance(store._tier_of["t"], DramTier)
    with tierstore.open(path, dram_cache_bytes=1600) as store:
        assert isinstance(store._tier_of["t"], MirrorTier)
        store.warm("t")
        assert store._tier_of["t"].fully_resident("t")
        assert store.stats()["dram"]["bytes_used"] == 1600
    with pytest.raises(ValueError, match="rule"):
        tierstore.open(path, dram_cache_bytes=400, policy="setassoc-mru")


def test_failed_read_leaves_no_row_admitted(tmp_path):
    """A corrupt page raises, and the rows admitted for that read are dropped again (never served as garbage)."""
    import lmdb

    values = np.arange(40 * 4, dtype=np.float32).reshape(40, 4)
    path = make_store(tmp_path / "s", TableConfig("t", 40, 4, rows_per_page=4), values)
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True) as txn:
        name = next(bytes(k) for k, _ in txn.cursor() if bytes(k).startswith(b"pages:t:"))
        db = env.open_db(name, txn=txn)
        key = np.array([2], dtype=">u8").tobytes()
        page = bytearray(txn.get(key, db=db))
        page[-5] ^= 0xFF
        txn.put(key, bytes(page), db=db)
    env.close()
    with tierstore.open(path, dram_cache_bytes=16 * 20, policy="setassoc-lru:ways=4") as store:
        with pytest.raises(tierstore.CorruptPageError):
            store.lookup("t", np.array([0, 9, 30]), np.array([0]))
        assert store._tier_of["t"].state.occupied == 0
        np.testing.assert_array_equal(store.get_rows("t", np.array([0, 30])), values[[0, 30]])


def test_concurrent_lookups_stay_correct(tmp_path):
    rng = np.random.default_rng(9)
    values = rng.standard_normal((2000, 16)).astype(np.float32)
    path = make_store(tmp_path / "s", TableConfig("t", 2000, 16), values)
    errors = []
    with tierstore.open(path, dram_cache_bytes=16 * 4 * 200) as store:

        def serve(seed):
            local = np.random.default_rng(seed)
            try:
                for _ in range(30):
                    indices = (local.zipf(1.1, 300) - 1) % 2000
                    offsets = np.arange(0, 300, 10)
                    got = store.lookup("t", indices, offsets)
                    np.testing.assert_allclose(got, pool(values, indices, np.append(offsets, 300)), rtol=1e-5,
                                               atol=1e-5)
            except Exception as err:  # reported below, in the test's thread
                errors.append(err)

        threads = [threading.Thread(target=serve, args=(seed,)) for seed in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.stats()["batches"] == 120
    assert not errors, errors[0]


@pytest.mark.parametrize("dtype, stored", [("int8", 72), ("float16", 128), ("float32", 256)])
def test_rows_are_cached_at_their_stored_width(tmp_path, dtype, stored):
    """A budget means bytes: a 64-dim int8 row costs its 72 stored bytes, so warm() of 200k int8 rows
    fits in 200k x 80 x 1.1 bytes; lookups from the quantized cache equal the dequantized rows."""
    from reference import stored_values

    rows = 200_000 if dtype == "int8" else 20_000
    config = TableConfig("t", rows, 64, dtype)
    assert config.cached_row_bytes == stored <= 1.25 * config.row_bytes
    values = np.random.default_rng(4).standard_normal((rows, 64)).astype(np.float32)
    path = make_store(tmp_path / "s", config, values)
    budget = int(rows * 80 * 1.1) if dtype == "int8" else rows * stored
    expected = stored_values(values, dtype)
    with tierstore.open(path, dram_cache_bytes=budget) as store:
        store.warm("t")
        assert store._tier_of["t"].fully_resident("t")
        assert store.stats()["dram"]["bytes_used"] == rows * stored <= budget
        indices = np.random.default_rng(5).integers(0, rows, 4000)
        offsets = np.arange(0, 4000, 8)
        got = store.lookup("t", indices, offsets, mode="mean")
        np.testing.assert_allclose(got, pool(expected, indices, np.append(offsets, 4000), mode="mean"),
                                   rtol=1e-5, atol=1e-5)
    with tierstore.open(path, dram_cache_bytes=rows * stored // 10, policy="setassoc-lfu:ways=8") as store:
        for _ in range(3):
            got = store.lookup("t", indices, offsets)
            np.testing.assert_allclose(got, pool(expected, indices, np.append(offsets, 4000)), rtol=1e-5, atol=1e-4)
        assert store.stats()["dram"]["hits"] > 0
        assert store.stats()["dram"]["bytes_used"] <= rows * stored // 10


def test_simulate_replays_set_associative_caches():
    from cache_policies import simulate

    rng = np.random.default_rng(2)
    keys = (rng.zipf(1.2, 3000) - 1) % 500
    ends = np.arange(100, 3001, 100)
    direct = simulate_setassoc(keys, ends, "setassoc-lfu:ways=4", 64)
    through = simulate(keys, "setassoc-lfu:ways=4", 64, batch_ends=ends)
    assert (through.hits, through.misses) == (direct.hits, direct.misses)
    one_by_one = simulate(keys, SetAssociative("lru", 4, "none"), 64)
    assert one_by_one.n_requests == keys.size and one_by_one.hits > 0
    with pytest.raises(ValueError, match="set-associative"):
        simulate(keys, "lru", 64, batch_ends=ends)
