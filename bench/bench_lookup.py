"""Lookup benchmark: tierstore against its anchors, side by side in one run.

Cases, on one table (default 4M x 64 float32), batches of 2048 bags x pooling 32,
``--threads`` threads for Numba and torch, uniform and Zipf(1.05) indices:

a. every row cached in DRAM: tierstore ``lookup`` vs ``torch.nn.functional.embedding_bag``
   over the very same memory (the DRAM slab, shared with torch without a copy);
b. a warm DRAM cache, Zipf: the set-associative default and the exact policies of
   ``--other-policies`` (LRU, S3-FIFO) side by side, at each cache size of
   ``--cache-fractions`` (10 %, 1 %, 25 % of the table), and at 10 % on the
   ``meta2022`` preset (``--meta-tables`` tables in a store of their own, one shared
   budget); each run in its own child process.  The cache is warmed by the head of
   the very trace that is then timed (same hot set), and every timed batch is new.
   Before each timed batch, the rows it will miss (its distinct rows not cached) are
   copied out of the mapped LMDB file with the store's parallel, prefetching
   ``memcpy`` decode, timed apart: the *floor* of a batch is (a)'s batch time on the
   same trace plus that copy, so ``floor / (b)`` (target >= 0.5) says how close (b)
   comes to the cost of its misses alone; ``(b) / (a)`` is printed too.  Belady's
   miss count (the fewest of any policy that caches every miss) is shown beside it;
c. cold SSD path (page cache dropped with ``posix_fadvise(DONTNEED)``): rows/s from
   the LMDB tier vs raw 4 KiB random ``os.pread`` on the same file, same thread count;
d. peak RSS of (b) with ``io="pread"`` (default cache, 10 %) against the DRAM budget
   + 512 MiB, split into anonymous memory and pages of the LMDB file mapped from the
   page cache (``io="mmap"``, the other runs, maps most of the file).

Run: ``python -m bench.bench_lookup`` (``--rows 400000`` for a quick look).  Prints
one line per figure and a final JSON line that embeds the configuration.
"""

from __future__ import annotations

import os

# Numba's and torch's OpenMP pools share this process: idle threads must sleep, not spin,
# or each side's threads steal the cores the other is timed on.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import itertools
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numba
import numpy as np

import tierstore
from bench.config_args import add_config_flags, config_flags, config_from_args
from bench.traces.generate import TableSpec, TraceSpec, generate
from bench.traces.presets import meta2022
from tierstore import TableConfig, pages


@dataclass(frozen=True)
class LookupBenchConfig:
    """What the lookup benchmark ran with (embedded in its JSON output).

    ``cache_fraction``, ``policy``, ``io`` and ``trace`` describe one (b) run (a child
    process); ``cache_fractions`` and ``other_policies`` the runs the parent starts.
    """

    rows: int = 4_000_000
    dim: int = 64
    bags: int = 2048
    pooling: int = 32
    threads: int = 2
    batches: int = 40
    repeats: int = 3
    zipf: float = 1.05
    cache_fraction: float = 0.10
    cache_fractions: str = "0.1,0.01,0.25"
    policy: str = "setassoc"
    io: str = "mmap"
    other_policies: str = "lru,s3fifo"
    trace: str = "zipf"
    meta_tables: int = 32
    warm_batches: int = 200
    cold_rows: int = 20_000
    workdir: str = "bench/out/lookup"
    seed: int = 0


def stream(config: LookupBenchConfig, zipf: float, count: int, seed: int):
    """``count`` batches of (indices, offsets[B]) with Zipf(``zipf``) rows (0 = uniform), made as they are used."""
    spec = TraceSpec(tables=(TableSpec("t", config.rows, zipf=zipf, pooling=config.pooling, pooling_dist="fixed"),),
                     batch_size=config.bags, num_batches=count, seed=seed)
    return ((b.values, b.offsets[:-1]) for b in generate(spec))


