"""Policy states and the kernels loops drive them with, all cacheable on disk.

A state is a ``PolicyState``: a numba ``StructRef`` holding ``kind`` and
``arrays``.

- ``kind`` is an instance of the policy's ``Kind`` subclass (for a filter,
  holding the kind of the policy it wraps).  It carries no data: its numba
  type, ``KindType``, picks the policy's kernels when a loop compiles.
- ``arrays`` is what the kernels work on, the *view*: the policy's one
  ``_rows`` array, or, for an admission filter, ``(filter array, inner view)``.

A loop binds ``k = kernels(state.kind)``, a ``StateKernels`` of ``njit``
functions, and calls them on ``v = state.arrays``: ``k.admit(v, key, size)``
compiles to a direct call of the policy's kernel, and ``v``, never reassigned
inside the loop, costs no reference counting per request.

Caching.  Every function that takes a state or a kind (``new_state``,
``simulate``'s replay, the DRAM tier's probe and admission) is keyed by types
numba can pickle, so it compiles once per policy kind and is loaded from
numba's disk cache by every later process: no jitclass, no closure made at run
time.  The kernels themselves are not cached on their own: they compile into
those functions.  A ``KindType`` names a fingerprint of this package's source
(``SOURCE_FINGERPRINT``), so a cached function compiled against older policy
code is never loaded (numba itself only checks the file of the function it
loads).

The protocol (``StateKernels``, each taking the view first):

- ``ready(v, size)``: a miss of ``size`` bytes can be served, every victim
  included, without growing; else the loop returns, stores ``grow(v, size)``
  in ``state.arrays`` and runs on;
- ``admit(v, key, size) -> bool``: called on every miss before any eviction;
- ``victim(v) -> slot``: evict one resident slot;
- ``on_insert(v, slot, key, size)``: the caller has evicted while
  ``used + size > capacity``;
- ``on_hit(v, slot)``; ``remove(v, slot)`` (invalidation, no ghost);
- ``used(v)``, ``capacity(v)``, ``n_resident(v)``: bytes resident, budget,
  objects resident;
- ``set_next_access(v, next_vtime)``: called before each request by the
  simulator; only Belady uses it;
- ``take_evicted(v) -> slot or -1`` and ``n_pending(v)``: slots the policy
  evicted on its own, which the caller drains (while ``n_pending > 0``) after
  ``on_hit``, after ``admit`` and after its eviction loop.  Only LIRS (which
  evicts during hits and admission, and may free several objects in one
  step) and W-TinyLFU (SLRU probation overflow on a hit, byte sizes only)
  ever have any;
- ``key_by_slot(v) -> bool``: on a fresh state, says every key will be its
  own slot id (the simulator's dense ids), so a policy may keep a key's ghost
  in its slot's row; False where the policy reads its keys (hashes them, or
  compares them with given ones) and must be told the real ones.

A ``PolicyState`` also has the protocol as methods (``state.admit(key,
size)``, ``state.used``...) for any ``njit`` code that holds one; they grow
the view themselves when a miss needs room.  From Python it offers ``used``,
``capacity``, ``n_resident``, ``n_pending`` and ``key_by_slot()``.

A policy registers its ``StateKernels`` for its kind class with
``register_kernels``; a wrapper whose kernels depend on the kind it wraps (the
admission filters) registers a function making them from its kind's type.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, NamedTuple

import numba
from numba.core import types
from numba.experimental import structref
from numba.extending import (
    NativeValue,
    models,
    overload,
    overload_attribute,
    overload_method,
    register_model,
    typeof_impl,
    unbox,
)

from . import _rows

#: Digest of every module of this package: part of each kind's numba type.
SOURCE_FINGERPRINT = hashlib.sha1(
    b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.py")))
).hexdigest()[:16]


class Kind:
    """A policy's kind: subclass it once per policy (no fields, except ``inner``,
    the kind a wrapper wraps); instances are interchangeable."""

    inner: "Kind | None" = None


class KindType(types.Type):
    """numba type of a ``Kind``: its class, the package's source fingerprint and the
    type of the kind it wraps, if any.  Holds no data."""

    def __init__(self, kind_class: type, fingerprint: str, inner: "KindType | None" = None):
        self.kind_class = kind_class
        self.fingerprint = fingerprint
        self.inner = inner
        inside = "" if inner is None else str(inner)
        super().__init__(name=f"{kind_class.__module__}.{kind_class.__qualname__}({inside})[{fingerprint}]")


@typeof_impl.register(Kind)
def _typeof_kind(kind, context):
    inner = None if kind.inner is None else numba.typeof(kind.inner)
    return KindType(type(kind), SOURCE_FINGERPRINT, inner)


register_model(KindType)(models.OpaqueModel)


@unbox(KindType)
def _unbox_kind(typ, obj, c):
    return NativeValue(c.context.get_dummy_value())


class StateKernels(NamedTuple):
    """A policy's protocol as ``numba.njit`` functions taking its view first (and
    ``new(params) -> view``); the defaults are those of a ``_rows`` array with no
    pending evictions."""

    new: Callable
    admit: Callable
    victim: Callable
    on_hit: Callable
    on_insert: Callable
    ready: Callable = _rows.ready
    grow: Callable = _rows.grow
    remove: Callable = _rows.remove
    used: Callable = _rows.used
    capacity: Callable = _rows.capacity
    n_resident: Callable = _rows.n_resident
    n_pending: Callable = _rows.no_pending
    take_evicted: Callable = _rows.none_taken
    set_next_access: Callable = _rows.ignore_next_access
    key_by_slot: Callable = _rows.key_by_slot


_KERNELS: dict[type, StateKernels | Callable] = {}
_MADE: dict = {}


def register_kernels(kind_class: type, kernels) -> None:
    """Record the kernels of states whose kind is an instance of ``kind_class``: a
    ``StateKernels``, or ``make(kind_type) -> StateKernels`` for a kind whose
    kernels depend on its numba type (a filter's, on the kind it wraps)."""
    if kind_class in _KERNELS:
        raise ValueError(f"kernels for {kind_class.__name__} are already registered")
    _KERNELS[kind_class] = kernels


def kernels_of_type(kind_type) -> StateKernels | None:
    """The ``StateKernels`` for a kind of numba type ``kind_type``, None if it is not one."""
    if not isinstance(kind_type, KindType):
        return None
    found = _KERNELS[kind_type.kind_class]
    if isinstance(found, StateKernels):
        return found
    made = _MADE.get(kind_type)
    if made is None:
        made = _MADE[kind_type] = found(kind_type)
    return made


def kernels(kind):
    """The ``StateKernels`` of ``kind``, inside ``numba.njit`` code (see the module)."""
    raise TypeError("cache_policies.drive.kernels runs inside numba.njit code only")


@overload(kernels)
def _kernels_typed(kind):
    found = kernels_of_type(kind)
    if found is None:
        return None
    return lambda kind: found


@structref.register
class PolicyStateType(types.StructRef):
    """numba type of a ``PolicyState``, one per (kind type, view type)."""

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(t)) for name, t in fields)


