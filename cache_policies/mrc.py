"""Miss-ratio curves: policy x capacity grids, LRU in one pass, and sampling.

- ``miss_ratio_curve(keys, policies, capacities)`` simulates every pair; the
  replay loop releases the GIL, so a thread pool keeps ``workers`` cores busy
  and each policy's replay is compiled (or loaded from the disk cache) first.
- ``lru_miss_ratio_curve(keys, capacities)`` gets LRU at every size from one
  pass: an object is still cached at its next request iff its own size plus
  the bytes of the distinct keys requested since fit in the cache (the
  stack-distance property), computed with a Fenwick tree in O(n log n).
- ``sampled_miss_ratio_curve(...)`` is SHARDS fixed-rate spatial sampling
  (Waldspurger et al., FAST'15): keep the requests whose key hashes below
  ``rate``, simulate them with ``rate * capacity``, and divide the sampled
  misses by the *expected* sample size ``rate * n`` (SHARDS-adj: a hot key that
  happens to be left out would mostly have hit); ``sampling_error`` compares
  it with the exact curve.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numba
import numpy as np

from .base import Policy, as_policy
from .simulate import _as_keys, _as_sizes, dense_ids, simulate

_SAMPLE_SPACE = 1 << 24


@dataclass(frozen=True)
class MissRatioCurve:
    """Miss ratios of several policies over a list of capacities.

    Attributes
    ----------
    policies : list of dict
        ``Policy.to_dict()`` of each row.
    capacities : list of int
        Cache sizes (bytes, or objects with unit sizes), the columns.
    miss_ratios, byte_miss_ratios : ndarray, shape (n_policies, n_capacities)
    config : dict
        How the curve was computed (trace length, sampling rate, ...).
    """

    policies: list[dict[str, Any]]
    capacities: list[int]
    miss_ratios: np.ndarray
    byte_miss_ratios: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policies": self.policies,
            "capacities": self.capacities,
            "miss_ratios": self.miss_ratios.tolist(),
            "byte_miss_ratios": self.byte_miss_ratios.tolist(),
            "config": self.config,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _capacity_list(capacities) -> list[int]:
    caps = [int(c) for c in np.atleast_1d(np.asarray(capacities))]
    if not caps or min(caps) < 0:
        raise ValueError(f"capacities must be a non-empty list of sizes >= 0, got {capacities!r}")
    return caps


def miss_ratio_curve(
    keys, policies: Sequence[Policy | str], capacities, sizes=None, workers: int = 2
) -> MissRatioCurve:
    """Simulate every (policy, capacity) pair on ``workers`` threads.

    Parameters
    ----------
    keys : array of int
    policies : sequence of Policy or str
    capacities : sequence of int
    sizes : array of int, optional
        Per-request object sizes (capacities are then bytes).
    workers : int
        Threads running simulations concurrently (the replay releases the GIL).
    """
    pols = [as_policy(p) for p in policies]
    if not pols:
        raise ValueError("policies must not be empty")
    caps = _capacity_list(capacities)
    keys = _as_keys(keys)
    if sizes is not None:
        sizes = _as_sizes(sizes, keys.shape[0])
    for pol in pols:  # compile each state type once, before the threads start
        simulate(keys[:1], pol, 1, sizes=None if sizes is None else sizes[:1])
    jobs = [(i, j) for i in range(len(pols)) for j in range(len(caps))]
    miss = np.zeros((len(pols), len(caps)))
    byte_miss = np.zeros((len(pols), len(caps)))

    def run(job):
        i, j = job
        return job, simulate(keys, pols[i], caps[j], sizes=sizes)

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        for (i, j), result in pool.map(run, jobs):
            miss[i, j] = result.miss_ratio
            byte_miss[i, j] = result.byte_miss_ratio
    return MissRatioCurve(
        policies=[p.to_dict() for p in pols],
        capacities=caps,
        miss_ratios=miss,
        byte_miss_ratios=byte_miss,
        config={"n_requests": int(keys.shape[0]), "method": "simulate", "workers": int(workers)},
    )


@numba.njit(cache=True)
def _reuse_bytes(ids, sizes, n_keys):
    """Bytes of distinct keys requested since each request's previous request
    to the same key (``-1`` for a first request)."""
    n = ids.shape[0]
    tree = np.zeros(n + 1, dtype=np.int64)
    last = np.full(n_keys, -1, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    total = 0
    for i in range(n):
        k = ids[i]
        p = last[k]
        if p < 0:
            out[i] = -1
        else:
            # bytes in positions (p, i) = total - prefix(p)
            prefix = 0
            j = p + 1
            while j > 0:
                prefix += tree[j]
                j -= j & (-j)
            out[i] = total - prefix
            j = p + 1
            w = -sizes[p]
            while j <= n:
                tree[j] += w
                j += j & (-j)
            total -= sizes[p]
        j = i + 1
        while j <= n:
            tree[j] += sizes[i]
            j += j & (-j)
        total += sizes[i]
        last[k] = i
    return out


def lru_stack_distances(keys, sizes=None) -> np.ndarray:
    """Per request, the LRU cache size needed for it to hit (``-1``: first request).

    With unit sizes this is the classic stack distance plus one.
    """
    keys = _as_keys(keys)
    sizes = _as_sizes(sizes, keys.shape[0])
    ids, n_keys = dense_ids(keys)
    reuse = _reuse_bytes(ids, sizes, max(n_keys, 1))
    return np.where(reuse >= 0, reuse + sizes, -1)


def lru_miss_ratio_curve(keys, capacities, sizes=None) -> MissRatioCurve:
    """LRU's miss ratio at every capacity from one pass over the trace.

    Objects larger than the cache are counted as passing through it (libCacheSim
    refuses them without evicting), which only matters when such objects exist.
    """
    keys = _as_keys(keys)
    sizes = _as_sizes(sizes, keys.shape[0])
    caps = _capacity_list(capacities)
    needed = lru_stack_distances(keys, sizes)
    warm = needed >= 0
    order = np.argsort(needed[warm], kind="stable")
    needed_sorted = needed[warm][order]
    warm_bytes = np.cumsum(sizes[warm][order])
    n = keys.shape[0]
    total_bytes = int(sizes.sum())
    miss = np.zeros((1, len(caps)))
    byte_miss = np.zeros((1, len(caps)))
    for j, c in enumerate(caps):
        n_hit = int(np.searchsorted(needed_sorted, c, side="right"))
        hit_bytes = int(warm_bytes[n_hit - 1]) if n_hit else 0
        miss[0, j] = (n - n_hit) / n if n else 0.0
        byte_miss[0, j] = (total_bytes - hit_bytes) / total_bytes if total_bytes else 0.0
    return MissRatioCurve(
        policies=[as_policy("lru").to_dict()],
        capacities=caps,
        miss_ratios=miss,
        byte_miss_ratios=byte_miss,
        config={"n_requests": int(n), "method": "stack_distance"},
    )


@numba.njit(cache=True)
def _sample_mask(keys, threshold, seed):
    out = np.empty(keys.shape[0], dtype=np.bool_)
    for i in range(keys.shape[0]):
        z = np.uint64(keys[i]) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        out[i] = np.int64(z % np.uint64(16777216)) < threshold
    return out


def sample_keys(keys, rate: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of the requests kept by spatial sampling at ``rate``
    (every request of a key is kept or dropped together)."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"sampling rate must be in (0, 1], got {rate}")
    return _sample_mask(_as_keys(keys), int(round(rate * _SAMPLE_SPACE)), int(seed))


def sampled_miss_ratio_curve(
    keys, policies: Sequence[Policy | str], capacities, rate: float = 0.01, sizes=None, seed: int = 0, workers: int = 2
) -> MissRatioCurve:
    """SHARDS-adj estimate: simulate the spatially sampled trace at ``rate * capacity``.

    Capacities that scale below one object are simulated at size 1 (bytes: the
    smallest sampled object), so very small caches are estimated coarsely.
    """
    keys = _as_keys(keys)
    sizes_given = sizes
    sizes = _as_sizes(sizes, keys.shape[0])
    caps = _capacity_list(capacities)
    mask = sample_keys(keys, rate, seed)
    if not mask.any():
        raise ValueError(f"sampling rate {rate} kept no request; use a larger rate or a longer trace")
    sampled_sizes = sizes[mask]
    floor = int(sampled_sizes.min())
    scaled = [max(floor, int(round(c * rate))) for c in caps]
    curve = miss_ratio_curve(
        keys[mask], policies, scaled, sizes=None if sizes_given is None else sampled_sizes, workers=workers
    )
    n_sampled = int(mask.sum())
    request_scale = n_sampled / (rate * keys.shape[0])
    byte_scale = int(sampled_sizes.sum()) / (rate * int(sizes.sum()))
    config = {
        "n_requests": int(keys.shape[0]),
        "n_sampled": n_sampled,
        "method": "shards",
        "rate": float(rate),
        "seed": int(seed),
        "scaled_capacities": scaled,
        "workers": int(workers),
    }
    miss = np.clip(curve.miss_ratios * request_scale, 0.0, 1.0)
    byte_miss = np.clip(curve.byte_miss_ratios * byte_scale, 0.0, 1.0)
    return MissRatioCurve(curve.policies, caps, miss, byte_miss, config)


def sampling_error(
    keys, policies: Sequence[Policy | str], capacities, rate: float = 0.01, sizes=None, seed: int = 0, workers: int = 2
) -> dict[str, Any]:
    """Compare the SHARDS estimate with the exact curve.

    Returns
    -------
    dict
        ``exact`` and ``sampled`` curves (as dicts), ``abs_error`` per policy and
        capacity, and its ``max_abs_error`` and ``mean_abs_error``.
    """
    exact = miss_ratio_curve(keys, policies, capacities, sizes=sizes, workers=workers)
    sampled = sampled_miss_ratio_curve(keys, policies, capacities, rate=rate, sizes=sizes, seed=seed, workers=workers)
    err = np.abs(exact.miss_ratios - sampled.miss_ratios)
    return {
        "exact": exact.to_dict(),
        "sampled": sampled.to_dict(),
        "abs_error": err.tolist(),
        "max_abs_error": float(err.max()),
        "mean_abs_error": float(err.mean()),
    }
