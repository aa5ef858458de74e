"""Distributed benchmark: ``ShardedStore`` with 1, 2 and 4 shards on a local Ray cluster vs one in-process store.

Every store holds every row in DRAM (each shard's budget holds its rows, all
warmed), so what differs is the scale-out machinery: the router's split and
merge, and Ray's actor calls.  Batches are Zipf(``zipf``) over ``tables`` tables
of ``rows`` x ``dim`` float32, ``bags`` bags per table, ``pooling`` ids per bag,
``modes`` cycling through sum, mean and max.  ``layout="tables"`` plans whole
tables per shard; ``layout="ranges"`` keeps one table of ``tables * rows`` rows,
cut into one row range per shard (every batch fans out to every shard and merges
partials).

Timed side by side in one run: ``repeats`` rounds, each running ``batches``
batches through every store in turn (the order rotating from round to round),
every result checked against the in-process store's.  Blocks rather than single
batches alternate: on a small machine the actors' work after a call would
otherwise land in the next store's timing.
Per store: p50/p95 batch latency, rows/s one batch at a time, rows/s with
``clients`` threads submitting at once (Ray runs shards in parallel), and per
batch the router's split and merge, the whole fan-out call, the slowest shard's
own lookup time, Ray's share (call minus shard), an empty call to every shard
(Ray's fixed cost), and bytes sent to and received from the shards.

Run: ``python -m bench.bench_distributed`` (``--layout ranges`` for row ranges;
``--inline-bytes 8388608`` raises Ray's inline small-object limit).  Prints one
line per store and a final JSON line that embeds the configuration.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numba
import numpy as np

import tierstore
from bench.config_args import add_config_flags, config_from_args
from bench.traces.generate import TableSpec, TraceSpec, generate
from tierstore import TableConfig
from tierstore.distributed import ShardedStore, ShardPlanConfig, make_shard_plan, write_shards

MODES = ("sum", "mean", "max")


@dataclass(frozen=True)
class DistributedBenchConfig:
    """What the distributed benchmark ran with (embedded in its JSON output)."""

    tables: int = 4
    rows: int = 250_000
    dim: int = 64
    bags: int = 512
    pooling: int = 32
    zipf: float = 1.05
    layout: str = "tables"
    shards: str = "1,2,4"
    batches: int = 30
    repeats: int = 3
    warm_batches: int = 5
    clients: int = 4
    client_batches: int = 40
    threads: int = 2
    shard_threads: int = 1
    ray_cpus: int = 4
    actor_cpus: float = 0.5
    object_store_bytes: int = 256 << 20
    inline_bytes: int = 0
    workdir: str = ""
    seed: int = 0


def build(config: DistributedBenchConfig, root: Path) -> tuple[Path, list[TableConfig]]:
    """The source store: ``tables`` tables of ``rows`` rows (``layout="ranges"``: one table of all of them)."""
    if config.layout == "ranges":
        tables = [TableConfig("t0", config.tables * config.rows, config.dim)]
    else:
        tables = [TableConfig(f"t{i}", config.rows, config.dim) for i in range(config.tables)]
    path = root / "src"
    rng = np.random.default_rng(config.seed)
    with tierstore.create(path, tables) as store:
        for t in tables:
            chunk = 1 << 17
            store.load(t.name, (rng.standard_normal((min(chunk, t.num_rows - s), t.dim), dtype=np.float32)
                                for s in range(0, t.num_rows, chunk)), progress=False)
    return path, tables


def make_batches(config: DistributedBenchConfig, tables: list[TableConfig], count: int, seed: int) -> list:
    spec = TraceSpec(tables=tuple(TableSpec(t.name, t.num_rows, zipf=config.zipf, pooling=config.pooling,
                                            pooling_dist="fixed") for t in tables),
                     batch_size=config.bags, num_batches=count, seed=seed)
    return list(generate(spec))


def router_delta(after: dict, before: dict) -> dict:
    return {k: after["router"][k] - before["router"][k] for k in after["router"]}


def per_batch_costs(delta: dict, batches: int) -> dict:
    """The router's counters over ``batches`` batches, per batch (ms and bytes)."""
    ms = {k: delta[k] / batches * 1e3 for k in ("split_s", "merge_s", "call_s", "shard_s")}
    return {
        "split_ms": ms["split_s"], "merge_ms": ms["merge_s"], "call_ms": ms["call_s"],
        "shard_lookup_ms": ms["shard_s"], "ray_ms": ms["call_s"] - ms["shard_s"],
        "bytes_to_shards": delta["bytes_to_shards"] / batches,
        "bytes_from_shards": delta["bytes_from_shards"] / batches,
        "retries": delta["retries"],
    }


