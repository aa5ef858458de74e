"""Placement optimizer: access profiling, tier assignment, SSD page layout and plan evaluation.

Works on integer row ids and numpy arrays; knows nothing of LMDB.

>>> prof = profile(trace, {"user": (1_000_000, 256)})           # doctest: +SKIP
>>> plan = make_plan(prof, TierBudgets(gpu_bytes=0, dram_bytes=64 << 20))  # doctest: +SKIP
>>> evaluate(plan, held_out_trace).pages_per_batch              # doctest: +SKIP
"""

from .assign import CACHED, PINNED_DRAM, PINNED_GPU, SSD_ONLY, TIER_NAMES, TierAssignment, assign_tiers
from .costmodel import CostModel, TierBudgets
from .evaluate import Evaluation, evaluate
from .layout import check_layout, coaccess_layout, frequency_layout, identity_layout, positions_of
from .plan import PlacementPlan, PlanConfig, make_plan
from .profile import AccessProfile, profile
from .sketch import CountMinSketch
from .tables import TableSpec, as_table_specs

__all__ = [
    "AccessProfile", "CACHED", "CostModel", "CountMinSketch", "Evaluation", "PINNED_DRAM", "PINNED_GPU",
    "PlacementPlan", "PlanConfig", "SSD_ONLY", "TIER_NAMES", "TableSpec", "TierAssignment", "TierBudgets",
    "as_table_specs", "assign_tiers", "check_layout", "coaccess_layout", "evaluate", "frequency_layout",
    "identity_layout", "make_plan", "positions_of", "profile",
]
