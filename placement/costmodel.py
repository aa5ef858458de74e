"""Tier budgets and the per-tier cost model used to rank rows."""

from __future__ import annotations

from dataclasses import dataclass

from ._json import JsonDataclass

TIERS = ("gpu", "dram", "ssd")


@dataclass(frozen=True)
class TierBudgets(JsonDataclass):
    """Byte budgets of the tiers.

    Parameters
    ----------
    gpu_bytes : int
        GPU memory for embedding rows.
    dram_bytes : int
        DRAM for embedding rows (pinned rows plus the policy-managed cache).
    ssd_bytes : int or None
        SSD space; every row lives on SSD, so it must hold all tables.  ``None``: unlimited.
    """

    gpu_bytes: int = 0
    dram_bytes: int = 0
    ssd_bytes: int | None = None

    def __post_init__(self):
        for name in ("gpu_bytes", "dram_bytes", "ssd_bytes"):
            value = getattr(self, name)
            if value is None and name == "ssd_bytes":
                continue
            if int(value) != value or value < 0:
                raise ValueError(f"TierBudgets.{name} must be a non-negative integer, got {value!r}")
            object.__setattr__(self, name, int(value))


@dataclass(frozen=True)
class CostModel(JsonDataclass):
    """Cost of serving one row from each tier: latency plus transfer time.

    A GPU or DRAM hit moves the row; an SSD read moves a whole page.  The
    defaults are order-of-magnitude figures (HBM, DRAM over PCIe, NVMe 4 KiB
    random reads); configure measured ones where known.

    Parameters
    ----------
    gpu_latency_us, dram_latency_us, ssd_latency_us : float
        Latency of one access, microseconds.
    gpu_bandwidth_gbps, dram_bandwidth_gbps, ssd_bandwidth_gbps : float
        Bandwidth, GB/s (1e9 bytes per second).
    ssd_page_bytes : int
        Bytes one SSD read moves.
    """

    gpu_latency_us: float = 0.01
    gpu_bandwidth_gbps: float = 1000.0
    dram_latency_us: float = 0.2
    dram_bandwidth_gbps: float = 12.0
    ssd_latency_us: float = 80.0
    ssd_bandwidth_gbps: float = 2.0
    ssd_page_bytes: int = 4096

    def __post_init__(self):
        for tier in TIERS:
            for kind in ("latency_us", "bandwidth_gbps"):
                value = getattr(self, f"{tier}_{kind}")
                if not value >= 0 or (kind == "bandwidth_gbps" and value == 0):
                    raise ValueError(f"CostModel.{tier}_{kind} must be positive, got {value!r}")
        if self.ssd_page_bytes <= 0:
            raise ValueError(f"CostModel.ssd_page_bytes must be positive, got {self.ssd_page_bytes!r}")

    def access_us(self, tier: str, row_bytes: int) -> float:
        """Microseconds to serve one row of ``row_bytes`` from ``tier``."""
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; tiers: {TIERS}")
        moved = self.ssd_page_bytes if tier == "ssd" else row_bytes
        return getattr(self, f"{tier}_latency_us") + moved / (getattr(self, f"{tier}_bandwidth_gbps") * 1e3)

    def saving_per_byte(self, tier: str, row_bytes: int) -> float:
        """Microseconds saved per access and per byte of ``tier`` when a row is served there instead of SSD."""
        return (self.access_us("ssd", row_bytes) - self.access_us(tier, row_bytes)) / row_bytes