def batches(config: LookupBenchConfig, zipf: float, count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`stream` held in memory, for batches that are timed again and again."""
    return list(stream(config, zipf, count, seed))


def meta_spec(config: LookupBenchConfig, count: int) -> TraceSpec:
    """The ``meta2022`` preset at ``config``'s batch size: ``count`` batches."""
    return meta2022(num_tables=config.meta_tables, batch_size=config.bags, num_batches=count, seed=config.seed + 1)


def b_stream(config: LookupBenchConfig):
    """Case (b)'s batches as ``SparseBatch`` es, made as they are used (never held: (d) measures the process).

    One trace (one hot set): ``warm_batches`` that warm the cache, then
    ``batches * repeats`` timed ones.
    """
    total = config.warm_batches + config.batches * config.repeats
    if config.trace == "meta2022":
        return generate(meta_spec(config, total))
    spec = TraceSpec(tables=(TableSpec("t", config.rows, zipf=config.zipf, pooling=config.pooling,
                                       pooling_dist="fixed"),), batch_size=config.bags, num_batches=total,
                     seed=config.seed + 1)
    return generate(spec)


def build(config: LookupBenchConfig) -> Path:
    """Create (once) the benchmark store of ``config.trace`` under ``workdir``: one table of
    ``rows x dim``, or the ``meta2022`` preset's tables (``dim`` wide)."""
    rng = np.random.default_rng(config.seed)
    if config.trace == "meta2022":
        tables = [TableConfig(t.name, t.num_rows, config.dim) for t in meta_spec(config, 1).tables]
        path = Path(config.workdir) / f"store-meta2022-{config.meta_tables}x{config.bags}x{config.dim}"
    else:
        tables = [TableConfig("t", config.rows, config.dim)]
        path = Path(config.workdir) / f"store-{config.rows}x{config.dim}"
    if (path / "data.mdb").is_file():
        return path
    store = tierstore.create(path, tables)
    chunk = 1 << 18
    for table in tables:
        store.load(table.name, (rng.standard_normal((min(chunk, table.num_rows - s), config.dim), dtype=np.float32)
                                for s in range(0, table.num_rows, chunk)))
    store.close()
    return path


def drop_page_cache(path: Path) -> None:
    """Evict the store's data file from the OS page cache."""
    fd = os.open(path / "data.mdb", os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rows_per_second(fn, work: list, repeats: int, rows_per_item: int) -> float:
    """Best-of-``repeats`` throughput of ``fn`` over every item of ``work``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in work:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return len(work) * rows_per_item / best


def case_a(config, path, work_by_name):
    """All rows in DRAM: tierstore vs torch embedding_bag over the same slab."""
    import torch

    torch.set_num_threads(config.threads)
    store = tierstore.open(path, dram_cache_bytes=config.rows * config.dim * 4)
    store.warm("t", progress=True)
    tier = store._tier_of["t"]
    weight = torch.from_numpy(tier.slab("t").view(np.float32))
    results = {}
    rows = config.bags * config.pooling
    for name, work in work_by_name.items():
        torch_work = [(torch.from_numpy(i), torch.from_numpy(o)) for i, o in work]
        got = store.lookup("t", *work[0])
        want = torch.nn.functional.embedding_bag(torch_work[0][0], weight, torch_work[0][1], mode="sum").numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        ours, theirs = [], []
        for _ in range(config.repeats):
            theirs.append(rows_per_second(lambda w: torch.nn.functional.embedding_bag(w[0], weight, w[1], mode="sum"),
                                          torch_work, 1, rows))
            ours.append(rows_per_second(lambda w: store.lookup("t", w[0], w[1]), work, 1, rows))
        results[name] = {"tierstore_rows_per_s": max(ours), "torch_rows_per_s": max(theirs),
                         "ratio": max(ours) / max(theirs)}
    store.close()
    return results


def table_bytes(store) -> int:
    """Bytes of every row of the store's tables as the DRAM cache holds them."""
    return sum(t.num_rows * t.cached_row_bytes for t in store.tables.values())


def case_b(config, path):
    """A warm DRAM cache of ``cache_fraction`` of the tables: pooled rows/s, hit rate, the paired floor copy
    and the process's memory.

    Every timed batch is new (no batch is replayed, which would find its own rows
    cached); only the lookups are timed, not making the batches.  Before each timed
    batch, :func:`FloorCopy` copies the rows it will miss, timed apart.
    """
    store = tierstore.open(path, io=config.io)
    budget = int(config.cache_fraction * table_bytes(store))
    store.close()
    store = tierstore.open(path, dram_cache_bytes=budget, policy=config.policy, io=config.io)
    trace = b_stream(config)
    for batch in itertools.islice(trace, config.warm_batches):
        store.lookup_batch(batch)
    store.reset_stats()
    floor = FloorCopy(store) if config.io == "mmap" else None
    busy, floor_seconds = [], []
    rows = missed = 0
    for batch in itertools.islice(trace, config.batches * config.repeats):
        if floor is not None:
            seconds, n_missed = floor.copy_misses(batch)
            floor_seconds.append(seconds)
            missed += n_missed
        start = time.perf_counter()
        store.lookup_batch(batch)
        busy.append(time.perf_counter() - start)
        rows += batch.values.size
    n_timed = config.batches * config.repeats
    stats = store.stats()
    data_file_mapped = store.data_file_mapped_bytes()
    rollup = {line.split(":")[0]: int(line.split()[1]) * 1024
              for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]}
    status = Path("/proc/self/status").read_text()
    peak = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM"))
    store.close()
    return {"rows_per_s": rows / sum(busy), "batch_ms": np.mean(busy) * 1e3, "batch_ms_median": np.median(busy) * 1e3,
            "rows_per_batch": rows / n_timed,
            "floor_copy_ms": np.mean(floor_seconds) * 1e3 if floor is not None else None,
            "floor_copy_ms_median": np.median(floor_seconds) * 1e3 if floor is not None else None,
            "missed_rows_per_batch": missed / n_timed if floor is not None else None,
            "optimal_missed_rows_per_batch": optimal_misses(config, budget) if floor is not None else None,
            "hit_rate": stats["dram"]["hit_rate"], "budget_bytes": budget,
            "ssd_rows_per_batch": stats["ssd"]["rows_decoded"] / max(stats["batches"], 1),
            "ssd_pages_per_batch": stats["ssd"]["pages_read"] / max(stats["batches"], 1),
            "p50_ms": stats["latency"]["p50_ms"], "p99_ms": stats["latency"]["p99_ms"],
            "peak_rss_bytes": peak, "rss_bytes": rollup["Rss"], "anon_rss_bytes": rollup["Anonymous"],
            "data_file_mapped_bytes": data_file_mapped,
            "other_file_mapped_bytes": rollup["Rss"] - rollup["Anonymous"] - data_file_mapped}


class FloorCopy:
    """Copies the rows a batch is about to miss out of the mapped LMDB file, timing only the copy.

    The rows are each table's distinct rows of the batch that the DRAM tier does not
    hold now; their pages are located first (untimed, as a B+tree walk is not copying).
    The copy is the store's float32 decode: parallel over rows, prefetching, one
    ``memcpy`` per row, into a reused buffer, with no lookups, checks, policy or
    pooling.  Any implementation reads its missed rows at least once, so (a)'s batch
    time plus this copy is what (b) costs at best.  Reads the store's internals.
    """

    def __init__(self, store):
        self.store = store
        self.out = np.empty((0, 1), dtype=np.float32)

    def copy_misses(self, batch) -> tuple[float, int]:
        """Seconds to copy ``batch``'s missed rows, and how many there are."""
        seconds, total = 0.0, 0
        with self.store.reading() as txn:
            for name in batch.keys:
                indices = batch.table(name)[0]
                tier, ssd = self.store._tier_of[name], self.store._ssd[name]
                distinct = np.unique(indices)
                missed = distinct[~tier.cached(name, distinct)]
                if not missed.size or ssd.direct is None or not ssd._resolve_root(txn):
                    continue
                rpp, dim = ssd.config.rows_per_page, ssd.config.dim
                page_ids, rank = np.unique(missed // rpp, return_inverse=True)
                view, starts, _, _ = ssd._locate_direct(page_ids)
                if self.out.shape[0] < missed.size or self.out.shape[1] != dim:
                    self.out = np.empty((max(missed.size, self.out.shape[0]), dim), dtype=np.float32)
                start = time.perf_counter()
                pages.decode_rows(view, starts, rank, missed % rpp, 0, dim, self.out[: missed.size])
                seconds += time.perf_counter() - start
                total += missed.size
        return seconds, total


def optimal_misses(config: LookupBenchConfig, budget: int) -> float:
    """Distinct-row misses per timed batch of Belady's optimal cache at (b)'s budget.

    The stream is each batch's distinct rows of each table (global ids), warm-up
    batches first (the store reports hits once per distinct row per batch).  No
    policy that caches every miss misses fewer rows.
    """
    from cache_policies import make_policy, simulate

    tables = meta_spec(config, 1).tables if config.trace == "meta2022" else (TableSpec("t", config.rows),)
    base = dict(zip([t.name for t in tables], np.cumsum([0] + [t.num_rows for t in tables]).tolist()))
    rows, timed = [], 0
    for number, batch in enumerate(b_stream(config)):
        for name in batch.keys:
            distinct = np.unique(batch.table(name)[0]) + base[name]
            rows.append(distinct)
            if number >= config.warm_batches:
                timed += distinct.size
    slots = budget // (config.dim * 4)
    log = simulate(np.concatenate(rows), make_policy("belady"), slots, record=True).log
    return float(np.count_nonzero(log.outcome[-timed:] != 1)) / (config.batches * config.repeats)


def case_c(config, path):
    """Cold reads: LMDB tier rows/s vs raw 4 KiB random pread, same thread count (kernels compiled
    first, on a few rows, before the page cache is dropped)."""
    rng = np.random.default_rng(config.seed + 7)
    rows = rng.choice(config.rows, size=config.cold_rows, replace=False)
    with tierstore.open(path) as store:
        store.get_rows("t", rows[:8])
    drop_page_cache(path)
    store = tierstore.open(path)
    start = time.perf_counter()
    for chunk in np.array_split(rows, max(1, config.cold_rows // 2048)):
        store.get_rows("t", chunk)
    ours = config.cold_rows / (time.perf_counter() - start)
    store.close()

    size = os.path.getsize(path / "data.mdb")
    offsets = rng.integers(0, size // 4096, config.cold_rows) * 4096
    drop_page_cache(path)
    fd = os.open(path / "data.mdb", os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    start = time.perf_counter()
    with ThreadPoolExecutor(config.threads) as pool:
        for part in np.array_split(offsets, config.threads):
            pool.submit(lambda p: [os.pread(fd, 4096, int(o)) for o in p], part)
    raw = config.cold_rows / (time.perf_counter() - start)
    os.close(fd)
    return {"tierstore_rows_per_s": ours, "pread_rows_per_s": raw, "ratio": ours / raw}


def case_a_batches(config: LookupBenchConfig, path) -> float:
    """Milliseconds per (b) batch of ``config.trace`` with every row in DRAM (the floor's first term):
    the median over the timed batches of each batch's best of ``repeats``."""
    store = tierstore.open(path, dram_cache_bytes=1 << 62)
    for name in store.tables:
        store.warm(name)
    work = list(itertools.islice(b_stream(config), config.warm_batches, config.warm_batches + config.batches))
    times = np.zeros((config.repeats, len(work)))
    for repeat in range(config.repeats):
        for number, batch in enumerate(work):
            start = time.perf_counter()
            store.lookup_batch(batch)
            times[repeat, number] = time.perf_counter() - start
    store.close()
    return float(np.median(times.min(axis=0))) * 1e3


def report_b(config: LookupBenchConfig, b: dict, a_batch_ms: float | None, name: str) -> None:
    """Print one (b) run (and (d) for ``io="pread"``), adding its ratios to ``b``.

    Ratios use each run's mean batch time; the same from medians (``*_median``) is
    printed beside them, as it resists the bursts of a shared machine.
    """
    if a_batch_ms is not None:
        b["a_batch_ms"] = a_batch_ms
        b["ratio_to_a"] = a_batch_ms / b["batch_ms"]
        b["ratio_to_a_median"] = a_batch_ms / b["batch_ms_median"]
        line = (f"b {name}: {b['rows_per_s'] / 1e6:.1f} M rows/s at hit rate {b['hit_rate']:.1%}, "
                f"{b['batch_ms']:.2f} ms per batch (median {b['batch_ms_median']:.2f}), (b)/(a) {b['ratio_to_a']:.2f} "
                f"(median {b['ratio_to_a_median']:.2f}; target >= 0.25)")
        if b["floor_copy_ms"] is not None:
            floor_ms = a_batch_ms + b["floor_copy_ms"]
            b["floor_ms"] = floor_ms
            b["ratio_to_floor"] = floor_ms / b["batch_ms"]
            b["ratio_to_floor_median"] = (a_batch_ms + b["floor_copy_ms_median"]) / b["batch_ms_median"]
            line += (f"; floor {floor_ms:.2f} ms = (a) {a_batch_ms:.2f} + copying its "
                     f"{b['missed_rows_per_batch']:.0f} missed rows {b['floor_copy_ms']:.2f} ms: floor / (b) "
                     f"{b['ratio_to_floor']:.2f} (median {b['ratio_to_floor_median']:.2f}; target >= 0.5, moonshot "
                     f"0.7); Belady would miss {b['optimal_missed_rows_per_batch']:.0f}")
        print(line, flush=True)
    if config.io == "pread":
        limit = b["budget_bytes"] + (512 << 20)
        b["rss_within_budget_plus_512mib"] = b["peak_rss_bytes"] <= limit
        print(f"d (io=pread): peak RSS {b['peak_rss_bytes'] / 2**20:.0f} MiB; at the end {b['rss_bytes'] / 2**20:.0f} "
              f"MiB = {b['anon_rss_bytes'] / 2**20:.0f} MiB anonymous + {b['data_file_mapped_bytes'] / 2**20:.0f} MiB "
              f"of the LMDB data file mapped + {b['other_file_mapped_bytes'] / 2**20:.0f} MiB of other files; budget "
              f"{b['budget_bytes'] / 2**20:.0f} MiB + 512 MiB = {limit / 2**20:.0f} MiB (target: peak within)",
              flush=True)


def b_runs(config: LookupBenchConfig) -> list[LookupBenchConfig]:
    """The (b) runs of a full benchmark: every policy at every cache size on the Zipf trace and at
    ``cache_fraction`` on meta2022, then the default with ``io="pread"`` for (d)."""
    policies = [config.policy] + [p for p in config.other_policies.split(",") if p]
    fractions = [float(f) for f in config.cache_fractions.split(",") if f]
    runs = [replace(config, trace="zipf", cache_fraction=f, policy=p, io="mmap") for f in fractions for p in policies]
    runs += [replace(config, trace="meta2022", policy=p, io="mmap") for p in policies]
    return runs + [replace(config, trace="zipf", io="pread")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, LookupBenchConfig)
    parser.add_argument("--only", choices=["a", "b", "c"], help="run one case (b alone: one run, in this process)")
    args = parser.parse_args(argv)
    only = args.only
    config = config_from_args(LookupBenchConfig, args)
    numba.set_num_threads(config.threads)
    result = {"config": asdict(config)}
    if only == "b":
        result["b"] = case_b(config, build(config))
        print(json.dumps(result, sort_keys=True))
        return 0
    path = build(config)
    if only in (None, "a"):
        result["a"] = case_a(config, path, {"uniform": batches(config, 0.0, config.batches, config.seed + 2),
                                            "zipf": batches(config, config.zipf, config.batches, config.seed + 1)})
        for name, r in result["a"].items():
            print(f"a/{name}: tierstore {r['tierstore_rows_per_s'] / 1e6:.1f} M rows/s, torch "
                  f"{r['torch_rows_per_s'] / 1e6:.1f} M rows/s, ratio {r['ratio']:.2f} (target >= 1.0)", flush=True)
    if only is None:
        result["b"] = {}
        a_batch_ms = {}
        for run in b_runs(config):
            if run.trace not in a_batch_ms:
                a_batch_ms[run.trace] = case_a_batches(run, build(run))
            child = subprocess.run([sys.executable, "-m", "bench.bench_lookup", "--only", "b", *config_flags(run)],
                                   check=True, capture_output=True, text=True)
            name = f"{run.trace}/{run.cache_fraction:g}/{run.policy}/{run.io}"
            result["b"][name] = json.loads(child.stdout.strip().splitlines()[-1])["b"]
            report_b(run, result["b"][name], a_batch_ms[run.trace], name)
    if only in (None, "c"):
        result["c"] = case_c(config, path)
        c = result["c"]
        print(f"c: cold tierstore {c['tierstore_rows_per_s']:.0f} rows/s, raw 4 KiB pread {c['pread_rows_per_s']:.0f} "
              f"rows/s, ratio {c['ratio']:.2f} (target >= 0.5)")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
