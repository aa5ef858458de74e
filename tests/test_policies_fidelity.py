"""Fidelity to libCacheSim: exact miss counts on its own regression trace and
against the libcachesim package on generated traces."""

from __future__ import annotations

import numpy as np
import pytest
from conftest_policies import (
    CLOUDPHYSICS,
    ORACLE_GENERAL,
    libcachesim_misses,
    shared_libcachesim_dir,
    write_oracle_general,
    zipf_keys,
)

from cache_policies import make_policy, simulate

MIB = 1 << 20
CAPACITIES_MIB = (128, 256, 384, 512, 640, 768, 896, 1024)

#: libCacheSim's test/test_evictionAlgo.c, as listed in SEMANTICS.md (byte-sized objects).
EXPECTED_CLOUDPHYSICS = {
    "lru": [93374, 89783, 83572, 81722, 72494, 72104, 71972, 71704],
    "fifo": [93403, 89386, 84387, 84025, 72498, 72228, 72182, 72140],
    "clock": [93313, 89775, 83411, 81328, 74815, 72283, 71927, 64456],
    "lfu": [91699, 86720, 78578, 76707, 69945, 66221, 64445, 64376],
    "arc": [90252, 85861, 78168, 74297, 67381, 65685, 64439, 64772],
    "sieve": [91699, 86720, 78578, 76707, 69945, 66221, 64445, 64376],
    "belady": [79256, 70724, 65481, 61594, 59645, 57599, 50873, 48974],
    "s3fifo": [90117, 80915, 75060, 72191, 69815, 65542, 60799, 56045],
    "lirs": [89819, 79237, 73143, 70363, 68405, 64494, 58640, 53924],
}


@pytest.fixture(scope="module")
def cloudphysics():
    path = shared_libcachesim_dir() / CLOUDPHYSICS
    if not path.exists():
        pytest.skip(f"libCacheSim sample trace not found at {path} (set TIERSTORE_SHARED to the shared folder)")
    return np.fromfile(path, dtype=ORACLE_GENERAL)


@pytest.mark.parametrize("policy", sorted(EXPECTED_CLOUDPHYSICS))
def test_cloudphysics_byte_sized_miss_counts(cloudphysics, policy):
    """Sieve's expected counts equal LFU's in libCacheSim's own test: not a bug."""
    assert len(cloudphysics) == 113872
    got = [
        simulate(cloudphysics["id"], policy, c * MIB, sizes=cloudphysics["sz"]).misses for c in CAPACITIES_MIB
    ]
    assert got == EXPECTED_CLOUDPHYSICS[policy]


def test_belady_uses_the_trace_next_access_times(cloudphysics):
    nxt = cloudphysics["nxt"]
    given = np.where(nxt > 0, nxt - 1, -1)
    result = simulate(cloudphysics["id"], "belady", 128 * MIB, sizes=cloudphysics["sz"], next_access=given)
    assert result.misses == EXPECTED_CLOUDPHYSICS["belady"][0]


EXACT_POLICIES = ("lru", "fifo", "clock", "lfu", "arc", "twoq", "s3fifo", "sieve", "belady", "lirs")
TRACES = {  # name: (alpha, n_keys, n_requests, seed)
    "zipf0.9": (0.9, 2000, 20000, 1),
    "zipf1.2": (1.2, 5000, 20000, 2),
    "zipf0.6": (0.6, 500, 10000, 3),
}
UNIT_CAPACITIES = (20, 100, 457)


@pytest.fixture(scope="module")
def unit_traces(tmp_path_factory):
    pytest.importorskip("libcachesim")
    out = {}
    for name, (alpha, n_keys, n_requests, seed) in TRACES.items():
        keys = zipf_keys(alpha, n_keys, n_requests, seed)
        out[name] = (keys, write_oracle_general(tmp_path_factory.mktemp(name) / "trace.bin", keys))
    return out


@pytest.mark.parametrize("policy", EXACT_POLICIES)
def test_unit_size_miss_counts_equal_libcachesim(unit_traces, policy):
    # LIRS: libCacheSim keeps counting an object its own hit pushed out (see cache_policies.lirs)
    pol = make_policy("lirs", phantom_hits=True) if policy == "lirs" else make_policy(policy)
    for keys, path in unit_traces.values():
        for capacity in UNIT_CAPACITIES:
            ours = simulate(keys, pol, capacity).misses
            assert ours == libcachesim_misses(path, policy, capacity, len(keys)), (path, capacity)


def test_wtinylfu_within_one_point_of_libcachesim(unit_traces):
    for name in ("zipf0.9", "zipf1.2"):
        keys, path = unit_traces[name]
        for capacity in (100, 457, 1000):
            ours = simulate(keys, "wtinylfu", capacity).misses / len(keys)
            theirs = libcachesim_misses(path, "wtinylfu", capacity, len(keys)) / len(keys)
            assert abs(ours - theirs) <= 0.01, (name, capacity, ours, theirs)


def test_wtinylfu_caches_nothing_when_the_window_rounds_to_zero():
    keys = zipf_keys(1.0, 100, 2000, 4)
    assert simulate(keys, "wtinylfu", 49).hits == 0
