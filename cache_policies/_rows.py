"""One-array policy states: slots, lists, key rows, a key table and scalars
in the rows of a single int64 array.

numba reference counts every array a function binds; in a loop it prunes
those counts only where the inlined code holds one array, so every policy
keeps its whole state in one array ``a`` of ``n_fields`` columns, in row
ranges:

- ``HEADER_ROWS`` rows of scalars, field ``f`` at row ``f``, column 0: the
  fields below, then the policy's own from ``POLICY_FIELDS``;
- ``MAX_LISTS`` sentinels of circular doubly linked lists (``_lists``),
  list ``l``'s at row ``HEADER_ROWS + l``, its ``SIZE`` holding the list's
  bytes;
- the slots, slot ``s`` at row ``FIRST_SLOT + s``;
- the policy's extra rows, from ``EXTRA_FIRST`` (frequency buckets, a
  sketch, the stack of pending evictions);
- key rows (ghosts: objects remembered by key after eviction; LIRS's
  entries; a filter's history), free ones chained through ``NEXT``;
- the key table: open addressing (``_keymap.slot_in``) from a key to its
  key row, at most half full, ``2**TABLE_SHIFT`` entries per row.

Where each key keeps one slot for good (the simulator's dense ids, after
``key_by_slot``: the replay then passes slots as keys), a key's row is its
own slot's row: no table, no key rows.

Header and sentinels sit at fixed rows, so reaching them costs no
arithmetic on loaded values.  Node columns: ``PREV``, ``NEXT``, ``SIZE``,
``LIST`` (-1 for none), ``KEY_OF``, then the policy's own (LFU and Belady,
which use none of these lists, give some of them other meanings).  ``grown``
doubles the key rows and the table; ``ready`` tells whether a miss can be
served without it (``KEY_ROWS_PER_MISS`` says how many key rows a miss may
take: one per victim, or a fixed number).  A policy writes its kernels over
the array and registers them (``drive.StateKernels``); like them, the
functions here compile into the cached functions that call them.
"""

from __future__ import annotations

import numba
import numpy as np

from ._keymap import EMPTY_KEY, KEY, VAL, delete_in, entry_at, slot_in
from ._lists import NEXT, PREV, dll_push_head, dll_unlink

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
EXTRA_FIRST = 10
N_PENDING = 11
PENDING_FIRST = 12
KEY_ROWS_PER_MISS = 13
POLICY_FIELDS = 14
HEADER_ROWS = 32
TABLE_SHIFT = 1
MAX_LISTS = 4
FIRST_SLOT = HEADER_ROWS + MAX_LISTS
#: ``KEY_ROWS_PER_MISS``: a miss may take one key row per victim (a ghost each).
ONE_PER_VICTIM = 0

#: Decorator of a policy kernel: ``numba.njit`` without reference counting.  A
#: kernel only reads and writes arrays its caller holds (it never allocates one,
#: keeps one or returns one), and numba cannot prune the counts of a kernel that
#: calls others: their atomic increments cost five times an LRU hit (LIRS: 50 ns
#: per hit with them, 9 ns without).
kernel = numba.njit(_nrt=False)


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
def to_head(a, lst, node):
    """Move ``node``, in list ``lst``, to its head (its bytes stay in the list)."""
    s = HEADER_ROWS + lst
    if a[s, NEXT] != node:
        dll_unlink(a, node)
        dll_push_head(a, s, node)


@numba.njit(inline="always")
def move_to_head(a, lst, node):
    """Move ``node`` (in any list) to the head of ``lst``."""
    unlink(a, node)
    push_head(a, lst, node, a[node, SIZE])


@numba.njit(inline="always")
def at(a, region, i):
    """Row and column of item ``i`` of a region of packed int64 items starting at row ``region``."""
    w = a.shape[1]
    return region + i // w, i % w


@numba.njit(inline="always")
def packed_rows(n_items, n_fields):
    """Rows that hold ``n_items`` packed items."""
    return (n_items + n_fields - 1) // n_fields


@numba.njit(inline="always")
def _table_entry(a, key):
    """Table entry of ``key``, or the empty entry where it would go, and its
    row and key column."""
    first = get(a, TABLE_FIRST)
    i = slot_in(a, first, get(a, TABLE_MASK), TABLE_SHIFT, key)
    r, c = entry_at(first, TABLE_SHIFT, i)
    return i, r, c


