"""Lookup benchmark (core-engine issue, item 7): tierstore against its anchors, side by side in one run.

Cases, on one table (default 4M x 64 float32), batches of 2048 bags x pooling 32,
``--threads`` threads for Numba and torch, uniform and Zipf(1.05) indices:

a. every row cached in DRAM: tierstore ``lookup`` vs ``torch.nn.functional.embedding_bag``
   over the very same memory (the DRAM slab, shared with torch without a copy);
b. a warm DRAM cache of 10 % of the table, Zipf: throughput relative to (a), for each way the
   store can read pages (``io="mmap"``, ``io="pread"``), and with the ``other_policies`` too
   (each run in its own child process).  The cache is warmed by the head of the very trace
   that is then timed (same hot set), and every timed batch is new.  Beside it, the
   time just to read each batch's missed rows from the page cache (through the map, and
   with ``pread``, which maps nothing), and the ratio that floor leaves possible, also
   with the fewest misses of any policy that caches every miss (Belady; :func:`miss_floor`);
c. cold SSD path (page cache dropped with ``posix_fadvise(DONTNEED)``): rows/s from
   the LMDB tier vs raw 4 KiB random ``os.pread`` on the same file, same thread count;
d. peak RSS of (b) against the DRAM budget + 512 MiB, split into anonymous memory and
   pages of the LMDB file mapped from the page cache: with ``io="mmap"`` the kernel maps
   pages around each fault, so a few thousand random reads map most of a file of this
   size; ``io="pread"`` maps almost nothing.

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
from tierstore import TableConfig, pages


@dataclass(frozen=True)
class LookupBenchConfig:
    """What the lookup benchmark ran with (embedded in its JSON output)."""

    rows: int = 4_000_000
    dim: int = 64
    bags: int = 2048
    pooling: int = 32
    threads: int = 2
    batches: int = 40
    repeats: int = 3
    zipf: float = 1.05
    cache_fraction: float = 0.10
    policy: str = "lru"
    io: str = "mmap"
    other_policies: str = "sieve,s3fifo,arc"
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


def b_stream(config: LookupBenchConfig):
    """Case (b)'s Zipf batches, made as they are used (never held: (d) measures the process).

    One trace (one hot set): ``warm_batches`` that warm the cache, then
    ``batches * repeats`` timed ones, then ``batches`` for :func:`miss_floor`.
    """
    total = config.warm_batches + config.batches * (config.repeats + 1)
    return stream(config, config.zipf, total, config.seed + 1)


def build(config: LookupBenchConfig) -> Path:
    """Create (once) the benchmark store under ``workdir``."""
    path = Path(config.workdir) / f"store-{config.rows}x{config.dim}"
    if (path / "data.mdb").is_file():
        return path
    rng = np.random.default_rng(config.seed)
    store = tierstore.create(path, [TableConfig("t", config.rows, config.dim)])
    chunk = 1 << 18
    store.load("t", (rng.standard_normal((min(chunk, config.rows - s), config.dim), dtype=np.float32)
                     for s in range(0, config.rows, chunk)))
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


def case_b(config, path):
    """10 % DRAM cache, warm, Zipf: pooled rows/s, hit rate, and the process's memory.

    Every timed batch is new (no batch is replayed, which would find its own rows
    cached); only the lookups are timed, not making the batches.
    """
    budget = int(config.cache_fraction * config.rows * config.dim * 4)
    store = tierstore.open(path, dram_cache_bytes=budget, policy=config.policy, io=config.io)
    trace = b_stream(config)
    for indices, offsets in itertools.islice(trace, config.warm_batches):
        store.lookup("t", indices, offsets)
    store.reset_stats()
    busy = 0.0
    for indices, offsets in itertools.islice(trace, config.batches * config.repeats):
        start = time.perf_counter()
        store.lookup("t", indices, offsets)
        busy += time.perf_counter() - start
    speed = config.batches * config.repeats * config.bags * config.pooling / busy
    stats = store.stats()
    data_file_mapped = store.data_file_mapped_bytes()
    rollup = {line.split(":")[0]: int(line.split()[1]) * 1024
              for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]}
    status = Path("/proc/self/status").read_text()
    peak = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM"))
    floor = None
    if config.io == "mmap":
        floor = miss_floor(store, list(trace))
        floor["optimal_missed_rows"] = optimal_misses(config)
    store.close()
    return {"rows_per_s": speed, "miss_floor": floor, "hit_rate": stats["dram"]["hit_rate"], "budget_bytes": budget,
            "ssd_pages_per_batch": stats["ssd"]["pages_read"] / max(stats["batches"], 1),
            "p50_ms": stats["latency"]["p50_ms"], "p99_ms": stats["latency"]["p99_ms"],
            "peak_rss_bytes": peak, "rss_bytes": rollup["Rss"], "anon_rss_bytes": rollup["Anonymous"],
            "data_file_mapped_bytes": data_file_mapped,
            "other_file_mapped_bytes": rollup["Rss"] - rollup["Anonymous"] - data_file_mapped}


def miss_floor(store, work) -> dict:
    """Milliseconds per batch just to read each batch's missed rows, through the map and with ``pread``,
    and the missed rows per batch.

    Runs ``work`` (batches after the timed ones).  Before each batch, the rows of
    the batch not in the DRAM tier are the ones it will miss.  Two ways to read
    exactly those rows are timed alone, then the batch runs normally:

    - ``mapped``: copy the rows out of their pages in the mapped LMDB file into a
      reused buffer (the store's float32 decode: one prefetching ``memcpy`` per row;
      no page lookups, checks, policy or pooling);
    - ``pread``: copy the pages holding them with the store's parallel ``pread``
      (``io="pread"``, which maps nothing and so adds no page-cache pages to RSS).

    Any implementation reads its missed rows once, so (a)'s batch time plus the floor
    bounds what (b) can reach.  Reads the store's internals (one identity-layout table).
    """
    tier, ssd, reader = store._tier_of["t"], store._ssd["t"], store._direct
    if reader is None or ssd.spans is None:
        return {"mapped_ms": float("nan"), "pread_ms": float("nan"), "missed_rows": float("nan")}
    rpp, dim = ssd.config.rows_per_page, ssd.config.dim
    mapped = through_pread = 0.0
    n_missed = 0
    value_start, value_end = np.abs(ssd.spans[:, 0]), ssd.spans[:, 1]
    reader.read_values(value_start[:1], value_end[:1])  # compile outside the timing
    out = np.empty((len(work[0][0]), dim), dtype=np.float32)
    for indices, offsets in work:
        distinct = np.unique(indices)
        missed = distinct[~tier.cached("t", distinct)]
        missed = missed[value_start[missed // rpp] > 0]
        n_missed += missed.size
        page_of = missed // rpp
        starts, rank, slot = value_start[page_of], np.arange(missed.size), missed % rpp
        start = time.perf_counter()
        pages.decode_rows(reader.view, starts, rank, slot, 0, dim, out[: missed.size])
        mapped += time.perf_counter() - start
        page_ids = np.unique(page_of)
        start = time.perf_counter()
        reader.read_values(value_start[page_ids], value_end[page_ids])
        through_pread += time.perf_counter() - start
        store.lookup("t", indices, offsets)
    return {"mapped_ms": mapped / len(work) * 1e3, "pread_ms": through_pread / len(work) * 1e3,
            "missed_rows": n_missed / len(work)}


def optimal_misses(config: LookupBenchConfig) -> float:
    """Distinct-row misses per timed batch of Belady's optimal cache at (b)'s budget.

    The stream is each batch's distinct rows, warm-up batches first (the store reports
    hits once per distinct row per batch).  No policy that caches every miss misses
    fewer rows, so the miss floor scaled to this count bounds (b) for such policies.
    """
    from cache_policies import make_policy, simulate

    n_batches = config.warm_batches + config.batches * config.repeats
    rows = [np.unique(indices) for indices, _ in itertools.islice(b_stream(config), n_batches)]
    timed = sum(r.size for r in rows[config.warm_batches:])
    log = simulate(np.concatenate(rows), make_policy("belady"), int(config.cache_fraction * config.rows),
                   record=True).log
    return float(np.count_nonzero(log.outcome[-timed:] != 1)) / (config.batches * config.repeats)


def case_c(config, path):
    """Cold reads: LMDB tier rows/s vs raw 4 KiB random pread, same thread count."""
    rng = np.random.default_rng(config.seed + 7)
    rows = rng.choice(config.rows, size=config.cold_rows, replace=False)
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


def report_b(config: LookupBenchConfig, result: dict, run: str) -> None:
    """Print case (b) and its memory (d) for one ``run`` (``config.policy`` and ``config.io``),
    adding the ratios to ``result["b"][run]``."""
    b = result["b"][run]
    io = config.io
    if "a" in result:
        a_batch_ms = config.bags * config.pooling / result["a"]["zipf"]["tierstore_rows_per_s"] * 1e3
        b["ratio_to_a"] = b["rows_per_s"] / result["a"]["zipf"]["tierstore_rows_per_s"]
        print(f"b ({config.policy}, io={io}): {b['rows_per_s'] / 1e6:.1f} M rows/s at hit rate {b['hit_rate']:.1%}, "
              f"{b['ssd_pages_per_batch']:.0f} SSD pages/batch, p50 {b['p50_ms']:.1f} ms, ratio to a/zipf "
              f"{b['ratio_to_a']:.2f} (target >= 0.5)")
        floor = b["miss_floor"]
        if floor is not None:
            optimal_ms = floor["mapped_ms"] * floor["optimal_missed_rows"] / floor["missed_rows"]
            b["ratio_bound"] = {"mapped": a_batch_ms / (a_batch_ms + floor["mapped_ms"]),
                                "pread": a_batch_ms / (a_batch_ms + floor["pread_ms"]),
                                "mapped_optimal_policy": a_batch_ms / (a_batch_ms + optimal_ms)}
            print(f"b bound: only reading its {floor['missed_rows']:.0f} missed rows per batch takes "
                  f"{floor['mapped_ms']:.2f} ms from the mapped file ({floor['pread_ms']:.2f} ms with pread, which "
                  f"maps nothing), so (b) can reach at most {b['ratio_bound']['mapped']:.2f} "
                  f"({b['ratio_bound']['pread']:.2f}) of (a)'s {a_batch_ms:.2f} ms per batch; with Belady's "
                  f"{floor['optimal_missed_rows']:.0f} misses, the fewest of any policy that caches every miss, "
                  f"at most "
                  f"{b['ratio_bound']['mapped_optimal_policy']:.2f}")
    limit = b["budget_bytes"] + (512 << 20)
    b["rss_within_budget_plus_512mib"] = b["peak_rss_bytes"] <= limit
    b["anon_rss_within_budget_plus_512mib"] = b["anon_rss_bytes"] <= limit
    print(f"d (io={io}): peak RSS {b['peak_rss_bytes'] / 2**20:.0f} MiB; at the end {b['rss_bytes'] / 2**20:.0f} MiB = "
          f"{b['anon_rss_bytes'] / 2**20:.0f} MiB anonymous + {b['data_file_mapped_bytes'] / 2**20:.0f} MiB of the "
          f"LMDB data file mapped from the page cache + {b['other_file_mapped_bytes'] / 2**20:.0f} MiB of other files "
          f"(shared libraries); budget {b['budget_bytes'] / 2**20:.0f} MiB + 512 MiB = {limit / 2**20:.0f} MiB "
          f"(target: peak within)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, LookupBenchConfig)
    parser.add_argument("--only", choices=["a", "b", "c"], help="run one case (b alone is how d is measured)")
    args = parser.parse_args(argv)
    only = args.only
    config = config_from_args(LookupBenchConfig, args)
    numba.set_num_threads(config.threads)
    path = build(config)
    result = {"config": asdict(config)}
    if only in (None, "a"):
        result["a"] = case_a(config, path, {"uniform": batches(config, 0.0, config.batches, config.seed + 2),
                                            "zipf": batches(config, config.zipf, config.batches, config.seed + 1)})
        for name, r in result["a"].items():
            print(f"a/{name}: tierstore {r['tierstore_rows_per_s'] / 1e6:.1f} M rows/s, torch "
                  f"{r['torch_rows_per_s'] / 1e6:.1f} M rows/s, ratio {r['ratio']:.2f} (target >= 1.0)")
    if only == "b":
        result["b"] = case_b(config, path)
    elif only is None:
        result["b"] = {}
        runs = [replace(config, io=io) for io in tierstore.IO_MODES]
        runs += [replace(config, policy=p, io="mmap") for p in config.other_policies.split(",") if p]
        for run in runs:
            child = subprocess.run([sys.executable, "-m", "bench.bench_lookup", "--only", "b", *config_flags(run)],
                                   check=True, capture_output=True, text=True)
            name = f"{run.policy}/{run.io}"
            result["b"][name] = json.loads(child.stdout.strip().splitlines()[-1])["b"]
            report_b(run, result, name)
    if only in (None, "c"):
        result["c"] = case_c(config, path)
        c = result["c"]
        print(f"c: cold tierstore {c['tierstore_rows_per_s']:.0f} rows/s, raw 4 KiB pread {c['pread_rows_per_s']:.0f} "
              f"rows/s, ratio {c['ratio']:.2f} (target >= 0.5)")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
