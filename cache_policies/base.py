"""Policy registry and the ``Policy`` handle.

A policy is a name plus resolved parameters; ``Policy.new_state(capacity,
max_slots)`` builds the ``drive.PolicyState`` (a kind and arrays, driven by
cacheable ``njit`` kernels) that the simulator and the live caches drive
through the slot protocol described in ``drive``: ``admit``, ``victim``,
``on_insert``, ``on_hit``, ``remove``, ``take_evicted`` / ``n_pending``,
``set_next_access``, and ``used`` / ``capacity`` / ``n_resident``
(``capacity`` in bytes, or objects when every size is 1).

A policy module registers ``build(capacity, max_slots, **params) -> (kind,
state params)`` with ``register_policy`` (it checks the parameters; the
kind's ``new`` kernel makes the arrays from the state params) and its
kernels for ``type(kind)`` with ``drive.register_kernels``.

Every policy accepts ``admission`` (``"none"``, ``"second_hit"`` or
``"tinylfu"``), an admission filter in front of the policy, with
``admission_memory`` keys of history (0 = the cache's capacity in objects).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .drive import PolicyState, new_state

ADMISSION_FILTERS = ("none", "second_hit", "tinylfu")
#: Parameters every policy accepts, with their defaults (declared once here).
COMMON_DEFAULTS: dict[str, Any] = {"admission": "none", "admission_memory": 0}


@dataclass(frozen=True)
class PolicySpec:
    """A registered policy: how to build its state and its parameter defaults."""

    name: str
    build: Callable[..., Any]
    defaults: dict[str, Any]
    summary: str
    needs_next_access: bool = False


_REGISTRY: dict[str, PolicySpec] = {}


def register_policy(name: str, defaults: dict[str, Any], summary: str, needs_next_access: bool = False):
    """Decorator registering ``build(capacity, max_slots, **params) -> (kind, state params)`` under ``name``."""

    def wrap(build):
        if name in _REGISTRY:
            raise ValueError(f"policy {name!r} is already registered")
        _REGISTRY[name] = PolicySpec(name, build, dict(defaults), summary, needs_next_access)
        return build

    return wrap


def available_policies() -> list[str]:
    """Names accepted by ``make_policy``, sorted."""
    return sorted(_REGISTRY)


def policy_spec(name: str) -> PolicySpec:
    """The registered ``PolicySpec`` for ``name``; ``ValueError`` listing the names if unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown cache policy {name!r}; available: {', '.join(available_policies())}") from None


def _coerce(policy: str, key: str, value: Any, default: Any) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"policy {policy!r}: parameter {key!r} must be a bool, got {value!r}")
        return bool(value)
    if isinstance(default, int):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"policy {policy!r}: parameter {key!r} must be an int, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"policy {policy!r}: parameter {key!r} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"policy {policy!r}: parameter {key!r} must be a string, got {value!r}")
        return value
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


class Policy:
    """A named cache policy with resolved parameters.

    Build with ``make_policy``.  ``params`` holds every parameter, defaults
    included.
    """

    def __init__(self, name: str, params: dict[str, Any] | None = None):
        spec = policy_spec(name)
        allowed = {**COMMON_DEFAULTS, **spec.defaults}
        params = dict(params or {})
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(
                f"policy {name!r}: unknown parameter(s) {unknown}; allowed: {sorted(allowed)}"
            )
        resolved = {k: _coerce(name, k, params.get(k, d), d) for k, d in allowed.items()}
        if resolved["admission"] not in ADMISSION_FILTERS:
            raise ValueError(
                f"policy {name!r}: admission must be one of {ADMISSION_FILTERS}, got {resolved['admission']!r}"
            )
        if resolved["admission_memory"] < 0:
            raise ValueError(f"policy {name!r}: admission_memory must be >= 0")
        self.name = name
        self.params = resolved
        self._spec = spec

    @property
    def needs_next_access(self) -> bool:
        """Whether the policy reads next-access times (Belady): simulation only."""
        return self._spec.needs_next_access

    def new_state(self, capacity: int, max_slots: int) -> PolicyState:
        """Build a fresh state for ``capacity`` bytes over slots ``[0, max_slots)``."""
        capacity = int(capacity)
        max_slots = int(max_slots)
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        if max_slots < 1:
            raise ValueError(f"max_slots must be >= 1, got {max_slots}")
        own = {k: v for k, v in self.params.items() if k not in COMMON_DEFAULTS}
        kind, params = self._spec.build(capacity, max_slots, **own)
        if self.params["admission"] != "none":
            from .admission import wrap_with_filter

            memory = self.params["admission_memory"] or max(capacity, 1)
            kind, params = wrap_with_filter(kind, params, self.params["admission"], memory, max_slots)
        return new_state(kind, params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"name": ..., "params": {...}}``."""
        return {"name": self.name, "params": {k: _json_value(v) for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Policy":
        """Inverse of ``to_dict``."""
        unknown = set(data) - {"name", "params"}
        if unknown or "name" not in data:
            raise ValueError(f"Policy.from_dict expects keys 'name' and 'params', got {sorted(data)}")
        return cls(data["name"], data.get("params", {}))

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.params.items() if not isinstance(v, np.ndarray)}
        return f"Policy({self.name!r}, {changed})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Policy) and self.to_dict() == other.to_dict()


def make_policy(name: str, **params) -> Policy:
    """Look up policy ``name`` and resolve ``params`` against its defaults.

    Raises
    ------
    ValueError
        For an unknown name or parameter; the message lists the allowed ones.
    """
    return Policy(name, params)


def as_policy(policy: "Policy | str") -> Policy:
    """Accept a ``Policy`` or a policy name."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, str):
        return make_policy(policy)
    raise TypeError(f"expected a Policy or a policy name, got {type(policy).__name__}")
