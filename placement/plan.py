"""Placement plans: tier assignment plus SSD layout, built from a profile, saved as JSON + numpy files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._json import JsonDataclass
from .assign import CACHED, METHODS, PINNED_DRAM, PINNED_GPU, SSD_ONLY, TierAssignment, assign_tiers
from .costmodel import CostModel, TierBudgets
from .layout import LAYOUTS, check_layout, coaccess_layout, frequency_layout, identity_layout, positions_of
from .profile import AccessProfile
from .tables import TableSpec

PLAN_FORMAT = 1
PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class PlanConfig(JsonDataclass):
    """How a plan is made.

    Parameters
    ----------
    assign_method : {"cost", "frequency", "uniform", "cache_only"}
        Tier assignment (see :mod:`placement.assign`).
    layout : {"identity", "frequency", "coaccess"}
        SSD layout (see :mod:`placement.layout`).
    dynamic_fraction : float
        Share of DRAM kept for the policy-managed cache.
    min_cache_count : int
        Unpinned rows seen fewer times in the profile are SSD-only.
    pairs_per_row, max_degree : int
        Co-access graph parameters.
    exclude_pinned_from_layout : bool
        Keep pinned rows out of the co-access clustering (they are read from SSD once).
    seed : int
    """

    assign_method: str = "cost"
    layout: str = "coaccess"
    dynamic_fraction: float = 0.2
    min_cache_count: int = 1
    pairs_per_row: int = 4
    max_degree: int = 32
    exclude_pinned_from_layout: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.assign_method not in METHODS:
            raise ValueError(f"unknown assign_method {self.assign_method!r}; methods: {METHODS}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; layouts: {LAYOUTS}")


@dataclass
class PlacementPlan:
    """Per-row tiers and per-table SSD layouts.

    Attributes
    ----------
    tables : dict of str to TableSpec
    budgets : TierBudgets
    cost : CostModel
    config : PlanConfig
    assignment : TierAssignment
    order : dict of str to int64 ndarray
        Per table, the layout permutation (position -> row).
    """

    tables: dict[str, TableSpec]
    budgets: TierBudgets
    cost: CostModel
    config: PlanConfig
    assignment: TierAssignment
    order: dict[str, np.ndarray]

    def positions(self, name: str) -> np.ndarray:
        """Row -> SSD position of table ``name``."""
        return positions_of(self.order[name])

    def tier(self, name: str) -> np.ndarray:
        """Per-row tier codes of table ``name``."""
        return self.assignment.tier[name]

    def describe(self) -> dict:
        """JSON-ready metadata: configs, budgets spent, rows per tier."""
        a = self.assignment
        return {
            "format": PLAN_FORMAT,
            "tables": [s.to_dict() for s in self.tables.values()],
            "budgets": self.budgets.to_dict(),
            "cost": self.cost.to_dict(),
            "config": self.config.to_dict(),
            "assignment": {
                "method": a.method,
                "params": a.params,
                "gpu_pinned_bytes": a.gpu_pinned_bytes,
                "dram_pinned_bytes": a.dram_pinned_bytes,
                "dram_cache_bytes": a.dram_cache_bytes,
                "rows_per_tier": a.counts(),
            },
        }

    def save(self, directory) -> Path:
        """Write ``plan.json`` and per-table ``tier_<i>.npy`` / ``order_<i>.npy`` into ``directory``.

        ``plan.json`` is written last, through a rename, so a reader never sees it before its arrays.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = self.describe()
        meta["files"] = {}
        for i, name in enumerate(self.tables):
            files = {"tier": f"tier_{i}.npy", "order": f"order_{i}.npy"}
            np.save(directory / files["tier"], self.assignment.tier[name])
            np.save(directory / files["order"], self.order[name])
            meta["files"][name] = files
        tmp = directory / (PLAN_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        os.replace(tmp, directory / PLAN_FILE)
        return directory / PLAN_FILE

    @classmethod
    def load(cls, directory) -> "PlacementPlan":
        """Read a plan written by :meth:`save`, checking every array."""
        directory = Path(directory)
        path = directory / PLAN_FILE
        if not path.exists():
            raise FileNotFoundError(f"no placement plan at {path}")
        meta = json.loads(path.read_text())
        if meta.get("format") != PLAN_FORMAT:
            raise ValueError(f"{path}: plan format {meta.get('format')!r}, this version reads {PLAN_FORMAT}")
        tables = {d["name"]: TableSpec.from_dict(d) for d in meta["tables"]}
        tier, order = {}, {}
        for name, spec in tables.items():
            files = meta["files"][name]
            tier[name] = np.load(directory / files["tier"])
            if tier[name].shape != (spec.num_rows,) or not np.isin(tier[name], (PINNED_GPU, PINNED_DRAM, CACHED, SSD_ONLY)).all():
                raise ValueError(f"{path}: tier array of table {name!r} is malformed")
            order[name] = check_layout(np.load(directory / files["order"]), spec.num_rows, name)
        a = meta["assignment"]
        assignment = TierAssignment(
            tier=tier,
            gpu_pinned_bytes=a["gpu_pinned_bytes"],
            dram_pinned_bytes=a["dram_pinned_bytes"],
            dram_cache_bytes=a["dram_cache_bytes"],
            method=a["method"],
            params=a["params"],
        )
        return cls(
            tables=tables,
            budgets=TierBudgets.from_dict(meta["budgets"]),
            cost=CostModel.from_dict(meta["cost"]),
            config=PlanConfig.from_dict(meta["config"]),
            assignment=assignment,
            order=order,
        )


def make_plan(
    profile: AccessProfile,
    budgets: TierBudgets,
    cost: CostModel | None = None,
    config: PlanConfig | None = None,
) -> PlacementPlan:
    """Assign tiers and lay out every table from an access profile.

    Parameters
    ----------
    profile : AccessProfile
    budgets : TierBudgets
    cost : CostModel, optional
    config : PlanConfig, optional

    Returns
    -------
    PlacementPlan
    """
    cost = cost or CostModel()
    config = config or PlanConfig()
    counts = {name: profile.row_counts(name) for name in profile.tables}
    assignment = assign_tiers(
        counts,
        profile.tables,
        budgets,
        cost,
        method=config.assign_method,
        dynamic_fraction=config.dynamic_fraction,
        min_cache_count=config.min_cache_count,
    )
    order = {}
    for name, spec in profile.tables.items():
        if config.layout == "identity":
            order[name] = identity_layout(spec.num_rows)
        elif config.layout == "frequency":
            order[name] = frequency_layout(counts[name])
        else:
            ptr, rows = profile.coaccess.table_edges(name)
            pinned = assignment.tier[name] <= PINNED_DRAM if config.exclude_pinned_from_layout else None
            order[name] = coaccess_layout(
                counts[name], ptr, rows, spec.rows_per_page, exclude=pinned,
                pairs_per_row=config.pairs_per_row, max_degree=config.max_degree, seed=config.seed,
            )
    return PlacementPlan(profile.tables, budgets, cost, config, assignment, order)
