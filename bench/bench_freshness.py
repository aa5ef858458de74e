"""What the freshness check costs an all-DRAM batch: bench_lookup's case (a), with and without it, paired.

An all-resident batch opens no LMDB read transaction; instead each batch compares
LMDB's last committed transaction id (read from the data file's meta pages in the
map) with the one the handle last synced to (``Store._catch_up``), so a commit by
another process is seen by the next lookup.  This times, on case (a)'s store and
batches (``bench.bench_lookup``), the same lookups with the check and with it
switched off, interleaved repeat by repeat, and the check alone (and what it costs
through py-lmdb's ``Environment.info``, the path without the direct reader).

Run: ``python -m bench.bench_freshness`` (``--rows 1000000`` for a quick look).
Prints the figures and a JSON line that embeds the configuration.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass

import numba
import numpy as np

import tierstore
from bench.bench_lookup import LookupBenchConfig, batches, build
from bench.config_args import add_config_flags, config_from_args


@dataclass(frozen=True)
class FreshnessBenchConfig(LookupBenchConfig):
    """What the freshness benchmark ran with (embedded in its JSON output): case (a)'s store and batches."""

    repeats: int = 9
    checks: int = 200_000


def seconds_per_batch(lookup, work) -> float:
    start = time.perf_counter()
    for indices, offsets in work:
        lookup(indices, offsets)
    return (time.perf_counter() - start) / len(work)


def run(config: FreshnessBenchConfig) -> dict:
    numba.set_num_threads(config.threads)
    path = build(config)
    work = batches(config, config.zipf, config.batches, config.seed + 1)
    store = tierstore.open(path, dram_cache_bytes=config.rows * config.dim * 4)
    store.warm("t")
    checked = store._catch_up
    seconds_per_batch(lambda i, o: store.lookup("t", i, o), work)  # compile and touch the slab first
    with_check, without = [], []
    for _ in range(config.repeats):
        with_check.append(seconds_per_batch(lambda i, o: store.lookup("t", i, o), work))
        store._catch_up = store._check_open
        without.append(seconds_per_batch(lambda i, o: store.lookup("t", i, o), work))
        store._catch_up = checked
    start = time.perf_counter()
    for _ in range(config.checks):
        checked()
    check_s = (time.perf_counter() - start) / config.checks
    start = time.perf_counter()
    for _ in range(config.checks):
        store.env.info()["last_txnid"]
    pylmdb_check_s = (time.perf_counter() - start) / config.checks
    store.close()
    paired = np.array(with_check) / np.array(without)
    return {"config": asdict(config), "batch_s_with_check": min(with_check), "batch_s_without_check": min(without),
            "paired_ratio_median": float(np.median(paired)), "paired_ratios": paired.tolist(),
            "check_s": check_s, "check_share_of_batch": check_s / min(with_check),
            "pylmdb_check_s": pylmdb_check_s}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, FreshnessBenchConfig)
    result = run(config_from_args(FreshnessBenchConfig, parser.parse_args(argv)))
    print(f"all-DRAM batch ({result['config']['bags']} bags x {result['config']['pooling']}): "
          f"{result['batch_s_with_check'] * 1e3:.3f} ms with the freshness check, "
          f"{result['batch_s_without_check'] * 1e3:.3f} ms without (best of {result['config']['repeats']}); "
          f"paired with/without median {result['paired_ratio_median']:.3f}")
    print(f"the check alone: {result['check_s'] * 1e6:.2f} us per batch = "
          f"{100 * result['check_share_of_batch']:.3f} % of a batch (through py-lmdb's Environment.info, "
          f"TIERSTORE_LMDB_DIRECT=0: {result['pylmdb_check_s'] * 1e6:.2f} us)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
