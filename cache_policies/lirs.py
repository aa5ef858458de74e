"""LIRS: low inter-reference recency set (Jiang & Zhang, SIGMETRICS'02).

Objects are LIR (recently reused: the protected ~99 % of the bytes) or HIR.
Stack S orders recent keys by recency (LIR, resident HIR and non-resident
HIR ghosts); queue Q holds the resident HIR objects, and victims come from
Q's LRU end.  A hit on an HIR key still in S proves a short reuse distance:
it becomes LIR and the LIR block at the bottom of S is demoted to Q.  S is
pruned so its bottom is always LIR, and ghosts are dropped when S exceeds
twice the capacity.  This follows libCacheSim's byte-sized variant exactly,
which evicts during hits and admission too (reported through
``take_evicted``); its HIR share is ``max(1, int(hirs_ratio * capacity))``.

One libCacheSim quirk is opt-in: when a hit on an HIR object that is only in
Q demotes an LIR block and that demotion pushes the hit object itself out of
Q, libCacheSim still counts the object as cached (uncharged) and its next
request as a hit.  ``phantom_hits=True`` reproduces that, giving libCacheSim's
exact miss counts at small capacities, but the cache may then briefly hold a
few objects beyond its capacity, so live caches keep the default (the object
leaves and stays in S as a non-resident HIR key).

The state is one ``_rows`` array.  Each key LIRS knows has an entry row (its
slot's row when keys are slots, else a key row found through the key table,
freed once the key is in no list and holds no slot): S runs through the
standard links and sizes, Q and the list G of S's non-resident HIR keys
(oldest first, for trimming S) through their own link columns; ``TAG``
holds the ``LIR | RESIDENT`` bits of the S entry, ``SLOT`` the slot the key
is cached in (-1 if none).  Pending evictions are stacked in the extra rows.
"""

from __future__ import annotations

import numba

from . import _rows as rows
from ._keymap import EMPTY_KEY
from ._lists import link_head, link_out
from ._rows import FIRST_SLOT, HEADER_ROWS, KEY_OF, LIST, POLICY_FIELDS, SIZE, add, get, put
from .base import register_policy
from .drive import Kind, StateKernels, register_kernels

LIR = 1
RESIDENT = 2
NONRESIDENT_HIR = 0
S = 0
Q_SENTINEL = HEADER_ROWS + 1
G_SENTINEL = HEADER_ROWS + 2
# entry columns
TAG = rows.N_NODE_FIELDS
IN = rows.N_NODE_FIELDS + 1
Q_PREV = rows.N_NODE_FIELDS + 2
Q_NEXT = rows.N_NODE_FIELDS + 3
Q_SIZE = rows.N_NODE_FIELDS + 4
G_PREV = rows.N_NODE_FIELDS + 5
G_NEXT = rows.N_NODE_FIELDS + 6
SLOT = rows.N_NODE_FIELDS + 7
# 13 columns used; 16 put rows 128 bytes apart, and a hit's columns (links, list, key, tag, IN)
# in the first 64 (measured: 10 % more requests/s on Zipf 1.2)
N_FIELDS = 16
# IN bits
IN_Q = 1
IN_G = 2
# policy scalars
LIRS_LIMIT = POLICY_FIELDS
HIRS_LIMIT = POLICY_FIELDS + 1
LIRS_COUNT = POLICY_FIELDS + 2
HIRS_COUNT = POLICY_FIELDS + 3
INCOMING_KEY = POLICY_FIELDS + 4
INCOMING_SIZE = POLICY_FIELDS + 5
PHANTOM_HITS = POLICY_FIELDS + 6
HIT_KEY = POLICY_FIELDS + 7
S_COUNT = POLICY_FIELDS + 8
Q_COUNT = POLICY_FIELDS + 9
G_COUNT = POLICY_FIELDS + 10


