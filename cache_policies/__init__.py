"""Cache eviction and admission policies, trace simulation and miss-ratio curves.

Policies are state machines over slot ids, each a set of ``numba.njit``
kernels over plain arrays (see ``drive``); the same compiled code drives
tierstore's live caches and the offline simulator, and numba caches it on
disk, so a new process loads it instead of compiling.

>>> from cache_policies import make_policy, simulate
>>> simulate([1, 2, 1, 3, 1], make_policy("lru"), capacity=2).hits
2
"""

from . import arc, belady, clock, fifo, lfu, lirs, lru, pinned, s3fifo, sieve, twoq, wtinylfu  # noqa: F401  (registers the policies)
from .base import Policy, available_policies, make_policy
from .mrc import (
    MissRatioCurve,
    lru_miss_ratio_curve,
    lru_stack_distances,
    miss_ratio_curve,
    sampled_miss_ratio_curve,
    sampling_error,
)
from .pinned import top_keys
from .simulate import ReplayLog, SimResult, simulate

__all__ = [
    "MissRatioCurve",
    "Policy",
    "ReplayLog",
    "SimResult",
    "available_policies",
    "lru_miss_ratio_curve",
    "lru_stack_distances",
    "make_policy",
    "miss_ratio_curve",
    "sampled_miss_ratio_curve",
    "sampling_error",
    "simulate",
    "top_keys",
]
