"""Counters a store keeps about its lookups, per tier."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LATENCY_WINDOW = 100_000


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
        self._latencies = np.zeros(LATENCY_WINDOW, dtype=np.float64)
        self._n_latencies = 0

    def record_batch(self, seconds: float) -> None:
        """Add one batch's wall time (a ring buffer keeps the last LATENCY_WINDOW)."""
        self._latencies[self._n_latencies % LATENCY_WINDOW] = seconds
        self._n_latencies += 1
        self.batches += 1

    def latency_percentiles(self) -> dict[str, float]:
        """p50/p95/p99 batch latency in milliseconds over the recent window."""
        window = self._latencies[: min(self._n_latencies, LATENCY_WINDOW)]
        if window.size == 0:
            return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
        p50, p95, p99 = np.percentile(window, [50, 95, 99]) * 1e3
        return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


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
