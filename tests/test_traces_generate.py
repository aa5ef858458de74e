"""Synthetic trace generators and the Meta-calibrated preset."""

from __future__ import annotations

import numpy as np
import pytest

from bench.traces import meta2022
from bench.traces.generate import TableSpec, TraceSpec, generate, zipf_ranks
from bench.traces.presets import meta2022 as meta2022_preset
from bench.traces.stats import trace_stats


def spec(**kw):
    tables = kw.pop("tables", (TableSpec("a", 5000, zipf=1.1, pooling=8), TableSpec("b", 300, zipf=0.0, pooling=3,
                                                                                     pooling_dist="fixed")))
    return TraceSpec(tables=tables, batch_size=kw.pop("batch_size", 256), num_batches=kw.pop("num_batches", 6), **kw)


def test_same_seed_same_trace_and_spec_json_round_trip():
    s = spec(seed=5, drift=0.01, shift_every=2)
    a, b = list(generate(s)), list(generate(TraceSpec.from_json(s.to_json())))
    assert all(np.array_equal(x.values, y.values) and np.array_equal(x.lengths, y.lengths) for x, y in zip(a, b))
    c = list(generate(spec(seed=6)))
    assert not np.array_equal(a[0].values, c[0].values)
    for batch in a:
        assert batch.keys == ("a", "b") and batch.batch_size == 256
        assert 0 <= batch.table("a")[0].min() and batch.table("a")[0].max() < 5000
        assert batch.table("b")[0].max() < 300


def test_zipf_ranks_follow_the_bounded_power_law():
    rng = np.random.default_rng(0)
    n, alpha = 1000, 1.2
    ranks = zipf_ranks(rng, n, alpha, 400_000)
    # reference: mass of rank k is the integral of x**-alpha over [k+1, k+2), normalised
    edges = np.arange(1, n + 2, dtype=np.float64)
    antideriv = edges ** (1 - alpha) / (1 - alpha)
    mass = np.diff(antideriv) / (antideriv[-1] - antideriv[0])
    empirical = np.bincount(ranks, minlength=n) / ranks.size
    assert np.abs(np.cumsum(empirical) - np.cumsum(mass)).max() < 0.005
    uniform = zipf_ranks(rng, n, 0.0, 200_000)
    assert np.abs(np.bincount(uniform, minlength=n) / 200_000 - 1 / n).max() < 0.001


@pytest.mark.parametrize("dist", ["fixed", "poisson", "lognormal"])
def test_pooling_factor_means(dist):
    s = spec(tables=(TableSpec("a", 10_000, pooling=12.0, pooling_dist=dist),), batch_size=20_000, num_batches=1)
    (batch,) = generate(s)
    assert batch.lengths.mean() == pytest.approx(12.0, rel=0.03)
    if dist == "fixed":
        assert set(batch.lengths.tolist()) == {12}


def test_heavy_hitters_take_their_share():
    t = TableSpec("a", 100_000, zipf=0.0, pooling=10, heavy_hitters=3, heavy_hitter_share=0.2)
    stats = trace_stats(generate(spec(tables=(t,), batch_size=5000, num_batches=2)))
    assert stats["tables"]["a"]["skew"]["top_0.1%"] == pytest.approx(0.2, abs=0.02)


def hot_rows(batch, key, k=50):
    rows, counts = np.unique(batch.table(key)[0], return_counts=True)
    return set(rows[np.argsort(-counts)[:k]].tolist())


def test_drift_and_working_set_shifts_move_the_hot_set():
    table = (TableSpec("a", 100_000, zipf=1.2, pooling=20),)
    still = list(generate(spec(tables=table, batch_size=2000, num_batches=4)))
    assert len(hot_rows(still[0], "a") & hot_rows(still[3], "a")) > 35
    drifting = list(generate(spec(tables=table, batch_size=2000, num_batches=4, drift=0.0001)))  # 10 ranks a batch
    near = len(hot_rows(drifting[0], "a") & hot_rows(drifting[1], "a"))
    far = len(hot_rows(drifting[0], "a") & hot_rows(drifting[3], "a"))
    assert far < near and far < 30
    shifting = list(generate(spec(tables=table, batch_size=2000, num_batches=4, shift_every=2)))
    assert len(hot_rows(shifting[0], "a") & hot_rows(shifting[1], "a")) > 35
    assert len(hot_rows(shifting[1], "a") & hot_rows(shifting[2], "a")) < 5


def test_meta2022_preset_matches_published_in_batch_reuse_histogram():
    """Total-variation distance to Meta's 2022 unique-row histogram below 0.1.

    Scaled down from 788 tables x 131072 bags to 32 tables x 2048 bags: the preset
    keeps each table's Zipf exponent and requests per row, which is what the
    histogram depends on, so the statistic is preserved (about 1.8M indices/batch).
    """
    s = meta2022_preset(num_tables=32, batch_size=2048, num_batches=2, seed=1)
    got = trace_stats(generate(s))["in_batch_reuse"]
    target = np.asarray(meta2022.FRAC_OF_UNIQUE_ROWS)
    target = target / target.sum()
    tv = 0.5 * np.abs(np.asarray(got["frac_of_unique_rows"]) - target).sum()
    assert tv < 0.1
    assert got["mean_reuse"] == pytest.approx(meta2022.MEAN_REUSE, rel=0.25)
    pooled = sum(t.pooling for t in s.tables) / len(s.tables)
    assert pooled == pytest.approx(meta2022.MEAN_POOLING_FACTOR)


def test_bad_specs_are_rejected():
    with pytest.raises(ValueError, match="pooling_dist"):
        TableSpec("a", 10, pooling_dist="gamma")
    with pytest.raises(ValueError, match="num_rows"):
        TableSpec("a", 0)
    with pytest.raises(ValueError, match="distinct"):
        TraceSpec(tables=(TableSpec("a", 10), TableSpec("a", 10)), batch_size=1, num_batches=1)
    with pytest.raises(ValueError, match="at least 8 tables"):
        meta2022_preset(num_tables=3)
