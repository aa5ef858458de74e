"""GPU benchmark: the GPU tier against torch's ``embedding_bag`` on CUDA, side by side in one run.

Cases, on one table (default 1M x 64 float32), batches of ``bags`` bags x ``pooling``
Zipf(``zipf``) ids arriving on the host (as numpy arrays, as a service receives them),
interleaved ``repeats`` times, each timing ``batches`` new batches (each batch waits
for the device to finish):

- ``torch``: ``torch.nn.functional.embedding_bag`` over the table's stored values in a
  CUDA tensor, ids and offsets copied to the device each batch (the anchor);
- ``torch, ids on device``: the same with every batch's ids already on the device;
- ``all-gpu``: ``Store.lookup(..., device="cuda")`` with every row on the GPU
  (``gpu_cache_bytes`` holds the table; warmed): target >= 0.8x ``torch`` (moonshot 1.0x);
- ``gpu 10%``: a GPU cache of ``cache_fraction`` of the table over a DRAM tier holding
  every row, warmed by ``warm_batches`` of the same trace: against ``all-gpu``;
- ``dram``: the plain DRAM tier on the CPU (numpy out), for scale.

``--dlrm 1`` also runs ``bench.bench_dlrm`` with its dense part on CUDA and a
GPU-tier case (``--dlrm-max-rows`` rows per table at most; needs torchrec).

Without a GPU the cases run on numba's CUDA simulator and torch's CPU (for
checking the benchmark itself: its figures then mean nothing).  Run ``python -m
bench.bench_gpu`` (``--rows 100000`` for a quick look); the last line is JSON
embedding the configuration.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import tierstore
from bench.config_args import add_config_flags, config_from_args
from bench.traces.generate import TableSpec, TraceSpec, generate
from tierstore import TableConfig
from tierstore.gpu.records import device_row_bytes

CASES = ("torch", "torch, ids on device", "all-gpu", "gpu 10%", "dram")


@dataclass(frozen=True)
class GpuBenchConfig:
    """What the GPU benchmark ran with (embedded in its JSON output)."""

    rows: int = 1_000_000
    dim: int = 64
    dtype: str = "float32"
    bags: int = 2048
    pooling: int = 32
    zipf: float = 1.05
    batches: int = 30
    repeats: int = 3
    warm_batches: int = 50
    cache_fraction: float = 0.10
    mode: str = "sum"
    dlrm: int = 0
    dlrm_max_rows: int = 2_000_000
    dlrm_batch_size: int = 2048
    dlrm_batches: int = 10
    dlrm_gpu_cache_fraction: float = 0.10
    workdir: str = "bench/out/gpu"
    seed: int = 0


def _cuda_sync():
    from numba import cuda

    cuda.synchronize()


def build(config: GpuBenchConfig) -> dict:
    """A store of one Zipf-accessed table, opened three ways (LMDB opens an environment once per process,
    so the others read copies of its data file), and the table's stored values."""
    workdir = Path(config.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    rng = np.random.default_rng(config.seed)
    values = rng.standard_normal((config.rows, config.dim), dtype=np.float32)
    store = tierstore.create(workdir / "store", [TableConfig("t", config.rows, config.dim, config.dtype)])
    store.load("t", values, progress=False)
    store.close()
    for copy in ("store-cache", "store-dram"):
        (workdir / copy).mkdir()
        shutil.copyfile(workdir / "store" / "data.mdb", workdir / copy / "data.mdb")
    table_bytes = config.rows * device_row_bytes(config.dtype, config.dim)
    dram_bytes = config.rows * config.dim * 4
    all_gpu = tierstore.open(workdir / "store", gpu_cache_bytes=table_bytes)
    all_gpu.warm("t")
    cached = tierstore.open(workdir / "store-cache", gpu_cache_bytes=int(config.cache_fraction * table_bytes),
                            dram_cache_bytes=dram_bytes)
    cached.warm("t")
    dram = tierstore.open(workdir / "store-dram", dram_cache_bytes=dram_bytes)
    dram.warm("t")
    stored = dram.get_rows("t", np.arange(config.rows))
    return {"stores": {"all-gpu": all_gpu, "gpu 10%": cached, "dram": dram}, "values": stored}


def batches(config: GpuBenchConfig, count: int) -> list:
    """``count`` batches of (ids, offsets) over the table."""
    spec = TraceSpec(tables=(TableSpec("t", config.rows, zipf=config.zipf, pooling=config.pooling,
                                       pooling_dist="fixed"),), batch_size=config.bags, num_batches=count,
                     seed=config.seed + 1)
    return [(b.values, np.arange(0, b.values.size, config.pooling)) for b in generate(spec)]


def run_bench(config: GpuBenchConfig, log=print) -> dict:
    """Build, check the outputs agree, then time the cases interleaved; returns the figures."""
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda":
        log("no CUDA device for torch: the anchor runs on the CPU and the tier on numba's simulator; "
            "these figures check the benchmark, they measure nothing")
    built = build(config)
    stores = built["stores"]
    table = torch.from_numpy(built["values"]).to(device)
    mode = config.mode
    stream = iter(batches(config, 1 + config.warm_batches + config.repeats * len(CASES) * config.batches))

    def torch_case(ids, offsets):
        return torch.nn.functional.embedding_bag(torch.from_numpy(ids).to(device), table,
                                                 torch.from_numpy(offsets).to(device), mode=mode)

    def torch_on_device(ids, offsets):
        return torch.nn.functional.embedding_bag(ids, table, offsets, mode=mode)

    runs = {
        "torch": torch_case,
        "torch, ids on device": torch_on_device,
        "all-gpu": lambda ids, offsets: stores["all-gpu"].lookup("t", ids, offsets, mode=mode, device="cuda"),
        "gpu 10%": lambda ids, offsets: stores["gpu 10%"].lookup("t", ids, offsets, mode=mode, device="cuda"),
        "dram": lambda ids, offsets: stores["dram"].lookup("t", ids, offsets, mode=mode),
    }
    ids, offsets = next(stream)
    anchor = torch_case(ids, offsets).cpu().numpy()
    differences = {}
    for case in ("all-gpu", "gpu 10%", "dram"):
        out = runs[case](ids, offsets)
        out = out.cpu().numpy() if hasattr(out, "cpu") else out.copy_to_host() if hasattr(out, "copy_to_host") \
            else out
        differences[case] = float(np.abs(out - anchor).max())
    for _ in range(config.warm_batches):
        runs["gpu 10%"](*next(stream))
    seconds = {case: [] for case in CASES}
    rates = {case: [] for case in CASES}
    for _ in range(config.repeats):
        for case in CASES:
            chunk = [next(stream) for _ in range(config.batches)]
            if case == "torch, ids on device":
                chunk = [(torch.from_numpy(i).to(device), torch.from_numpy(o).to(device)) for i, o in chunk]
            if case in stores:
                stores[case].reset_stats()
            times = []
            for ids, offsets in chunk:
                started = time.perf_counter()
                runs[case](ids, offsets)
                if device.type == "cuda":
                    _cuda_sync()
                times.append(time.perf_counter() - started)
            seconds[case] += times
            rates[case].append(config.bags * config.pooling * len(times) / sum(times))
    result = {"config": asdict(config), "device": torch.cuda.get_device_name() if device.type == "cuda" else
              "numba CUDA simulator + torch CPU", "max_abs_diff_vs_torch": differences, "cases": {}, "ratios": {},
              "gpu_tier": {}}
    for case in CASES:
        p50, p99 = np.percentile(np.array(seconds[case]) * 1e3, [50, 99])
        result["cases"][case] = {"rows_per_s": float(np.median(rates[case])), "p50_ms": float(p50),
                                 "p99_ms": float(p99), "rows_per_s_by_repeat": rates[case]}
    for case, anchor_case in (("all-gpu", "torch"), ("all-gpu", "torch, ids on device"), ("gpu 10%", "all-gpu"),
                              ("gpu 10%", "torch"), ("dram", "all-gpu")):
        result["ratios"][f"{case} / {anchor_case}"] = float(np.median(np.array(rates[case]) /
                                                                      np.array(rates[anchor_case])))
    for case in ("all-gpu", "gpu 10%"):
        stats = stores[case].stats()
        result["gpu_tier"][case] = {"gpu": stats["gpu"], "dram_hits": stats["dram"]["hits"]}
    for store in stores.values():
        store.close()
    return result


def run_dlrm(config: GpuBenchConfig, log=print) -> dict:
    """``bench.bench_dlrm`` with its dense part on CUDA and a GPU-tier case, or why it could not run."""
    from tierstore.torch.interop import torchrec_module

    if torchrec_module() is None:
        log("DLRM: skipped, torchrec is not importable here")
        return {"skipped": "torchrec is not importable here"}
    import torch

    from bench import bench_dlrm

    dlrm_config = replace(bench_dlrm.DlrmBenchConfig(), max_rows=config.dlrm_max_rows, batch_size=config.dlrm_batch_size,
                          batches=config.dlrm_batches, repeats=2, warm_batches=2 * config.dlrm_batches,
                          device="cuda" if torch.cuda.is_available() else "cpu",
                          gpu_cache_fraction=config.dlrm_gpu_cache_fraction,
                          workdir=str(Path(config.workdir) / "dlrm"))
    result = bench_dlrm.run_bench(dlrm_config, log=log)
    log(bench_dlrm.format_report(result))
    return result


def format_report(result: dict) -> str:
    """Human-readable lines of :func:`run_bench`'s result."""
    config = result["config"]
    lines = [f"one table {config['rows']:,} x {config['dim']} {config['dtype']}, {config['bags']} bags x "
             f"{config['pooling']} Zipf({config['zipf']}) ids, mode {config['mode']}, on {result['device']}"]
    for case, c in result["cases"].items():
        lines.append(f"{case:>22}: {c['rows_per_s'] / 1e6:>9.1f} M rows/s, p50 {c['p50_ms']:.3f} ms, "
                     f"p99 {c['p99_ms']:.3f} ms")
    targets = {"all-gpu / torch": " (target >= 0.8, moonshot 1.0)"}
    for name, ratio in result["ratios"].items():
        lines.append(f"{name}: {ratio:.2f}{targets.get(name, '')}")
    for case, tier in result["gpu_tier"].items():
        gpu = tier["gpu"]
        lines.append(f"{case}: GPU hit rate {gpu['hit_rate']:.1%} ({gpu['hits']:,} hits, {gpu['misses']:,} misses), "
                     f"{gpu['bytes_sent'] / max(gpu['transfers'], 1) / 1024:.0f} KiB per transfer")
    lines.append("max |difference| vs torch on the first batch: " +
                 ", ".join(f"{case} {diff:.2e}" for case, diff in result["max_abs_diff_vs_torch"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, GpuBenchConfig)
    config = config_from_args(GpuBenchConfig, parser.parse_args(argv))
    result = run_bench(config)
    print(format_report(result), flush=True)
    if config.dlrm:
        result["dlrm"] = run_dlrm(config)
    print(json.dumps(result, sort_keys=True, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
