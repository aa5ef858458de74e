"""tierstore.pool_records against numpy: records decoded with numpy, pooled with reduceat."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import pool, quantization_bound, record_values, stored_values
from tierstore.kernels import MODE_MAX, MODE_MEAN, MODE_NAMES, MODE_SUM
from tierstore.pages import to_records
from tierstore.pool_records import (
    RECORD_FORMATS,
    copy_records,
    empty_records,
    gather_records,
    pool_record_ids,
    pool_records,
    record_stride,
)

DTYPES = tuple(RECORD_FORMATS)
NO_RECORDS = np.zeros((0, 8), dtype=np.uint8)


def make_records(rng, n, dtype, dim, alignment):
    """``n`` random rows stored as ``dtype`` records: in a padded slab (``alignment`` bytes) or,
    with ``alignment=None``, unpadded as ``to_records`` (and ``extract_records``) give them."""
    if n == 0:
        return NO_RECORDS
    shift = rng.choice([0.0, 30.0])
    rows = (rng.standard_normal((n, dim)) * rng.uniform(0.1, 3.0) + shift).astype(np.float32)
    records = to_records(rows, dtype)
    if alignment is None:
        return records
    slab = empty_records(n, dtype, dim, alignment)
    slab[:, : records.shape[1]] = records
    return slab


def values_of(slab, extra, loc, dtype, dim):
    """Decoded rows (and biases) named by ``loc``, and the row index of each in their concatenation."""
    slab_values, slab_bias = record_values(slab, dtype, dim) if slab.shape[0] else (np.zeros((0, dim)), np.zeros(0))
    extra_values, extra_bias = record_values(extra, dtype, dim) if extra.shape[0] else (np.zeros((0, dim)),
                                                                                         np.zeros(0))
    values = np.concatenate([slab_values, extra_values]).astype(np.float32)
    bias = np.concatenate([slab_bias, extra_bias]).astype(np.float32)
    return values, bias, np.where(loc >= 0, loc, slab.shape[0] + (-1 - loc))


def assert_pooled(out, values, bias, index, offsets, weights, mode):
    """``out`` equals numpy's pooling of the decoded rows within float32 rounding of the sums
    (quantized sums fold the biases, so the bound scales with them too)."""
    expected = pool(values, index, offsets, weights, MODE_NAMES[mode])
    magnitude = pool(np.abs(values) + np.abs(bias)[:, None], index, offsets,
                     None if weights is None else np.abs(weights), "sum")
    np.testing.assert_array_less(np.abs(out - expected), 2e-6 * magnitude + 1e-6)


@st.composite
def record_cases(draw, with_extra=True):
    dtype = draw(st.sampled_from(DTYPES))
    dim = draw(st.sampled_from([5, 64]))
    n_slab = draw(st.integers(0, 30))
    n_extra = draw(st.integers(1, 10)) if with_extra else 0
    lengths = draw(st.lists(st.integers(0, 9), min_size=0, max_size=20))
    if n_slab + n_extra == 0:
        lengths = [0] * len(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    slab = make_records(rng, n_slab, dtype, dim, draw(st.sampled_from([8, 16, None])))
    extra = make_records(rng, n_extra, dtype, dim, None)
    choices = np.concatenate([np.arange(n_slab), -1 - np.arange(n_extra)]).astype(np.int64)
    loc = rng.choice(choices, size=offsets[-1]) if offsets[-1] else np.zeros(0, dtype=np.int64)
    mode = draw(st.sampled_from([MODE_SUM, MODE_MEAN, MODE_MAX]))
    weighted = mode == MODE_SUM and draw(st.booleans())
    weights = rng.uniform(-2, 2, size=loc.size).astype(np.float32) if weighted else None
    return dtype, dim, slab, extra, loc, offsets, weights, mode, draw(st.sampled_from([(0, 0), (5, 3)]))


def column_view(n_bags, dim, pad):
    """``out`` as a column block of a wider array pre-filled with 7."""
    wide = np.full((n_bags, pad[0] + dim + pad[1]), 7.0, dtype=np.float32)
    return wide, wide[:, pad[0] : pad[0] + dim]


def assert_padding_untouched(wide, dim, pad):
    assert (wide[:, : pad[0]] == 7.0).all() and (wide[:, pad[0] + dim :] == 7.0).all()


@settings(max_examples=120, deadline=None)
@given(record_cases())
def test_pool_records_matches_numpy(case):
    dtype, dim, slab, extra, loc, offsets, weights, mode, pad = case
    wide, out = column_view(offsets.size - 1, dim, pad)
    pool_records(slab, extra, loc, offsets, weights, mode, RECORD_FORMATS[dtype], dim, out)
    values, bias, index = values_of(slab, extra, loc, dtype, dim)
    assert_pooled(out, values, bias, index, offsets, weights, mode)
    assert_padding_untouched(wide, dim, pad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_records_slab_only_many_bags_across_threads(dtype):
    """No ``extra`` rows (the all-hits kernel), enough bags for every thread and prefetches across bags."""
    rng = np.random.default_rng(len(dtype))
    slab = make_records(rng, 3000, dtype, 64, 8)
    lengths = rng.integers(0, 40, size=1001)
    lengths[::7] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    loc = rng.integers(0, 3000, size=offsets[-1])
    out = np.empty((lengths.size, 64), dtype=np.float32)
    pool_records(slab, NO_RECORDS, loc, offsets, None, MODE_SUM, RECORD_FORMATS[dtype], 64, out)
    values, bias, index = values_of(slab, NO_RECORDS, loc, dtype, 64)
    assert_pooled(out, values, bias, index, offsets, None, MODE_SUM)


@settings(max_examples=60, deadline=None)
@given(record_cases(with_extra=False), st.sampled_from([None, -1, -(2**40), 0, 2**40]))
def test_pool_record_ids_matches_numpy_and_flags_ids_out_of_range(case, bad_id):
    dtype, dim, slab, _, loc, offsets, weights, mode, pad = case
    if mode == MODE_MEAN:  # one sum and one max kernel per format and width keep the compile count down
        mode, weights = MODE_SUM, None
    ids = loc.copy()
    if bad_id is not None and ids.size:
        ids[ids.size // 3] = bad_id if bad_id < 0 else slab.shape[0] + bad_id
    wide, out = column_view(offsets.size - 1, dim, pad)
    ok = pool_record_ids(slab, ids, offsets, weights, mode, RECORD_FORMATS[dtype], dim, out)
    assert ok == (bad_id is None or ids.size == 0)
    if ok:
        values, bias, index = values_of(slab, NO_RECORDS, ids, dtype, dim)
        assert_pooled(out, values, bias, index, offsets, weights, mode)
    assert_padding_untouched(wide, dim, pad)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(DTYPES), st.sampled_from([3, 64]), st.integers(0, 200), st.integers(0, 30),
       st.integers(0, 8), st.integers(0, 2**32 - 1))
def test_gather_records_matches_numpy(dtype, dim, n, n_slab, n_extra, seed):
    rng = np.random.default_rng(seed)
    slab = make_records(rng, n_slab, dtype, dim, 8)
    extra = make_records(rng, n_extra, dtype, dim, None)
    choices = np.concatenate([np.arange(n_slab), -1 - np.arange(n_extra)]).astype(np.int64)
    loc = rng.choice(choices, size=n) if choices.size else np.zeros(0, dtype=np.int64)
    out = np.empty((loc.size, dim), dtype=np.float32)
    gather_records(slab, extra, loc, RECORD_FORMATS[dtype], dim, out)
    values, _, index = values_of(slab, extra, loc, dtype, dim)
    np.testing.assert_allclose(out, values[index], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [1, 7, 64])
def test_records_hold_the_stored_values(dtype, dim):
    """``to_records`` (int4 included) stores what the reference says, within its quantization bound."""
    rows = np.random.default_rng(dim).standard_normal((50, dim)).astype(np.float32) * 4
    values, _ = record_values(to_records(rows, dtype), dtype, dim)
    np.testing.assert_allclose(values, stored_values(rows, dtype), rtol=1e-6, atol=1e-6)
    assert (np.abs(values - rows) <= quantization_bound(rows, dtype) + 1e-6).all()


def test_record_stride():
    assert [record_stride(d, 64) for d in DTYPES] == [256, 128, 72, 40]
    assert record_stride("int8", 64) <= 1.25 * 72
    assert record_stride("int8", 64, alignment=16) == 80
    assert record_stride("int4", 5) == 16 and record_stride("float16", 3) == 8
    with pytest.raises(ValueError, match="power of two"):
        record_stride("int8", 64, alignment=12)
    slab = empty_records(10, "int8", 64)
    assert slab.shape == (10, 72) and slab.dtype == np.uint8 and slab.ctypes.data % 4096 == 0


def test_copy_records_fills_slots_and_skips_negative_ones():
    rng = np.random.default_rng(4)
    slab = np.zeros((10, 16), dtype=np.uint8)
    records = rng.integers(0, 256, size=(4, 13), dtype=np.uint8)
    copy_records(slab, np.array([7, -1, 0, 3]), records)
    np.testing.assert_array_equal(slab[[7, 0, 3], :13], records[[0, 2, 3]])
    assert not slab[:, 13:].any() and not slab[[1, 2, 4, 5, 6, 8, 9]].any()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: copy_records(np.zeros((4, 8), np.uint8), np.array([4]), np.zeros((1, 8), np.uint8)),
         "slots must be < 4"),
        (lambda: copy_records(np.zeros((4, 8), np.uint8), np.array([0]), np.zeros((1, 9), np.uint8)),
         "do not fit"),
        (lambda: copy_records(np.zeros((4, 8), np.uint8), np.array([0, 1]), np.zeros((1, 8), np.uint8)),
         "1 rows, but there are 2 slots"),
        (lambda: copy_records(np.zeros((4, 8), np.float32), np.array([0]), np.zeros((1, 8), np.uint8)),
         "slab must be a 2-D uint8"),
    ],
)
def test_copy_records_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _pool_args(**change):
    args = dict(slab=make_records(np.random.default_rng(0), 5, "int8", 4, 8), extra=NO_RECORDS,
                loc=np.array([0, 1, 2], dtype=np.int64), offsets=np.array([0, 1, 3], dtype=np.int64), weights=None,
                mode=MODE_SUM, dtype_code=RECORD_FORMATS["int8"], dim=4, out=np.empty((2, 4), dtype=np.float32))
    args.update(change)
    return args


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dtype_code=7), "dtype_code must be one of"),
        (dict(dim=5), "out has 4 columns, but dim is 5"),
        (dict(slab=np.zeros((5, 11), np.uint8)), "slab rows have 11 bytes, but a int8 record of dim 4 needs 12"),
        (dict(slab=np.zeros((5, 16), np.float32)), "slab must be a 2-D uint8 array"),
        (dict(extra=np.zeros((2, 12), np.uint8)[:, ::-1]), "extra rows must be contiguous"),
        (dict(slab=np.zeros((5, 17), np.uint8)[:, 1:], dtype_code=RECORD_FORMATS["float32"]),
         "float32 records must start at multiples of 4 bytes"),
        (dict(loc=np.array([0, 5, 2], dtype=np.int64)), r"loc values must name a row: in \[-0, 5\)"),
        (dict(mode=3), "mode must be one of"),
        (dict(weights=np.ones(3, dtype=np.float32), mode=MODE_MAX), "per-sample weights need mode sum"),
        (dict(offsets=np.array([0, 1, 2], dtype=np.int64)), "from 0 to len\\(loc\\)=3"),
    ],
)
def test_pool_records_rejects_bad_input(change, message):
    args = _pool_args(**change)
    before = args["out"].copy()
    with pytest.raises(ValueError, match=message):
        pool_records(**args)
    np.testing.assert_array_equal(args["out"], before)


def test_pool_record_ids_and_gather_records_check_records():
    args = _pool_args(slab=np.zeros((5, 11), np.uint8))
    with pytest.raises(ValueError, match="needs 12"):
        pool_record_ids(args["slab"], args["loc"], args["offsets"], None, MODE_SUM, args["dtype_code"], 4, args["out"])
    with pytest.raises(ValueError, match="out has 2 rows, but there are 3 ids"):
        gather_records(_pool_args()["slab"], NO_RECORDS, args["loc"], args["dtype_code"], 4, args["out"])


UNCHECKED_BUILD = textwrap.dedent("""
    import numpy as np
    from tierstore.pages import to_records
    from tierstore.pool_records import (RECORD_FORMATS, copy_records, empty_records, gather_records,
                                        pool_record_ids, pool_records)

    rng = np.random.default_rng(0)
    offsets = np.arange(0, 41, 5)
    for dtype, code in RECORD_FORMATS.items():
        rows = rng.standard_normal((30, 16)).astype(np.float32)
        records = to_records(rows, dtype)
        slab = empty_records(20, dtype, 16)
        copy_records(slab, np.arange(20), records[:20])
        loc = rng.integers(-10, 20, 40)
        values = np.empty((40, 16), np.float32)
        gather_records(slab, records[20:], loc, code, 16, values)
        weights = rng.uniform(0, 1, 40).astype(np.float32)
        out = np.empty((8, 16), np.float32)
        pool_records(slab, records[20:], loc, offsets, weights, 0, code, 16, out)
        want = np.add.reduceat(values * weights[:, None], offsets[:-1])
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
        if dtype == "int8":
            ok = pool_record_ids(slab, np.abs(loc) % 20, offsets, None, 2, code, 16, out)
            assert ok and np.isfinite(out).all()
    print("ok")
""")


def test_unchecked_build_compiles_every_record_format(tmp_path):
    """Users run the build without bounds checks, which compiles differently (see test_store)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_BOUNDSCHECK", "NUMBA_CACHE_DIR")}
    done = subprocess.run([sys.executable, "-c", UNCHECKED_BUILD], env=env, capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