@numba.njit(inline="always")
def find_key_row(a, key):
    """The table's value for ``key`` (its key row), -1 if it has none."""
    i, r, c = _table_entry(a, key)
    return a[r, c + VAL] if a[r, c + KEY] == key else -1


@numba.njit(inline="always")
def table_put(a, key, value):
    """Set the table's value for ``key`` (the table must stay at most half full)."""
    i, r, c = _table_entry(a, key)
    a[r, c + KEY] = key
    a[r, c + VAL] = value


@numba.njit(inline="always")
def new_key_row(a, key):
    """Take a free key row for ``key`` (absent; needs room, see ``ready``) and
    enter it in the table; return it."""
    row = get(a, FREE_GHOST)
    put(a, FREE_GHOST, a[row, NEXT])
    a[row, KEY_OF] = key
    a[row, LIST] = -1
    add(a, N_GHOSTS, 1)
    table_put(a, key, row)
    return row


@numba.njit(inline="always")
def free_key_row(a, row):
    """Drop key row ``row`` from the table and free it."""
    add(a, N_GHOSTS, -1)
    i, r, c = _table_entry(a, a[row, KEY_OF])
    delete_in(a, get(a, TABLE_FIRST), get(a, TABLE_MASK), TABLE_SHIFT, i)
    a[row, NEXT] = get(a, FREE_GHOST)
    put(a, FREE_GHOST, row)


@numba.njit(inline="always")
def find_ghost(a, key):
    """Row of the ghost of ``key`` (not resident), -1 if there is none."""
    if get(a, KEYS_ARE_SLOTS):
        node = FIRST_SLOT + key
        return node if a[node, LIST] != -1 else -1
    return find_key_row(a, key)


@numba.njit(inline="always")
def forget_ghost(a, node):
    """Drop ghost ``node``: unlink it (and free its key row)."""
    unlink(a, node)
    if get(a, KEYS_ARE_SLOTS):
        add(a, N_GHOSTS, -1)
    else:
        free_key_row(a, node)


@numba.njit(inline="always")
def forget_oldest_ghost(a, lst):
    """Drop the oldest ghost of list ``lst`` (not empty)."""
    forget_ghost(a, tail(a, lst))


@numba.njit(inline="always")
def push_key(a, lst, key, size):
    """Remember ``key`` of ``size`` bytes as the newest entry of list ``lst``
    in a key row (needs ``ready``)."""
    push_head(a, lst, new_key_row(a, key), size)


@numba.njit(inline="always")
def push_ghost(a, lst, node):
    """Remember the object of ``node``, just evicted, as the newest ghost of
    list ``lst`` (needs ``ready``): in ``node`` itself when keys are slots,
    else in a key row found by key through the table."""
    size = a[node, SIZE]
    if get(a, KEYS_ARE_SLOTS):
        add(a, N_GHOSTS, 1)
        push_head(a, lst, node, size)
    else:
        push_key(a, lst, a[node, KEY_OF], size)


@numba.njit(inline="always")
def remember(a, lst, node, budget):
    """Make ``node``, just evicted, the newest ghost of list ``lst``, dropping
    its oldest ghosts while their bytes would exceed ``budget`` (an object
    larger than the whole budget is not remembered)."""
    size = a[node, SIZE]
    if size > budget:
        return
    while list_bytes(a, lst) + size > budget:
        forget_oldest_ghost(a, lst)
    push_ghost(a, lst, node)


@numba.njit(inline="always")
def room_for(a, n_rows):
    """Whether ``n_rows`` more key rows fit (free rows, and the table stays at most half full)."""
    n = get(a, N_GHOSTS) + n_rows
    return n <= get(a, TABLE_FIRST) - get(a, FIRST_GHOST) and n <= get(a, MAX_GHOSTS)


@numba.njit(inline="always")
def ready(a, size):
    """Whether key rows and table room suffice for every key row a miss of
    ``size`` bytes may take: ``KEY_ROWS_PER_MISS``, or one per victim (at
    most one victim per byte, and no more than are resident)."""
    if get(a, KEYS_ARE_SLOTS):
        return True
    per_miss = get(a, KEY_ROWS_PER_MISS)
    return room_for(a, per_miss if per_miss != ONE_PER_VICTIM else min(size, get(a, N_RESIDENT)))


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
def fits(a, key, size):
    """The protocol's ``admit`` of a policy that caches whatever fits."""
    return size <= get(a, CAPACITY)


