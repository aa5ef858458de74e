"""Cold start: a new process's ``import tierstore`` + ``tierstore.open`` + first lookup, per policy.

Each figure comes from a real child process (``python -c``) on a small store
(one table of ``--rows`` x ``--dim`` of ``--dtype``), with a DRAM tier of
``--dram-fraction`` of the rows under each policy (every registered one by
default, ``default``: the set-associative default tier, and ``none``: no DRAM
tier).  The child times ``import tierstore``,
``tierstore.open`` and the first ``lookup`` of ``--batch`` bags of
``--pooling`` ids (sum), reports their total and its own CPU time, and the
``stats()`` latency percentiles and warm-up batches after a second lookup.
numba's disk cache (``NUMBA_CACHE_DIR``) is, per policy:

- ``cold``: empty, as after a fresh install: the first run compiles (``--no-cold``
  skips these, the slow part);
- ``warm``: filled by that cold run, as every later process finds it
  (``--warm-runs`` children, best and median);
- ``after warmup``: filled only by one ``tierstore warmup STORE`` run (timed), then
  one child per policy: compiling ahead covers everything the store uses.

Target: ``total_s`` <= ``--target-s`` (1 s) warm and after warmup, for every policy.

Run: ``python -m bench.bench_coldstart`` (``--no-cold`` for a quicker look).
Prints one line per figure and a final JSON line with the config.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.config_args import print_result

CHILD = """
import json, sys, time
started, cpu_started = time.perf_counter(), time.process_time()
import numpy as np
import tierstore
imported = time.perf_counter()
path, policy, budget, batch, pooling, rows, seed = sys.argv[1:]
store = (tierstore.open(path) if policy == "none"
         else tierstore.open(path, dram_cache_bytes=int(budget), policy=None if policy == "default" else policy))
opened = time.perf_counter()
rng = np.random.default_rng(int(seed))
ids = rng.integers(0, int(rows), int(batch) * int(pooling))
offsets = np.arange(0, ids.size, int(pooling))
store.lookup("t", ids, offsets)
done = time.perf_counter()
cpu = time.process_time() - cpu_started
store.lookup("t", rng.integers(0, int(rows), ids.size), offsets)
print(json.dumps({"import_s": imported - started, "open_s": opened - imported, "lookup_s": done - opened,
                  "total_s": done - started, "cpu_s": cpu, "latency": store.stats()["latency"]}))
"""


@dataclass(frozen=True)
class ColdStartConfig:
    """What the cold-start benchmark ran with (embedded in its JSON output)."""

    rows: int = 100_000
    dim: int = 32
    dtype: str = "float32"
    batch: int = 2048
    pooling: int = 32
    dram_fraction: float = 0.10
    policies: tuple[str, ...] = ()
    warm_runs: int = 3
    cold: bool = True
    warmup: bool = True
    target_s: float = 1.0
    seed: int = 0


def _child_env(cache_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_BOUNDSCHECK"}
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    return env


def run_child(store: Path, policy: str, config: ColdStartConfig, cache_dir: Path) -> dict:
    """One child process's figures, plus ``process_s``: its whole life, start to exit."""
    from tierstore import TableConfig

    row_bytes = TableConfig("t", config.rows, config.dim, config.dtype).cached_row_bytes
    budget = int(config.dram_fraction * config.rows) * row_bytes
    args = [sys.executable, "-c", CHILD, str(store), policy, str(budget), str(config.batch), str(config.pooling),
            str(config.rows), str(config.seed)]
    started = time.perf_counter()
    done = subprocess.run(args, env=_child_env(cache_dir), capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"child for policy {policy!r} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": elapsed}


