"""Replay a trace against a real store, batch by batch, and report what the tiers did.

The store is opened read-only with the requested DRAM budget and policy; every batch
goes through ``Store.lookup_batch``.  The first ``warmup_batches`` fill the caches
and are excluded: the store's counters are reset after them.  Reported: per-tier
hit rates overall and per interval of batches, pooled rows/s, batch latency
percentiles (timed around each ``lookup_batch``), LMDB pages and bytes read, rows
decoded, and the process's peak RSS.

Traces whose tables or row ranges do not match the store can be *folded* onto it:
trace tables map, in order of first appearance, onto the store's tables round-robin
(bags of trace tables that land on one store table are concatenated), and the k-th
trace table's rows become ``(row + k * 2654435761) mod num_rows`` of its store table,
so trace tables sharing a store table keep mostly separate hot sets.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

import tierstore
from bench.compare import parse_size
from bench.traces.batching import request_tables
from tierstore import SparseBatch
from tierstore.config import JsonConfig

#: Row offset step between trace tables folded onto one store table (Knuth's multiplicative hash).
FOLD_STRIDE = 2654435761


@dataclass(frozen=True)
class ReplayConfig(JsonConfig):
    """What a replay ran with (embedded in its result).

    Parameters
    ----------
    store, trace : str
        Paths.
    dram_cache : str
        DRAM budget: bytes (``"256MiB"``) or a share of the tables' float32 size (``"10%"``).
    policy : str
        DRAM cache policy name.
    warmup_batches : int
        Leading batches excluded from the figures.
    interval : int
        Batches per point of the hit-rate time series.
    mode : str
        Pooling mode of every lookup.
    fold : bool
        Fold trace tables and rows onto the store (see the module notes).
    max_batches : int or None
        Stop after this many batches (warm-up included).
    reader : dict
        Options the trace was opened with.
    """

    store: str
    trace: str
    dram_cache: str = "10%"
    policy: str = "lru"
    warmup_batches: int = 10
    interval: int = 10
    mode: str = "sum"
    fold: bool = False
    max_batches: int | None = None
    reader: dict = field(default_factory=dict)

    def __post_init__(self):
        kind, _ = parse_size(self.dram_cache)
        if kind == "objects":
            raise ValueError(f"dram_cache {self.dram_cache!r}: give bytes (256MiB) or a percentage (10%)")
        if self.warmup_batches < 0 or self.interval < 1:
            raise ValueError("warmup_batches must be >= 0 and interval >= 1")

    def to_dict(self):
        return dataclasses.asdict(self)


def dram_budget_bytes(spec: str, tables: dict) -> int:
    """Bytes for a ``dram_cache`` spec, a share being of the tables' float32 size."""
    kind, value = parse_size(spec)
    if kind == "fraction":
        return int(value * sum(t.num_rows * t.cached_row_bytes for t in tables.values()))
    return int(value)


class UnknownTablesError(KeyError):
    """The trace names tables the store lacks; ``ReplayConfig(fold=True)`` maps them onto the store's."""


class TableFolder:
    """Map a trace's tables and rows onto a store's (see the module notes)."""

    def __init__(self, store_tables: dict):
        self.targets = list(store_tables)
        self.rows = {name: t.num_rows for name, t in store_tables.items()}
        self.mapping: dict[str, str] = {}
        self.offsets: dict[str, int] = {}

    def __call__(self, batch: SparseBatch) -> SparseBatch:
        for key in batch.keys:
            if key not in self.mapping:
                target = self.targets[len(self.mapping) % len(self.targets)]
                self.offsets[key] = (len(self.mapping) * FOLD_STRIDE) % self.rows[target]
                self.mapping[key] = target
        b = batch.batch_size
        dest = list(dict.fromkeys(self.mapping[k] for k in batch.keys))
        dest_of_key = np.asarray([dest.index(self.mapping[k]) for k in batch.keys], dtype=np.int64)
        key_of_value = request_tables(batch)
        bag_of_value = np.repeat(np.arange(len(batch.keys) * b, dtype=np.int64) % max(b, 1), batch.lengths)
        dest_bag = dest_of_key[key_of_value] * b + bag_of_value
        order = np.argsort(dest_bag, kind="stable")
        rows = np.asarray([self.rows[d] for d in dest], dtype=np.int64)[dest_of_key[key_of_value]]
        offsets = np.asarray([self.offsets[k] for k in batch.keys], dtype=np.int64)[key_of_value]
        values = ((batch.values + offsets) % rows)[order]
        weights = None if batch.weights is None else batch.weights[order]
        lengths = np.bincount(dest_bag, minlength=len(dest) * b)
        return SparseBatch(keys=tuple(dest), values=values, lengths=lengths, weights=weights)


