"""tierstore.kernels against plain numpy references: pooling, gathers, dedup, aligned slabs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tierstore import kernels
from tierstore.kernels import (MODE_MAX, MODE_MEAN, MODE_SUM, aligned_empty, gather_rows, pool_rows, unique_inverse,
                               unique_inverse_counts)

NO_ROWS = np.empty((0, 1), dtype=np.float32)


def rows_of(slab, extra, loc):
    """Row named by each ``loc`` value: ``slab[loc]`` or ``extra[-1 - loc]``."""
    dim = slab.shape[1] if slab.shape[0] else extra.shape[1]
    table = np.concatenate([slab.reshape(-1, dim), extra.reshape(-1, dim)])
    return table[np.where(loc >= 0, loc, slab.shape[0] + (-1 - loc))]


def pool_reference(rows, offsets, weights, mode):
    """``embedding_bag`` semantics with ``ufunc.reduceat`` over the non-empty bags."""
    n_bags, dim = offsets.size - 1, rows.shape[1]
    out = np.zeros((n_bags, dim), dtype=np.float64)
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    if not nonempty.any():
        return out
    values = rows.astype(np.float64)
    if weights is not None:
        values = values * weights.astype(np.float64)[:, None]
    starts = offsets[:-1][nonempty]
    if mode == MODE_MAX:
        out[nonempty] = np.maximum.reduceat(values, starts)
    else:
        out[nonempty] = np.add.reduceat(values, starts)
        if mode == MODE_MEAN:
            out[nonempty] /= lengths[nonempty, None]
    return out


@st.composite
def pooling_cases(draw):
    dim = draw(st.sampled_from([1, 3, 7, 20, 64]))
    n_slab = draw(st.integers(0, 40))
    n_extra = draw(st.integers(0, 12))
    lengths = draw(st.lists(st.integers(0, 9), min_size=0, max_size=24))
    if n_slab + n_extra == 0:
        lengths = [0] * len(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    slab = rng.standard_normal((n_slab, dim)).astype(np.float32) if n_slab else NO_ROWS
    extra = rng.standard_normal((n_extra, dim)).astype(np.float32) if n_extra else NO_ROWS
    choices = np.concatenate([np.arange(n_slab), -1 - np.arange(n_extra)]).astype(np.int64)
    loc = rng.choice(choices, size=n) if n else np.zeros(0, dtype=np.int64)
    mode = draw(st.sampled_from([MODE_SUM, MODE_MEAN, MODE_MAX]))
    weighted = mode == MODE_SUM and draw(st.booleans())
    weights = rng.uniform(-2, 2, size=n).astype(np.float32) if weighted else None
    pad_left = draw(st.sampled_from([0, 5]))
    pad_right = draw(st.sampled_from([0, 3]))
    return slab, extra, loc, offsets, weights, mode, dim, pad_left, pad_right


@settings(max_examples=100, deadline=None)
@given(pooling_cases())
def test_pool_rows_matches_numpy(case):
    slab, extra, loc, offsets, weights, mode, dim, pad_left, pad_right = case
    wide = np.full((offsets.size - 1, pad_left + dim + pad_right), 7.0, dtype=np.float32)
    out = wide[:, pad_left : pad_left + dim]
    pool_rows(slab, extra, loc, offsets, weights, mode, out)
    rows = rows_of(slab, extra, loc) if loc.size else np.zeros((0, dim), dtype=np.float32)
    expected = pool_reference(rows, offsets, weights, mode)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert (wide[:, :pad_left] == 7.0).all() and (wide[:, pad_left + dim :] == 7.0).all()


@settings(max_examples=100, deadline=None)
@given(pooling_cases(), st.sampled_from([None, -1, -(2**40), 0, 2**40]))
def test_pool_ids_matches_numpy_and_flags_ids_out_of_range(case, bad_id):
    """``pool_ids`` reads ids of a whole table; one id out of range (``bad_id`` past the end
    when >= 0) makes it return False, wherever it sits."""
    slab, _, _, offsets, weights, mode, dim, pad_left, pad_right = case
    ids = np.random.default_rng(offsets.size).integers(0, max(slab.shape[0], 1), size=offsets[-1])
    if slab.shape[0] == 0:
        ids = ids[:0]
        offsets = np.zeros_like(offsets)
        weights = None if weights is None else weights[:0]
    if bad_id is not None and ids.size:
        ids[ids.size // 3] = bad_id if bad_id < 0 else slab.shape[0] + bad_id
    wide = np.full((offsets.size - 1, pad_left + dim + pad_right), 7.0, dtype=np.float32)
    out = wide[:, pad_left : pad_left + dim]
    ok = kernels.pool_ids(slab, ids, offsets, weights, mode, out)
    assert ok == (bad_id is None or ids.size == 0)
    if ok:
        rows = slab[ids] if ids.size else np.zeros((0, dim), dtype=np.float32)
        np.testing.assert_allclose(out, pool_reference(rows, offsets, weights, mode), rtol=1e-5, atol=1e-5)
    assert (wide[:, :pad_left] == 7.0).all() and (wide[:, pad_left + dim :] == 7.0).all()


@pytest.mark.parametrize("dim", [64, 37])
@pytest.mark.parametrize("mode", [MODE_SUM, MODE_MEAN, MODE_MAX])
def test_pool_rows_many_bags_across_threads(dim, mode):
    """Enough bags and rows for every thread to take a chunk, and for prefetches to cross bags."""
    rng = np.random.default_rng(dim + mode)
    slab = aligned_empty((5000, dim))
    slab[:] = rng.standard_normal((5000, dim))
    lengths = rng.integers(0, 40, size=3001)
    lengths[::7] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    loc = rng.integers(0, 5000, size=offsets[-1])
    out = np.empty((lengths.size, dim), dtype=np.float32)
    pool_rows(slab, NO_ROWS, loc, offsets, None, mode, out)
    np.testing.assert_allclose(out, pool_reference(slab[loc], offsets, None, mode), rtol=1e-5, atol=1e-5)


def test_pool_rows_skewed_bags_and_extra_rows():
    """One huge bag among tiny ones (chunks balanced by rows), misses from ``extra``, weights."""
    rng = np.random.default_rng(3)
    slab = rng.standard_normal((300, 64)).astype(np.float32)
    extra = rng.standard_normal((50, 64)).astype(np.float32)
    lengths = np.array([0, 5000, 1, 0, 2, 3, 0] * 3)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    loc = rng.integers(-50, 300, size=offsets[-1])
    weights = rng.standard_normal(loc.size).astype(np.float32)
    out = np.empty((lengths.size, 64), dtype=np.float32)
    pool_rows(slab, extra, loc, offsets, weights, MODE_SUM, out)
    expected = pool_reference(rows_of(slab, extra, loc), offsets, weights, MODE_SUM)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


def test_pool_rows_matches_torch_embedding_bag():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    table = rng.standard_normal((1000, 64)).astype(np.float32)
    lengths = rng.integers(0, 12, size=200)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    idx = rng.integers(0, 1000, size=offsets[-1])
    weights = rng.random(idx.size, dtype=np.float32)
    for mode, name, w in [(MODE_SUM, "sum", None), (MODE_SUM, "sum", weights), (MODE_MEAN, "mean", None),
                          (MODE_MAX, "max", None)]:
        out = np.empty((200, 64), dtype=np.float32)
        pool_rows(table, NO_ROWS, idx, offsets, w, mode, out)
        expected = torch.nn.functional.embedding_bag(
            torch.from_numpy(idx), torch.from_numpy(table), torch.from_numpy(offsets[:-1]), mode=name,
            per_sample_weights=None if w is None else torch.from_numpy(w),
        ).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_pool_rows_zero_bags():
    out = np.empty((0, 8), dtype=np.float32)
    pool_rows(NO_ROWS, NO_ROWS, np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64), None, MODE_MAX, out)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(loc=np.zeros(3, dtype=np.int32)), "loc must be a 1-D int64"),
        (dict(offsets=np.array([0, 1, 3], dtype=np.int32)), "offsets must be a 1-D int64"),
        (dict(offsets=np.zeros(0, dtype=np.int64)), "B \\+ 1 entries"),
        (dict(offsets=np.array([0, 1, 2], dtype=np.int64)), "from 0 to len\\(loc\\)=3"),
        (dict(out=np.empty((3, 4), dtype=np.float32)), "out has 3 rows, but there are 2 bags"),
        (dict(out=np.empty((2, 4), dtype=np.float64)), "out must be a 2-D float32"),
        (dict(out=np.empty((4, 2), dtype=np.float32).T), "out rows must be contiguous"),
        (dict(slab=np.zeros((5, 4))), "slab must be a 2-D float32"),
        (dict(slab=np.zeros((5, 3), dtype=np.float32)), "slab rows have width 3, but out has 4"),
        (dict(extra=np.zeros((2, 5), dtype=np.float32)), "extra rows have width 5"),
        (dict(mode=3), "mode must be one of"),
        (dict(weights=np.ones(3, dtype=np.float32), mode=MODE_MEAN), "per-sample weights need mode sum"),
        (dict(weights=np.ones(2, dtype=np.float32)), "weights must be float32 of shape \\(3,\\)"),
        (dict(weights=np.ones(3)), "weights must be float32"),
        (dict(loc=np.array([0, 5, 2], dtype=np.int64)), r"loc values must name a row: in \[-0, 5\)"),
        (dict(loc=np.array([0, -1, 2], dtype=np.int64)), r"got -1 \.\. 2"),
    ],
)
def test_pool_rows_rejects_bad_input(change, message):
    args = dict(slab=np.zeros((5, 4), dtype=np.float32), extra=NO_ROWS, loc=np.array([0, 1, 2], dtype=np.int64),
                offsets=np.array([0, 1, 3], dtype=np.int64), weights=None, mode=MODE_SUM,
                out=np.empty((2, 4), dtype=np.float32))
    args.update(change)
    with pytest.raises(ValueError, match=message):
        pool_rows(**args)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(0, 40), st.integers(0, 10), st.sampled_from([1, 5, 16, 64]), st.integers(0, 99))
def test_gather_rows_matches_numpy(n, n_slab, n_extra, dim, seed):
    rng = np.random.default_rng(seed)
    slab = rng.standard_normal((n_slab, dim)).astype(np.float32)
    extra = rng.standard_normal((n_extra, dim)).astype(np.float32)
    choices = np.concatenate([np.arange(n_slab), -1 - np.arange(n_extra)]).astype(np.int64)
    loc = rng.choice(choices, size=n) if choices.size else np.zeros(0, dtype=np.int64)
    out = np.empty((loc.size, dim), dtype=np.float32)
    gather_rows(slab, extra, loc, out)
    expected = rows_of(slab, extra, loc) if loc.size else out
    np.testing.assert_array_equal(out, expected)


def test_gather_rows_rejects_bad_input():
    with pytest.raises(ValueError, match="out has 2 rows, but there are 3 ids"):
        gather_rows(np.zeros((4, 2), dtype=np.float32), NO_ROWS, np.zeros(3, dtype=np.int64),
                    np.empty((2, 2), dtype=np.float32))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(0, 30)), max_size=400))
def test_unique_inverse_matches_first_occurrence_order(values):
    ids = np.array(values, dtype=np.int64)
    uniq, inverse = unique_inverse(ids)
    assert uniq.tolist() == list(dict.fromkeys(values))
    assert inverse.dtype == np.int64 and inverse.shape == ids.shape
    np.testing.assert_array_equal(uniq[inverse], ids)
    counted, counted_inverse, occurrences = unique_inverse_counts(ids)
    np.testing.assert_array_equal(counted, uniq)
    np.testing.assert_array_equal(counted_inverse, inverse)
    assert occurrences.tolist() == [values.count(v) for v in uniq.tolist()]


def test_unique_inverse_large_skewed_input():
    rng = np.random.default_rng(5)
    ids = (rng.zipf(1.2, size=200_000) * 7919) % 4_000_000
    uniq, inverse = unique_inverse(ids)
    np.testing.assert_array_equal(uniq[inverse], ids)
    np.testing.assert_array_equal(np.sort(uniq), np.unique(ids))
    _, first = np.unique(ids, return_index=True)
    np.testing.assert_array_equal(uniq, ids[np.sort(first)])


@pytest.mark.parametrize("shape, alignment", [((1000, 64), 4096), (17, 64), ((3, 5, 7), 256), ((0, 4), 4096)])
def test_aligned_empty(shape, alignment):
    array = aligned_empty(shape, np.float32, alignment)
    assert array.shape == (shape if isinstance(shape, tuple) else (shape,))
    assert array.dtype == np.float32 and array.flags.c_contiguous and array.flags.writeable
    assert array.size == 0 or array.ctypes.data % alignment == 0
    array[...] = 1.5
    assert (array == 1.5).all()


def test_aligned_empty_rejects_bad_alignment():
    with pytest.raises(ValueError, match="power of two"):
        aligned_empty(4, alignment=48)


def test_specialised_and_generic_widths_share_one_kernel_per_option_set():
    kernel = kernels._pool_kernel(64, MODE_SUM, False, False)
    assert kernels._pool_kernel(64, MODE_SUM, False, False) is kernel
    assert kernels._pool_kernel(37, MODE_SUM, False, False) is kernels._pool_kernel(5, MODE_SUM, False, False)
