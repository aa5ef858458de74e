"""Hit rates of the set-associative DRAM tier against exact, fully associative policies at the same budget.

On batched traces served as the store serves them (each batch's distinct rows of
each table probed, then its misses admitted), at ``--cache-fractions`` of all rows:

- every set-associative cache of ``--setassoc`` (``;``-separated ``"setassoc-<rule>:ways=W,admission=..."``),
  replayed by :func:`cache_policies.setassoc.simulate_setassoc` (the live tier's own kernels);
- the exact policies of ``--exact`` (LRU, S3-FIFO; Belady, the offline optimum), each
  batch's distinct rows fed to :func:`cache_policies.simulate` in order.

Traces: one table of ``--rows`` rows, batches of ``--bags`` x ``--pooling`` Zipf
indices for each exponent of ``--zipfs``; Zipf(1.05) whose popularity ranking
slides by ``--drift`` of the rows per batch (hot rows turn cold, cold ones hot);
and the ``meta2022`` preset scaled to ``--meta-tables`` tables (all tables share
the cache, as one DRAM budget does in the store).
The first ``--warm-batches`` batches warm the caches and are not counted.

Hit rates are per request (``request``: every index, as ``Store.stats()`` counts
them) and per distinct row of a batch (``distinct``: the rows a miss makes the
store read).  The issue's criterion: the default set-associative cache within 2
percentage points of exact LRU on every trace (``setassoc`` names the default:
LFU with aging, 16 ways, TinyLFU filter).

Run: ``python -m bench.bench_setassoc``.  One line per figure, then a JSON line with the config.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np

from bench.config_args import add_config_flags, config_from_args
from bench.traces.generate import TableSpec, TraceSpec, generate
from bench.traces.presets import meta2022
from cache_policies import make_policy, simulate
from cache_policies.setassoc import SetAssocState, batch_distinct, parse


@dataclass(frozen=True)
class SetAssocBenchConfig:
    """What the set-associative hit-rate benchmark ran with (embedded in its JSON output)."""

    rows: int = 1_000_000
    bags: int = 2048
    pooling: int = 32
    batches: int = 300
    warm_batches: int = 100
    zipfs: str = "0.9,1.05,1.2"
    drift: float = 0.0001
    meta_tables: int = 32
    cache_fractions: str = "0.01,0.1,0.25"
    setassoc: str = ("setassoc;setassoc-lfu:ways=8;setassoc-lfu:ways=32;setassoc-lfu:admission=none;"
                     "setassoc-lru:admission=none;setassoc-lru")
    exact: str = "lru,s3fifo,belady"
    seed: int = 0


def _units(spec: TraceSpec) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Each (batch, table)'s distinct global row ids with their multiplicities, and the rows in all."""
    base = np.cumsum([0] + [t.num_rows for t in spec.tables])
    units = []
    for batch in generate(spec):
        for k, name in enumerate(batch.keys):
            units.append(batch_distinct(batch.table(name)[0] + base[k]))
    return units, int(base[-1])


def hit_rates(units, warm_units: int, total_rows: int, fraction: float, setassoc, exact) -> dict:
    """Request and distinct-row hit rates of every cache on ``units`` after ``warm_units``."""
    slots = max(1, int(fraction * total_rows))
    multiplicity = np.concatenate([m for _, m in units])
    timed = np.zeros(multiplicity.size, dtype=bool)
    timed[sum(u.size for u, _ in units[:warm_units]):] = True
    results = {}
    for name in setassoc:
        state = SetAssocState(parse(name), slots, total_rows)
        hit = np.concatenate([state.serve(u, occurrences=m)[0] >= 0 for u, m in units])
        results[name] = _rates(hit, multiplicity, timed)
    stream = np.concatenate([u for u, _ in units])
    for name in exact:
        log = simulate(stream, make_policy(name), slots, record=True).log
        results[name] = _rates(log.outcome == 1, multiplicity, timed)
    return results


def _rates(hit: np.ndarray, multiplicity: np.ndarray, timed: np.ndarray) -> dict:
    h, m = hit[timed], multiplicity[timed]
    return {"request": float(m[h].sum() / m.sum()), "distinct": float(h.mean())}


def traces(config: SetAssocBenchConfig) -> dict[str, TraceSpec]:
    """The traces, by name."""
    total = config.batches + config.warm_batches
    out = {f"zipf{z}": TraceSpec(tables=(TableSpec("t", config.rows, zipf=float(z), pooling=config.pooling,
                                                   pooling_dist="fixed"),),
                                 batch_size=config.bags, num_batches=total, seed=config.seed)
           for z in config.zipfs.split(",") if z}
    if config.drift:
        out[f"zipf1.05-drift{config.drift:g}"] = TraceSpec(
            tables=(TableSpec("t", config.rows, zipf=1.05, pooling=config.pooling, pooling_dist="fixed"),),
            batch_size=config.bags, num_batches=total, seed=config.seed, drift=config.drift)
    if config.meta_tables:
        out["meta2022"] = meta2022(num_tables=config.meta_tables, batch_size=config.bags, num_batches=total,
                                   seed=config.seed)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, SetAssocBenchConfig)
    config = config_from_args(SetAssocBenchConfig, parser.parse_args(argv))
    setassoc = [s for s in config.setassoc.split(";") if s]
    exact = [p for p in config.exact.split(",") if p]
    result = {"config": asdict(config), "traces": {}}
    for trace_name, spec in traces(config).items():
        units, total_rows = _units(spec)
        warm_units = config.warm_batches * len(spec.tables)
        result["traces"][trace_name] = {"rows": total_rows, "by_fraction": {}}
        for fraction in (float(f) for f in config.cache_fractions.split(",") if f):
            rates = hit_rates(units, warm_units, total_rows, fraction, setassoc, exact)
            result["traces"][trace_name]["by_fraction"][str(fraction)] = rates
            lru = rates.get("lru", {}).get("request", float("nan"))
            for name, r in rates.items():
                print(f"{trace_name:>9} cache {fraction:5.1%} {name:>36}: hit rate {r['request']:.2%} per request, "
                      f"{r['distinct']:.2%} per distinct row; {100 * (r['request'] - lru):+.2f} pp vs exact LRU",
                      flush=True)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
