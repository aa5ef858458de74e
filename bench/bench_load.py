"""Load benchmark (core-engine issue, item 2): bulk-load speed and peak RSS against table size.

For each table size (``--rows``, comma-separated, x ``--dim`` float32) and each source
(a ``.npy`` file, an iterator of row chunks), a fresh child process creates a store and
loads the table; it reports the load's wall time and rows/s and its peak RSS
(``VmHWM``: anonymous memory plus any file pages it mapped).  Peak RSS should not grow
with the table: the line per source ends with largest / smallest peak RSS.

Run: ``python -m bench.bench_load`` (default 1M, 4M and 16M rows of 64 floats: a
4 GiB ``.npy`` and a 4 GiB store at the largest size; ``--rows 250000,1000000`` for a
quick look).  Prints one line per run and a final JSON line that embeds the configuration.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.config_args import add_config_flags, config_flags, config_from_args

CHUNK_ROWS = 1 << 18


@dataclass(frozen=True)
class LoadBenchConfig:
    """What the load benchmark ran with (embedded in its JSON output)."""

    rows: str = "1000000,4000000,16000000"
    dim: int = 64
    chunk_bytes: int = 64 << 20
    workdir: str = "bench/out/load"
    seed: int = 0


def random_chunks(rows: int, dim: int, seed: int):
    """Seeded float32 ``[<= CHUNK_ROWS, dim]`` chunks, ``rows`` rows in all."""
    rng = np.random.default_rng(seed)
    for start in range(0, rows, CHUNK_ROWS):
        yield rng.standard_normal((min(CHUNK_ROWS, rows - start), dim), dtype=np.float32)


def write_npy(path: Path, rows: int, dim: int, seed: int) -> None:
    """Write the seeded rows as a ``.npy`` file, a chunk at a time."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    start = 0
    for chunk in random_chunks(rows, dim, seed):
        out[start : start + chunk.shape[0]] = chunk
        start += chunk.shape[0]
    out.flush()
    del out


def load_once(store_path: Path, source: str, rows: int, config: LoadBenchConfig) -> dict:
    """Create a store and load one table from ``source`` (a ``.npy`` path or ``"iterator"``); this process."""
    import tierstore

    warm_up = store_path.with_name(store_path.name + "-warm-up")
    with tierstore.create(warm_up, [tierstore.TableConfig("t", 100, config.dim)]) as store:
        store.load("t", np.zeros((100, config.dim), dtype=np.float32), progress=False)  # compile outside the timing
    shutil.rmtree(warm_up)
    store = tierstore.create(store_path, [tierstore.TableConfig("t", rows, config.dim)])
    data = random_chunks(rows, config.dim, config.seed) if source == "iterator" else source
    start = time.perf_counter()
    store.load("t", data, progress=False, chunk_bytes=config.chunk_bytes)
    seconds = time.perf_counter() - start
    store.close()
    status = Path("/proc/self/status").read_text()
    peak = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM"))
    return {"seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_bytes": peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, LoadBenchConfig)
    parser.add_argument("--child", nargs=3, metavar=("STORE", "SOURCE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    child = args.child
    config = config_from_args(LoadBenchConfig, args)
    if child:
        print(json.dumps(load_once(Path(child[0]), child[1], int(child[2]), config)))
        return 0
    work = Path(config.workdir)
    sizes = [int(r) for r in config.rows.split(",")]
    result = {"config": asdict(config), "runs": []}
    for rows in sizes:
        work.mkdir(parents=True, exist_ok=True)
        npy = work / f"rows-{rows}.npy"
        write_npy(npy, rows, config.dim, config.seed)
        for source in (str(npy), "iterator"):
            store_path = work / "store"
            shutil.rmtree(store_path, ignore_errors=True)
            out = subprocess.run([sys.executable, "-m", "bench.bench_load", *config_flags(config), "--child",
                                  str(store_path), source, str(rows)], check=True, capture_output=True, text=True)
            run = {"rows": rows, "source": "npy" if source != "iterator" else "iterator",
                   "table_bytes": rows * config.dim * 4, **json.loads(out.stdout.strip().splitlines()[-1])}
            result["runs"].append(run)
            print(f"{run['source']:>8} {rows:>10} rows ({run['table_bytes'] / 2**30:.2f} GiB): "
                  f"{run['seconds']:.1f} s, {run['rows_per_s'] / 1e6:.2f} M rows/s, "
                  f"peak RSS {run['peak_rss_bytes'] / 2**20:.0f} MiB")
            shutil.rmtree(store_path, ignore_errors=True)
        npy.unlink()
    for source in ("npy", "iterator"):
        peaks = [r["peak_rss_bytes"] for r in result["runs"] if r["source"] == source]
        result[f"{source}_peak_rss_growth"] = max(peaks) / min(peaks)
        print(f"{source}: peak RSS at the largest / smallest table: {peaks[-1] / peaks[0]:.2f} "
              f"({sizes[-1] / sizes[0]:.0f}x the rows)")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
