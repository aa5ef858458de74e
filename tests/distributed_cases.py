"""Stores, shard plans and batches shared by the distributed tests (with and without Ray)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import tierstore
from tierstore import SparseBatch, TableConfig
from tierstore.distributed import ShardPlan

MODES = ("sum", "mean", "max")


def make_source(path, rng, tables: list[TableConfig]) -> dict[str, np.ndarray]:
    """Create and load a store at ``path`` with random rows; returns ``{table: rows as given}``."""
    data = {t.name: (rng.standard_normal((t.num_rows, t.dim)) * 3).astype(np.float32) for t in tables}
    with tierstore.create(path, tables) as store:
        for name, rows in data.items():
            store.load(name, rows, progress=False)
    return data


@st.composite
def sharded_batches(draw, tables: list[TableConfig], max_bags: int = 8, max_len: int = 8):
    """A ``SparseBatch`` over a non-empty subset of ``tables`` and a mode per key (weights only with sum)."""
    keys = draw(st.lists(st.sampled_from([t.name for t in tables]), min_size=1, max_size=len(tables), unique=True))
    rows = {t.name: t.num_rows for t in tables}
    weighted = draw(st.booleans())
    modes = {k: "sum" if weighted else draw(st.sampled_from(MODES)) for k in keys}
    n_bags = draw(st.integers(0, max_bags))
    parts = {}
    for key in keys:
        lengths = draw(st.lists(st.integers(0, max_len), min_size=n_bags, max_size=n_bags))
        ids = draw(st.lists(st.integers(0, rows[key] - 1), min_size=sum(lengths), max_size=sum(lengths)))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        part = (np.array(ids, dtype=np.int64), offsets)
        if weighted:
            part += (np.array(draw(st.lists(st.floats(-2, 2, width=32), min_size=len(ids), max_size=len(ids))),
                              dtype=np.float32),)
        parts[key] = part
    return SparseBatch.from_tables(parts), modes


def bags_on_one_shard(plan: ShardPlan, table: str, indices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per bag: True when all its rows lie in one piece of ``table`` (so its pooled sum is bit-exact)."""
    starts = np.array([p.start for p in plan.pieces_of(table)][1:], dtype=np.int64)
    piece = np.searchsorted(starts, indices, side="right")
    out = np.ones(offsets.size - 1, dtype=bool)
    for b in range(offsets.size - 1):
        out[b] = np.unique(piece[offsets[b] : offsets[b + 1]]).size <= 1
    return out


def assert_equal_to_single_store(plan: ShardPlan, batch: SparseBatch, modes: dict, got: np.ndarray,
                                 want: np.ndarray, views) -> None:
    """``got`` (sharded) equals ``want`` (one store) bit for bit for whole tables, max, and bags held by one
    shard; other bags of tables cut into ranges (sum, mean: summed in another order) to float32 rounding."""
    assert got.shape == want.shape
    got_views, want_views = views(got), views(want)
    for key in batch.keys:
        g, w = got_views[key], want_views[key]
        whole = len(plan.pieces_of(key)) == 1
        if whole or modes[key] == "max":
            np.testing.assert_array_equal(g, w, err_msg=f"table {key} mode {modes[key]}")
            continue
        indices, offsets, _ = batch.table(key)
        exact = bags_on_one_shard(plan, key, indices, offsets)
        np.testing.assert_array_equal(g[exact], w[exact], err_msg=f"table {key}: bags held by one shard")
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * (1 + np.abs(w).max(initial=0)))
