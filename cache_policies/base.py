"""Policy registry and the ``Policy`` handle.

A policy is a name plus resolved parameters; ``Policy.new_state(capacity,
max_slots)`` builds the numba ``jitclass`` state machine that the simulator and
the live caches drive through the slot protocol:

- attributes ``capacity`` (bytes, or objects when every size is 1), ``used``
  (bytes resident) and ``n_resident``;
- ``admit(key, size) -> bool``: called on every miss before any eviction;
- ``victim() -> slot``: evict one resident slot (internal moves happen inside);
- ``on_insert(slot, key, size)``: the caller has evicted while
  ``used + size > capacity``;
- ``on_hit(slot)``; ``remove(slot)`` (invalidation, no ghost);
- ``set_next_access(next_vtime)``: called before each request by the
  simulator; only Belady uses it;
- ``take_evicted() -> slot or -1`` and ``n_pending`` (int64): slots the
  policy evicted on its own, which the caller drains (while ``n_pending > 0``)
  after ``on_hit``, after ``admit`` and after its eviction loop.  Only LIRS
  (which evicts during hits and admission, and may free several objects in
  one step) and W-TinyLFU (SLRU probation overflow on a hit, byte sizes only)
  ever have any; elsewhere ``n_pending`` stays 0.

Every policy accepts ``admission`` (``"none"``, ``"second_hit"`` or
``"tinylfu"``), an admission filter in front of the policy, with
``admission_memory`` keys of history (0 = the cache's capacity in objects).

A state class may also register ``StateKernels``: inlinable functions over
its arrays that do what its methods do, so that the simulator's replay loop
runs them with no per-request method call (numba reference counts every
array a jitclass method touches, which costs more than the policy's own work).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numba
import numpy as np

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


@dataclass(frozen=True)
class StateKernels:
    """A state class's protocol as functions over its array.

    The class keeps its whole state, scalars included, in one array (numba
    prunes reference counting from a loop only where the code it runs holds
    a single array), returns it from ``kernel_state()``, reallocates it in
    ``grow()`` and, after ``key_by_slot()``, takes every key to be its own
    slot id (the simulator's dense ids).  Each kernel is a ``numba.njit``
    function taking that array ``a`` first: ``ready(a, size)`` (a miss of
    ``size`` bytes can be served, every victim included, without ``grow``),
    ``admit(a, key, size)``, ``victim(a)``, ``on_hit(a, slot)``,
    ``on_insert(a, slot, key, size)``, ``remove(a, slot)``, ``used(a)``,
    ``capacity(a)``.  Such a class never has pending evictions and ignores
    next-access times.
    """

    ready: Callable
    admit: Callable
    victim: Callable
    on_hit: Callable
    on_insert: Callable
    remove: Callable
    used: Callable
    capacity: Callable


_KERNELS: dict[Any, StateKernels] = {}


def register_kernels(state_class, kernels: StateKernels) -> None:
    """Record the ``StateKernels`` of jitclass ``state_class``."""
    _KERNELS[state_class.class_type] = kernels


def kernels_of(state) -> StateKernels | None:
    """The ``StateKernels`` registered for ``state``'s class, if any."""
    return _KERNELS.get(numba.typeof(state).class_type)


def _no_evicted(self):
    return -1


def _ignore_next_access(self, next_vtime):
    pass


def protocol_defaults(cls):
    """Give a state class (before ``jitclass``) the protocol methods most
    policies leave trivial: ``take_evicted`` (nothing pending) and
    ``set_next_access`` (ignored)."""
    for name, method in (("take_evicted", _no_evicted), ("set_next_access", _ignore_next_access)):
        if name not in cls.__dict__:
            setattr(cls, name, method)
    return cls


def register_policy(name: str, defaults: dict[str, Any], summary: str, needs_next_access: bool = False):
    """Decorator registering ``build(capacity, max_slots, **params) -> state`` under ``name``."""

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

    def new_state(self, capacity: int, max_slots: int):
        """Build a fresh state for ``capacity`` bytes over slots ``[0, max_slots)``."""
        capacity = int(capacity)
        max_slots = int(max_slots)
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        if max_slots < 1:
            raise ValueError(f"max_slots must be >= 1, got {max_slots}")
        own = {k: v for k, v in self.params.items() if k not in COMMON_DEFAULTS}
        state = self._spec.build(capacity, max_slots, **own)
        if self.params["admission"] == "none":
            return state
        from .admission import wrap_with_filter

        memory = self.params["admission_memory"] or max(capacity, 1)
        return wrap_with_filter(state, self.params["admission"], memory, max_slots)

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
