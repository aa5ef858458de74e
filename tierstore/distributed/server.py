"""The body of a shard's Ray actor: one shard store, opened with its own tiers, served by method calls.

Nothing here imports Ray; :mod:`tierstore.distributed.sharded` wraps the class with
``ray.remote``.  A process that replaces a killed one clears the reader slot the
dead process left in the LMDB lock file (``Environment.reader_check``).
"""

from __future__ import annotations

import os
import socket
import time

import numba
import numpy as np

import tierstore
from tierstore.config import TableConfig


class ShardServer:
    """Serves one shard store.

    Parameters
    ----------
    path : str
        The shard store's directory.
    shard : int
        Its index in the plan.
    tables : list of dict
        The tables the plan says it holds (``TableConfig.to_dict()``); the store must match.
    dram_cache_bytes : int or dict
        As for :func:`tierstore.open`.
    policy : str
        DRAM eviction policy.
    io : {"mmap", "pread"}
    threads : int or None
        Numba threads for this shard's kernels (None: Numba's default).
    """

    def __init__(self, path: str, shard: int, tables: list[dict], dram_cache_bytes=0, policy: str = "lru",
                 io: str = "mmap", threads: int | None = None):
        if threads:
            numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
        self.shard = shard
        self.store = tierstore.open(path, dram_cache_bytes=dram_cache_bytes, policy=policy, readonly=False,
                                    tables=[TableConfig.from_dict(t) for t in tables], io=io)
        self.stale_readers_cleared = self.store.env.reader_check()

    def lookup(self, request) -> tuple[np.ndarray, float]:
        """Pool a :class:`~tierstore.distributed.route.ShardRequest`.

        Returns the pooled ``[B, sum(dims)]`` and the seconds the store took.
        """
        started = time.perf_counter()
        pooled = self.store.lookup_batch(request.batch(), mode=dict(zip(request.keys, request.modes)))
        return pooled, time.perf_counter() - started

    def get_rows(self, table: str, ids: np.ndarray) -> np.ndarray:
        return self.store.get_rows(table, ids)

    def update_rows(self, table: str, ids: np.ndarray, values: np.ndarray) -> int:
        """Replace rows in one LMDB transaction; returns the number of rows written."""
        self.store.update_rows(table, ids, values)
        return int(ids.size)

    def warm(self) -> None:
        """Read every row of every table into DRAM (the budget must hold them)."""
        for table in self.store.tables:
            self.store.warm(table)

    def stats(self) -> dict:
        return self.store.stats()

    def reset_stats(self) -> None:
        self.store.reset_stats()

    def close(self) -> None:
        self.store.close()

    def where(self) -> dict:
        """Which process serves this shard: shard, pid, host name, Ray node id (None outside Ray)."""
        node_id = None
        try:
            import ray

            if ray.is_initialized():
                node_id = ray.get_runtime_context().get_node_id()
        except ImportError:
            pass
        return {"shard": self.shard, "pid": os.getpid(), "host": socket.gethostname(), "node_id": node_id,
                "stale_readers_cleared": self.stale_readers_cleared}
