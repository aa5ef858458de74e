"""Placement plans applied to an open store: rows pinned in DRAM, rows cached, rows read from SSD only.

A :class:`placement.PlacementPlan` gives every row of its tables a tier.  When a
store opens with a plan (``tierstore.open(path, plan=...)``):

- ``PINNED_DRAM`` rows are read into DRAM at open, into slab rows of their own
  outside the cache, and never evicted (re-read when they are updated);
- ``CACHED`` rows go through the DRAM cache as usual;
- ``SSD_ONLY`` rows are read from SSD on every lookup and never admitted;
- ``PINNED_GPU`` rows wait for a GPU tier, which is not built yet: until then they
  are treated as ``CACHED``.

Per plan table the store keeps a route per row (int32: 4 bytes a row, only for
tables of the plan): the pinned row's slab row (``>= 0``), ``ROUTE_CACHED`` or
``ROUTE_SSD_ONLY``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from placement import PINNED_DRAM, SSD_ONLY, PlacementPlan

ROUTE_CACHED = -1
ROUTE_SSD_ONLY = -2


def load_plan(plan):
    """A ``PlacementPlan`` from itself or from a saved plan's directory (or its ``plan.json``)."""
    if isinstance(plan, PlacementPlan):
        return plan
    path = Path(plan)
    return PlacementPlan.load(path.parent if path.name == "plan.json" else path)


@dataclass
class LivePlan:
    """What a store applies of a plan.

    Attributes
    ----------
    tables : list of str
        The plan's tables, in its order (the DRAM tier keys them in this order, as
        ``placement.evaluate`` does).
    pinned : dict of str to int64 ndarray
        Per table, its DRAM-pinned rows, increasing.
    ssd_only : dict of str to bool ndarray
        Per table, which rows are never admitted.
    dram_bytes : int
        The plan's whole DRAM budget (pinned rows plus the cache).
    """

    tables: list[str]
    pinned: dict[str, np.ndarray]
    ssd_only: dict[str, np.ndarray]
    dram_bytes: int

    def routes(self, pinned_slots) -> dict[str, np.ndarray]:
        """Per table, each row's route: its pinned slab row (``pinned_slots(table, rows)``),
        ``ROUTE_CACHED`` or ``ROUTE_SSD_ONLY``."""
        out = {}
        for name in self.tables:
            route = np.where(self.ssd_only[name], ROUTE_SSD_ONLY, ROUTE_CACHED).astype(np.int32)
            route[self.pinned[name]] = pinned_slots(name, self.pinned[name])
            out[name] = route
        return out


def live_plan(plan, tables: dict) -> LivePlan:
    """Check ``plan`` against a store's ``tables`` (``{name: TableConfig}``) and extract what it applies.

    Raises
    ------
    ValueError
        If a plan table is missing from the store or has another number of rows.
    """
    plan = load_plan(plan)
    for name, spec in plan.tables.items():
        if name not in tables:
            raise ValueError(f"the plan covers table {name!r}, which the store does not have: {sorted(tables)}")
        if spec.num_rows != tables[name].num_rows:
            raise ValueError(f"table {name!r}: the plan has {spec.num_rows} rows, the store {tables[name].num_rows}")
    tier = {name: np.asarray(plan.tier(name)) for name in plan.tables}
    return LivePlan(
        tables=list(plan.tables),
        pinned={name: np.flatnonzero(t == PINNED_DRAM).astype(np.int64) for name, t in tier.items()},
        ssd_only={name: t == SSD_ONLY for name, t in tier.items()},
        dram_bytes=int(plan.budgets.dram_bytes),
    )
