"""One-array policy states: slots, lists, ghosts, a ghost table and scalars
in the rows of a single int64 array.

numba reference counts every array a function binds; in a loop it prunes
those counts only where the inlined code holds one array, so the states the
simulator replays without method calls (``base.StateKernels``) keep
everything in one array ``a`` of ``n_fields`` columns, in row ranges:

- ``HEADER_ROWS`` rows of scalars, field ``f`` at row ``f``, column 0: the
  fields below, then the policy's own from ``POLICY_FIELDS``;
- ``MAX_LISTS`` sentinels of circular doubly linked lists (``_lists``),
  list ``l``'s at row ``HEADER_ROWS + l``, its ``SIZE`` holding the list's
  bytes;
- the slots, slot ``s`` at row ``FIRST_SLOT + s``;
- ghost rows (objects remembered by key after eviction), free ones chained
  through ``NEXT``;
- the ghost table: open addressing (``_keymap.slot_in``) from a key to its
  ghost row, at most half full, ``2**TABLE_SHIFT`` entries per row.

Where each key keeps one slot for good (the simulator's dense ids, after
``key_by_slot``: the replay then passes slots as keys), a ghost stays in its
own slot's row, linked into a ghost list: no table, no ghost rows.

Header and sentinels sit at fixed rows, so reaching them costs no
arithmetic on loaded values.  Node columns: ``PREV``, ``NEXT``, ``SIZE``, ``LIST`` (-1 for none),
``KEY_OF``, then the policy's own.  ``grown`` doubles the ghost rows and the
table; ``ready`` tells whether a miss can be served without it.  A policy
writes its kernels over the array and gets its jitclass from
``state_class``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import int64
from numba.experimental import jitclass

from ._keymap import EMPTY_KEY, KEY, VAL, delete_in, entry_at, slot_in
from ._lists import NEXT, PREV, dll_push_head, dll_unlink
from .base import StateKernels, protocol_defaults, register_kernels

SIZE = 2
LIST = 3
KEY_OF = 4
N_NODE_FIELDS = 5
# header fields
CAPACITY = 0
USED = 1
N_RESIDENT = 2
FIRST_GHOST = 3
FREE_GHOST = 4
N_GHOSTS = 5
MAX_GHOSTS = 6
TABLE_FIRST = 7
TABLE_MASK = 8
KEYS_ARE_SLOTS = 9
POLICY_FIELDS = 10
HEADER_ROWS = 16
TABLE_SHIFT = 1
MAX_LISTS = 4
FIRST_SLOT = HEADER_ROWS + MAX_LISTS


@numba.njit(inline="always")
def get(a, field):
    return a[field, 0]


@numba.njit(inline="always")
def put(a, field, value):
    a[field, 0] = value


@numba.njit(inline="always")
def add(a, field, delta):
    a[field, 0] += delta


@numba.njit(inline="always")
def sentinel(lst):
    return HEADER_ROWS + lst


@numba.njit(inline="always")
def list_bytes(a, lst):
    return a[HEADER_ROWS + lst, SIZE]


@numba.njit(inline="always")
def list_empty(a, lst):
    return a[HEADER_ROWS + lst, NEXT] == HEADER_ROWS + lst


@numba.njit(inline="always")
def tail(a, lst):
    """Oldest row of list ``lst`` (its sentinel if empty)."""
    return a[HEADER_ROWS + lst, PREV]


@numba.njit(inline="always")
def push_head(a, lst, node, size):
    """Link ``node`` of ``size`` bytes at the head (newest end) of list ``lst``."""
    s = HEADER_ROWS + lst
    dll_push_head(a, s, node)
    a[node, SIZE] = size
    a[node, LIST] = lst
    a[s, SIZE] += size


@numba.njit(inline="always")
def unlink(a, node):
    """Unlink ``node`` from its list."""
    dll_unlink(a, node)
    a[HEADER_ROWS + a[node, LIST], SIZE] -= a[node, SIZE]
    a[node, LIST] = -1


@numba.njit(inline="always")
def move_to_head(a, lst, node):
    """Move ``node`` (in any list) to the head of ``lst``."""
    unlink(a, node)
    push_head(a, lst, node, a[node, SIZE])


@numba.njit(inline="always")
def _table_entry(a, key):
    """Table entry of ``key``, or the empty entry where it would go, and its
    row and key column."""
    first = get(a, TABLE_FIRST)
    i = slot_in(a, first, get(a, TABLE_MASK), TABLE_SHIFT, key)
    r, c = entry_at(first, TABLE_SHIFT, i)
    return i, r, c


@numba.njit(inline="always")
def find_ghost(a, key):
    """Row of the ghost of ``key`` (not resident), -1 if there is none."""
    if get(a, KEYS_ARE_SLOTS):
        node = FIRST_SLOT + key
        return node if a[node, LIST] != -1 else -1
    i, r, c = _table_entry(a, key)
    return a[r, c + VAL] if a[r, c + KEY] == key else -1


@numba.njit(inline="always")
def forget_ghost(a, node):
    """Drop ghost ``node``: unlink it (and free its row and table entry)."""
    unlink(a, node)
    add(a, N_GHOSTS, -1)
    if not get(a, KEYS_ARE_SLOTS):
        i, r, c = _table_entry(a, a[node, KEY_OF])
        delete_in(a, get(a, TABLE_FIRST), get(a, TABLE_MASK), TABLE_SHIFT, i)
        a[node, NEXT] = get(a, FREE_GHOST)
        put(a, FREE_GHOST, node)


@numba.njit(inline="always")
def forget_oldest_ghost(a, lst):
    """Drop the oldest ghost of list ``lst`` (not empty)."""
    forget_ghost(a, tail(a, lst))


@numba.njit(inline="always")
def push_ghost(a, lst, node):
    """Remember the object of ``node``, just evicted, as the newest ghost of
    list ``lst`` (needs ``ready``): in ``node`` itself when keys are slots,
    else in a ghost row found by key through the table."""
    add(a, N_GHOSTS, 1)
    size = a[node, SIZE]
    if get(a, KEYS_ARE_SLOTS):
        push_head(a, lst, node, size)
        return
    key = a[node, KEY_OF]
    ghost = get(a, FREE_GHOST)
    put(a, FREE_GHOST, a[ghost, NEXT])
    a[ghost, KEY_OF] = key
    push_head(a, lst, ghost, size)
    i, r, c = _table_entry(a, key)
    a[r, c + KEY] = key
    a[r, c + VAL] = ghost


@numba.njit(inline="always")
def ready(a, size):
    """Whether ghost rows and table room suffice for every victim a miss of
    ``size`` bytes may take, each adding at most one ghost (at most one
    victim per byte, and no more than are resident)."""
    if get(a, KEYS_ARE_SLOTS):
        return True
    n_ghosts = get(a, N_GHOSTS) + min(size, get(a, N_RESIDENT))
    return n_ghosts <= get(a, TABLE_FIRST) - get(a, FIRST_GHOST) and n_ghosts <= get(a, MAX_GHOSTS)


@numba.njit(inline="always")
def evict(a, node):
    """Unlink resident ``node`` and count it out; return its slot."""
    unlink(a, node)
    add(a, USED, -a[node, SIZE])
    add(a, N_RESIDENT, -1)
    return node - FIRST_SLOT


@numba.njit(inline="always")
def insert(a, lst, slot, key, size):
    """Count ``slot`` (holding ``key``) in and link it at the head of ``lst``."""
    node = FIRST_SLOT + slot
    a[node, KEY_OF] = key
    push_head(a, lst, node, size)
    add(a, USED, size)
    add(a, N_RESIDENT, 1)


@numba.njit(inline="always")
def remove(a, slot):
    """The protocol's ``remove``: drop resident ``slot``, no ghost."""
    evict(a, FIRST_SLOT + slot)


