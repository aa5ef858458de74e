"""The GPU tier's numba.cuda kernels: set-associative probe and admission, row copies, pooled gathers.

The set-associative rules are those of :mod:`cache_policies.setassoc` (the DRAM
tier's): a key lives in one set of ``ways`` slots; a batch's distinct keys are
probed first (a hit stamps its way with the batch's tick and, under ``"lfu"``,
counts it), then its misses are admitted set by set in batch order, each into
the first empty way, else the rule's victim among the ways the batch did not
touch (LRU: the oldest tick; LFU: the lowest counter, the oldest among equals,
counters halved every ``AGE_PER_WAY * ways`` insertions into the set); a miss
whose set has no untouched way is not admitted.  Ties go to the lowest way, so
the device makes exactly the decisions :func:`cache_policies.setassoc.simulate_setassoc`
replays.  Set numbers come from the host (:func:`cache_policies.setassoc.set_of`),
which also groups the misses by set: one device thread per set that has misses.

Pooling: one launch for every table of a batch that shares a row format, mode and
weighting (table-batched, as FBGEMM's TBE); one row of threads (``blockDim.x``
lanes over the columns) per bag, ``blockDim.y`` bags per block; each lane walks
the bag's rows for its columns, so a warp reads consecutive bytes of each row.  Rows come from the slab (``loc >= 0``,
plus ``base``) or from the batch's staged misses (``loc < 0``: row ``-1 - loc``),
decoded as they are read (:mod:`tierstore.gpu.records` gives the row layouts).

This module imports ``numba.cuda``: import it only after
:func:`tierstore.gpu.runtime.require_cuda` said kernels can run.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from cache_policies.setassoc import AGE_PER_WAY, EMPTY, MAX_COUNT
from tierstore.gpu.records import FORMATS
from tierstore.kernels import MODE_MAX, MODE_MEAN

INT8 = FORMATS["int8"]


@cuda.jit
def probe(tags, stamps, counts, keys, sets, ways, tick, lfu, first_slot, hit_slots):
    """Find each distinct key in its set: ``hit_slots[i]`` = its slab row, or -1; hits are stamped (and counted)."""
    i = cuda.grid(1)
    if i < keys.size:
        base = sets[i] * ways
        key = keys[i]
        slot = -1
        for w in range(ways):
            if tags[base + w] == key:
                slot = base + w
        if slot >= 0:
            stamps[slot] = tick
            if lfu and counts[slot] < MAX_COUNT:
                counts[slot] += 1
            hit_slots[i] = first_slot + slot
        else:
            hit_slots[i] = -1


@cuda.jit
def admit(tags, stamps, counts, set_inserts, keys, sets, order, set_starts, ways, tick, lfu, first_slot, slots,
          admitted):
    """Admit missed keys, one thread per set: ``order[set_starts[s]:set_starts[s + 1]]`` are the misses of one
    set in batch order.  ``slots[j]``: the slab row miss ``j`` now has, or -1 (not admitted); ``admitted[0]``
    counts the admissions.

    The victim is the set's first empty way, else the least ``(rank, way)`` among the
    ways not stamped with ``tick`` (rank: the tick, or counter then tick under LFU).
    """
    s = cuda.grid(1)
    if s < set_starts.size - 1:
        for k in range(set_starts[s], set_starts[s + 1]):
            j = order[k]
            set_ = sets[j]
            base = set_ * ways
            slot = -1
            best_rank = np.int64(0)
            for w in range(ways):
                way = base + w
                stamp = np.int64(stamps[way])
                if tags[way] == EMPTY:
                    rank = np.int64(-1)
                elif stamp == tick:
                    continue
                else:
                    rank = (np.int64(counts[way]) << 32) | stamp if lfu else stamp
                if slot < 0 or rank < best_rank:
                    slot = way
                    best_rank = rank
            if slot < 0:
                slots[j] = -1
                continue
            tags[slot] = keys[j]
            stamps[slot] = tick
            if lfu:
                counts[slot] = 1
                set_inserts[set_] += 1
                if set_inserts[set_] >= AGE_PER_WAY * ways:
                    set_inserts[set_] = 0
                    for w in range(base, base + ways):
                        counts[w] >>= 1
            slots[j] = first_slot + slot
            cuda.atomic.add(admitted, 0, 1)


@cuda.jit
def remove(tags, keys, sets, ways):
    """Empty the way holding each key (if any)."""
    i = cuda.grid(1)
    if i < keys.size:
        base = sets[i] * ways
        for w in range(ways):
            if tags[base + w] == keys[i]:
                tags[base + w] = EMPTY


@cuda.jit
def remove_range(tags, first, stop):
    """Empty every way holding a key in ``[first, stop)`` (one table's keys), a thread per way."""
    i = cuda.grid(1)
    if i < tags.size and first <= tags[i] < stop:
        tags[i] = EMPTY


@cuda.jit
def copy_rows(slab_words, staged_words, slots, n_words):
    """Copy staged row ``i`` into slab row ``slots[i]`` (skipped where ``slots[i] < 0``), a 32-bit word per lane."""
    i = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    if i < slots.size and slots[i] >= 0:
        row = slots[i]
        for w in range(cuda.threadIdx.x, n_words, cuda.blockDim.x):
            slab_words[row, w] = staged_words[i, w]


def _build_pool(fmt: int, mode: int, weighted: bool):
    """The pooling kernel of one row format, mode and weighting (compile-time constants), over the bags of
    several tables in one launch (as FBGEMM's table-batched embedding bags)."""
    int8 = fmt == INT8

    @cuda.jit
    def pool(slab, slab_floats, extra, extra_floats, loc, offsets, weights, tables, n_bags, out):
        """Bag ``g`` of the launch is bag ``g % n_bags`` of table ``g // n_bags``, whose ``tables`` row is
        (first ``loc``, first offset, ``base``, output column, dim, int8 scale word); a table's offsets
        index its own ``loc`` (and ``weights``) from its first one."""
        g = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
        t = g // n_bags
        if t >= tables.shape[0]:
            return
        b = g - t * n_bags
        first = tables[t, 0]
        base = tables[t, 2]
        column = tables[t, 3]
        dim = tables[t, 4]
        scale_at = tables[t, 5]
        start = first + offsets[tables[t, 1] + b]
        stop = first + offsets[tables[t, 1] + b + 1]
        for d in range(cuda.threadIdx.x, dim, cuda.blockDim.x):
            acc = np.float32(-np.inf) if mode == MODE_MAX else np.float32(0.0)
            for i in range(start, stop):
                r = loc[i]
                rows, floats, row = (slab, slab_floats, base + r) if r >= 0 else (extra, extra_floats, -1 - r)
                if int8:
                    v = np.float32(rows[row, d]) * floats[row, scale_at] + floats[row, scale_at + 1]
                else:
                    v = np.float32(rows[row, d])
                if mode == MODE_MAX:
                    acc = max(acc, v)
                elif weighted:
                    acc += weights[i] * v
                else:
                    acc += v
            if stop == start:
                acc = np.float32(0.0)
            elif mode == MODE_MEAN:
                acc /= np.float32(stop - start)
            out[b, column + d] = acc

    return pool


_POOLS: dict[tuple[int, int, bool], object] = {}


def pool_kernel(fmt: int, mode: int, weighted: bool):
    """The (cached) pooling kernel for a row format, a mode code and weighting."""
    key = (fmt, mode, weighted)
    kernel = _POOLS.get(key)
    if kernel is None:
        kernel = _POOLS[key] = _build_pool(fmt, mode, weighted)
    return kernel


def compile_all(cc: tuple[int, int]) -> dict[str, str]:
    """PTX of every kernel, with the argument types the tier launches them with, for compute capability ``cc``.

    Needs numba-cuda's compiler (NVVM and NVRTC) but no GPU: it checks on any
    machine that the kernels build for a real device, which the simulator does
    not (the simulator runs them as Python).
    """
    from numba import types

    def vec(dtype):
        return types.Array(dtype, 1, "C")

    def mat(dtype):
        return types.Array(dtype, 2, "C")

    i64, f32 = types.int64, types.float32
    index = (vec(i64), vec(types.uint32), vec(types.uint8))
    signatures = {
        "probe": (probe, index + (vec(i64), vec(i64), i64, types.uint32, types.boolean, i64, vec(i64))),
        "admit": (admit, index + (vec(types.int32), vec(i64), vec(i64), vec(i64), vec(i64), i64, types.uint32,
                                  types.boolean, i64, vec(i64), vec(i64))),
        "remove": (remove, (vec(i64), vec(i64), vec(i64), i64)),
        "remove_range": (remove_range, (vec(i64), i64, i64)),
        "copy_rows": (copy_rows, (mat(f32), mat(f32), vec(i64), i64)),
    }
    element = {FORMATS["float32"]: f32, FORMATS["float16"]: types.float16, INT8: types.uint8}
    for fmt, dtype in element.items():
        for mode in (0, MODE_MEAN, MODE_MAX):
            for weighted in (False, True):
                for index in (types.int32, i64):
                    rows = (mat(dtype), mat(f32))
                    signatures[f"pool_{fmt}_{mode}_{int(weighted)}_{index}"] = (
                        pool_kernel(fmt, mode, weighted),
                        rows + rows + (vec(index), vec(index), vec(f32), mat(i64), i64, mat(f32)))
    return {name: cuda.compile_ptx(kernel.py_func, signature, cc=cc)[0]
            for name, (kernel, signature) in signatures.items()}
