"""Overlap benchmark: a serving loop of cold lookups and dense steps, plain vs pipelined with ``Store.prefetch``.

One table (default 4M x 64 float32, the store of ``bench_lookup``), a set-associative
DRAM cache of ``cache_fraction`` (1 %) of it, warmed by ``warm_batches`` of the same
Zipf trace; batches of ``bags`` bags x ``pooling``.  Each step looks a batch up, then
runs a dense step on the pooled output: a torch MLP (``dim -> hidden -> hidden -> 1``)
run as many times as it takes to last about as long as a plain lookup (measured
first; ``--dense-ms`` fixes it instead).

Cold pages: before every batch's lookup, every *data* page of the table is evicted
from the OS page cache (``posix_fadvise(DONTNEED)`` over the file spans of the
table's LMDB values, after ``MADV_DONTNEED`` on the stores' maps so no mapped page
stays resident); LMDB's B+tree pages (0.7 % of the file) stay cached, as they would in
a server.  Evictions count in both loops' time (the same work; printed apart).  So every
page a batch misses comes from the device.

- *plain*: ``lookup_batch(b[i])``, dense step;
- *pipelined*: ``lookup_batch(b[i])``, ``prefetch(b[i+1])``, dense step: batch
  i+1's pages are read while batch i's dense step runs (the first batch is
  prefetched just before its lookup).

The two loops run in turn (``repeats`` times each, fresh store handles, same batches)
in one process; throughput is pooled rows per second of loop time.  Target:
pipelined >= 1.5x plain.  The device's 4 KiB random-read rate at depth 32 is measured
in the same run (``bench/random_reads.py``) as the anchor of the read rates printed.

Run: ``python -m bench.bench_prefetch`` (``--rows 1000000`` for a quick look).  Prints
one line per figure and a final JSON line that embeds the configuration.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # Numba's and torch's thread pools share the cores

import argparse
import itertools
import json
import mmap
import sys
import time
from dataclasses import asdict, dataclass

import numba
import numpy as np

import tierstore
from bench.bench_lookup import LookupBenchConfig, build
from bench.config_args import add_config_flags, config_from_args
from bench.random_reads import random_read_rate
from bench.traces.generate import TableSpec, TraceSpec, generate
from tierstore.prefetch import PrefetchConfig


@dataclass(frozen=True)
class PrefetchBenchConfig:
    """What the overlap benchmark ran with (embedded in its JSON output)."""

    rows: int = 4_000_000
    dim: int = 64
    bags: int = 512
    pooling: int = 32
    zipf: float = 1.05
    cache_fraction: float = 0.01
    warm_batches: int = 20
    batches: int = 20
    repeats: int = 2
    threads: int = 2
    hidden: int = 1024
    dense_ms: float = 0.0
    depth: int = 32
    max_bytes: int = 256 << 20
    workdir: str = "bench/out/lookup"
    seed: int = 0


class DataPageEvictor:
    """Evicts the table's data pages (its LMDB values) from the page cache, keeping LMDB's tree pages."""

    def __init__(self, path):
        self.path = path / "data.mdb"
        with tierstore.open(path) as store, store.reading():
            ssd = store._ssd["t"]
            _, starts, ends, *_ = ssd.locate_direct(np.arange(ssd.n_pages))
        order = np.argsort(starts)
        starts, ends = starts[order], ends[order]
        page = mmap.PAGESIZE
        starts, ends = starts - starts % page, -(-ends // page) * page
        breaks = np.flatnonzero(starts[1:] > ends[:-1]) + 1
        self.runs = list(zip(starts[np.r_[0, breaks]].tolist(), ends[np.r_[breaks - 1, ends.size - 1]].tolist()))

    def evict(self, stores) -> None:
        for store in stores:
            store._direct._map.madvise(mmap.MADV_DONTNEED)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for lo, hi in self.runs:
                os.posix_fadvise(fd, lo, hi - lo, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def trace(config: PrefetchBenchConfig) -> list:
    """Warm-up batches, then the timed ones (one Zipf trace: one hot set)."""
    spec = TraceSpec(tables=(TableSpec("t", config.rows, zipf=config.zipf, pooling=config.pooling,
                                       pooling_dist="fixed"),), batch_size=config.bags,
                     num_batches=config.warm_batches + config.batches, seed=config.seed + 11)
    return list(generate(spec))


def open_warm(config: PrefetchBenchConfig, path, warm: list):
    """A store handle with a cache of ``cache_fraction`` of the table, warmed by ``warm``."""
    store = tierstore.open(path, dram_cache_bytes=int(config.cache_fraction * config.rows * config.dim * 4),
                           prefetch=PrefetchConfig(max_bytes=config.max_bytes, depth=config.depth))
    for batch in warm:
        store.lookup_batch(batch)
    store.reset_stats()
    return store


def run_loop(store, batches: list, dense, evictor: DataPageEvictor, pipelined: bool) -> dict:
    """One pass: seconds of loop time (evictions included: the same work in both loops), and of its
    evictions, lookups and dense steps."""
    evicting = lookup = dense_s = 0.0
    start = time.perf_counter()
    for number, batch in enumerate(batches):
        t0 = time.perf_counter()
        evictor.evict([store])
        t1 = time.perf_counter()
        if pipelined and number == 0:
            store.prefetch(batch)
        pooled = store.lookup_batch(batch)
        if pipelined and number + 1 < len(batches):
            store.prefetch(batches[number + 1])
        t2 = time.perf_counter()
        dense(pooled)
        t3 = time.perf_counter()
        evicting += t1 - t0
        lookup += t2 - t1
        dense_s += t3 - t2
    loop = time.perf_counter() - start
    stats = store.stats()
    return {"loop_s": loop, "evict_s": evicting, "lookup_s": lookup, "dense_s": dense_s,
            "hit_rate": stats["dram"]["hit_rate"], "ssd_pages_read": stats["ssd"]["pages_read"],
            "prefetch": stats["prefetch"]}


def make_dense(config: PrefetchBenchConfig):
    """A torch MLP over the pooled output, and ``dense(pooled, passes)`` running it ``passes`` times."""
    import torch

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    mlp = torch.nn.Sequential(torch.nn.Linear(config.dim, config.hidden), torch.nn.ReLU(),
                              torch.nn.Linear(config.hidden, config.hidden), torch.nn.ReLU(),
                              torch.nn.Linear(config.hidden, 1))

    def dense(pooled: np.ndarray, passes: int) -> float:
        with torch.inference_mode():
            total = 0.0
            for _ in range(passes):
                total += float(mlp(torch.from_numpy(pooled)).sum())
            return total

    return dense


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, PrefetchBenchConfig)
    config = config_from_args(PrefetchBenchConfig, parser.parse_args(argv))
    numba.set_num_threads(config.threads)
    path = build(LookupBenchConfig(rows=config.rows, dim=config.dim, workdir=config.workdir, seed=config.seed))
    evictor = DataPageEvictor(path)
    batches = trace(config)
    warm, timed = batches[: config.warm_batches], batches[config.warm_batches :]
    mlp = make_dense(config)
    result = {"config": asdict(config)}

    store = open_warm(config, path, warm)
    lookup_ms = []
    for batch in itertools.islice(itertools.cycle(timed), 5):
        evictor.evict([store])
        start = time.perf_counter()
        pooled = store.lookup_batch(batch)
        lookup_ms.append((time.perf_counter() - start) * 1e3)
    store.close()
    start = time.perf_counter()
    mlp(pooled, 3)
    pass_ms = (time.perf_counter() - start) * 1e3 / 3
    target_ms = config.dense_ms or float(np.median(lookup_ms))
    passes = max(1, round(target_ms / pass_ms))
    result["calibration"] = {"plain_lookup_ms_median": float(np.median(lookup_ms)), "mlp_pass_ms": pass_ms,
                             "mlp_passes": passes}
    print(f"calibration: plain cold lookup {np.median(lookup_ms):.1f} ms (median of 5), one MLP pass {pass_ms:.1f} ms: "
          f"{passes} passes per dense step", flush=True)

    runs = {"plain": [], "pipelined": []}
    for repeat in range(config.repeats):
        for name in (["plain", "pipelined"] if repeat % 2 == 0 else ["pipelined", "plain"]):
            store = open_warm(config, path, warm)
            runs[name].append(run_loop(store, timed, lambda pooled: mlp(pooled, passes), evictor, name == "pipelined"))
            store.close()
    rows = config.batches * config.bags * config.pooling
    summary = {}
    for name, passes_run in runs.items():
        loop = sum(r["loop_s"] for r in passes_run)
        per_batch = {f"{part}_ms_per_batch": sum(r[f"{part}_s"] for r in passes_run) / (config.batches *
                                                                                       len(passes_run)) * 1e3
                     for part in ("lookup", "dense", "evict")}
        summary[name] = {"rows_per_s": rows * len(passes_run) / loop, **per_batch,
                         "hit_rate": float(np.mean([r["hit_rate"] for r in passes_run])), "passes": passes_run}
        print(f"{name}: {summary[name]['rows_per_s'] / 1e6:.3f} M rows/s; per batch: lookup "
              f"{summary[name]['lookup_ms_per_batch']:.1f} ms, dense {summary[name]['dense_ms_per_batch']:.1f} ms, "
              f"eviction {summary[name]['evict_ms_per_batch']:.1f} ms; "
              f"DRAM hit rate {summary[name]['hit_rate']:.1%}", flush=True)
    ratio = summary["pipelined"]["rows_per_s"] / summary["plain"]["rows_per_s"]
    device = random_read_rate(path / "data.mdb", depth=32, seed=config.seed)
    ahead = [r["prefetch"] for r in runs["pipelined"]]
    served = sum(p["rows_served"] for p in ahead)
    late = sum(p["rows_read_late"] for p in ahead)
    result.update(summary=summary, ratio=ratio, device=device)
    print(f"pipelined / plain: {ratio:.2f} (target >= 1.5); missed rows served from pages read ahead: "
          f"{served / max(served + late, 1):.1%}; device: {device['reads_per_s']:.0f} random 4 KiB reads/s at depth 32 "
          f"({device['anchor']})", flush=True)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
