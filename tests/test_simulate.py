"""Registry, simulate() inputs and results, miss-ratio curves and sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest_policies import zipf_keys
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_policies import (
    Policy,
    SimResult,
    available_policies,
    lru_miss_ratio_curve,
    lru_stack_distances,
    make_policy,
    miss_ratio_curve,
    sampled_miss_ratio_curve,
    sampling_error,
    simulate,
    top_keys,
)


def test_registry_lists_every_policy():
    assert set(available_policies()) >= {
        "lru", "fifo", "clock", "lfu", "arc", "twoq", "s3fifo", "sieve", "lirs", "wtinylfu", "pinned", "belady",
    }


def test_unknown_policy_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown cache policy 'lruu'.*lru.*s3fifo"):
        make_policy("lruu")


def test_unknown_parameter_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['small_ratio'\].*small_size_ratio"):
        make_policy("s3fifo", small_ratio=0.2)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"small_size_ratio": "big"}, "must be a number"),
        ({"move_to_main_threshold": 1.5}, "must be an int"),
        ({"admission": "maybe"}, "admission must be one of"),
    ],
)
def test_bad_parameter_values(params, message):
    with pytest.raises(ValueError, match=message):
        make_policy("s3fifo", **params)


def test_out_of_range_parameters_fail_when_building():
    with pytest.raises(ValueError, match="small_size_ratio must be in"):
        make_policy("s3fifo", small_size_ratio=1.5).new_state(100, 10)
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        make_policy("lru").new_state(-1, 10)


def test_defaults_follow_libcachesim():
    assert make_policy("s3fifo").params == {
        "admission": "none",
        "admission_memory": 0,
        "small_size_ratio": 0.1,
        "ghost_size_ratio": 0.9,
        "move_to_main_threshold": 2,
    }
    assert make_policy("twoq").params["ain_size_ratio"] == 0.25
    assert make_policy("clock").params["n_bit_counter"] == 1
    assert make_policy("wtinylfu").params["window_size"] == 0.01


@pytest.mark.parametrize("name", available_policies())
def test_policy_json_round_trip(name):
    policy = make_policy(name)
    assert Policy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    pinned = make_policy("pinned", pinned_keys=np.array([3, 1]))
    assert Policy.from_dict(json.loads(json.dumps(pinned.to_dict()))).params["pinned_keys"] == [3, 1]


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="expects keys 'name' and 'params'"):
        Policy.from_dict({"name": "lru", "size": 3})


def test_simulate_counts_bytes_and_embeds_config():
    keys = [1, 2, 1, 3, 1]
    sizes = [10, 20, 10, 30, 10]
    result = simulate(keys, "lru", 40, sizes=sizes)
    assert (result.hits, result.misses, result.n_requests) == (2, 3, 5)
    assert (result.byte_hits, result.byte_misses) == (20, 60)
    assert result.miss_ratio == pytest.approx(0.6)
    assert result.byte_miss_ratio == pytest.approx(0.75)
    data = json.loads(result.to_json())
    assert data["config"]["policy"]["name"] == "lru"
    assert data["config"]["capacity"] == 40 and data["config"]["unit_sizes"] is False
    assert isinstance(result, SimResult)


def test_objects_larger_than_the_cache_are_misses_that_evict_nothing():
    result = simulate([1, 2, 1], "lru", 5, sizes=[3, 9, 3], record=True)
    assert result.hits == 1
    assert result.log.n_evicted.tolist() == [0, 0, 0]


def test_uint64_keys_and_empty_traces():
    big = np.array([2**64 - 1, 5, 2**64 - 1], dtype=np.uint64)
    assert simulate(big, "lru", 2).hits == 1
    empty = simulate(np.array([], dtype=np.int64), "lru", 2)
    assert (empty.n_requests, empty.miss_ratio) == (0, 0.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keys": [[1, 2]]}, "one-dimensional"),
        ({"keys": [1.5, 2.0]}, "must be integers"),
        ({"sizes": [1]}, "one entry per request"),
        ({"sizes": [0, 1]}, "sizes must be >= 1"),
    ],
)
def test_simulate_rejects_bad_input(kwargs, message):
    args = {"keys": [1, 2], "policy": "lru", "capacity": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        simulate(**args)


def test_top_keys_orders_by_count():
    assert top_keys([5, 1, 5, 2, 1, 5, 9], 2).tolist() == [5, 1]


def _brute_force_needed(keys, sizes):
    out, last = [], {}
    for i, k in enumerate(keys):
        if k not in last:
            out.append(-1)
        else:
            between = {keys[j]: sizes[j] for j in range(last[k] + 1, i) if keys[j] != k}
            out.append(sum(between.values()) + sizes[i])
        last[k] = i
    return out


@settings(max_examples=50, deadline=None)
@given(trace=st.lists(st.tuples(st.integers(0, 8), st.integers(1, 4)), min_size=1, max_size=60))
def test_stack_distances_match_brute_force(trace):
    key_size = {}
    keys = [k for k, _ in trace]
    sizes = [key_size.setdefault(k, s) for k, s in trace]
    assert lru_stack_distances(keys, sizes).tolist() == _brute_force_needed(keys, sizes)


@pytest.mark.parametrize("with_sizes", [False, True])
def test_lru_curve_in_one_pass_equals_simulation(with_sizes):
    keys = zipf_keys(0.9, 3000, 20000, 5)
    sizes = (1 + keys % 5) if with_sizes else None
    capacities = [5, 10, 100, 1000, 5000]  # every object fits (see lru_miss_ratio_curve)
    curve = lru_miss_ratio_curve(keys, capacities, sizes=sizes)
    for j, c in enumerate(capacities):
        sim = simulate(keys, "lru", c, sizes=sizes)
        assert curve.miss_ratios[0, j] == pytest.approx(sim.miss_ratio)
        assert curve.byte_miss_ratios[0, j] == pytest.approx(sim.byte_miss_ratio)


def test_grid_equals_single_simulations():
    keys = zipf_keys(1.0, 1000, 10000, 6)
    curve = miss_ratio_curve(keys, ["lru", make_policy("s3fifo")], [10, 100, 400], workers=2)
    assert curve.miss_ratios.shape == (2, 3)
    for i, name in enumerate(["lru", "s3fifo"]):
        for j, c in enumerate([10, 100, 400]):
            assert curve.miss_ratios[i, j] == simulate(keys, name, c).miss_ratio
    assert json.loads(curve.to_json())["capacities"] == [10, 100, 400]


def test_sampling_at_full_rate_is_exact():
    keys = zipf_keys(1.0, 1000, 10000, 8)
    exact = miss_ratio_curve(keys, ["lru"], [50, 500])
    sampled = sampled_miss_ratio_curve(keys, ["lru"], [50, 500], rate=1.0)
    assert np.array_equal(exact.miss_ratios, sampled.miss_ratios)


def test_sampling_error_is_reported_and_small_on_a_large_key_space():
    keys = zipf_keys(0.8, 50000, 200000, 9)
    report = sampling_error(keys, ["lru"], [2000, 10000], rate=0.1)
    assert report["sampled"]["config"]["method"] == "shards"
    assert 0 < report["sampled"]["config"]["n_sampled"] < len(keys)
    assert report["max_abs_error"] == max(max(row) for row in report["abs_error"])
    assert report["max_abs_error"] < 0.02
