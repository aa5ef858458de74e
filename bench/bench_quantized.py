"""Quantized pooling benchmark (issue 12, item 2): rows pooled at their stored width, side by side.

One float32 table (default 4M x 64, seeded normals) is stored four ways and pooled
from DRAM in one process, batches of 2048 bags x 32 ids, uniform and Zipf(1.05)
(``bench.traces.generate``, seeded):

- int8 records (codes, float32 scale and bias; :func:`tierstore.pages.to_records`)
  with :func:`tierstore.pool_records.pool_record_ids`, against FBGEMM's
  ``IntNBitTableBatchedEmbeddingBagsCodegen`` (``SparseType.INT8``, CPU, pooling
  SUM, float32 output) holding the same codes.  FBGEMM keeps scale and bias as
  float16, so the records' scale and bias are rounded to float16 first: both sides
  hold the same values, and their pooled results are checked equal (within float32
  rounding) before anything is timed;
- the same for int4 (two codes a byte) against FBGEMM's ``SparseType.INT4``;
- float16 and float32 records, against ``torch.nn.functional.embedding_bag`` on the
  float32 table (a reference point: the float16 side reads half the bytes).

For each thread count in ``--threads`` (Numba's and torch's) every side runs one
pass over all batches per repeat, in an order rotated each repeat; warm-up passes
are excluded.  This FBGEMM build runs its CPU lookup on the calling thread
whatever torch's setting (measured: at ``torch.set_num_threads(2)`` and
``OMP_WAIT_POLICY=PASSIVE`` only that thread gains CPU time in its forward), so
its 2-thread figure is a one-thread one.  Run with ``OMP_WAIT_POLICY=PASSIVE``:
otherwise the OpenMP runtimes' idle workers spin (here ten times the CPU time of
FBGEMM's own work) and take the cores from whichever side is running.  It reports the median pass of each side and, per pair, the median
of the per-repeat ratios anchor time / our time (above 1: ours is faster).
``--clock thread`` (with ``--threads 1``) times the calling thread's CPU time,
which time spent waiting for a core on a busy machine does not inflate.  A format
may name its slab's row alignment: ``--formats int8,int8:16`` times int8 records
padded to 8 (72 bytes at dim 64) and to 16 bytes (80), each against FBGEMM.

FBGEMM is optional: ``pip install --no-deps fbgemm-gpu-cpu==1.8.0`` (torch 2.13.0,
CPU); without it the FBGEMM sides are left out and said so.

Run: ``OMP_WAIT_POLICY=PASSIVE python -m bench.bench_quantized --rows 4000000 --dim 64 --threads 1,2``.
Prints one line per pair and a final JSON line that embeds the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from bench.bench_kernels import CLOCKS, index_batches, make_table, timed_pass
from bench.config_args import benchmark_main
from tierstore.config import JsonConfig, record_bytes
from tierstore.kernels import MODE_SUM
from tierstore.pages import to_records
from tierstore.pool_records import RECORD_ALIGNMENT, RECORD_FORMATS, empty_records, pool_record_ids

FORMATS = ("int8", "int4", "float16", "float32")
BOUNDS_CHECKS = ("none", "warning")


@dataclass(frozen=True)
class QuantizedBenchConfig(JsonConfig):
    """What the quantized pooling benchmark ran with (embedded in its JSON output)."""

    rows: int = 4_000_000
    dim: int = 64
    bags: int = 2048
    pooling: int = 32
    threads: str = "1,2"
    batches: int = 20
    repeats: int = 7
    zipf: float = 1.05
    seed: int = 0
    formats: str = ",".join(FORMATS)
    alignment: int = RECORD_ALIGNMENT
    fbgemm_bounds_check: str = "none"
    clock: str = "wall"

    def __post_init__(self):
        for name in ("rows", "dim", "bags", "pooling", "batches", "repeats", "alignment"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not all(t.strip().isdigit() and int(t) > 0 for t in self.threads.split(",")):
            raise ValueError(f"threads must be positive integers separated by commas, got {self.threads!r}")
        if not self.format_list:
            raise ValueError("formats must name at least one format")
        for entry in self.format_list:
            self.format_alignment(entry)
        if self.fbgemm_bounds_check not in BOUNDS_CHECKS:
            raise ValueError(f"fbgemm_bounds_check must be one of {BOUNDS_CHECKS}, got {self.fbgemm_bounds_check!r}")
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {self.clock!r}")
        if self.clock == "thread" and self.thread_counts != [1]:
            raise ValueError("clock 'thread' (CPU time of the calling thread) needs threads=1")

    @property
    def thread_counts(self) -> list[int]:
        return [int(t) for t in self.threads.split(",")]

    @property
    def format_list(self) -> list[str]:
        return [f.strip() for f in self.formats.split(",") if f.strip()]

    def format_alignment(self, entry: str) -> tuple[str, int]:
        """``"int8"`` -> ("int8", alignment); ``"int8:16"`` -> ("int8", 16) (records padded to 16 bytes)."""
        dtype, _, alignment = entry.partition(":")
        if dtype not in FORMATS or not (alignment == "" or alignment.isdigit()):
            raise ValueError(f"formats: {entry!r} is not one of {FORMATS}, optionally followed by :alignment")
        return dtype, int(alignment) if alignment else self.alignment


def stored_records(table: np.ndarray, dtype: str, alignment: int) -> np.ndarray:
    """``table`` as a page-aligned slab of ``dtype`` records (rows padded to ``alignment`` bytes)."""
    slab = empty_records(table.shape[0], dtype, table.shape[1], alignment)
    chunk = 1 << 18
    for start in range(0, table.shape[0], chunk):
        records = to_records(table[start : start + chunk], dtype)
        slab[start : start + chunk, : records.shape[1]] = records
    return slab


def round_qparams_to_half(slab: np.ndarray, codes: int) -> np.ndarray:
    """Round each record's float32 scale and bias (bytes ``codes : codes + 8``) to float16 in place, as FBGEMM
    keeps them; returns them as FBGEMM's ``[n, 4]`` uint8 scale-bias bytes."""
    qparams = np.ascontiguousarray(slab[:, codes : codes + 8]).view(np.float32)
    half = qparams.astype(np.float16)
    slab[:, codes : codes + 8] = half.astype(np.float32).view(np.uint8)
    return half.view(np.uint8)


