"""Contract every registered policy keeps, checked against an independent
replay of the simulator's per-request log; cachetools as an LRU/FIFO oracle."""

from __future__ import annotations

import cachetools
import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_policies import available_policies, make_policy, simulate
from cache_policies.simulate import HIT, INSERTED, INVALIDATED, REFUSED, dense_ids
from conftest_policies import zipf_keys

#: Policies that may evict while the cache is not full, and why.
EVICTS_BEFORE_FULL = {
    "twoq": "Am evicts its own LRU objects when over its share (libCacheSim)",
    "lirs": "libCacheSim's LIRS evicts while demoting LIR blocks on hits and admission",
    "wtinylfu": "SLRU probation overflow on a hit evicts (byte-sized objects only)",
}


def contract_policies():
    """Every registered policy with defaults, plus parameter variants and filters."""
    pols = [make_policy(name) for name in available_policies()]
    pols += [
        make_policy("clock", n_bit_counter=2),
        make_policy("wtinylfu", doorkeeper=True),
        make_policy("pinned", pinned_keys=[0, 3, 5]),
        make_policy("lru", admission="second_hit", admission_memory=4),
        make_policy("lru", admission="tinylfu"),  # shares the compiled filter class with second_hit
    ]
    return pols


POLICIES = contract_policies()
IDS = [f"{p.name}-{i}" for i, p in enumerate(POLICIES)]


def check_log(keys, sizes, capacity, result, policy):
    """Replay the log independently and assert the contract."""
    log = result.log
    resident: dict[int, int] = {}
    cursor = 0
    hits = byte_hits = byte_misses = 0
    for i, (key, size) in enumerate(zip(keys.tolist(), sizes.tolist())):
        outcome = log.outcome[i]
        evicted = log.evicted_keys[cursor : cursor + log.n_evicted[i]].tolist()
        cursor += log.n_evicted[i]
        if outcome == INVALIDATED:
            resident.pop(key, None)
            assert not evicted
            continue
        if outcome == HIT:
            assert key in resident, f"request {i}: hit on key {key} that is not cached"
            hits += 1
            byte_hits += size
        else:
            assert key not in resident, f"request {i}: miss on cached key {key}"
            byte_misses += size
        before = sum(resident.values())
        for gone in evicted:
            assert gone in resident, f"request {i}: evicted key {gone} that is not cached"
            del resident[gone]
        if evicted and policy.name not in EVICTS_BEFORE_FULL:
            assert outcome == INSERTED and before + size > capacity, f"request {i}: evicted before full"
        if outcome == INSERTED:
            resident[key] = size
        if size > capacity:
            assert outcome == REFUSED
        assert sum(resident.values()) <= capacity, f"request {i}: capacity exceeded"
    assert result.hits == hits
    assert result.misses == result.n_requests - hits
    assert (result.byte_hits, result.byte_misses) == (byte_hits, byte_misses)
    assert log.final_n_resident == len(resident)
    assert log.final_used == sum(resident.values())


@st.composite
def traces(draw):
    n_keys = draw(st.integers(1, 12))
    keys = np.array(draw(st.lists(st.integers(0, n_keys - 1), min_size=1, max_size=80)), dtype=np.int64)
    if draw(st.booleans()):
        sizes = np.ones(len(keys), dtype=np.int64)
    else:
        per_key = np.array(draw(st.lists(st.integers(1, 5), min_size=n_keys, max_size=n_keys)))
        sizes = per_key[keys]
    invalidate = np.array(draw(st.lists(st.booleans(), min_size=len(keys), max_size=len(keys))))
    invalidate &= draw(st.integers(0, 9)) == 0  # mostly no invalidations
    capacity = draw(st.integers(1, 14))
    return keys, sizes, invalidate, capacity


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces())
def test_contract_on_generated_traces(policy, trace):
    keys, sizes, invalidate, capacity = trace
    result = simulate(keys, policy, capacity, sizes=sizes, record=True, invalidate=invalidate)
    check_log(keys, sizes, capacity, result, policy)


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
def test_deterministic_replay_on_a_zipf_trace(policy):
    rng = np.random.default_rng(7)
    keys = rng.zipf(1.1, 3000) % 400
    sizes = 1 + keys % 7
    first = simulate(keys, policy, 150, sizes=sizes, record=True)
    second = simulate(keys, policy, 150, sizes=sizes, record=True)
    check_log(keys, sizes, 150, first, policy)
    assert first == second
    assert np.array_equal(first.log.outcome, second.log.outcome)
    assert np.array_equal(first.log.evicted_keys, second.log.evicted_keys)


