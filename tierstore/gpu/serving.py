"""The store's GPU path: GPU tiers over its tables, and batches pooled on the device.

:class:`GpuServing` is a part of :class:`tierstore.Store` (a base class): it
builds the GPU tiers ``tierstore.open(..., gpu_cache_bytes=...)`` asks for, runs
lookups through them, and hands out device outputs.  Rows the GPU tier misses
are fetched through the store's DRAM tier and SSD by ``Store._gpu_records``.
"""

from __future__ import annotations

import time

import numpy as np

from cache_policies.setassoc import SetAssociative
from cache_policies.setassoc import parse as parse_setassoc

DEVICES = (None, "cpu", "cuda")
GPU_DEFAULT = SetAssociative(admission="none")
"""The GPU tier's cache unless ``gpu_policy`` says otherwise: the DRAM default's rule and ways, no admission
filter (the GPU tier has none)."""


def output_device(device) -> str | None:
    """``None`` (numpy out) or ``"cuda"`` from a ``device`` argument (None, "cpu", "cuda", "cuda:0", a torch.device)."""
    name = None if device is None else str(device)
    if name in ("cuda:0",):
        name = "cuda"
    if name not in DEVICES:
        raise ValueError(f"device must be None, 'cpu' or 'cuda' (the current CUDA device), got {device!r}")
    return None if name == "cpu" else name


