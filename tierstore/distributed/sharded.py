"""``ShardedStore``: a store whose shards are Ray actors, with the single store's lookup API.

One actor per shard store (:class:`~tierstore.distributed.server.ShardServer`), each in
its own bundle of a placement group (strategy ``SPREAD`` by default: one shard per
host while there are hosts enough).  The router lives in the caller: it checks the
input as a single store would (nothing is sent when it is bad), splits the batch by
shard (:mod:`tierstore.distributed.route`), calls the shards in parallel and merges
their pooled partials.

Failures:

- actors are created with ``max_restarts`` (Ray restarts a dead one, on another
  node if its node is gone) and ``max_task_retries=0``: Ray never reruns a call;
- lookups, ``get_rows`` and ``stats`` read only, so the router resends them on
  ``RayActorError``, a lost reply or no answer within ``attempt_timeout_s``, until
  ``retry_deadline_s`` has passed: a shard lost mid-stream costs latency, never a
  wrong result;
- ``update_rows`` is never resent: a shard that dies or does not answer during a
  write may or may not have committed it, and :class:`ShardWriteError` names it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from placement._json import JsonDataclass
from tierstore.distributed.plan import ShardPlan
from tierstore.distributed.route import BatchRouter
from tierstore.distributed.server import ShardServer
from tierstore.stats import LookupStats
from tierstore.store import Store
from tierstore.validate import as_ids, check_bags, check_update

PLACEMENT_STRATEGIES = ("SPREAD", "STRICT_SPREAD", "PACK")
ROUTER_COUNTERS = ("split_s", "call_s", "merge_s", "shard_s", "retries", "bytes_to_shards", "bytes_from_shards")


class ShardUnavailableError(RuntimeError):
    """A shard did not answer a read within the retry deadline."""


class ShardWriteError(RuntimeError):
    """A write did not commit on every shard it touched.

    Attributes
    ----------
    committed : list of int
        Shards whose part committed.
    failed : dict of int to Exception
        Shards that refused their part (nothing of it committed there).
    unknown : dict of int to Exception
        Shards that died or did not answer: their part may or may not have committed.
    """

    def __init__(self, table: str, committed, failed, unknown):
        self.committed, self.failed, self.unknown = sorted(committed), dict(failed), dict(unknown)
        lines = [f"update_rows on table {table!r} did not complete on every shard; committed on shards "
                 f"{self.committed or 'none'}"]
        for shard, err in sorted(self.failed.items()):
            lines.append(f"shard {shard}: refused, nothing committed there ({type(err).__name__}: {err})")
        for shard, err in sorted(self.unknown.items()):
            lines.append(f"shard {shard}: outcome unknown, it died or did not answer mid-write and may or may not "
                         f"have committed; not retried: read the rows back with get_rows ({type(err).__name__})")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ShardedConfig(JsonDataclass):
    """How a :class:`ShardedStore` runs its shards.

    Parameters
    ----------
    policy : str
        DRAM eviction policy of every shard.
    io : {"mmap", "pread"}
        How shards read SSD pages.
    actor_cpus : float
        Ray CPUs each shard actor reserves (its placement-group bundle).
    threads : int
        Numba threads of each shard's kernels (0: Numba's default).
    placement_strategy : {"SPREAD", "STRICT_SPREAD", "PACK"}
        Placement-group strategy for the shard actors.
    retry_deadline_s : float
        How long a read may keep being resent to a failing shard.
    attempt_timeout_s : float
        A read unanswered this long is sent again (within the deadline; a late
        reply to the first copy is dropped).
    max_restarts : int
        Restarts Ray grants each actor (-1: without limit).
    start_timeout_s : float
        How long to wait for the placement group and the actors at open.
    shard_resource : str
        When set, shard ``s``'s actor needs one unit of the custom resource
        ``f"{shard_resource}{s}"`` instead of a placement-group bundle: start each
        host with the resources of the shard stores on its disks, and a lost host's
        shard waits for a host that has them.
    """

    policy: str = "lru"
    io: str = "mmap"
    actor_cpus: float = 1.0
    threads: int = 0
    placement_strategy: str = "SPREAD"
    retry_deadline_s: float = 30.0
    attempt_timeout_s: float = 10.0
    max_restarts: int = -1
    start_timeout_s: float = 120.0
    shard_resource: str = ""

    def __post_init__(self):
        if self.placement_strategy not in PLACEMENT_STRATEGIES:
            raise ValueError(f"placement_strategy must be one of {PLACEMENT_STRATEGIES}, got "
                             f"{self.placement_strategy!r}")
        if not self.actor_cpus > 0:
            raise ValueError(f"actor_cpus must be positive, got {self.actor_cpus!r}")
        if not min(self.retry_deadline_s, self.attempt_timeout_s, self.start_timeout_s) > 0:
            raise ValueError("retry_deadline_s, attempt_timeout_s and start_timeout_s must be positive")


def require_ray():
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError("tierstore.distributed.ShardedStore needs Ray: pip install 'tierstore[ray]'") from err
    return ray


def _placed_group(ray, num_shards: int, config: ShardedConfig):
    """A ready placement group of one ``actor_cpus`` bundle per shard, or a RuntimeError saying why not."""
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group([{"CPU": config.actor_cpus}] * num_shards, strategy=config.placement_strategy)
    try:
        ray.get(group.ready(), timeout=config.start_timeout_s)
    except ray.exceptions.GetTimeoutError:
        remove_placement_group(group)
        raise RuntimeError(f"Ray could not place {num_shards} shard actors of {config.actor_cpus} CPU each "
                           f"({config.placement_strategy}) within {config.start_timeout_s}s; cluster resources: "
                           f"{ray.cluster_resources()}") from None
    return group


def shard_budgets(plan: ShardPlan, dram_cache_bytes) -> list:
    """Each shard's ``dram_cache_bytes``: an int is every shard's own budget; ``{table: bytes}`` is split
    among the table's pieces by rows."""
    if not isinstance(dram_cache_bytes, dict):
        if int(dram_cache_bytes) < 0:
            raise ValueError(f"dram_cache_bytes must be >= 0, got {dram_cache_bytes}")
        return [int(dram_cache_bytes)] * plan.num_shards
    budgets = [{} for _ in range(plan.num_shards)]
    for name, size in dram_cache_bytes.items():
        table = plan.table(name)
        for piece in plan.pieces_of(name):
            budgets[piece.shard][name] = int(size) * piece.num_rows // table.num_rows
    return budgets