class PolicyState(structref.StructRefProxy):
    """A policy state, as Python sees it: pass it to ``njit`` code (loops, or
    its methods), read its ``used``, ``capacity``, ``n_resident`` and
    ``n_pending``.  Built by ``Policy.new_state``."""

    @property
    def used(self) -> int:
        return int(_state_used(self))

    @property
    def capacity(self) -> int:
        return int(_state_capacity(self))

    @property
    def n_resident(self) -> int:
        return int(_state_n_resident(self))

    @property
    def n_pending(self) -> int:
        return int(_state_n_pending(self))

    def key_by_slot(self) -> bool:
        """On a fresh state: every key will be its own slot id from now on.
        Returns whether the policy takes slot ids as keys (else it must be told
        the real keys; see the module)."""
        return bool(_state_key_by_slot(self))


structref.define_boxing(PolicyStateType, PolicyState)


def _make_state(kind, view):
    raise TypeError("runs inside numba.njit code only")


@overload(_make_state)
def _make_state_typed(kind, view):
    state_type = PolicyStateType([("kind", kind), ("arrays", view)])

    def impl(kind, view):
        state = structref.new(state_type)
        state.kind = kind
        state.arrays = view
        return state

    return impl


@numba.njit(cache=True)
def new_state(kind, params):
    """A fresh ``PolicyState`` of ``kind``, its view made by its ``new(params)``."""
    return _make_state(kind, kernels(kind).new(params))


@numba.njit(inline="always")
def make_ready(state, size):
    """Grow ``state``'s view, if need be, so that a miss of ``size`` bytes is ready."""
    k = kernels(state.kind)
    if not k.ready(state.arrays, size):
        state.arrays = k.grow(state.arrays, size)


@numba.njit(cache=True)
def _state_used(state):
    return kernels(state.kind).used(state.arrays)


@numba.njit(cache=True)
def _state_capacity(state):
    return kernels(state.kind).capacity(state.arrays)


@numba.njit(cache=True)
def _state_n_resident(state):
    return kernels(state.kind).n_resident(state.arrays)


@numba.njit(cache=True)
def _state_n_pending(state):
    return kernels(state.kind).n_pending(state.arrays)


@numba.njit(cache=True)
def _state_key_by_slot(state):
    return kernels(state.kind).key_by_slot(state.arrays)


# The protocol as methods and attributes of a PolicyState, for njit code that holds one.

@overload_method(PolicyStateType, "admit")
def _admit_method(state, key, size):
    def impl(state, key, size):
        make_ready(state, size)
        return kernels(state.kind).admit(state.arrays, key, size)

    return impl


@overload_method(PolicyStateType, "victim")
def _victim_method(state):
    def impl(state):
        make_ready(state, 1)
        return kernels(state.kind).victim(state.arrays)

    return impl


@overload_method(PolicyStateType, "on_insert")
def _on_insert_method(state, slot, key, size):
    def impl(state, slot, key, size):
        kernels(state.kind).on_insert(state.arrays, slot, key, size)

    return impl


@overload_method(PolicyStateType, "on_hit")
def _on_hit_method(state, slot):
    def impl(state, slot):
        kernels(state.kind).on_hit(state.arrays, slot)

    return impl


@overload_method(PolicyStateType, "remove")
def _remove_method(state, slot):
    def impl(state, slot):
        kernels(state.kind).remove(state.arrays, slot)

    return impl


@overload_method(PolicyStateType, "take_evicted")
def _take_evicted_method(state):
    def impl(state):
        return kernels(state.kind).take_evicted(state.arrays)

    return impl


@overload_method(PolicyStateType, "set_next_access")
def _set_next_access_method(state, next_vtime):
    def impl(state, next_vtime):
        kernels(state.kind).set_next_access(state.arrays, next_vtime)

    return impl


@overload_attribute(PolicyStateType, "used")
def _used_attribute(state):
    return lambda state: kernels(state.kind).used(state.arrays)


@overload_attribute(PolicyStateType, "capacity")
def _capacity_attribute(state):
    return lambda state: kernels(state.kind).capacity(state.arrays)


@overload_attribute(PolicyStateType, "n_resident")
def _n_resident_attribute(state):
    return lambda state: kernels(state.kind).n_resident(state.arrays)


@overload_attribute(PolicyStateType, "n_pending")
def _n_pending_attribute(state):
    return lambda state: kernels(state.kind).n_pending(state.arrays)