class GpuServing:
    """The GPU half of :class:`tierstore.Store` (see the module docstring)."""

    _gpu_tiers: list
    _gpu_of: dict

    def _build_gpu_tiers(self, gpu_cache_bytes, gpu_policy, pinned: dict) -> None:
        """GPU tiers for ``gpu_cache_bytes`` (an int over every table, or ``{table: bytes}`` with the other tables
        served by a tier of no rows), with ``pinned`` (``{table: rows}``, a placement plan's GPU-pinned rows;
        without a GPU tier, the DRAM tier serves them as any other row)."""
        self._gpu_tiers, self._gpu_of = [], {}
        if isinstance(gpu_cache_bytes, dict):
            unknown = set(gpu_cache_bytes) - set(self.tables)
            if unknown:
                raise KeyError(f"gpu_cache_bytes names unknown tables {sorted(unknown)}; tables: {sorted(self.tables)}")
            if any(int(b) < 0 for b in gpu_cache_bytes.values()):
                raise ValueError(f"gpu_cache_bytes must be >= 0, got {gpu_cache_bytes}")
            groups = [([self.tables[n]], int(b)) for n, b in gpu_cache_bytes.items()]
            rest = [t for n, t in self.tables.items() if n not in gpu_cache_bytes]
            if rest:
                groups.append((rest, 0))
        elif int(gpu_cache_bytes) > 0:
            groups = [(list(self.tables.values()), int(gpu_cache_bytes))]
        elif int(gpu_cache_bytes) == 0:
            return
        else:
            raise ValueError(f"gpu_cache_bytes must be >= 0, got {gpu_cache_bytes}")
        from tierstore.gpu.runtime import require_cuda

        require_cuda()
        from tierstore.gpu.tier import GpuTier

        cache = parse_setassoc(gpu_policy if gpu_policy is not None else GPU_DEFAULT, GPU_DEFAULT)
        for tables, budget in groups:
            names = {t.name for t in tables}
            tier = GpuTier(tables, budget, cache, {n: r for n, r in pinned.items() if n in names})
            self._gpu_tiers.append(tier)
            self._gpu_of.update(dict.fromkeys(names, tier))
        if pinned:
            with self._lock, self.reading() as txn:
                for tier in self._gpu_tiers:
                    tier.load_pinned(self._fetcher(txn))

    @property
    def serves_cuda(self) -> bool:
        """Whether lookups run on the GPU (the store was opened with ``gpu_cache_bytes``), so
        ``device="cuda"`` outputs come straight from the device."""
        return bool(self._gpu_tiers)

    def _fetcher(self, txn):
        def fetch(table, rows, count=True):
            return self._gpu_records(txn, table, rows, count)

        return fetch

    def _uses_gpu(self, device) -> bool:
        """Whether a lookup with ``device`` runs on the GPU path; raises for ``"cuda"`` without a GPU tier."""
        if output_device(device) == "cuda" and not self._gpu_tiers:
            raise ValueError("device='cuda' needs a GPU tier: open the store with gpu_cache_bytes=...")
        return bool(self._gpu_tiers)

    def _device_output(self, shape, device):
        """``(what the caller gets, the numba device array the kernels write)`` for an output of ``shape``."""
        from tierstore.gpu.runtime import require_cuda, torch_cuda

        cuda = require_cuda()
        torch = torch_cuda() if device == "cuda" else None
        if torch is not None:
            tensor = torch.empty(shape, dtype=torch.float32, device="cuda")
            if tensor.numel() == 0:  # nothing to write: no device memory to hand numba
                return tensor, cuda.device_array(shape, dtype=np.float32)
            return tensor, cuda.as_cuda_array(tensor, sync=False)
        array = cuda.device_array(shape, dtype=np.float32)
        return array, array

    def _run_gpu_batch(self, requests, device):
        """Pool ``requests`` (as ``Store._run_batch``) on the GPU; the ``[B, sum(dims)]`` output, numpy or on
        the device."""
        device = output_device(device)
        with self._lock:
            started = time.perf_counter()
            self._catch_up()
            checked = [(r[0],) + self._check_request(*r, None)[:4] for r in requests]
            n_bags = checked[0][2].size - 1
            columns = np.cumsum([0] + [self.tables[c[0]].dim for c in checked]).tolist()
            user_out, out = self._device_output((n_bags, columns[-1]), device)
            by_tier = {}
            for (name, idx, off, weights, mode), column in zip(checked, columns):
                by_tier.setdefault(id(self._gpu_of[name]), (self._gpu_of[name], []))[1].append(
                    (name, idx, off, weights, mode, column))
            if all(tier.fully_resident(c[0]) and not tier.stale for tier, reqs in by_tier.values() for c in reqs):
                for tier, reqs in by_tier.values():
                    tier.pool_batch(reqs, None, out)
            else:
                with self.reading() as txn:
                    for tier, reqs in by_tier.values():
                        tier.pool_batch(reqs, self._fetcher(txn), out)
            for _, idx, off, *_ in checked:
                self._stats.lookups += idx.size
                self._stats.bags += off.size - 1
            if device is None:
                user_out = out.copy_to_host()
            self._stats.record_batch(time.perf_counter() - started)
            return user_out

    def _gpu_invalidate(self, name: str, rows: np.ndarray) -> None:
        """Drop the GPU copies of ``rows`` of ``name`` (their data changed)."""
        tier = self._gpu_of.get(name)
        if tier is not None:
            tier.invalidate(name, rows)

    def _gpu_warm(self, table: str) -> bool:
        """Read every row of ``table`` onto the GPU if its GPU tier holds the whole table; whether it did."""
        tier = self._gpu_of.get(table)
        if tier is None or not tier.mirror:
            return False
        self._ssd_of(table)
        with self._lock, self.reading() as txn:
            tier.warm(table, self._fetcher(txn))
        return True

    def _gpu_stats(self) -> dict | None:
        """The GPU tiers' counters summed, or None without a GPU tier."""
        if not self._gpu_tiers:
            return None
        total = {}
        for tier in self._gpu_tiers:
            for key, value in tier.stats().items():
                if key != "hit_rate":
                    total[key] = total.get(key, 0) + value
        accesses = total["hits"] + total["misses"]
        total["hit_rate"] = total["hits"] / accesses if accesses else 0.0
        return total

    def _reset_gpu_stats(self) -> None:
        for tier in self._gpu_tiers:
            tier.reset_counters()
