"""Counters a store keeps about its lookups, per tier.

Batch latency percentiles leave out warm-up: a batch during which numba compiled
code, or loaded it from its disk cache (the first batches of a process, or a
new dtype or policy), is counted apart (``warmup_batches``, ``warmup_ms``).
Both take numba's compiler lock, which calls of code already loaded never do,
so counting its acquisitions (numba's event API) tells such batches apart.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from numba.core import event

LATENCY_WINDOW = 100_000


class _CompilerLockCounter(event.Listener):
    """Counts acquisitions of numba's compiler lock (compiling, or loading from the disk cache)."""

    def __init__(self):
        self.count = 0

    def on_start(self, event):
        self.count += 1

    def on_end(self, event):
        pass


CODE_LOADS = _CompilerLockCounter()
event.register("numba:compiler_lock", CODE_LOADS)


class LookupStats:
    """Per-tier hits and misses, SSD reads, lookups and batch latencies.

    Hits and misses count accesses (every index of every bag), so the hit rate is
    the share of pooled rows served by that tier.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        self.dram_hits = 0
        self.dram_misses = 0
        self.lookups = 0
        self.bags = 0
        self.batches = 0
        self.rows_admitted = 0
        self.warmup_batches = 0
        self.warmup_seconds = 0.0
        self._latencies = np.zeros(LATENCY_WINDOW, dtype=np.float64)
        self._n_latencies = 0
        self._loads_at_start = CODE_LOADS.count

    def start_batch(self) -> float:
        """Mark a batch's start; returns ``time.perf_counter()``."""
        self._loads_at_start = CODE_LOADS.count
        return time.perf_counter()

    def record_batch(self, seconds: float) -> None:
        """Add the wall time of the batch begun at the last ``start_batch``: to the
        latency window (a ring buffer of the last LATENCY_WINDOW), or, if numba
        compiled or loaded code meanwhile, to the warm-up counts."""
        self.batches += 1
        if CODE_LOADS.count != self._loads_at_start:
            self.warmup_batches += 1
            self.warmup_seconds += seconds
            return
        self._latencies[self._n_latencies % LATENCY_WINDOW] = seconds
        self._n_latencies += 1

    def latency_percentiles(self) -> dict[str, float]:
        """p50/p95/p99 batch latency in milliseconds over the recent window (warm-up
        batches left out), and the warm-up batches' count and total milliseconds."""
        warmup = {"warmup_batches": self.warmup_batches, "warmup_ms": self.warmup_seconds * 1e3}
        window = self._latencies[: min(self._n_latencies, LATENCY_WINDOW)]
        if window.size == 0:
            return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, **warmup}
        p50, p95, p99 = np.percentile(window, [50, 95, 99]) * 1e3
        return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), **warmup}


def mapped_bytes(path) -> int | None:
    """Resident bytes of this process's mappings of file ``path`` (``/proc/self/smaps``), None without it."""
    smaps = Path("/proc/self/smaps")
    if not smaps.exists():
        return None
    target = str(Path(path).resolve())
    total, inside = 0, False
    for line in smaps.read_text().splitlines():
        first = line.split(maxsplit=1)[0] if line else ""
        if "-" in first and not first.endswith(":"):
            inside = line.endswith(target)
        elif inside and first == "Rss:":
            total += int(line.split()[1]) * 1024
    return total
