"""DLRM benchmark: torchrec's ``DLRM`` with its embeddings in tierstore, against torchrec's own EBC, in one run.

A Criteo-like model: 13 dense features, 26 sparse features over 26 tables whose
sizes are the Criteo Kaggle cardinalities (3 to 10 M rows) capped at ``max_rows``
(DLRM's ``--max-ind-range`` hashing), dimension 64, one id per feature per
sample (``pooling``), Zipf(``zipf``) popularity; torchrec's example MLPs
(dense 512-256-64, over 512-512-256-1).  The tables are torchrec's random
initialization, exported with ``tierstore.from_torch``; the tierstore models load
the torchrec model's dense weights, so every case computes the same logits.

Cases, interleaved ``repeats`` times, each timing ``batches`` new batches of ``batch_size``:

- ``torchrec``: DLRM + torchrec's ``EmbeddingBagCollection`` (the anchor);
- ``dram``: DLRM + ``TieredEmbeddingBagCollection``, every row in DRAM (target >= 1.0x the anchor);
- ``cache``: the same with a DRAM cache of ``cache_fraction`` of the tables, the rest read
  from the store's SSD tier (a copy of the store: LMDB refuses to open one environment twice
  in a process), warmed by ``warm_batches`` of the same trace (target >= 0.5x);
- ``dram+pipe`` and ``cache+pipe``: the same two with the pipelined loop, batch i+1's lookups
  on a background thread while batch i's dense part runs (``TieredEmbeddingBagCollection.prefetching``),
  compared with the plain loop;
- ``torchrec ebc``, ``dram ebc``, ``cache ebc``: the embedding collections alone (what the
  dense part's share of the end-to-end time hides).

It reports samples/s (median over repeats), p50/p99 batch latency, per-tier hit rates,
the ratios (median of the per-repeat ratios), and the largest logit difference from
torchrec's on the first batch.  Dense on CPU, or on CUDA with ``--device cuda``
(``auto``: CUDA when available).  Run ``python -m bench.bench_dlrm`` (``--max-rows 200000``
for a quick look); the last line is JSON embedding the configuration.
"""

from __future__ import annotations

import os

# Numba's and torch's OpenMP pools share this process: idle threads must sleep, not spin.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numba
import numpy as np
import torch

import tierstore
from bench.config_args import add_config_flags, config_from_args
from bench.traces.generate import TableSpec, TraceSpec, generate
from tierstore import TableConfig
from tierstore.torch import TieredEmbeddingBagCollection
from tierstore.torch.interop import torchrec_module

#: Rows of the 26 Criteo Kaggle categorical features (the DLRM reference's table sizes).
CRITEO_KAGGLE_ROWS = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992,
                      5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)
DENSE_FEATURES = 13
#: Case -> (model, how it runs): the DLRM in the plain loop, in the pipelined loop, or the embedding collection alone.
CASES = {"torchrec": ("torchrec", "plain"), "dram": ("dram", "plain"), "dram+pipe": ("dram", "pipelined"),
         "cache": ("cache", "plain"), "cache+pipe": ("cache", "pipelined"), "torchrec ebc": ("torchrec", "ebc"),
         "dram ebc": ("dram", "ebc"), "cache ebc": ("cache", "ebc")}