@numba.njit(inline="always")
def always_ready(a, size):
    return True


@numba.njit(inline="always")
def used(a):
    return get(a, USED)


@numba.njit(inline="always")
def capacity(a):
    return get(a, CAPACITY)


@numba.njit(inline="always")
def n_resident(a):
    return get(a, N_RESIDENT)


@numba.njit(inline="always")
def push_pending(a, slot):
    """Queue ``slot``, which the policy evicted on its own, for ``take_evicted``."""
    r, c = at(a, get(a, PENDING_FIRST), get(a, N_PENDING))
    a[r, c] = slot
    add(a, N_PENDING, 1)


@numba.njit(inline="always")
def n_pending(a):
    return get(a, N_PENDING)


@numba.njit(inline="always")
def take_evicted(a):
    """A slot the policy evicted on its own, -1 if none is left."""
    n = get(a, N_PENDING)
    if n == 0:
        return -1
    put(a, N_PENDING, n - 1)
    r, c = at(a, get(a, PENDING_FIRST), n - 1)
    return a[r, c]


@numba.njit(inline="always")
def no_pending(a):
    return 0


@numba.njit(inline="always")
def none_taken(a):
    return -1


@numba.njit(inline="always")
def ignore_next_access(a, next_vtime):
    pass


@numba.njit(inline="always")
def key_by_slot(a):
    """From now on every key is its own slot id (a fresh state only); True: the
    policy takes slots as keys."""
    put(a, KEYS_ARE_SLOTS, 1)
    return True


@numba.njit(inline="always")
def keys_stay_keys(a):
    """For a policy that reads its keys (hashes them, or compares them with given
    ones): it keeps being told the real keys."""
    return False


@numba.njit
def _layout(a, n_rows, n_ghost_rows, n_entries):
    """A state array: rows ``[0, n_rows)`` copied from ``a`` (the header at
    least), key rows up to ``FIRST_GHOST + n_ghost_rows`` (those from
    ``n_rows`` chained free, the last one's ``NEXT`` -1), and a table of
    ``n_entries`` (a power of two) holding ``a``'s table entries."""
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


@numba.njit
def new_rows(capacity, max_slots, n_fields, n_ghosts, extra_rows, key_rows_per_miss):
    """The state array of an empty cache of ``capacity`` bytes over
    ``max_slots`` slots, with ``n_fields`` node columns, empty lists,
    ``extra_rows`` rows (zero) for the policy from ``EXTRA_FIRST``, and
    key rows for ``n_ghosts`` keys (at least one) of which a miss may take
    ``key_rows_per_miss`` (or ``ONE_PER_VICTIM``)."""
    n_ghosts = max(n_ghosts, 1)
    n_entries = 16
    while n_entries < 2 * n_ghosts:
        n_entries *= 2
    header = np.zeros((HEADER_ROWS, n_fields), dtype=np.int64)
    put(header, CAPACITY, capacity)
    put(header, EXTRA_FIRST, FIRST_SLOT + max_slots)
    put(header, FIRST_GHOST, FIRST_SLOT + max_slots + extra_rows)
    put(header, FREE_GHOST, FIRST_SLOT + max_slots + extra_rows)
    put(header, KEY_ROWS_PER_MISS, key_rows_per_miss)
    a = _layout(header, HEADER_ROWS, n_ghosts, n_entries)
    for s in range(HEADER_ROWS, FIRST_SLOT):
        a[s, PREV] = s
        a[s, NEXT] = s
        a[s, SIZE] = 0
    a[get(a, EXTRA_FIRST) : get(a, FIRST_GHOST)] = 0
    return a


@numba.njit
def grown(a):
    """``a`` with twice the key rows and twice the table."""
    table_first = get(a, TABLE_FIRST)
    n_ghost_rows = table_first - get(a, FIRST_GHOST)
    out = _layout(a, table_first, 2 * n_ghost_rows, 2 * (get(a, TABLE_MASK) + 1))
    # the new key rows, then the old free chain
    out[get(out, TABLE_FIRST) - 1, NEXT] = get(a, FREE_GHOST)
    put(out, FREE_GHOST, table_first)
    return out


@numba.njit
def grow(a, size):
    """``a``, grown until a miss of ``size`` bytes is ``ready``."""
    while not ready(a, size):
        a = grown(a)
    return a
