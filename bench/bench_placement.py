"""Placement benchmark: plan on the first half of a trace, measure on the second half.

Reports, side by side in one run:

* SSD pages read per batch with the co-access layout / with the identity layout
  (target <= 0.5), under the same tier assignment;
* the planned tiers' hit rate (pinned + policy-managed DRAM) against every single
  cache policy given the same bytes (and which policy was best);
* tier-assignment methods side by side (value per byte, frequency-greedy, uniform split);
* with ``--store``: the held-out half replayed through a real tierstore store,
  each layout applied with ``apply_layout`` and each plan applied live
  (``tierstore.open(..., plan=...)``: pinned rows read at open, SSD-only rows
  never admitted): the best single policy and the planned tiers, each with the
  identity and the co-access layout, and the planned tiers under the default
  set-associative cache; measured per-tier hit rates and SSD pages per batch
  against the predicted ones (target: within 1 percentage point).

Traces: ``coaccess`` (this module's generator: rows grouped into hidden clusters,
each bag draws a Zipf-popular cluster and reads rows of it, plus a share of
global Zipf noise) or ``meta2022`` (bench.traces' Meta-calibrated preset).

    python -m bench.bench_placement --trace coaccess --store --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

import placement as pl
from bench.traces.generate import zipf_ranks
from tierstore import SparseBatch
from tierstore.config import JsonConfig, TableConfig
from tierstore.pages import default_rows_per_page


@dataclass(frozen=True)
class PlacementBenchConfig(JsonConfig):
    """What the benchmark runs.

    Parameters
    ----------
    trace : {"coaccess", "meta2022"}
    num_batches, batch_size : int
        Whole trace (half for planning, half held out).
    table_rows, table_dims : tuple of int
        Co-access trace: rows and float32 dims per table (rows a multiple of ``cluster_size``).
    cluster_size : int
        Co-access trace: rows per hidden cluster.
    pooling : float
        Co-access trace: mean rows per bag (Poisson, clipped to [1, cluster_size]).
    cluster_zipf : float
        Co-access trace: Zipf exponent of cluster popularity.
    noise : float
        Co-access trace: share of indices drawn from a global Zipf(1.0) over rows instead.
    meta_tables, meta_dim : int
        meta2022 trace: number of tables, float32 dim of every table.
    dram_fraction, gpu_fraction : float
        Tier budgets as shares of the tables' total float32 bytes.
    dynamic_fraction : float
        DRAM share kept for the policy-managed cache in the planned tiers.
    policies : tuple of str
        Single policies to compare against (``cache_policies`` names).
    warmup_fraction : float
        Leading share of the held-out batches left out of every figure.
    store : bool
        Also replay through a real store.
    seed : int
    """

    trace: str = "coaccess"
    num_batches: int = 200
    batch_size: int = 512
    table_rows: tuple = (102_400, 51_200, 25_600)
    table_dims: tuple = (16, 32, 64)
    cluster_size: int = 32
    pooling: float = 8.0
    cluster_zipf: float = 0.9
    noise: float = 0.1
    meta_tables: int = 16
    meta_dim: int = 32
    dram_fraction: float = 0.05
    gpu_fraction: float = 0.0
    dynamic_fraction: float = 0.2
    policies: tuple = ("lru", "fifo", "clock", "lfu", "arc", "s3fifo", "sieve", "twoq")
    warmup_fraction: float = 0.1
    store: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.trace not in ("coaccess", "meta2022"):
            raise ValueError(f"trace must be 'coaccess' or 'meta2022', got {self.trace!r}")
        if len(self.table_rows) != len(self.table_dims):
            raise ValueError("table_rows and table_dims need one entry per table")
        if any(r % self.cluster_size for r in self.table_rows):
            raise ValueError(f"every table's rows must be a multiple of cluster_size={self.cluster_size}")
        if self.num_batches < 4:
            raise ValueError("num_batches must be at least 4")


def coaccess_trace(config: PlacementBenchConfig) -> tuple[list[SparseBatch], dict[str, int], dict[str, int]]:
    """Batches with co-access structure, ``{table: dim}`` and ``{table: num_rows}``."""
    rng = np.random.default_rng(config.seed)
    c = config.cluster_size
    members = {f"t{i}": rng.permutation(r).reshape(-1, c) for i, r in enumerate(config.table_rows)}
    batches = []
    for _ in range(config.num_batches):
        parts = {}
        for name, m in members.items():
            lengths = np.clip(rng.poisson(config.pooling, config.batch_size), 1, c)
            clusters = np.repeat(zipf_ranks(rng, m.shape[0], config.cluster_zipf, config.batch_size), lengths)
            rows = m[clusters, rng.integers(0, c, clusters.size)]
            noisy = rng.random(rows.size) < config.noise
            rows[noisy] = m.ravel()[zipf_ranks(rng, m.size, 1.0, int(noisy.sum()))]
            parts[name] = (rows, np.concatenate([[0], np.cumsum(lengths)]))
        batches.append(SparseBatch.from_tables(parts))
    names = list(members)
    return (batches, dict(zip(names, config.table_dims)), dict(zip(names, config.table_rows)))


def meta_trace(config: PlacementBenchConfig) -> tuple[list[SparseBatch], dict[str, int], dict[str, int]]:
    """Batches of the meta2022 preset, ``{table: dim}`` and ``{table: num_rows}``."""
    from bench.traces.generate import generate
    from bench.traces.presets import meta2022

    spec = meta2022(num_tables=config.meta_tables, batch_size=config.batch_size, num_batches=config.num_batches,
                    seed=config.seed)
    return list(generate(spec)), {t.name: config.meta_dim for t in spec.tables}, {t.name: t.num_rows for t in spec.tables}


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def run(config: PlacementBenchConfig, progress: bool = True) -> dict:
    """Run the benchmark; returns the JSON-ready result (config embedded)."""
    batches, dims, rows = (coaccess_trace if config.trace == "coaccess" else meta_trace)(config)
    tables = {n: pl.TableSpec(n, rows[n], dims[n] * 4, default_rows_per_page("float32", dims[n])) for n in dims}
    half = len(batches) // 2
    train, test = batches[:half], batches[half:]
    warmup = int(len(test) * config.warmup_fraction)
    total_bytes = sum(t.total_bytes for t in tables.values())
    budgets = pl.TierBudgets(int(total_bytes * config.gpu_fraction), int(total_bytes * config.dram_fraction))
    prof, profile_s = _timed(pl.profile, train, tables)
    log = (lambda *a: print(*a, file=sys.stderr)) if progress else (lambda *a: None)
    log(f"profiled {half} batches in {profile_s:.2f}s: {prof.summary()['coaccess']}")

    def plan_for(method, layout):
        plan_config = pl.PlanConfig(assign_method=method, layout=layout, dynamic_fraction=config.dynamic_fraction,
                                    seed=config.seed)
        return _timed(pl.make_plan, prof, budgets, config=plan_config)

    def evaluate(plan, policy, label):
        ev = pl.evaluate(plan, test, policy=policy, warmup_batches=warmup)
        log(f"{label:>32} {policy:>7}: hit rate {ev.hit_rate('requests'):.4f}, SSD pages/batch {ev.pages_per_batch:.1f}")
        return _summary(ev)

    results, plans = {}, {}
    for method in ("cost", "frequency", "uniform", "cache_only"):
        for layout in ("identity", "frequency", "coaccess"):
            plan, plan_s = plan_for(method, layout)
            plans[method, layout] = plan
            results[f"{method}/{layout}"] = {"plan_seconds": plan_s, **evaluate(plan, "lru", f"{method}/{layout}")}
    single = {p: evaluate(plans["cache_only", "coaccess"], p, "single policy") for p in config.policies}
    best = max(single, key=lambda p: single[p]["hit_rate_requests"])
    planned = results["cost/coaccess"]
    planned_best = evaluate(plans["cost", "coaccess"], best, "cost/coaccess, best policy")
    out = {
        "config": config.to_dict(),
        "tables": {n: t.to_dict() for n, t in tables.items()},
        "budgets": budgets.to_dict(),
        "profile": {"seconds": profile_s, **prof.summary()},
        "train_batches": half,
        "test_batches": len(test),
        "warmup_batches": warmup,
        "plans": results,
        "single_policies": single,
        "planned_with_best_policy": planned_best,
        "ratios": {
            "pages_coaccess_over_identity": planned["ssd_pages_per_batch"]
            / results["cost/identity"]["ssd_pages_per_batch"],
            "pages_coaccess_over_identity_cache_only": results["cache_only/coaccess"]["ssd_pages_per_batch"]
            / results["cache_only/identity"]["ssd_pages_per_batch"],
            "pages_frequency_over_identity": results["cost/frequency"]["ssd_pages_per_batch"]
            / results["cost/identity"]["ssd_pages_per_batch"],
            "planned_hit_rate_lru": planned["hit_rate_requests"],
            "planned_hit_rate_best_policy": planned_best["hit_rate_requests"],
            "best_single_policy": best,
            "best_single_policy_hit_rate": single[best]["hit_rate_requests"],
            "planned_minus_best_single_pp": 100 * (max(planned["hit_rate_requests"], planned_best["hit_rate_requests"])
                                                   - single[best]["hit_rate_requests"]),
            "cost_minus_frequency_pp": 100 * (planned["hit_rate_requests"]
                                              - results["frequency/coaccess"]["hit_rate_requests"]),
            "cost_minus_uniform_pp": 100 * (planned["hit_rate_requests"]
                                            - results["uniform/coaccess"]["hit_rate_requests"]),
        },
    }
    if config.store:
        # The set-associative tier gives every row (pinned ones too) a slot as wide as the widest
        # table's: its plan is made with that width, so that it fits the bytes the tier spends.
        widest = max(t.row_bytes for t in tables.values())
        uniform = {n: pl.TableSpec(n, t.num_rows, widest, t.rows_per_page) for n, t in tables.items()}
        setassoc_plan = pl.make_plan(pl.profile(train, uniform), budgets,
                                     config=pl.PlanConfig(layout="coaccess", dynamic_fraction=config.dynamic_fraction,
                                                          seed=config.seed))
        replayed = {
            "single_identity": (_with_identity_layout(plans["cache_only", "coaccess"]), best),
            "single_coaccess": (plans["cache_only", "coaccess"], best),
            "planned_identity": (_with_identity_layout(plans["cost", "coaccess"]), "lru"),
            "planned_coaccess": (plans["cost", "coaccess"], "lru"),
            "planned_coaccess_setassoc": (setassoc_plan, "setassoc"),
        }
        out["store_replay"] = replay = replay_through_store(config, tables, test, warmup, replayed, log)
        for tiers in ("single", "planned"):
            out["ratios"][f"measured_pages_coaccess_over_identity_{tiers}"] = (
                replay[f"{tiers}_coaccess"]["measured_ssd_pages_per_batch"]
                / replay[f"{tiers}_identity"]["measured_ssd_pages_per_batch"]
            )
        out["ratios"]["max_abs_hit_rate_gap_pp"] = max(abs(r["hit_rate_gap_pp"]) for r in replay.values())
        out["ratios"]["max_abs_tier_gap_pp"] = max(r["max_tier_gap_pp"] for r in replay.values())
    return out


def _summary(ev: pl.Evaluation) -> dict:
    d = ev.to_dict()
    return {k: d[k] for k in ("hit_rate_requests", "hit_rate_distinct", "hit_rates_requests", "ssd_pages_per_batch")}


def replay_through_store(config, tables, test, warmup, replayed: dict, log) -> dict:
    """Replay the held-out batches through a real store for each ``{label: (plan, policy)}``.

    Each plan's layout is applied with ``Store.apply_layout``, then the store is
    opened with the plan (``tierstore.open(..., plan=plan)``): its DRAM-pinned rows
    are read at open and never evicted, its SSD-only rows are never admitted, and
    the rest share the plan's cache bytes under ``policy`` (GPU-pinned rows, which
    wait for a GPU tier, are cached).  Per tier (pinned DRAM, DRAM cache, SSD),
    the measured share of requests is set beside ``placement.evaluate``'s.
    """
    import tierstore

    rng = np.random.default_rng(config.seed)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        configs = [TableConfig(n, t.num_rows, t.row_bytes // 4) for n, t in tables.items()]
        store = tierstore.create(tmp, configs)
        for c in configs:
            store.load(c.name, rng.standard_normal((c.num_rows, c.dim), dtype=np.float32), progress=False)
        store.close()
        for label, (plan, policy) in replayed.items():
            with tierstore.open(tmp, readonly=False) as writer:
                _, apply_s = _timed(writer.apply_layout, plan.order, progress=False)
            predicted = pl.evaluate(plan, test, policy=policy, warmup_batches=warmup)
            with tierstore.open(tmp, plan=plan, policy=policy) as store:
                for number, batch in enumerate(test):
                    if number == warmup:
                        store.reset_stats()
                    store.lookup_batch(batch)
                stats = store.stats()
            dram = stats["dram"]
            requests = dram["hits"] + dram["misses"]
            measured = {"gpu": 0.0, "dram_pinned": dram["pinned_hits"] / requests,
                        "dram_cache": (dram["hits"] - dram["pinned_hits"]) / requests, "ssd": dram["misses"] / requests}
            expected = predicted.hit_rates("requests")
            measured_pages = stats["ssd"]["pages_read"] / max(1, len(test) - warmup)
            out[label] = {
                "policy": policy if isinstance(policy, str) else repr(policy),
                "pinned_rows": int(sum(np.count_nonzero(plan.tier(n) == pl.PINNED_DRAM) for n in tables)),
                "apply_layout_seconds": apply_s,
                "measured_hit_rate": dram["hit_rate"],
                "predicted_hit_rate": predicted.hit_rate("requests"),
                "hit_rate_gap_pp": 100 * (dram["hit_rate"] - predicted.hit_rate("requests")),
                "measured_hit_rates": measured,
                "predicted_hit_rates": expected,
                "max_tier_gap_pp": 100 * max(abs(measured[k] - expected[k]) for k in measured),
                "measured_ssd_pages_per_batch": measured_pages,
                "predicted_ssd_pages_per_batch": predicted.pages_per_batch,
                "stats": stats,
            }
            log(f"store replay {label} ({policy}): measured per tier "
                + ", ".join(f"{k} {measured[k]:.4f} (predicted {expected[k]:.4f})" for k in measured)
                + f"; pages/batch {measured_pages:.1f} vs {predicted.pages_per_batch:.1f}")
    return out


def _with_identity_layout(plan: pl.PlacementPlan) -> pl.PlacementPlan:
    order = {n: pl.identity_layout(t.num_rows) for n, t in plan.tables.items()}
    return pl.PlacementPlan(plan.tables, plan.budgets, plan.cost, plan.config, plan.assignment, order)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="PlacementBenchConfig JSON file (flags below override it)")
    parser.add_argument("--trace", choices=["coaccess", "meta2022"])
    parser.add_argument("--batches", type=int, dest="num_batches")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--dram-fraction", type=float)
    parser.add_argument("--gpu-fraction", type=float)
    parser.add_argument("--store", action="store_true", default=None, help="also replay through a real store")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--json", help="write the full result (config embedded) to this file")
    args = parser.parse_args(argv)
    base = PlacementBenchConfig.from_json(open(args.config).read()).to_dict() if args.config else {}
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "json") and v is not None}
    config = PlacementBenchConfig.from_dict({**base, **overrides})
    result = run(config)
    print(json.dumps({"config": result["config"], "ratios": result["ratios"]}, indent=1))
    for label, replay in result.get("store_replay", {}).items():
        print(label, json.dumps({k: v for k, v in replay.items() if k != "stats"}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