def fbgemm_module(slab: np.ndarray, dtype: str, rows: int, dim: int, bounds_check: str):
    """FBGEMM's int8/int4 inference TBE (CPU, sum, float32 out) holding the codes of ``slab``, or None
    when ``fbgemm_gpu`` is not importable.  Rounds ``slab``'s scale and bias to float16 (see above)."""
    try:
        import torch
        from fbgemm_gpu.split_embedding_configs import SparseType
        from fbgemm_gpu.split_table_batched_embeddings_ops_common import (
            BoundsCheckMode,
            EmbeddingLocation,
            PoolingMode,
        )
        from fbgemm_gpu.split_table_batched_embeddings_ops_inference import IntNBitTableBatchedEmbeddingBagsCodegen
    except ImportError:
        return None
    sparse_type = SparseType.INT8 if dtype == "int8" else SparseType.INT4
    module = IntNBitTableBatchedEmbeddingBagsCodegen(
        [("t", rows, dim, sparse_type, EmbeddingLocation.HOST)], pooling_mode=PoolingMode.SUM, device="cpu",
        output_dtype=SparseType.FP32,
        bounds_check_mode=BoundsCheckMode.NONE if bounds_check == "none" else BoundsCheckMode.WARNING,
    )
    module.initialize_weights()
    weights, scale_bias = module.split_embedding_weights()[0]
    codes = weights.shape[1]
    scale_bias.copy_(torch.from_numpy(round_qparams_to_half(slab, codes)))
    weights.copy_(torch.from_numpy(slab[:, :codes]))
    return module


def check_equal(name: str, got: np.ndarray, expected: np.ndarray) -> float:
    """Raise unless ``got`` equals ``expected`` within float32 rounding of sums; returns the worst error
    relative to the largest pooled magnitude."""
    scale = float(np.abs(expected).max(initial=0.0)) + 1e-30
    worst = float(np.abs(got - expected).max(initial=0.0)) / scale
    if worst > 1e-5:
        raise AssertionError(f"{name}: pooled results differ (worst error {worst:.3g} of the largest value)")
    return worst