@dataclass(frozen=True)
class DlrmBenchConfig:
    """What the DLRM benchmark ran with (embedded in its JSON output)."""

    max_rows: int = 2_000_000
    dim: int = 64
    batch_size: int = 2048
    pooling: int = 1
    zipf: float = 1.05
    batches: int = 20
    repeats: int = 3
    warm_batches: int = 100
    cache_fraction: float = 0.10
    policy: str = "lru"
    io: str = "mmap"
    dtype: str = "float32"
    threads: int = 2
    dense_arch: str = "512,256,64"
    over_arch: str = "512,512,256,1"
    device: str = "auto"
    workdir: str = "bench/out/dlrm"
    seed: int = 0

    @property
    def table_rows(self) -> list[int]:
        return [min(rows, self.max_rows) for rows in CRITEO_KAGGLE_ROWS]


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def _device(config: DlrmBenchConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def build_models(config: DlrmBenchConfig) -> dict:
    """torchrec's DLRM (random weights, seeded), its tables exported to a fresh store, and the two tiered DLRMs."""
    torchrec = torchrec_module()
    if torchrec is None:
        raise RuntimeError("the DLRM benchmark runs torchrec's DLRM: install torchrec (README: 'serve a trained model')")
    from torchrec.models.dlrm import DLRM

    torch.manual_seed(config.seed)
    tables = [torchrec.EmbeddingBagConfig(name=f"t_cat_{i}", embedding_dim=config.dim, num_embeddings=rows,
                                          feature_names=[f"cat_{i}"]) for i, rows in enumerate(config.table_rows)]
    arch = (DENSE_FEATURES, _sizes(config.dense_arch), _sizes(config.over_arch))
    anchor = DLRM(torchrec.EmbeddingBagCollection(tables=tables, device=torch.device("cpu")), *arch).eval()
    workdir = Path(config.workdir)
    shutil.rmtree(workdir / "store", ignore_errors=True)
    shutil.rmtree(workdir / "store-cache", ignore_errors=True)
    started = time.perf_counter()
    tierstore.from_torch(anchor, workdir / "store", dtype=config.dtype, progress=False)
    export_seconds = time.perf_counter() - started
    (workdir / "store-cache").mkdir()
    shutil.copyfile(workdir / "store" / "data.mdb", workdir / "store-cache" / "data.mdb")
    all_rows = sum(TableConfig(t.name, t.num_embeddings, t.embedding_dim, config.dtype).cached_row_bytes
                   * t.num_embeddings for t in tables)
    dram = tierstore.open(workdir / "store", dram_cache_bytes=all_rows, io=config.io)
    for table in dram.tables:
        dram.warm(table)
    cache = tierstore.open(workdir / "store-cache", dram_cache_bytes=int(config.cache_fraction * all_rows),
                           policy=config.policy, io=config.io)
    device = _device(config)
    models = {"torchrec": anchor.to(device)}
    for name, store in (("dram", dram), ("cache", cache)):
        tiered = DLRM(TieredEmbeddingBagCollection(store), *arch).eval()
        unmatched = tiered.load_state_dict(anchor.state_dict(), strict=False)
        assert not unmatched.missing_keys, unmatched.missing_keys
        models[name] = tiered.to(device)
    return {"models": models, "stores": {"dram": dram, "cache": cache}, "export_seconds": export_seconds}


def batch_stream(config: DlrmBenchConfig, count: int):
    """``count`` batches of (dense features, KeyedJaggedTensor), one Zipf trace over the Criteo-like tables."""
    torchrec = torchrec_module()
    spec = TraceSpec(tables=tuple(TableSpec(f"cat_{i}", rows, zipf=config.zipf, pooling=config.pooling,
                                            pooling_dist="fixed") for i, rows in enumerate(config.table_rows)),
                     batch_size=config.batch_size, num_batches=count, seed=config.seed + 1)
    generator = torch.Generator().manual_seed(config.seed + 2)
    for batch in generate(spec):
        dense = torch.randn(config.batch_size, DENSE_FEATURES, generator=generator).abs().log1p()
        yield dense, torchrec.KeyedJaggedTensor.from_lengths_sync(
            keys=list(batch.keys), values=torch.from_numpy(batch.values), lengths=torch.from_numpy(batch.lengths))


def run_case(model, batches: list, device: torch.device, how: str = "plain") -> list[float]:
    """Per-batch seconds of ``model`` over ``batches``: ``how`` is "plain", "pipelined" (the next batch's
    lookups prefetched while this one runs) or "ebc" (the embedding collection alone).

    Sparse features go to ``device`` only for torchrec's own EBC (its tables live there);
    a tiered collection reads them on the CPU and moves its output.
    """
    collection = model.sparse_arch.embedding_bag_collection
    tiered = isinstance(collection, TieredEmbeddingBagCollection)
    loop = collection.prefetching(batches) if how == "pipelined" else batches
    seconds = []
    with torch.inference_mode():
        started = time.perf_counter()
        for dense, kjt in loop:
            kjt = kjt if tiered else kjt.to(device)
            if how == "ebc":
                collection(kjt)
            else:
                model(dense.to(device), kjt)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            now = time.perf_counter()
            seconds.append(now - started)
            started = now
    return seconds


def run_bench(config: DlrmBenchConfig, log=print) -> dict:
    """Build, check equivalence on one batch, then time the cases interleaved; returns the figures."""
    numba.set_num_threads(config.threads)
    torch.set_num_threads(config.threads)
    built = build_models(config)
    models, stores = built["models"], built["stores"]
    device = _device(config)
    stream = batch_stream(config, 1 + config.warm_batches + config.repeats * len(CASES) * config.batches)
    with torch.inference_mode():
        dense, kjt = next(stream)
        reference = models["torchrec"](dense.to(device), kjt.to(device))
        logit_diff = float((models["dram"](dense.to(device), kjt) - reference).abs().max())
        for _ in range(config.warm_batches):
            dense, kjt = next(stream)
            models["cache"](dense.to(device), kjt)
    log(f"exported {sum(config.table_rows):,} rows in {built['export_seconds']:.1f} s; max |logit difference| "
        f"tierstore vs torchrec: {logit_diff:.2e}")
    seconds = {case: [] for case in CASES}
    rates = {case: [] for case in CASES}
    counters = {name: {"dram_hits": 0, "dram_misses": 0, "pages_read": 0} for name in stores}
    for _ in range(config.repeats):
        for case, (name, how) in CASES.items():
            batches = [next(stream) for _ in range(config.batches)]
            store = stores.get(name)
            if store is not None:
                store.reset_stats()
            times = run_case(models[name], batches, device, how)
            if store is not None and how != "ebc":
                stats = store.stats()
                counters[name]["dram_hits"] += stats["dram"]["hits"]
                counters[name]["dram_misses"] += stats["dram"]["misses"]
                counters[name]["pages_read"] += stats["ssd"]["pages_read"]
            seconds[case] += times
            rates[case].append(config.batch_size * len(times) / sum(times))
    result = {"config": asdict(config), "device": str(device), "export_seconds": built["export_seconds"],
              "max_abs_logit_diff": logit_diff, "cases": {}, "ratios": {}, "tiers": {}}
    for case in CASES:
        p50, p99 = np.percentile(np.array(seconds[case]) * 1e3, [50, 99])
        result["cases"][case] = {"samples_per_s": float(np.median(rates[case])), "p50_ms": float(p50),
                                 "p99_ms": float(p99), "samples_per_s_by_repeat": rates[case]}
    for case, anchor in (("dram", "torchrec"), ("cache", "torchrec"), ("dram+pipe", "dram"), ("cache+pipe", "cache"),
                         ("dram+pipe", "torchrec"), ("cache+pipe", "torchrec"), ("dram ebc", "torchrec ebc"),
                         ("cache ebc", "torchrec ebc")):
        result["ratios"][f"{case} / {anchor}"] = float(np.median(np.array(rates[case]) / np.array(rates[anchor])))
    for name, c in counters.items():
        accesses = max(c["dram_hits"] + c["dram_misses"], 1)
        result["tiers"][name] = {"dram_hit_rate": c["dram_hits"] / accesses, "ssd_hit_rate": c["dram_misses"] / accesses,
                                 "ssd_pages_per_batch": c["pages_read"] / (2 * config.repeats * config.batches),
                                 "dram_budget_bytes": stores[name].stats()["dram"]["budget_bytes"]}
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for store in stores.values():
        store.close()
    return result


def format_report(result: dict) -> str:
    """Human-readable lines of :func:`run_bench`'s result."""
    config = result["config"]
    lines = [f"DLRM, {len(CRITEO_KAGGLE_ROWS)} tables ({sum(min(r, config['max_rows']) for r in CRITEO_KAGGLE_ROWS):,} "
             f"rows, dim {config['dim']}, {config['dtype']}), batch {config['batch_size']}, dense on {result['device']}, "
             f"{config['threads']} threads"]
    for case, c in result["cases"].items():
        name, how = CASES[case]
        tier = result["tiers"].get(name) if how != "ebc" else None
        hits = "" if tier is None else (f", DRAM hit rate {tier['dram_hit_rate']:.1%}, SSD {tier['ssd_hit_rate']:.1%} "
                                        f"({tier['ssd_pages_per_batch']:.0f} pages/batch)")
        lines.append(f"{case:>12}: {c['samples_per_s']:>9,.0f} samples/s, p50 {c['p50_ms']:.1f} ms, "
                     f"p99 {c['p99_ms']:.1f} ms{hits}")
    targets = {"dram / torchrec": " (target >= 1.0)", "cache / torchrec": " (target >= 0.5)"}
    for name, ratio in result["ratios"].items():
        lines.append(f"{name}: {ratio:.2f}{targets.get(name, '')}")
    lines.append(f"max |logit difference| vs torchrec: {result['max_abs_logit_diff']:.2e}; peak RSS "
                 f"{result['peak_rss_bytes'] / 2**30:.1f} GiB (with io='mmap', the mapped LMDB pages count)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, DlrmBenchConfig)
    config = config_from_args(DlrmBenchConfig, parser.parse_args(argv))
    result = run_bench(config)
    print(format_report(result))
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