@numba.njit(inline="always")
def always_ready(a, size):
    return True


@numba.njit(inline="always")
def used(a):
    return get(a, USED)


@numba.njit(inline="always")
def capacity(a):
    return get(a, CAPACITY)


@numba.njit(cache=True)
def _layout(a, n_rows, n_ghost_rows, n_entries):
    """A state array: rows ``[0, n_rows)`` copied from ``a`` (the header at
    least), ghost rows up to ``FIRST_GHOST + n_ghost_rows`` (those from
    ``n_rows`` chained free, the last one's ``NEXT`` -1), and a table of
    ``n_entries`` (a power of two) holding ``a``'s ghost table entries."""
    first_ghost = get(a, FIRST_GHOST)
    table_first = first_ghost + n_ghost_rows
    out = np.full((table_first + (n_entries >> TABLE_SHIFT), a.shape[1]), -1, dtype=np.int64)
    out[:n_rows] = a[:n_rows]
    for node in range(max(n_rows, first_ghost), table_first - 1):
        out[node, NEXT] = node + 1
    mask = n_entries - 1
    for i in range(n_entries):
        r, c = entry_at(table_first, TABLE_SHIFT, i)
        out[r, c + KEY] = EMPTY_KEY
    if n_rows > HEADER_ROWS:
        old_first = get(a, TABLE_FIRST)
        for e in range(get(a, TABLE_MASK) + 1):
            r, c = entry_at(old_first, TABLE_SHIFT, e)
            key = a[r, c + KEY]
            if key != EMPTY_KEY:
                ro, co = entry_at(table_first, TABLE_SHIFT, slot_in(out, table_first, mask, TABLE_SHIFT, key))
                out[ro, co + KEY] = key
                out[ro, co + VAL] = a[r, c + VAL]
    put(out, TABLE_FIRST, table_first)
    put(out, TABLE_MASK, mask)
    put(out, MAX_GHOSTS, n_entries // 2)
    return out


@numba.njit(cache=True)
def new_rows(capacity, max_slots, n_fields, n_ghosts):
    """The state array of an empty cache of ``capacity`` bytes over
    ``max_slots`` slots, with ``n_fields`` node columns, empty lists and
    rows for ``n_ghosts`` ghosts (at least one)."""
    n_ghosts = max(n_ghosts, 1)
    n_entries = 16
    while n_entries < 2 * n_ghosts:
        n_entries *= 2
    header = np.zeros((HEADER_ROWS, n_fields), dtype=np.int64)
    put(header, CAPACITY, capacity)
    put(header, FIRST_GHOST, FIRST_SLOT + max_slots)
    put(header, FREE_GHOST, FIRST_SLOT + max_slots)
    a = _layout(header, HEADER_ROWS, n_ghosts, n_entries)
    for s in range(HEADER_ROWS, FIRST_SLOT):
        a[s, PREV] = s
        a[s, NEXT] = s
        a[s, SIZE] = 0
    return a


@numba.njit(cache=True)
def grown(a):
    """``a`` with twice the ghost rows and twice the table."""
    table_first = get(a, TABLE_FIRST)
    n_ghost_rows = table_first - get(a, FIRST_GHOST)
    out = _layout(a, table_first, 2 * n_ghost_rows, 2 * (get(a, TABLE_MASK) + 1))
    # the new ghost rows, then the old free chain
    out[get(out, TABLE_FIRST) - 1, NEXT] = get(a, FREE_GHOST)
    put(out, FREE_GHOST, table_first)
    return out


def state_class(name: str, doc: str, *, admit, victim, on_hit, on_insert, ready=ready, remove=remove):
    """The jitclass of a one-array state driven by the given kernels (plus
    ``used`` and ``capacity`` from here; ``ready`` and ``remove`` too unless
    the policy has its own, such as ``always_ready`` where it keeps no
    ghosts): its methods, the protocol the live caches call, run the same
    kernels as the simulator, and the class is registered with them
    (``StateKernels``).  Built from the state array: ``cls(new_...(...))``."""
    kernels = StateKernels(ready, admit, victim, on_hit, on_insert, remove, used, capacity)
    run_admit, run_victim, run_on_hit, run_on_insert = admit, victim, on_hit, on_insert

    class State:
        def __init__(self, rows):
            self.n_pending = 0
            self.rows = rows

        @property
        def capacity(self):
            return get(self.rows, CAPACITY)

        @property
        def used(self):
            return get(self.rows, USED)

        @property
        def n_resident(self):
            return get(self.rows, N_RESIDENT)

        def kernel_state(self):
            return self.rows

        def key_by_slot(self):
            """From now on every key is its own slot id (a fresh state only)."""
            put(self.rows, KEYS_ARE_SLOTS, 1)

        def grow(self):
            self.rows = grown(self.rows)

        def admit(self, key, size):
            return run_admit(self.rows, key, size)

        def victim(self):
            if not ready(self.rows, 1):
                self.grow()
            return run_victim(self.rows)

        def on_insert(self, slot, key, size):
            run_on_insert(self.rows, slot, key, size)

        def on_hit(self, slot):
            run_on_hit(self.rows, slot)

        def remove(self, slot):
            remove(self.rows, slot)

    State.__name__ = State.__qualname__ = name
    State.__doc__ = doc
    cls = jitclass([("n_pending", int64), ("rows", int64[:, ::1])])(protocol_defaults(State))
    register_kernels(cls, kernels)
    return cls