def build_sides(config: QuantizedBenchConfig, table: np.ndarray, tensors: dict):
    """The timed sides ``{name: run(indices, offsets) -> float32 [B, dim] ndarray}``, the pairs
    ``[(ours, anchor)]``, and what was left out and why.  ``tensors[id(indices)]`` holds each batch's
    torch inputs (int64 for torch, int32 for FBGEMM)."""
    import torch

    dim = table.shape[1]
    sides, pairs, left_out = {}, [], []
    weight = torch.from_numpy(table)

    def torch_side(indices, offsets):
        t_indices, t_offsets = tensors[id(indices)][:2]
        return torch.nn.functional.embedding_bag(t_indices, weight, t_offsets, mode="sum").numpy()

    for entry in config.format_list:
        dtype, alignment = config.format_alignment(entry)
        slab = table.view(np.uint8) if dtype == "float32" else stored_records(table, dtype, alignment)
        anchor = "torch"
        if dtype in ("int8", "int4"):
            anchor = f"fbgemm_{dtype}"
            if anchor not in sides and anchor not in left_out:
                module = fbgemm_module(slab, dtype, table.shape[0], dim, config.fbgemm_bounds_check)
                if module is None:
                    left_out.append(anchor)
                else:
                    sides[anchor] = lambda indices, offsets, module=module: module(*tensors[id(indices)][2:]).numpy()
            else:
                round_qparams_to_half(slab, record_bytes(dtype, dim) - 8)

        def ours(indices, offsets, slab=slab, code=RECORD_FORMATS[dtype]):
            out = np.empty((offsets.size - 1, dim), dtype=np.float32)
            if not pool_record_ids(slab, indices, offsets, None, MODE_SUM, code, dim, out):
                raise AssertionError("ids out of range")
            return out

        sides[entry] = ours
        if anchor == "torch":
            sides["torch"] = torch_side
        if anchor in sides:
            pairs.append((entry, anchor))
    return sides, pairs, left_out


def reference_checks(config, table, sides, pairs, batch) -> dict:
    """Check each pair on one batch: FBGEMM pairs equal; float pairs equal numpy's sums of their stored values."""
    worst = {}
    for ours, anchor in pairs:
        got, expected = sides[ours](*batch), sides[anchor](*batch)
        if anchor.startswith("fbgemm"):
            worst[ours] = check_equal(f"{ours} vs {anchor}", got, expected)
        else:
            rows = table[batch[0]]
            if ours.startswith("float16"):
                rows = rows.astype(np.float16).astype(np.float32)
            pooled = np.add.reduceat(rows.astype(np.float64), batch[1][:-1]).astype(np.float32)
            worst[ours] = check_equal(f"{ours} vs numpy", got, pooled)
    return worst


def compare(config: QuantizedBenchConfig, batches, threads: int, sides, pairs) -> dict:
    """Time every side, passes rotated each repeat; returns medians and per-pair ratios."""
    import torch

    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    clock = CLOCKS[config.clock]
    names = list(sides)
    for name in names:
        timed_pass(sides[name], batches, clock)
    seconds = {name: [] for name in names}
    for repeat in range(config.repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(timed_pass(sides[name], batches, clock))
    pooled = sum(int(offsets[-1]) for _, offsets in batches)
    result = {name: {"mrows_s": round(pooled / float(np.median(s)) / 1e6, 2),
                     "pass_s": [round(x, 4) for x in s]} for name, s in seconds.items()}
    result["ratios"] = {
        f"{ours}/{anchor}": round(float(np.median(np.array(seconds[anchor]) / np.array(seconds[ours]))), 3)
        for ours, anchor in pairs
    }
    return result


def run(config: QuantizedBenchConfig) -> dict:
    """Build the table, its stored forms and the index streams; time every thread count and distribution."""
    import torch

    table = make_table(config.rows, config.dim, config.seed)
    tensors = {}
    sides, pairs, left_out = build_sides(config, table, tensors)
    for name in left_out:
        print(f"left out: {name} (fbgemm_gpu is not importable)")
    results = {"left_out": left_out}
    for name, zipf in (("uniform", 0.0), (f"zipf{config.zipf:g}", config.zipf)):
        batches = index_batches(config, zipf)
        for indices, offsets in batches:
            tensors[id(indices)] = (torch.from_numpy(indices), torch.from_numpy(offsets[:-1]),
                                    torch.from_numpy(indices.astype(np.int32)),
                                    torch.from_numpy(offsets.astype(np.int32)))
        results[name] = {"max_error": reference_checks(config, table, sides, pairs, batches[0])}
        for threads in config.thread_counts:
            r = results[name][f"threads{threads}"] = compare(config, batches, threads, sides, pairs)
            for ours, anchor in pairs:
                print(f"{name:>10} {threads} thr: {ours:>8} {r[ours]['mrows_s']:7.1f} M rows/s   {anchor:>11} "
                      f"{r[anchor]['mrows_s']:7.1f} M rows/s   ratio {r['ratios'][f'{ours}/{anchor}']:.3f}")
        tensors.clear()
    return results


def main(argv=None) -> dict:
    return benchmark_main("quantized", QuantizedBenchConfig, run, argv, "python -m bench.bench_quantized",
                          __doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