@pytest.mark.parametrize(
    "name, cache_type", [("lru", cachetools.LRUCache), ("fifo", cachetools.FIFOCache)]
)
@settings(max_examples=60, deadline=None)
@given(keys=st.lists(st.integers(0, 20), min_size=1, max_size=200), capacity=st.integers(1, 12))
def test_lru_and_fifo_match_cachetools(name, cache_type, keys, capacity):
    oracle = cache_type(maxsize=capacity)
    expected = []
    for key in keys:
        if key in oracle:
            oracle[key]  # noqa: B018  (a lookup refreshes LRU order)
            expected.append(HIT)
        else:
            oracle[key] = True
            expected.append(INSERTED)
    result = simulate(np.array(keys), name, capacity, record=True)
    assert result.log.outcome.tolist() == expected


def test_pinned_keys_are_never_evicted():
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 1000, 5000)
    pinned = [1, 2, 3]
    result = simulate(keys, make_policy("pinned", pinned_keys=pinned), 20, record=True)
    assert not set(result.log.evicted_keys.tolist()) & set(pinned)
    first_seen = {k: i for i, k in reversed(list(enumerate(keys.tolist())))}
    later = [i for i, k in enumerate(keys.tolist()) if k in pinned and i != first_seen[k]]
    assert all(result.log.outcome[i] == HIT for i in later)


def test_second_hit_filter_refuses_one_hit_wonders_when_full():
    keys = np.array([1, 2, 3, 4, 3, 4, 5, 6, 5])
    result = simulate(keys, make_policy("lru", admission="second_hit"), 2, record=True)
    assert result.log.outcome.tolist() == [INSERTED, INSERTED, REFUSED, REFUSED, INSERTED, INSERTED,
                                           REFUSED, REFUSED, INSERTED]



@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.integers(-50, 50), max_size=300)
    | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50)
    | st.lists(st.sampled_from([-(2**63), 2**63 - 1, 0, 7]), max_size=50)
)
def test_dense_ids_number_keys_in_order_of_first_appearance(keys):
    """Both the direct-table path (keys spanning few values) and the hash path."""
    keys = np.array(keys, dtype=np.int64)
    first_seen = {}
    for k in keys.tolist():
        first_seen.setdefault(k, len(first_seen))
    ids, n_keys = dense_ids(keys)
    assert n_keys == len(first_seen)
    assert ids.tolist() == [first_seen[k] for k in keys.tolist()]


@numba.njit(cache=True)
def _drive_protocol(state, keys, ids, n_ids, capacity):
    slot_of = np.full(n_ids, -1, dtype=np.int64)
    id_in = np.full(capacity, -1, dtype=np.int64)
    free = np.arange(capacity)
    n_free = capacity
    misses = 0
    for i in range(keys.shape[0]):
        if slot_of[ids[i]] != -1:
            state.on_hit(slot_of[ids[i]])
            continue
        misses += 1
        if not state.admit(keys[i], 1):
            continue
        while state.used + 1 > state.capacity:
            slot = state.victim()
            slot_of[id_in[slot]] = -1
            free[n_free] = slot
            n_free += 1
        n_free -= 1
        slot = free[n_free]
        state.on_insert(slot, keys[i], 1)
        slot_of[ids[i]] = slot
        id_in[slot] = ids[i]
    return misses


def protocol_misses(policy, keys, capacity):
    """Misses of ``keys`` driven through the state's methods the way a live
    cache does: unit sizes, ``capacity`` slots reused for whichever key comes."""
    ids, n_ids = dense_ids(keys)
    return _drive_protocol(policy.new_state(capacity, capacity), keys, ids, n_ids, capacity)


@pytest.mark.parametrize("name", ["arc", "s3fifo"])
def test_live_protocol_with_reused_slots_matches_simulate(name):
    """``simulate`` keys ghosts by slot (each key has its own); a live cache
    reuses slots, so its states find ghosts by key (and grow their ghost
    table): both must take the same decisions."""
    keys = zipf_keys(0.9, 400, 4000, seed=1)
    policy = make_policy(name)
    for capacity in (7, 60):
        assert protocol_misses(policy, keys, capacity) == simulate(keys, policy, capacity).misses