def _tiers(stats: dict) -> dict[str, dict]:
    return {name: v for name, v in stats.items() if isinstance(v, dict) and "hits" in v}


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def replay(batches: Iterable[SparseBatch], config: ReplayConfig, progress=None) -> dict:
    """Drive the store of ``config`` with ``batches``; return a JSON-ready result.

    Parameters
    ----------
    batches : iterable of SparseBatch
        The trace.
    config : ReplayConfig
    progress : callable, optional
        Wraps the batch iterable (for a progress bar).
    """
    with tierstore.open(config.store, readonly=True) as probe:
        tables = dict(probe.tables)
    budget = dram_budget_bytes(config.dram_cache, tables)
    folder = TableFolder(tables) if config.fold else None
    latencies: list[float] = []
    timeline: list[dict] = []
    pooled_rows = 0
    measured = 0
    with tierstore.open(config.store, dram_cache_bytes=budget, policy=config.policy, readonly=True) as store:
        last = None
        source = progress(batches) if progress else batches
        for i, batch in enumerate(source):
            if config.max_batches is not None and i >= config.max_batches:
                break
            if folder:
                batch = folder(batch)
            elif not set(batch.keys) <= set(tables):
                raise UnknownTablesError(f"trace tables {sorted(set(batch.keys) - set(tables))} are not in the store "
                                         f"(store has {sorted(tables)}); map them onto its tables with "
                                         "fold=True (--fold on the command line)")
            if i == config.warmup_batches:
                store.reset_stats()
                last = _tiers(store.stats())
            t0 = time.perf_counter()
            store.lookup_batch(batch, mode=config.mode)
            seconds = time.perf_counter() - t0
            if i < config.warmup_batches:
                continue
            latencies.append(seconds)
            pooled_rows += batch.values.size
            measured += 1
            if measured % config.interval == 0:
                now = _tiers(store.stats())
                timeline.append({"batch": i + 1, **_interval_rates(last, now)})
                last = now
        stats = store.stats()
    if not measured:
        raise ValueError(f"the trace has no batches after the {config.warmup_batches} warm-up batches")
    lat = np.asarray(latencies)
    tiers = _tiers(stats)
    accesses = sum(t["hits"] for t in tiers.values())
    return {
        "config": config.to_dict(),
        "store": {"path": config.store, "tables": {n: t.to_dict() for n, t in tables.items()}},
        "dram_budget_bytes": budget,
        "table_mapping": folder.mapping if folder else None,
        "warmup_batches": min(config.warmup_batches, measured + config.warmup_batches),
        "measured_batches": measured,
        "pooled_rows": pooled_rows,
        "lookup_seconds": float(lat.sum()),
        "pooled_rows_per_s": pooled_rows / lat.sum() if lat.sum() else 0.0,
        "latency_ms": {
            "p50": float(np.percentile(lat, 50) * 1e3),
            "p95": float(np.percentile(lat, 95) * 1e3),
            "p99": float(np.percentile(lat, 99) * 1e3),
            "mean": float(lat.mean() * 1e3),
            "max": float(lat.max() * 1e3),
        },
        "hit_rates": {name: t["hits"] / accesses if accesses else 0.0 for name, t in tiers.items()},
        "ssd": {k: stats["ssd"][k] for k in ("pages_read", "bytes_read", "rows_decoded") if k in stats.get("ssd", {})},
        "timeline": timeline,
        "peak_rss_bytes": _peak_rss_bytes(),
        "store_stats": stats,
    }


def _interval_rates(before: dict, after: dict) -> dict:
    served = {name: after[name]["hits"] - before.get(name, {}).get("hits", 0) for name in after}
    total = sum(served.values())
    return {f"{name}_hit_rate": (v / total if total else 0.0) for name, v in served.items()}


def format_replay(result: dict) -> str:
    """Human-readable summary of :func:`replay`'s result."""
    lat = result["latency_ms"]
    ssd = result["ssd"]
    lines = [
        f"store {result['store']['path']} ({len(result['store']['tables'])} tables), DRAM "
        f"{result['config']['policy']} {result['dram_budget_bytes'] / 2**20:.1f} MiB; trace {result['config']['trace']}",
        f"measured {result['measured_batches']} batches after {result['config']['warmup_batches']} warm-up: "
        f"{result['pooled_rows']:,} pooled rows",
        "hit rates: " + ", ".join(f"{name} {rate:.1%}" for name, rate in result["hit_rates"].items()),
        f"throughput: {result['pooled_rows_per_s'] / 1e6:.2f} M pooled rows/s",
        f"batch latency: p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms, p99 {lat['p99']:.2f} ms",
        f"LMDB: {ssd.get('pages_read', 0):,} pages, {ssd.get('bytes_read', 0) / 2**20:.1f} MiB read, "
        f"{ssd.get('rows_decoded', 0):,} rows decoded",
        f"peak RSS: {result['peak_rss_bytes'] / 2**20:.0f} MiB",
    ]
    if result["timeline"]:
        lines.append("hit rate over time (per interval): " + "  ".join(
            f"b{p['batch']}: {p.get('dram_hit_rate', 0):.1%}" for p in result["timeline"][:12]))
    return "\n".join(lines)