@numba.njit
def new_lirs(params):
    """The state array of an empty LIRS cache of ``capacity`` bytes."""
    capacity, max_slots, hirs_limit, phantom_hits = params
    a = rows.new_rows(capacity, max_slots, N_FIELDS, min(max_slots, max(capacity, 16)),
                      rows.packed_rows(max_slots, N_FIELDS), 1)
    put(a, rows.PENDING_FIRST, get(a, rows.EXTRA_FIRST))
    put(a, LIRS_LIMIT, capacity - hirs_limit)
    put(a, HIRS_LIMIT, hirs_limit)
    put(a, INCOMING_KEY, EMPTY_KEY)
    put(a, HIT_KEY, EMPTY_KEY)
    put(a, PHANTOM_HITS, phantom_hits)
    a[Q_SENTINEL, Q_PREV] = a[Q_SENTINEL, Q_NEXT] = Q_SENTINEL
    a[G_SENTINEL, G_PREV] = a[G_SENTINEL, G_NEXT] = G_SENTINEL
    a[FIRST_SLOT : FIRST_SLOT + max_slots, TAG] = 0
    a[FIRST_SLOT : FIRST_SLOT + max_slots, IN] = 0
    return a


# -- entries -----------------------------------------------------------------

@numba.njit(inline="always")
def _row(a, key):
    """Entry row of ``key``, -1 if LIRS does not know it."""
    if get(a, rows.KEYS_ARE_SLOTS):
        return FIRST_SLOT + key
    return rows.find_key_row(a, key)


@numba.njit(inline="always")
def _row_for(a, key):
    """Entry row of ``key``, made (in no list, no slot) if missing."""
    row = _row(a, key)
    if row == -1:
        row = rows.new_key_row(a, key)
        a[row, IN] = 0
        a[row, SLOT] = -1
    return row


@numba.njit(inline="always")
def _release(a, row):
    """Free the key row of a key in no list and holding no slot."""
    if not get(a, rows.KEYS_ARE_SLOTS) and a[row, LIST] == -1 and a[row, IN] == 0 and a[row, SLOT] == -1:
        rows.free_key_row(a, row)


@numba.njit(inline="always")
def _in_s(a, row):
    return row != -1 and a[row, LIST] == S


@numba.njit(inline="always")
def _in_q(a, row):
    return row != -1 and a[row, IN] & IN_Q != 0


@numba.njit(inline="always")
def _s_push(a, row, size):
    rows.push_head(a, S, row, size)
    a[row, TAG] = NONRESIDENT_HIR
    add(a, S_COUNT, 1)


@numba.njit(inline="always")
def _s_remove(a, row):
    rows.unlink(a, row)
    add(a, S_COUNT, -1)


@numba.njit(inline="always")
def _q_push(a, row, size):
    link_head(a, Q_SENTINEL, row, Q_PREV, Q_NEXT)
    a[row, Q_SIZE] = size
    a[row, IN] |= IN_Q
    add(a, Q_COUNT, 1)


@numba.njit(inline="always")
def _q_remove(a, row):
    link_out(a, row, Q_PREV, Q_NEXT)
    a[row, IN] &= ~IN_Q
    add(a, Q_COUNT, -1)


@numba.njit(inline="always")
def _g_push(a, row):
    link_head(a, G_SENTINEL, row, G_PREV, G_NEXT)
    a[row, IN] |= IN_G
    add(a, G_COUNT, 1)


@numba.njit(inline="always")
def _g_remove(a, row):
    if a[row, IN] & IN_G:
        link_out(a, row, G_PREV, G_NEXT)
        a[row, IN] &= ~IN_G
        add(a, G_COUNT, -1)


@numba.njit(inline="always")
def _is_ghost_in_stack(a, key):
    row = _row(a, key)
    return _in_s(a, row) and a[row, TAG] == NONRESIDENT_HIR


# -- internal moves ------------------------------------------------------------

@numba.njit(inline="always")
def _leave(a, row):
    """The key of ``row`` is no longer cached: queue its slot for ``take_evicted``."""
    slot = a[row, SLOT]
    if slot != -1:
        a[row, SLOT] = -1
        rows.push_pending(a, slot)
        add(a, rows.N_RESIDENT, -1)


@rows.kernel
def _evict_hir(a):
    row = a[Q_SENTINEL, Q_PREV]
    size = a[row, Q_SIZE]
    add(a, HIRS_COUNT, -size)
    _q_remove(a, row)
    if _in_s(a, row):
        a[row, TAG] &= ~RESIDENT
        _g_push(a, row)
    add(a, rows.USED, -size)
    if not (get(a, PHANTOM_HITS) and a[row, KEY_OF] == get(a, HIT_KEY)):
        _leave(a, row)
    _release(a, row)