def run_warmup(store: Path, cache_dir: Path) -> float:
    """Seconds of one ``tierstore warmup STORE`` process into ``cache_dir``."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", "warmup", str(store), "--quiet"],
                          env=_child_env(cache_dir), capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"tierstore warmup failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def make_store(path: Path, config: ColdStartConfig) -> None:
    import tierstore
    from tierstore import TableConfig

    store = tierstore.create(path, [TableConfig("t", config.rows, config.dim, config.dtype)])
    rng = np.random.default_rng(config.seed)
    store.load("t", rng.standard_normal((config.rows, config.dim)).astype(np.float32), progress=False)
    store.close()


def _line(label: str, policy: str, r: dict) -> str:
    return (f"{label:>13} {policy:>8}: total {r['total_s']:6.3f} s (import {r['import_s']:.3f}, open {r['open_s']:.3f},"
            f" lookup {r['lookup_s']:.3f}; CPU {r['cpu_s']:.3f} s; process {r['process_s']:.2f} s)"
            f"  stats p50 {r['latency']['p50_ms']:.1f} ms, warm-up batches {r['latency']['warmup_batches']}")


def cold_start(config: ColdStartConfig, workdir: Path) -> dict:
    from cache_policies import available_policies

    policies = list(config.policies) or [*available_policies(), "default", "none"]
    store = workdir / "store"
    make_store(store, config)
    rows = []
    for policy in policies:
        cache = workdir / f"cache-{policy}"
        cache.mkdir()
        if config.cold:
            r = run_child(store, policy, config, cache)
            rows.append({"policy": policy, "cache": "cold", **r})
            print(_line("cold", policy, r), flush=True)
        else:
            run_child(store, policy, config, cache)
        warm = [run_child(store, policy, config, cache) for _ in range(config.warm_runs)]
        best = min(warm, key=lambda r: r["total_s"])
        rows.append({"policy": policy, "cache": "warm", **best,
                     "median_total_s": statistics.median(r["total_s"] for r in warm),
                     "median_cpu_s": statistics.median(r["cpu_s"] for r in warm)})
        print(_line("warm (best)", policy, best) + f"; median total {rows[-1]['median_total_s']:.3f} s", flush=True)
    warmup_s = None
    if config.warmup:
        cache = workdir / "cache-after-warmup"
        cache.mkdir()
        warmup_s = run_warmup(store, cache)
        print(f"tierstore warmup {store.name}: {warmup_s:.1f} s (empty cache, every policy)", flush=True)
        for policy in policies:
            r = run_child(store, policy, config, cache)
            rows.append({"policy": policy, "cache": "after warmup", **r})
            print(_line("after warmup", policy, r), flush=True)
    checked = [r for r in rows if r["cache"] != "cold"]
    summary = {
        "max_warm_total_s": max(r["total_s"] for r in checked),
        "all_within_target": all(r["total_s"] <= config.target_s for r in checked),
        "warmup_s": warmup_s,
    }
    if config.cold:
        summary["max_cold_total_s"] = max(r["total_s"] for r in rows if r["cache"] == "cold")
    return {"config": asdict(config), "runs": rows, "summary": summary}


def main(argv=None) -> dict:
    defaults = ColdStartConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=defaults.rows)
    p.add_argument("--dim", type=int, default=defaults.dim)
    p.add_argument("--dtype", choices=("float32", "float16", "int8"), default=defaults.dtype)
    p.add_argument("--batch", type=int, default=defaults.batch)
    p.add_argument("--pooling", type=int, default=defaults.pooling)
    p.add_argument("--dram-fraction", type=float, default=defaults.dram_fraction)
    p.add_argument("--policies", nargs="+", default=list(defaults.policies),
                   help="policy names, 'default' for the set-associative default tier, 'none' for no DRAM tier "
                   "(default: every registered policy, default and none)")
    p.add_argument("--warm-runs", type=int, default=defaults.warm_runs)
    p.add_argument("--no-cold", action="store_true", help="skip the empty-cache runs (the cache is still filled)")
    p.add_argument("--no-warmup", action="store_true", help="skip the tierstore warmup runs")
    p.add_argument("--target-s", type=float, default=defaults.target_s)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = p.parse_args(argv)
    config = ColdStartConfig(rows=args.rows, dim=args.dim, dtype=args.dtype, batch=args.batch, pooling=args.pooling,
                             dram_fraction=args.dram_fraction, policies=tuple(args.policies),
                             warm_runs=args.warm_runs, cold=not args.no_cold, warmup=not args.no_warmup,
                             target_s=args.target_s, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp:
        result = cold_start(config, Path(tmp))
    s = result["summary"]
    print(f"slowest warm start {s['max_warm_total_s']:.3f} s (target <= {config.target_s} s for every policy: "
          f"{'met' if s['all_within_target'] else 'NOT met'})")
    print_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
