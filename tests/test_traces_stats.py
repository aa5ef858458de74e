"""trace stats against a plain-Python reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.traces.stats import reuse_histogram, skew, trace_stats
from tierstore import SparseBatch


@st.composite
def traces(draw):
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True))
    out = []
    for _ in range(draw(st.integers(1, 5))):
        b = draw(st.integers(1, 4))
        lengths = np.asarray(draw(st.lists(st.integers(0, 5), min_size=b * len(names), max_size=b * len(names))))
        rows = draw(st.lists(st.integers(0, 40), min_size=int(lengths.sum()), max_size=int(lengths.sum())))
        out.append(SparseBatch(keys=tuple(names), values=np.asarray(rows, dtype=np.int64), lengths=lengths))
    return out


def reference(trace):
    """Counts per (table, row), log2 reuse-time bins and bag sizes, by plain loops."""
    counts, last, reuse, first, bags = {}, {}, {}, 0, {}
    pos = 0
    for batch in trace:
        for key in batch.keys:
            rows, offsets, _ = batch.table(key)
            bags.setdefault(key, []).extend(np.diff(offsets).tolist())
            for r in rows.tolist():
                counts[(key, r)] = counts.get((key, r), 0) + 1
                if (key, r) in last:
                    b = int(math.floor(math.log2(pos - last[(key, r)])))
                    reuse[b] = reuse.get(b, 0) + 1
                else:
                    first += 1
                last[(key, r)] = pos
                pos += 1
    return counts, reuse, first, bags


@settings(max_examples=40, deadline=None)
@given(trace=traces(), dense_limit=st.sampled_from([1, 16, 1 << 20]))
def test_stats_match_reference(trace, dense_limit):
    counts, reuse, first, bags = reference(trace)
    got = trace_stats(trace, dense_limit=dense_limit)
    assert got["requests"] == sum(counts.values())
    assert got["distinct_rows"] == len(counts)
    for key, table in got["tables"].items():
        mine = [c for (k, _), c in counts.items() if k == key]
        assert table["distinct_rows"] == len(mine)
        assert table["requests"] == sum(mine)
        assert table["pooling"]["bags"] == len(bags[key])
        assert table["pooling"]["max"] == max(bags[key])
        assert table["pooling"]["mean"] == pytest.approx(np.mean(bags[key]))
        assert table["pooling"]["p50"] == int(np.percentile(bags[key], 50, method="inverted_cdf"))
    hist = got["reuse_time_histogram"]
    assert hist["first_accesses"] == first
    assert {i: c for i, c in enumerate(hist["counts"]) if c} == reuse
    for lo_hi, i in zip(hist["bins"], range(len(hist["counts"]))):
        assert lo_hi == [2**i, 2 ** (i + 1) - 1]


def test_skew_and_reuse_histogram_by_hand():
    counts = np.array([0] + [100] + [1] * 999)  # one hot row among 1000 touched rows
    s = skew(counts)
    assert s["top_0.1%"] == pytest.approx(100 / 1099)
    assert s["top_1%"] == pytest.approx(109 / 1099)
    assert s["top_10%"] == pytest.approx(199 / 1099)
    unique, accesses = reuse_histogram(np.array([1, 1, 2, 3, 4, 5, 40000]))
    assert unique[:4].tolist() == pytest.approx([2 / 7, 1 / 7, 2 / 7, 1 / 7])
    assert unique[16] == pytest.approx(1 / 7)
    assert accesses[16] == pytest.approx(40000 / 40016)


def test_in_batch_reuse_counts_table_row_pairs():
    batch = SparseBatch(keys=("a", "b"), values=np.array([1, 1, 1, 2]), lengths=np.array([2, 2]))
    got = trace_stats([batch])["in_batch_reuse"]
    # (a,1) twice, (b,1) once, (b,2) once
    assert got["frac_of_unique_rows"][:2] == pytest.approx([2 / 3, 1 / 3])
    assert got["mean_reuse"] == pytest.approx(4 / 3)