class ShardedStore:
    """Pooled lookups over shard stores served by Ray actors; see the module docstring.

    Built by :meth:`open`.  ``lookup``, ``lookup_batch``, ``table_views``,
    ``get_rows``, ``update_rows`` and ``stats`` behave as :class:`tierstore.Store`'s;
    ``dram_cache_bytes`` is per shard (each host's own DRAM).  Safe to call from
    several threads: each call fans out on its own.
    """

    def __init__(self, plan: ShardPlan, plan_path, actors, placement_group, config: ShardedConfig):
        self.plan = plan
        self.plan_path = plan_path
        self.config = config
        self.tables = {t.name: t for t in plan.tables}
        self._ray = require_ray()
        self._actors = actors
        self._placement_group = placement_group
        self._router = BatchRouter(plan)
        self._lock = threading.Lock()
        self._stats = LookupStats()
        self._counters = dict.fromkeys(ROUTER_COUNTERS, 0)

    @classmethod
    def open(cls, plan_path, dram_cache_bytes=0, ray_address=None, **options) -> "ShardedStore":
        """Start one actor per shard of the plan at ``plan_path`` and wait until each has opened its store.

        Parameters
        ----------
        plan_path : str or Path
            ``plan.json`` written by ``tierstore shard`` (or its folder).
        dram_cache_bytes : int or dict
            Every shard's DRAM budget (int), or ``{table: bytes}`` split among the table's pieces.
        ray_address : str, optional
            Cluster to join when Ray is not initialized yet (None: start a local one).
        **options
            Fields of :class:`ShardedConfig`.
        """
        ray = require_ray()
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        plan = ShardPlan.load(plan_path)
        config = ShardedConfig(**options)
        budgets = shard_budgets(plan, dram_cache_bytes)
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(address=ray_address, include_dashboard=False, logging_level=logging.WARNING)
        group = None if config.shard_resource else _placed_group(ray, plan.num_shards, config)
        actor_class = ray.remote(ShardServer)
        actors = []
        for s in range(plan.num_shards):
            if group is None:
                where = {"resources": {f"{config.shard_resource}{s}": 1}}
            else:
                where = {"scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=s)}
            actors.append(actor_class.options(num_cpus=config.actor_cpus, max_restarts=config.max_restarts,
                                              max_task_retries=0, **where).remote(
                str(plan.shard_path(plan_path, s)), s, [t.to_dict() for t in plan.shard_tables(s)], budgets[s],
                config.policy, config.io, config.threads or None))
        store = cls(plan, plan_path, actors, group, config)
        try:
            store.where(deadline_s=config.start_timeout_s)
        except BaseException:
            store.close()
            raise
        return store

    # ----------------------------------------------------------------- calls
    def _call_reads(self, method: str, args_by_shard: dict, deadline_s: float | None = None) -> dict:
        """Call ``method`` on the shards in parallel and return ``{shard: result}``, resending to a shard
        whose actor died, whose reply was lost or that did not answer in time, until the deadline passes
        (``deadline_s`` given: one attempt may take all of it)."""
        ray = self._ray
        retryable = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError)
        refs = {s: getattr(self._actors[s], method).remote(*args) for s, args in args_by_shard.items()}
        deadline = time.monotonic() + (deadline_s or self.config.retry_deadline_s)
        attempt_s = deadline_s or self.config.attempt_timeout_s
        results = {}
        for shard in refs:
            backoff = 0.02
            while shard not in results:
                left = deadline - time.monotonic()
                try:
                    results[shard] = ray.get(refs[shard], timeout=max(0.0, min(left, attempt_s)))
                    continue
                except retryable as err:
                    if getattr(err, "actor_init_failed", False):
                        raise ShardUnavailableError(f"shard {shard} ({self.plan.shard_dirs[shard]}) could not open "
                                                    f"its store: {err}") from err
                    failure = err
                except ray.exceptions.GetTimeoutError as err:
                    failure = err
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ShardUnavailableError(self._unavailable(shard, method, failure)) from failure
                with self._lock:
                    self._counters["retries"] += 1
                if not isinstance(failure, ray.exceptions.GetTimeoutError):
                    time.sleep(min(backoff, left))
                    backoff = min(2 * backoff, 1.0)
                refs[shard] = getattr(self._actors[shard], method).remote(*args_by_shard[shard])
        return results

    def _unavailable(self, shard: int, method: str, err) -> str:
        return (f"shard {shard} ({self.plan.shard_dirs[shard]}) did not answer {method} before the deadline, "
                f"retries included; last error: {type(err).__name__}: {err}")

    # ----------------------------------------------------------------- lookups
    # The single store's: the same table lookup (and KeyError) and the same views of a batch's output.
    _table = Store._table
    table_views = Store.table_views

    def _check(self, table, indices, offsets, per_sample_weights, mode, include_last_offset):
        config = self._table(table)
        idx, bounds, weights, _ = check_bags(table, config.num_rows, indices, offsets, per_sample_weights, mode,
                                             include_last_offset)
        return table, idx, bounds, weights, mode

    def lookup(self, table: str, indices, offsets, per_sample_weights=None, mode: str = "sum",
               include_last_offset: bool = False) -> np.ndarray:
        """Pooled lookup of one table's bags, as :meth:`tierstore.Store.lookup`."""
        started = time.perf_counter()
        request = self._check(table, indices, offsets, per_sample_weights, mode, include_last_offset)
        out = np.empty((request[2].size - 1, self.tables[table].dim), dtype=np.float32)
        self._run([request], {table: out}, started)
        return out

    def lookup_batch(self, batch, mode: str | dict = "sum") -> np.ndarray:
        """Pooled lookups of every key of a ``SparseBatch``, as :meth:`tierstore.Store.lookup_batch`."""
        started = time.perf_counter()
        modes = mode if isinstance(mode, dict) else {k: mode for k in batch.keys}
        requests = []
        for key in batch.keys:
            self._table(key)
            indices, offsets, weights = batch.table(key)
            requests.append(self._check(key, indices, offsets, weights, modes.get(key, "sum"), True))
        out = np.empty((batch.batch_size, sum(self.tables[k].dim for k in batch.keys)), dtype=np.float32)
        self._run(requests, self.table_views(batch.keys, out), started)
        return out

    def _run(self, requests, views, started: float) -> None:
        split_at = time.perf_counter()
        per_shard, merges = self._router.split(requests)
        called_at = time.perf_counter()
        replies = self._call_reads("lookup", {s: (request,) for s, request in per_shard.items()})
        merged_at = time.perf_counter()
        self._router.merge(merges, {s: pooled for s, (pooled, _) in replies.items()}, views)
        done = time.perf_counter()
        with self._lock:
            c = self._counters
            c["split_s"] += called_at - split_at
            c["call_s"] += merged_at - called_at
            c["merge_s"] += done - merged_at
            c["shard_s"] += max((seconds for _, seconds in replies.values()), default=0.0)
            c["bytes_to_shards"] += sum(request.nbytes for request in per_shard.values())
            c["bytes_from_shards"] += sum(pooled.nbytes for pooled, _ in replies.values())
            for _, idx, bounds, *_ in requests:
                self._stats.lookups += idx.size
                self._stats.bags += bounds.size - 1
            self._stats.record_batch(done - started)

    # ----------------------------------------------------------------- rows
    def get_rows(self, table: str, ids) -> np.ndarray:
        """Rows ``ids`` of ``table`` as float32 ``[len(ids), dim]``, as :meth:`tierstore.Store.get_rows`."""
        config = self._table(table)
        idx = as_ids("ids", ids, config.num_rows, table)
        parts = self._router.split_ids(table, idx)
        rows = self._call_reads("get_rows", {shard: (table, local) for shard, local, _ in parts})
        out = np.empty((idx.size, config.dim), dtype=np.float32)
        for shard, _, positions in parts:
            out[positions] = rows[shard]
        return out

    def update_rows(self, table: str, ids, values) -> None:
        """Replace rows ``ids`` with ``values`` (float ``[n, dim]``); never resent.

        Each shard's part commits in one LMDB transaction.  The parts of a table cut
        over several shards commit independently: if one does not, :class:`ShardWriteError`
        says which shards committed, which refused and whose outcome is unknown.
        """
        ray = self._ray
        config = self._table(table)
        idx, values = check_update(table, config.num_rows, config.dim, ids, values)
        refs = {shard: self._actors[shard].update_rows.remote(table, local, values[positions])
                for shard, local, positions in self._router.split_ids(table, idx)}
        deadline = time.monotonic() + self.config.retry_deadline_s
        committed, failed, unknown = [], {}, {}
        for shard, ref in refs.items():
            try:
                ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
                committed.append(shard)
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                    ray.exceptions.GetTimeoutError) as err:
                unknown[shard] = err
            except Exception as err:  # the shard's own error: its transaction did not commit
                failed[shard] = err
        if failed or unknown:
            raise ShardWriteError(table, committed, failed, unknown)

    # ----------------------------------------------------------------- the rest
    def warm(self) -> None:
        """Read every row of every shard into its DRAM tier (each shard's budget must hold its rows)."""
        self._call_reads("warm", {s: () for s in range(self.plan.num_shards)})

    def where(self, deadline_s: float | None = None) -> list[dict]:
        """Per shard: the process serving it (pid, host, Ray node id)."""
        found = self._call_reads("where", {s: () for s in range(self.plan.num_shards)}, deadline_s)
        return [found[s] for s in range(self.plan.num_shards)]

    def stats(self) -> dict:
        """The single store's counters summed over the shards, the router's batch latency, and the router's
        own costs (seconds splitting, waiting on calls, merging; slowest shard's lookup seconds per batch,
        summed; bytes sent and received; reads resent)."""
        shards = self._call_reads("stats", {s: () for s in range(self.plan.num_shards)})
        per_shard = [shards[s] for s in range(self.plan.num_shards)]
        dram = {key: sum(s["dram"][key] for s in per_shard)
                for key in ("hits", "misses", "rows_admitted", "bytes_used", "budget_bytes")}
        accesses = dram["hits"] + dram["misses"]
        dram["hit_rate"] = dram["hits"] / accesses if accesses else 0.0
        with self._lock:
            return {
                "dram": dram,
                "ssd": {key: sum(s["ssd"][key] for s in per_shard) for key in per_shard[0]["ssd"]},
                "lookups": self._stats.lookups,
                "bags": self._stats.bags,
                "batches": self._stats.batches,
                "latency": self._stats.latency_percentiles(),
                "router": dict(self._counters),
                "shards": per_shard,
            }

    def reset_stats(self) -> None:
        """Zero the router's and every shard's counters (cache contents stay)."""
        self._call_reads("reset_stats", {s: () for s in range(self.plan.num_shards)})
        with self._lock:
            self._stats.reset()
            self._counters = dict.fromkeys(ROUTER_COUNTERS, 0)

    def close(self) -> None:
        """Stop the shard actors and free their placement group, if any (Ray itself keeps running)."""
        from ray.util.placement_group import remove_placement_group

        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        if self._placement_group is not None:
            remove_placement_group(self._placement_group)
        self._actors = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"ShardedStore({str(self.plan_path)!r}, shards={self.plan.num_shards}, tables={list(self.tables)})"

