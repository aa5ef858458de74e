"""Kernel benchmark (core-engine issue, item 7a at kernel level): ``pool_rows`` vs torch, side by side.

One table (default 4M x 64 float32, page-aligned, shared by both sides without a
copy), batches of 2048 bags x pooling 32, ``--threads`` threads for Numba and
torch, uniform and Zipf(1.05) indices from ``bench.traces.generate`` (seeded).
For each distribution it first checks that ``pool_rows`` equals
``torch.nn.functional.embedding_bag`` on a batch, then times passes over all
batches, alternating which side runs first; warm-up passes are excluded and the
medians of ``--repeats`` passes are reported, with the median of the per-repeat
ratios.  It also times ``unique_inverse`` on each batch's indices.

Run: ``python -m bench.bench_kernels --rows 4000000 --dim 64 --batches 20``.
Prints one line per figure and a final JSON line that embeds the configuration.

``--threading-layer`` picks Numba's thread pool (``default`` leaves Numba's own
choice, ``NUMBA_THREADING_LAYER`` included).  Numba's ``omp`` pool (the system
libgomp) and torch's bundled libgomp are two OpenMP runtimes in one process whose
idle workers spin; on a machine with more runnable threads than cores that
spinning takes the cores from whichever side is running (``OMP_WAIT_POLICY=PASSIVE``
stops it for both).  ``workqueue`` does not spin, but it refuses parallel calls
from two Python threads at once.  ``--threads 1 --clock thread`` times with the
CPU clock of the calling thread, which time spent waiting for a core does not
inflate: the kernel-against-kernel figure on a busy machine.  ``--table-offset-bytes 16``
places the table as ``np.empty`` would (rows straddling an extra cache line).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

from bench.config_args import benchmark_main
from bench.traces.generate import TableSpec, TraceSpec, generate
from tierstore.config import JsonConfig
from tierstore.kernels import MODE_NAMES, aligned_empty, pool_rows, unique_inverse

MODES = {name: code for code, name in MODE_NAMES.items()}
THREADING_LAYERS = ("default", "omp", "workqueue", "tbb")
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}
NO_ROWS = np.empty((0, 1), dtype=np.float32)


@dataclass(frozen=True)
class KernelBenchConfig(JsonConfig):
    """What the kernel benchmark ran with (embedded in its JSON output)."""

    rows: int = 4_000_000
    dim: int = 64
    bags: int = 2048
    pooling: int = 32
    threads: int = 2
    batches: int = 20
    repeats: int = 7
    zipf: float = 1.05
    mode: str = "sum"
    seed: int = 0
    threading_layer: str = "default"
    clock: str = "wall"
    table_offset_bytes: int = 0

    def __post_init__(self):
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {self.clock!r}")
        if self.table_offset_bytes < 0 or self.table_offset_bytes % 4:
            raise ValueError(f"table_offset_bytes must be a non-negative multiple of 4, got {self.table_offset_bytes}")
        if self.clock == "thread" and self.threads != 1:
            raise ValueError("clock 'thread' (CPU time of the calling thread) needs threads=1")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {self.mode!r}")
        if self.threading_layer not in THREADING_LAYERS:
            raise ValueError(f"threading_layer must be one of {THREADING_LAYERS}, got {self.threading_layer!r}")
        for name in ("rows", "dim", "bags", "pooling", "threads", "batches", "repeats"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def make_table(rows: int, dim: int, seed: int, offset_bytes: int = 0) -> np.ndarray:
    """A float32 ``[rows, dim]`` table of standard normals starting ``offset_bytes`` past a page boundary.

    ``np.empty`` of a large array starts 16 bytes past one, so that 64-float rows
    straddle five cache lines; ``offset_bytes=16`` reproduces it.
    """
    skip = offset_bytes // 4
    table = aligned_empty(rows * dim + skip)[skip:].reshape(rows, dim)
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 24) // dim)
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        table[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    return table


def index_batches(config: KernelBenchConfig, zipf: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """``config.batches`` batches of (indices int64, offsets int64 [bags + 1]); ``zipf == 0`` is uniform."""
    spec = TraceSpec(
        tables=(TableSpec("t", config.rows, zipf=zipf, pooling=config.pooling, pooling_dist="fixed"),),
        batch_size=config.bags, num_batches=config.batches, seed=config.seed,
    )
    return [(b.values.astype(np.int64), b.offsets.astype(np.int64)) for b in generate(spec)]


def timed_pass(run, batches, clock=time.perf_counter) -> float:
    """Seconds (of ``clock``) for one call of ``run`` per batch, over all batches."""
    started = clock()
    for indices, offsets in batches:
        run(indices, offsets)
    return clock() - started


def compare(config: KernelBenchConfig, table: np.ndarray, batches) -> dict:
    """Check ``pool_rows`` against torch on the first batch, then time both, interleaved."""
    import torch

    weight = torch.from_numpy(table)
    mode = MODES[config.mode]
    tensors = {id(indices): (torch.from_numpy(indices), torch.from_numpy(offsets[:-1])) for indices, offsets in batches}

    def ours(indices, offsets):
        out = np.empty((offsets.size - 1, table.shape[1]), dtype=np.float32)
        pool_rows(table, NO_ROWS, indices, offsets, None, mode, out)
        return out

    def theirs(indices, offsets):
        t_indices, t_offsets = tensors[id(indices)]
        return torch.nn.functional.embedding_bag(t_indices, weight, t_offsets, mode=config.mode)

    indices, offsets = batches[0]
    expected = theirs(indices, offsets).numpy()
    got = ours(indices, offsets)
    worst = float(np.max(np.abs(got - expected) / (1e-5 + np.abs(expected)), initial=0.0))
    if not np.allclose(got, expected, rtol=1e-5, atol=1e-5):
        raise AssertionError(f"pool_rows differs from torch embedding_bag (worst relative error {worst:.3g})")

    clock = CLOCKS[config.clock]
    timed_pass(ours, batches)
    timed_pass(theirs, batches)
    ours_s, theirs_s = [], []
    for repeat in range(config.repeats):
        sides = [(ours, ours_s), (theirs, theirs_s)]
        for side, seconds in (sides if repeat % 2 == 0 else sides[::-1]):
            seconds.append(timed_pass(side, batches, clock))
    pooled = sum(int(o[-1]) for _, o in batches)
    ours_rate = pooled / np.median(ours_s) / 1e6
    torch_rate = pooled / np.median(theirs_s) / 1e6

    unique_inverse(batches[0][0])
    dedup_s = []
    for indices, _ in batches:
        started = clock()
        unique_inverse(indices)
        dedup_s.append(clock() - started)
    pool_per_batch = float(np.median(ours_s)) / len(batches)
    return {
        "pool_rows_mrows_s": round(ours_rate, 2),
        "torch_mrows_s": round(torch_rate, 2),
        "ratio": round(ours_rate / torch_rate, 3),
        "paired_ratio_median": round(float(np.median(np.array(theirs_s) / np.array(ours_s))), 3),
        "pool_rows_pass_s": [round(s, 4) for s in ours_s],
        "torch_pass_s": [round(s, 4) for s in theirs_s],
        "unique_inverse_us": round(float(np.median(dedup_s)) * 1e6, 1),
        "unique_inverse_ids": int(batches[0][0].size),
        "unique_inverse_vs_pool_rows": round(float(np.median(dedup_s)) / pool_per_batch, 3),
        "distinct_per_batch": int(np.median([np.unique(i).size for i, _ in batches])),
        "max_relative_error": worst,
    }


def run(config: KernelBenchConfig) -> dict:
    """Build the table and index streams, run both distributions, return the results."""
    import torch

    if config.threading_layer != "default":
        numba.config.THREADING_LAYER = config.threading_layer
    numba.set_num_threads(config.threads)
    torch.set_num_threads(config.threads)
    table = make_table(config.rows, config.dim, config.seed, config.table_offset_bytes)
    results = {}
    for name, zipf in (("uniform", 0.0), (f"zipf{config.zipf:g}", config.zipf)):
        results[name] = compare(config, table, index_batches(config, zipf))
        r = results[name]
        print(f"{name:>10}: pool_rows {r['pool_rows_mrows_s']:7.1f} M rows/s   torch {r['torch_mrows_s']:7.1f} M rows/s"
              f"   ratio {r['ratio']:.3f} (paired median {r['paired_ratio_median']:.3f})")
        print(f"{'':>10}  unique_inverse on {r['unique_inverse_ids']} ids ({r['distinct_per_batch']} distinct): "
              f"{r['unique_inverse_us']:.0f} us = {r['unique_inverse_vs_pool_rows']:.2f} x one pool_rows batch")
    return results


def main(argv=None) -> dict:
    return benchmark_main("kernels", KernelBenchConfig, run, argv, "python -m bench.bench_kernels",
                          __doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
