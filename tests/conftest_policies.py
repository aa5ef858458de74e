"""Shared helpers for the cache_policies tests: fixture locations, trace files,
seeded Zipf traces and the libcachesim reference (a test-only dependency)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cache_policies.simulate import dense_ids, next_access_times

ORACLE_GENERAL = np.dtype([("t", "<u4"), ("id", "<u8"), ("sz", "<u4"), ("nxt", "<i8")])
CLOUDPHYSICS = "cloudPhysicsIO.oracleGeneral.bin"


def shared_libcachesim_dir() -> Path:
    """``$TIERSTORE_SHARED/libcachesim`` if set, else ``<repo>/../shared/libcachesim``."""
    root = os.environ.get("TIERSTORE_SHARED")
    if root:
        return Path(root) / "libcachesim"
    return Path(__file__).resolve().parents[1].parent / "shared" / "libcachesim"


def zipf_keys(alpha: float, n_keys: int, n_requests: int, seed: int) -> np.ndarray:
    """Seeded Zipf(``alpha``) requests over ``n_keys`` keys, spread over int64."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_keys + 1) ** alpha
    ranks = rng.choice(n_keys, size=n_requests, p=p / p.sum())
    return ranks.astype(np.int64) * 7919 + 13


def write_oracle_general(path: Path, keys: np.ndarray, sizes: np.ndarray | None = None) -> Path:
    """Write ``keys`` as an oracleGeneral trace (1-based next-access times, -1 for none)."""
    ids, n_keys = dense_ids(keys)
    nxt = next_access_times(ids, n_keys)
    rec = np.zeros(len(keys), dtype=ORACLE_GENERAL)
    rec["t"] = np.arange(len(keys))
    rec["id"] = keys
    rec["sz"] = 1 if sizes is None else sizes
    rec["nxt"] = np.where(nxt >= 0, nxt + 1, -1)
    rec.tofile(path)
    return path


def libcachesim_misses(path: Path, policy: str, capacity: int, n_requests: int) -> int:
    """libcachesim's miss count for our policy name on a unit-size trace file."""
    import libcachesim as lcs

    classes = {
        "lru": lcs.LRU,
        "fifo": lcs.FIFO,
        "clock": lcs.Clock,
        "lfu": lcs.LFU,
        "arc": lcs.ARC,
        "twoq": lcs.TwoQ,
        "s3fifo": lcs.S3FIFO,
        "sieve": lcs.Sieve,
        "belady": lcs.Belady,
        "lirs": lcs.LIRS,
        "wtinylfu": lcs.WTinyLFU,
    }
    reader = lcs.TraceReader(
        str(path), lcs.TraceType.ORACLE_GENERAL_TRACE, lcs.ReaderInitParam(ignore_obj_size=True)
    )
    miss_ratio, _ = classes[policy](capacity).process_trace(reader)
    return round(miss_ratio * n_requests)