def empty_call_ms(store, calls: int = 30) -> float:
    """Median round trip of a call that carries nothing to every shard (``ShardedStore.where``), in ms."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        store.where()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def concurrent_rows_per_s(store, batches: list, clients: int, count: int, rows_per_batch: int) -> float:
    """Rows/s with ``clients`` threads each looking up ``count // clients`` batches at once."""
    per_client = max(1, count // clients)

    def run(k):
        for i in range(per_client):
            batch = batches[(k * per_client + i) % len(batches)]
            store.lookup_batch(batch, mode=MODES[i % len(MODES)])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * per_client * rows_per_batch / (time.perf_counter() - start)


def run(config: DistributedBenchConfig, root: Path) -> dict:
    import ray

    numba.set_num_threads(config.threads)
    source, tables = build(config, root)
    shard_counts = [int(n) for n in config.shards.split(",") if n]
    plans = {}
    for n in shard_counts:
        plan = make_shard_plan(tables, ShardPlanConfig(num_shards=n))
        plans[n] = write_shards(source, root / f"shards-{n}", plan)
    total_bytes = sum(t.num_rows * t.cached_row_bytes for t in tables)
    system = {"max_direct_call_object_size": config.inline_bytes} if config.inline_bytes else None
    ray.init(num_cpus=config.ray_cpus, object_store_memory=config.object_store_bytes, include_dashboard=False,
             logging_level="WARNING", _system_config=system)
    single = tierstore.open(source, dram_cache_bytes=total_bytes)
    for t in tables:
        single.warm(t.name)
    stores = {"in-process": single}
    for n in shard_counts:
        sharded = ShardedStore.open(plans[n], dram_cache_bytes=total_bytes, actor_cpus=config.actor_cpus,
                                    threads=config.shard_threads)
        sharded.warm()
        stores[f"{n} shards"] = sharded
    batches = make_batches(config, tables, config.batches + config.warm_batches, config.seed + 1)
    rows_per_batch = config.bags * config.pooling * len(tables)
    for i, batch in enumerate(batches[: config.warm_batches]):  # compile every mode everywhere
        for store in stores.values():
            store.lookup_batch(batch, mode=MODES[i % len(MODES)])
    timed = batches[config.warm_batches :]
    expected = [single.lookup_batch(batch, mode=MODES[i % len(MODES)]) for i, batch in enumerate(timed)]
    before = {name: s.stats() for name, s in stores.items() if name != "in-process"}
    latencies = {name: [] for name in stores}
    names = list(stores)
    for repeat in range(config.repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            for i, batch in enumerate(timed):
                start = time.perf_counter()
                got = stores[name].lookup_batch(batch, mode=MODES[i % len(MODES)])
                latencies[name].append(time.perf_counter() - start)
                if not np.allclose(got, expected[i], rtol=1e-5, atol=1e-5):
                    raise AssertionError(f"{name}: batch {i} differs from the in-process store's result")
    result = {"config": asdict(config), "rows_per_batch": rows_per_batch, "stores": {}}
    for name, store in stores.items():
        lat = np.array(latencies[name])
        entry = {"p50_ms": float(np.percentile(lat, 50) * 1e3), "p95_ms": float(np.percentile(lat, 95) * 1e3),
                 "rows_per_s": rows_per_batch / float(lat.mean())}
        if name != "in-process":
            entry.update(per_batch_costs(router_delta(store.stats(), before[name]), lat.size))
            entry["empty_call_ms"] = empty_call_ms(store)
        result["stores"][name] = entry
    for name, store in stores.items():
        result["stores"][name]["concurrent_rows_per_s"] = concurrent_rows_per_s(
            store, batches, config.clients, config.client_batches, rows_per_batch)
    anchor = result["stores"]["in-process"]
    for entry in result["stores"].values():
        entry["latency_ratio"] = entry["p50_ms"] / anchor["p50_ms"]
        entry["throughput_ratio"] = entry["rows_per_s"] / anchor["rows_per_s"]
        entry["concurrent_ratio"] = entry["concurrent_rows_per_s"] / anchor["concurrent_rows_per_s"]
    for name, store in stores.items():
        store.close()
    ray.shutdown()
    return result


def report(result: dict) -> None:
    for name, e in result["stores"].items():
        line = (f"{name}: p50 {e['p50_ms']:.2f} ms, p95 {e['p95_ms']:.2f} ms ({e['latency_ratio']:.2f}x in-process), "
                f"{e['rows_per_s'] / 1e6:.2f} M rows/s serial ({e['throughput_ratio']:.2f}x), "
                f"{e['concurrent_rows_per_s'] / 1e6:.2f} M rows/s with {result['config']['clients']} clients "
                f"({e['concurrent_ratio']:.2f}x)")
        if "split_ms" in e:
            line += (f"; per batch: split {e['split_ms']:.2f} ms, merge {e['merge_ms']:.2f} ms, fan-out call "
                     f"{e['call_ms']:.2f} ms = slowest shard's lookup {e['shard_lookup_ms']:.2f} ms + Ray "
                     f"{e['ray_ms']:.2f} ms (an empty call to every shard: {e['empty_call_ms']:.2f} ms); "
                     f"{e['bytes_to_shards'] / 1e3:.0f} kB out, {e['bytes_from_shards'] / 1e3:.0f} kB back")
        print(line)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, DistributedBenchConfig)
    config = config_from_args(DistributedBenchConfig, parser.parse_args(argv))
    if config.layout not in ("tables", "ranges"):
        raise SystemExit(f"--layout must be tables or ranges, got {config.layout!r}")
    if config.workdir:
        root = Path(config.workdir)
        root.mkdir(parents=True, exist_ok=True)
        result = run(config, Path(tempfile.mkdtemp(dir=root)))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(config, Path(tmp))
    report(result)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
