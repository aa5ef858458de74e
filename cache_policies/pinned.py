"""Frequency-pinned: the hottest rows from a profile stay cached for good.

``pinned_keys`` (for example ``top_keys(profile_trace, n)``) are cached on
their first miss and are never victims; every other object shares the rest of
the capacity under LRU.  A miss is refused when the pinned bytes already
cached leave no room for it, so pinned rows that do not fit are simply not
cached.  Embedding tables have a stable hot head, so pinning it avoids the
churn an adaptive policy would spend relearning it.

The state is one ``_rows`` array: the lists ``DYNAMIC`` (LRU) and ``PINNED``
over the slots, and the pinned keys in its key table.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _rows as rows
from ._lists import NEXT
from ._rows import FIRST_SLOT, HEADER_ROWS
from .base import register_policy
from .drive import Kind, StateKernels, register_kernels

DYNAMIC = 0
PINNED = 1


@numba.njit
def new_pinned(params):
    """The state array of an empty pinned cache of ``capacity`` bytes."""
    capacity, max_slots, pinned_keys = params
    a = rows.new_rows(capacity, max_slots, rows.N_NODE_FIELDS, pinned_keys.shape[0], 0, 0)
    for key in pinned_keys:
        rows.table_put(a, key, 1)
    return a


@rows.kernel
def pinned_admit(a, key, size):
    return rows.list_bytes(a, PINNED) + size <= rows.get(a, rows.CAPACITY)


@rows.kernel
def pinned_victim(a):
    return rows.evict(a, rows.tail(a, DYNAMIC))


@rows.kernel
def pinned_on_insert(a, slot, key, size):
    rows.insert(a, PINNED if rows.find_key_row(a, key) != -1 else DYNAMIC, slot, key, size)


@rows.kernel
def pinned_on_hit(a, slot):
    node = FIRST_SLOT + slot
    if a[node, rows.LIST] == DYNAMIC and a[HEADER_ROWS + DYNAMIC, NEXT] != node:
        rows.move_to_head(a, DYNAMIC, node)


class Pinned(Kind):
    """Kind of a pinned state (see ``drive``)."""


register_kernels(Pinned, StateKernels(
    new=new_pinned, admit=pinned_admit, victim=pinned_victim, on_hit=pinned_on_hit, on_insert=pinned_on_insert,
    ready=rows.always_ready, key_by_slot=rows.keys_stay_keys,
))


def top_keys(keys, n: int) -> np.ndarray:
    """The ``n`` most requested keys of a profile trace, most frequent first
    (ties by smaller key)."""
    keys = np.asarray(keys, dtype=np.int64)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    uniq, counts = np.unique(keys, return_counts=True)
    order = np.lexsort((uniq, -counts))
    return uniq[order[:n]]


@register_policy("pinned", {"pinned_keys": None}, "static hot keys pinned, LRU for the rest")
def build_pinned(capacity, max_slots, pinned_keys):
    keys = np.zeros(0, dtype=np.int64) if pinned_keys is None else np.asarray(pinned_keys)
    if keys.ndim != 1 or (keys.size and not np.issubdtype(keys.dtype, np.integer)):
        raise ValueError("pinned: pinned_keys must be a one-dimensional sequence of integer keys")
    return Pinned(), (capacity, max_slots, np.ascontiguousarray(keys, dtype=np.int64))
