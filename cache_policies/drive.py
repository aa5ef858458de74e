"""How a loop drives a policy state: through its methods or its kernels.

A ``Drive`` holds the functions a loop calls on ``st = view(state)``:
the protocol's methods (any state), or, for a state with ``StateKernels``
(ARC, S3-FIFO, LRU, FIFO, SIEVE), its kernels over its one array, which a
loop runs with no method call and no reference counting per request.
Kernel states never evict on their own (``n_pending`` is 0) and may need
``grow(state)`` before a miss (``ready``); the loop then returns, grows and
runs on with a fresh ``view``.

The simulator's replay and the DRAM tier's probe and admission loops are
built from the same ``Drive`` (``drive_of(state)``), so the live caches run
exactly the code that simulation measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numba

from ._rows import always_ready
from .base import StateKernels, kernels_of


@numba.njit(inline="always")
def _the_state(state):
    return state


@numba.njit(inline="always")
def _kernel_state(state):
    return state.kernel_state()


@numba.njit(inline="always")
def _grow_state(state):
    state.grow()


@numba.njit(inline="always")
def _no_growth(state):
    pass


@numba.njit(inline="always")
def _call_admit(st, key, size):
    return st.admit(key, size)


@numba.njit(inline="always")
def _call_victim(st):
    return st.victim()


@numba.njit(inline="always")
def _call_on_hit(st, slot):
    st.on_hit(slot)


@numba.njit(inline="always")
def _call_on_insert(st, slot, key, size):
    st.on_insert(slot, key, size)


@numba.njit(inline="always")
def _call_remove(st, slot):
    st.remove(slot)


@numba.njit(inline="always")
def _read_used(st):
    return st.used


@numba.njit(inline="always")
def _read_capacity(st):
    return st.capacity


@numba.njit(inline="always")
def _read_n_pending(st):
    return st.n_pending


@numba.njit(inline="always")
def _call_take_evicted(st):
    return st.take_evicted()


@numba.njit(inline="always")
def _call_set_next_access(st, next_vtime):
    st.set_next_access(next_vtime)


@numba.njit(inline="always")
def _none_pending(st):
    return 0


@numba.njit(inline="always")
def _none_taken(st):
    return -1


@numba.njit(inline="always")
def _ignore_next_access(st, next_vtime):
    pass


@dataclass(frozen=True)
class Drive:
    """How a loop drives a state: ``st = view(state)``, then ``ops`` (the protocol as
    ``StateKernels``) and the pending-eviction and next-access calls, each taking ``st``
    first; ``grow(state)`` when ``ops.ready`` says a miss needs room.

    ``kernels`` tells whether ``ops`` are a ``StateKernels`` array's kernels (then
    ``key_by_slot`` applies, and nothing is ever pending).
    """

    view: Callable
    grow: Callable
    ops: StateKernels
    n_pending: Callable
    take_evicted: Callable
    set_next_access: Callable
    kernels: bool


METHODS = Drive(
    _the_state, _no_growth,
    StateKernels(always_ready, _call_admit, _call_victim, _call_on_hit, _call_on_insert, _call_remove, _read_used,
                 _read_capacity),
    _read_n_pending, _call_take_evicted, _call_set_next_access, False,
)
"""Drive any state through the protocol's methods."""

_KERNEL_DRIVES: dict[StateKernels, Drive] = {}


def drive_of(state) -> Drive:
    """The ``Drive`` for ``state``: its kernels where it registered some, else ``METHODS``."""
    kernels = kernels_of(state)
    if kernels is None:
        return METHODS
    drive = _KERNEL_DRIVES.get(kernels)
    if drive is None:
        drive = _KERNEL_DRIVES[kernels] = Drive(_kernel_state, _grow_state, kernels, _none_pending, _none_taken,
                                                _ignore_next_access, True)
    return drive