@numba.njit(inline="always")
def _prune(a):
    """Drop the HIR entries at the bottom of S, so that its bottom is LIR."""
    if get(a, S_COUNT) > 1 and not a[rows.tail(a, S), TAG] & LIR:
        _prune_hir(a)


@rows.kernel
def _prune_hir(a):
    while get(a, S_COUNT) > 1:
        row = rows.tail(a, S)
        tag = a[row, TAG]
        if tag & LIR:
            break
        if not tag & RESIDENT:
            _g_remove(a, row)
        elif not _in_q(a, row):
            _leave(a, row)  # a phantom (see phantom_hits) leaves with its S entry
        _s_remove(a, row)
        _release(a, row)


@rows.kernel
def _evict_lir(a):
    row = rows.tail(a, S)
    size = a[row, SIZE]
    add(a, LIRS_COUNT, -size)
    _s_remove(a, row)
    add(a, rows.USED, -size)
    if size <= get(a, HIRS_LIMIT):
        while get(a, HIRS_COUNT) + size > get(a, HIRS_LIMIT):
            _evict_hir(a)
        _q_push(a, row, size)
        add(a, HIRS_COUNT, size)
        add(a, rows.USED, size)
    else:
        _leave(a, row)
        _release(a, row)
    _prune(a)


@numba.njit(inline="always")
def _limit_stack(a):
    """Drop the oldest ghosts while S holds more than twice the capacity."""
    if rows.list_bytes(a, S) > 2 * get(a, rows.CAPACITY) and get(a, G_COUNT) > 0:
        _drop_ghosts(a)


@rows.kernel
def _drop_ghosts(a):
    while rows.list_bytes(a, S) > 2 * get(a, rows.CAPACITY) and get(a, G_COUNT) > 0:
        row = a[G_SENTINEL, G_PREV]
        _g_remove(a, row)
        if _in_s(a, row):
            _s_remove(a, row)
        _release(a, row)


# -- protocol ------------------------------------------------------------------

@rows.kernel
def lirs_admit(a, key, size):
    put(a, INCOMING_KEY, key)
    put(a, INCOMING_SIZE, size)
    row = _row(a, key)
    in_stack = _in_s(a, row)
    if in_stack:
        rows.to_head(a, S, row)
    if size > get(a, rows.CAPACITY):
        return False
    if in_stack and a[row, TAG] == NONRESIDENT_HIR:
        old_size = a[row, SIZE]
        while get(a, LIRS_COUNT) + old_size > get(a, LIRS_LIMIT):
            _evict_lir(a)
        row = _row(a, key)
        if row != -1:
            _g_remove(a, row)
            _release(a, row)
        return True
    if in_stack or _in_q(a, row):
        return False
    if size > get(a, LIRS_LIMIT) or size > get(a, HIRS_LIMIT):
        return False
    if get(a, LIRS_COUNT) + size > get(a, LIRS_LIMIT) and get(a, HIRS_COUNT) + size > get(a, HIRS_LIMIT):
        while get(a, HIRS_COUNT) + size > get(a, HIRS_LIMIT):
            _evict_hir(a)
    return True


@rows.kernel
def lirs_victim(a):
    key = get(a, INCOMING_KEY)
    size = get(a, INCOMING_SIZE)
    while get(a, rows.N_PENDING) == 0:
        if _is_ghost_in_stack(a, key):
            while get(a, HIRS_COUNT) >= get(a, HIRS_LIMIT):
                _evict_hir(a)
            _evict_lir(a)
        elif get(a, LIRS_COUNT) + size > get(a, LIRS_LIMIT) and get(a, HIRS_COUNT) + size > get(a, HIRS_LIMIT):
            _evict_hir(a)
        elif get(a, Q_COUNT) > 0:
            _evict_hir(a)  # libCacheSim would spin here without progress
        else:
            _evict_lir(a)
    return rows.take_evicted(a)


@rows.kernel
def lirs_on_insert(a, slot, key, size):
    a[FIRST_SLOT + slot, KEY_OF] = key
    row = _row_for(a, key)
    a[row, SLOT] = slot
    add(a, rows.N_RESIDENT, 1)
    if _in_s(a, row) and a[row, TAG] == NONRESIDENT_HIR:
        a[row, TAG] = LIR | RESIDENT
        old_size = a[row, SIZE]
        add(a, LIRS_COUNT, old_size)
        add(a, rows.USED, old_size)
    else:
        _s_push(a, row, size)
        if get(a, LIRS_COUNT) + size <= get(a, LIRS_LIMIT):
            a[row, TAG] = LIR | RESIDENT
            add(a, LIRS_COUNT, size)
        else:
            a[row, TAG] = RESIDENT
            _q_push(a, row, size)
            add(a, HIRS_COUNT, size)
        add(a, rows.USED, size)
    _limit_stack(a)


@rows.kernel
def lirs_on_hit(a, slot):
    key = a[FIRST_SLOT + slot, KEY_OF]
    row = _row(a, key)
    in_stack = _in_s(a, row)
    in_queue = _in_q(a, row)
    if in_stack:
        rows.to_head(a, S, row)
    if in_queue:
        link_out(a, row, Q_PREV, Q_NEXT)
        link_head(a, Q_SENTINEL, row, Q_PREV, Q_NEXT)
    if in_stack:
        tag = a[row, TAG]
        if tag & LIR:
            _prune(a)
        elif tag & RESIDENT:
            if in_queue:
                q_size = a[row, Q_SIZE]
                add(a, HIRS_COUNT, -q_size)
                _q_remove(a, row)
                add(a, rows.USED, -q_size)
            size = a[row, SIZE]
            while get(a, LIRS_COUNT) + size > get(a, LIRS_LIMIT):
                _evict_lir(a)
            a[row, TAG] = LIR | RESIDENT
            add(a, LIRS_COUNT, size)
            add(a, rows.USED, size)
    elif in_queue:
        size = a[row, Q_SIZE]
        put(a, HIT_KEY, key)
        while get(a, LIRS_COUNT) + size > get(a, LIRS_LIMIT):
            _evict_lir(a)
        put(a, HIT_KEY, EMPTY_KEY)
        row = _row_for(a, key)  # its key row was freed if it left Q and the cache
        _s_push(a, row, size)
        if get(a, PHANTOM_HITS) or _in_q(a, row):
            a[row, TAG] = RESIDENT
        else:
            _g_push(a, row)
    _limit_stack(a)


@rows.kernel
def lirs_remove(a, slot):
    row = _row(a, a[FIRST_SLOT + slot, KEY_OF])
    if row == -1:
        return
    if _in_s(a, row):
        tag = a[row, TAG]
        size = a[row, SIZE]
        _s_remove(a, row)
        if tag & LIR:
            add(a, LIRS_COUNT, -size)
            add(a, rows.USED, -size)
            _prune(a)
        elif tag & RESIDENT:
            add(a, HIRS_COUNT, -size)
            add(a, rows.USED, -size)
        if _in_q(a, row):
            _q_remove(a, row)
    elif _in_q(a, row):
        size = a[row, Q_SIZE]
        _q_remove(a, row)
        add(a, HIRS_COUNT, -size)
        add(a, rows.USED, -size)
    if a[row, SLOT] != -1:
        a[row, SLOT] = -1
        add(a, rows.N_RESIDENT, -1)
    _release(a, row)


class LIRS(Kind):
    """Kind of a LIRS state (see ``drive``)."""


register_kernels(LIRS, StateKernels(
    new=new_lirs, admit=lirs_admit, victim=lirs_victim, on_hit=lirs_on_hit, on_insert=lirs_on_insert,
    remove=lirs_remove, n_pending=rows.n_pending, take_evicted=rows.take_evicted,
))


@register_policy(
    "lirs", {"hirs_ratio": 0.01, "phantom_hits": False}, "LIRS (LIR stack S, resident HIR queue Q)"
)
def build_lirs(capacity, max_slots, hirs_ratio, phantom_hits):
    if not 0.0 < hirs_ratio < 1.0:
        raise ValueError(f"lirs: hirs_ratio must be in (0, 1), got {hirs_ratio}")
    return LIRS(), (capacity, max_slots, max(1, int(hirs_ratio * capacity)), phantom_hits)
