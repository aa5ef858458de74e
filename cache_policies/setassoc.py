"""Set-associative caching: the per-set decisions of tierstore's default DRAM tier, and their simulation.

A cache of ``n_sets * ways`` slots.  Key ``k`` may only live in set
:func:`set_of` ``(k)`` (a Fibonacci hash mapped onto ``[0, n_sets)`` by a
multiply-shift), in any of that set's ways; slot = ``set * ways + way``.  Each
way holds the key (an int64 tag, ``EMPTY`` when free), the tick of the last batch
that touched it (uint32) and, for the frequency rule, a small counter (uint8).
A set's tags, ticks and counters sit side by side in a few cache lines.

A batch of distinct keys is served in two parallel kernels, with no lock and no
global list:

1. :func:`probe` (threads split the keys): compare the key's set's tags; a hit
   stamps the way with the batch's tick (and counts it).  Distinct keys touch
   distinct ways, so no two threads write one entry.
2. :func:`admit` (threads split the *sets*; each set is changed by one thread,
   which takes that set's keys in batch order): each missed key picks a victim
   among the ways the batch has not touched (an empty way first, else by the
   rule) and takes it over, stamped with the tick.  When every way of its set
   was touched by the batch, the key is not admitted.

Ways touched by the batch are never victims, so a caller can admit a batch's
misses before it reads any of the batch's rows, and copy each missed row
straight into its new slot.  Ties go to the lowest way, so every outcome
depends on neither the thread count nor timing: :func:`simulate_setassoc`
replays a trace through these very kernels and misses exactly what the live
tier misses.

Replacement rules (per set):

- ``"lru"``: the victim is the way touched longest ago (oldest tick).
- ``"lfu"``: LFU with aging.  A hit adds one to the way's counter (saturating
  at 255); the victim is the way with the lowest counter, the oldest among
  equals; a new key starts at 1.  Every ``ways`` insertions into a set halve
  its counters, so past popularity fades.

Optional admission filter ``"tinylfu"``: each set keeps ``SKETCH_PER_WAY *
ways`` uint8 counters (a count-min sketch of depth 2 over the keys that hash
to the set), incremented for every key of the set a batch requests and halved
every ``SKETCH_RESET_PER_WAY * ways`` increments.  A missed key replaces its
victim only when its estimate is higher than the victim's.  The sketch is only
written by the thread that owns the set, in batch order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numba
import numpy as np

from ._prefetch import prefetch_item

EMPTY = -1
RULES = ("lru", "lfu")
ADMISSIONS = ("none", "tinylfu")
RULE_LRU, RULE_LFU = 0, 1
MAX_COUNT = 255
AGE_PER_WAY = 8
SKETCH_PER_WAY = 4
SKETCH_RESET_PER_WAY = 8
#: Per-set scalars: insertions since the counters were last halved, sketch increments since its last halving.
SET_INSERTS, SET_SKETCH_ADDS, SET_FIELDS = 0, 1, 2
PROBE_PREFETCH_DISTANCE = 16
"""Keys ahead whose set :func:`probe` prefetches (each set is a random read)."""
ADMIT_PREFETCH_DISTANCE = 8
"""Keys ahead whose set :func:`admit` prefetches."""
NAME_PREFIX = "setassoc"
DEFAULT_RULE = "lru"
DEFAULT_WAYS = 16

_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xD6E8FEB86659FD93)
_U32 = np.uint64(32)
_U16 = np.uint64(16)


@dataclass(frozen=True)
class SetAssociative:
    """A set-associative cache: its per-set replacement rule, ways per set and admission filter.

    Parameters
    ----------
    rule : {"lru", "lfu"}
        Per-set replacement rule (see the module docstring).
    ways : int
        Ways per set (slots a key may occupy), 1 to 64.
    admission : {"none", "tinylfu"}
        Admission filter in front of the rule.

    ``to_dict`` / ``from_dict`` round-trip through JSON; ``name`` is the
    ``"setassoc-<rule>"`` spelling that :func:`parse` reads back.
    """

    rule: str = DEFAULT_RULE
    ways: int = DEFAULT_WAYS
    admission: str = "none"

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"set-associative rule must be one of {RULES}, got {self.rule!r}")
        if isinstance(self.ways, bool) or not isinstance(self.ways, (int, np.integer)) or not 1 <= self.ways <= 64:
            raise ValueError(f"ways must be an int in [1, 64], got {self.ways!r}")
        if self.admission not in ADMISSIONS:
            raise ValueError(f"set-associative admission must be one of {ADMISSIONS}, got {self.admission!r}")

    @property
    def name(self) -> str:
        """``"setassoc-<rule>"``."""
        return f"{NAME_PREFIX}-{self.rule}"

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SetAssociative":
        """Inverse of :meth:`to_dict`."""
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SetAssociative":
        return cls.from_dict(json.loads(text))


def is_setassoc(policy) -> bool:
    """Whether ``policy`` names a set-associative cache (a :class:`SetAssociative` or a ``"setassoc..."`` name)."""
    return isinstance(policy, SetAssociative) or (isinstance(policy, str) and policy.split("-")[0] == NAME_PREFIX)


def parse(policy) -> SetAssociative:
    """A :class:`SetAssociative` from itself or from a name: ``"setassoc"`` (the defaults) or
    ``"setassoc-<rule>"``, optionally followed by ``":key=value,..."`` (``ways``, ``admission``)."""
    if isinstance(policy, SetAssociative):
        return policy
    if not is_setassoc(policy):
        raise ValueError(f"not a set-associative cache name: {policy!r} (expected 'setassoc' or 'setassoc-<rule>')")
    name, _, params = policy.partition(":")
    fields = {}
    if name != NAME_PREFIX:
        fields["rule"] = name[len(NAME_PREFIX) + 1:]
    for part in filter(None, params.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key not in ("ways", "admission"):
            raise ValueError(f"{policy!r}: parameters are ways=<int> and admission=<{'|'.join(ADMISSIONS)}>")
        fields[key] = int(value) if key == "ways" and value.lstrip("-").isdigit() else value
    return SetAssociative(**fields)


def geometry(slots: int, ways: int) -> tuple[int, int]:
    """``(n_sets, ways)`` of a cache of at most ``slots`` slots: fewer ways when there are fewer slots
    than ``ways``; the ``slots % ways`` left over go unused."""
    ways = max(1, min(ways, slots))
    return (slots // ways if slots > 0 else 0), ways


@numba.njit(inline="always")
def _set_of(key, n_sets):
    h = np.uint64(key) * _FIBONACCI
    return np.int64(((h >> _U32) * np.uint64(n_sets)) >> _U32)


@numba.njit(cache=True, nogil=True)
def set_of(keys, n_sets):
    """Set of each key (int64[n]) in a cache of ``n_sets`` sets."""
    out = np.empty(keys.size, dtype=np.int64)
    for i in range(keys.size):
        out[i] = _set_of(keys[i], n_sets)
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def probe(tags, stamps, counts, ways, keys, tick, rule, slots, sets, n_threads):
    """Find each key of ``keys`` (distinct) in its set; write its slot (``-1`` if absent) and set.

    A hit stamps the way with ``tick`` and, under ``"lfu"``, adds one to its counter.
    ``n_threads`` threads take a contiguous share of the keys each.
    """
    n = keys.size
    n_sets = tags.size // ways
    n_chunks = min(n_threads, max(n, 1))
    for chunk in numba.prange(n_chunks):
        lo = n * chunk // n_chunks
        hi = n * (chunk + 1) // n_chunks
        for i in range(lo, hi):
            ahead = i + PROBE_PREFETCH_DISTANCE
            if ahead < hi:
                first = _set_of(keys[ahead], n_sets) * ways
                prefetch_item(tags, first)
                prefetch_item(tags, first + ways - 1)
                prefetch_item(stamps, first)
                if rule == RULE_LFU:
                    prefetch_item(counts, first)
            s = _set_of(keys[i], n_sets)
            sets[i] = s
            key = keys[i]
            base = s * ways
            slot = -1
            for w in range(ways):
                if tags[base + w] == key:
                    slot = base + w
                    break
            slots[i] = slot
            if slot >= 0:
                stamps[slot] = tick
                if rule == RULE_LFU and counts[slot] < MAX_COUNT:
                    counts[slot] += 1


@numba.njit(inline="always")
def _sketch_index(key, depth, size):
    h = (np.uint64(key) ^ np.uint64(depth + 1)) * _MIX
    return np.int64(((h >> _U16) & np.uint64(0xFFFFFFFF)) % np.uint64(size))


@numba.njit(inline="always")
def _estimate(sketch, first, size, key):
    a = sketch[first + _sketch_index(key, 0, size)]
    b = sketch[first + _sketch_index(key, 1, size)]
    return min(a, b)


@numba.njit(inline="always")
def _count_key(sketch, set_state, s, size, key):
    """Add ``key`` to set ``s``'s sketch (conservative update), halving the sketch every
    ``SKETCH_RESET_PER_WAY * ways`` increments."""
    first = s * size
    i0 = first + _sketch_index(key, 0, size)
    i1 = first + _sketch_index(key, 1, size)
    low = min(sketch[i0], sketch[i1])
    if low < MAX_COUNT:
        if sketch[i0] == low:
            sketch[i0] += 1
        if sketch[i1] == low:
            sketch[i1] += 1
    set_state[s, SET_SKETCH_ADDS] += 1
    if set_state[s, SET_SKETCH_ADDS] >= SKETCH_RESET_PER_WAY * size // SKETCH_PER_WAY:
        set_state[s, SET_SKETCH_ADDS] = 0
        for j in range(first, first + size):
            sketch[j] >>= 1


@numba.njit(inline="always")
def _victim(tags, stamps, counts, base, ways, tick, rule):
    """The way of the set at ``base`` to replace: the first empty way, else the rule's choice among
    ways not touched by this batch; ``-1`` when the batch touched every way."""
    best = -1
    for w in range(ways):
        slot = base + w
        if tags[slot] == EMPTY:
            return slot
        if stamps[slot] == tick:
            continue
        if best < 0:
            best = slot
        elif rule == RULE_LFU:
            if counts[slot] < counts[best] or (counts[slot] == counts[best] and stamps[slot] < stamps[best]):
                best = slot
        elif stamps[slot] < stamps[best]:
            best = slot
    return best


@numba.njit(inline="always")
def _age(counts, set_state, s, base, ways):
    set_state[s, SET_INSERTS] += 1
    if set_state[s, SET_INSERTS] >= AGE_PER_WAY * ways:
        set_state[s, SET_INSERTS] = 0
        for slot in range(base, base + ways):
            counts[slot] >>= 1


@numba.njit(cache=True, nogil=True, parallel=True)
def admit(tags, stamps, counts, sketch, set_state, ways, keys, sets, slots, tick, rule, tinylfu, allowed, dest,
          n_threads):
    """Offer the missed keys of a probed batch to their sets; write each key's new slot to ``dest``.

    Parameters
    ----------
    keys, sets, slots : int64[n]
        The batch's distinct keys, their sets and :func:`probe`'s slots (``-1``: missed).
    allowed : bool[n] or bool[0]
        Keys that may be admitted (empty: all).
    dest : int64[n]
        Written for missed keys: the slot the key now holds, or ``-1`` when it was not admitted.
        Entries of hits are left alone.

    Returns
    -------
    int
        Slots that were empty and now hold a key.

    Each of ``n_threads`` threads owns a contiguous range of sets and takes its sets' keys in batch order.
    With ``tinylfu``, every key of the batch (hits too) is counted in its set's sketch first.
    """
    n = keys.size
    n_sets = tags.size // ways
    sketch_size = sketch.size // n_sets if n_sets else 0
    every_key = allowed.size == 0
    n_parts = min(n_threads, max(n_sets, 1))
    filled = 0
    for part in numba.prange(n_parts):
        lo = n_sets * part // n_parts
        hi = n_sets * (part + 1) // n_parts
        mine = np.empty(n, dtype=np.int64)
        m = 0
        for i in range(n):
            s = sets[i]
            if lo <= s < hi and (tinylfu or slots[i] < 0):
                mine[m] = i
                m += 1
        for j in range(m):
            if j + ADMIT_PREFETCH_DISTANCE < m:
                first = sets[mine[j + ADMIT_PREFETCH_DISTANCE]] * ways
                prefetch_item(tags, first)
                prefetch_item(tags, first + ways - 1)
                prefetch_item(stamps, first)
                if rule == RULE_LFU:
                    prefetch_item(counts, first)
            i = mine[j]
            s = sets[i]
            key = keys[i]
            if tinylfu:
                _count_key(sketch, set_state, s, sketch_size, key)
                if slots[i] >= 0:
                    continue
            dest[i] = -1
            if not (every_key or allowed[i]):
                continue
            base = s * ways
            slot = _victim(tags, stamps, counts, base, ways, tick, rule)
            if slot < 0:
                continue
            if tags[slot] == EMPTY:
                filled += 1
            elif tinylfu:
                first = s * sketch_size
                if _estimate(sketch, first, sketch_size, key) <= _estimate(sketch, first, sketch_size, tags[slot]):
                    continue
            tags[slot] = key
            stamps[slot] = tick
            if rule == RULE_LFU:
                counts[slot] = 1
                _age(counts, set_state, s, base, ways)
            dest[i] = slot
    return filled


@numba.njit(inline="always")
def _find(tags, ways, n_sets, key):
    """Slot holding ``key``, or ``-1``."""
    base = _set_of(key, n_sets) * ways
    for w in range(ways):
        if tags[base + w] == key:
            return base + w
    return -1


@numba.njit(cache=True, nogil=True)
def find(tags, ways, keys):
    """Slot holding each key (``-1`` where it is not cached); changes nothing."""
    n_sets = tags.size // ways
    slots = np.empty(keys.size, dtype=np.int64)
    for i in range(keys.size):
        slots[i] = _find(tags, ways, n_sets, keys[i])
    return slots


@numba.njit(cache=True, nogil=True)
def remove(tags, ways, keys):
    """Drop ``keys`` from the cache; returns the freed slot of each (``-1`` where it was not cached)."""
    n_sets = tags.size // ways
    freed = np.empty(keys.size, dtype=np.int64)
    for i in range(keys.size):
        slot = _find(tags, ways, n_sets, keys[i])
        if slot >= 0:
            tags[slot] = EMPTY
        freed[i] = slot
    return freed


class SetAssocState:
    """The decision state of a set-associative cache of ``slots`` slots (no rows: the caller keeps those).

    Parameters
    ----------
    config : SetAssociative
    slots : int
        Slots available; the cache uses ``n_sets * ways`` of them (:func:`geometry`).
    """

    def __init__(self, config: SetAssociative, slots: int):
        self.config = config
        self.n_sets, self.ways = geometry(int(slots), config.ways)
        n = self.n_sets * self.ways
        self.tags = np.full(n, EMPTY, dtype=np.int64)
        self.stamps = np.zeros(n, dtype=np.uint32)
        self.counts = np.zeros(n if config.rule == "lfu" else 0, dtype=np.uint8)
        tinylfu = config.admission == "tinylfu"
        self.sketch = np.zeros(self.n_sets * SKETCH_PER_WAY * self.ways if tinylfu else 0, dtype=np.uint8)
        self.set_state = np.zeros((self.n_sets, SET_FIELDS), dtype=np.int64)
        self.tick = np.uint32(0)
        self.occupied = 0
        self._rule = RULES.index(config.rule)
        self._tinylfu = tinylfu

    @property
    def slots(self) -> int:
        """Slots in use (``n_sets * ways``)."""
        return self.tags.size

    def _next_tick(self) -> np.uint32:
        if self.tick == np.iinfo(np.uint32).max:
            # Order-preserving renumbering, once every 2**32 batches.
            self.stamps >>= 1
            self.tick = np.uint32(self.tick >> 1)
        self.tick = np.uint32(self.tick + 1)
        return self.tick

    def serve(self, keys: np.ndarray, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Serve one batch of distinct keys: probe, then admit the misses.

        Parameters
        ----------
        keys : int64[n]
            Distinct keys, in the batch's order.
        allowed : bool[n], optional
            Keys that may be admitted (default: all).

        Returns
        -------
        hit_slots : int64[n]
            Slot of each key found cached, ``-1`` for a miss.
        slots : int64[n]
            Slot of each key after the batch: ``hit_slots`` for hits, the new slot of
            an admitted miss, ``-1`` for a miss that was not admitted.
        """
        n = keys.size
        hit_slots = np.empty(n, dtype=np.int64)
        if self.n_sets == 0:
            hit_slots.fill(-1)
            return hit_slots, hit_slots.copy()
        sets = np.empty(n, dtype=np.int64)
        tick = self._next_tick()
        threads = numba.get_num_threads()
        probe(self.tags, self.stamps, self.counts, self.ways, keys, tick, self._rule, hit_slots, sets, threads)
        slots = hit_slots.copy()
        self.occupied += admit(self.tags, self.stamps, self.counts, self.sketch, self.set_state, self.ways, keys,
                               sets, hit_slots, tick, self._rule, self._tinylfu,
                               _NO_MASK if allowed is None else allowed, slots, threads)
        return hit_slots, slots

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Slot holding each key (``-1`` where it is not cached), without touching any state."""
        if self.n_sets == 0:
            return np.full(keys.size, -1, dtype=np.int64)
        return find(self.tags, self.ways, np.ascontiguousarray(keys, dtype=np.int64))

    def remove(self, keys: np.ndarray) -> np.ndarray:
        """Drop ``keys``; the freed slot of each (``-1`` where it was not cached)."""
        if self.n_sets == 0:
            return np.full(keys.size, -1, dtype=np.int64)
        freed = remove(self.tags, self.ways, np.ascontiguousarray(keys, dtype=np.int64))
        self.occupied -= int(np.count_nonzero(freed >= 0))
        return freed


_NO_MASK = np.zeros(0, dtype=np.bool_)


@dataclass(frozen=True)
class SetAssocResult:
    """Outcome of :func:`simulate_setassoc`.

    Attributes
    ----------
    hits, misses : int
        Requests (every occurrence of a key in a batch) served from the cache, and not.
    distinct_hits, distinct_misses : int
        The same per distinct key of each batch (what the cache reads on a miss).
    config : dict
        The cache, its slots and the trace shape.
    """

    hits: int
    misses: int
    distinct_hits: int
    distinct_misses: int
    config: dict

    @property
    def miss_ratio(self) -> float:
        total = self.hits + self.misses
        return self.misses / total if total else 0.0

    @property
    def distinct_miss_ratio(self) -> float:
        total = self.distinct_hits + self.distinct_misses
        return self.distinct_misses / total if total else 0.0

    def to_dict(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "distinct_hits": self.distinct_hits,
                "distinct_misses": self.distinct_misses, "miss_ratio": self.miss_ratio,
                "distinct_miss_ratio": self.distinct_miss_ratio, "config": self.config}


def batch_distinct(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A batch's distinct keys in order of first occurrence, and how often each occurs."""
    uniq, first, counts = np.unique(keys, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    return uniq[order], counts[order]


def simulate_setassoc(keys, batch_ends, cache, slots: int) -> SetAssocResult:
    """Replay ``keys``, cut into batches, through a set-associative cache of ``slots`` slots.

    Each batch is served as the live tier serves it: its distinct keys, in order
    of first occurrence, are probed, then its misses admitted (:meth:`SetAssocState.serve`).

    Parameters
    ----------
    keys : array of int
        Requested keys.
    batch_ends : array of int
        End (exclusive) of each batch in ``keys``, increasing, the last ``len(keys)``.
    cache : SetAssociative or str
        The cache (see :func:`parse`).
    slots : int
        Slots (rows) the cache may hold.
    """
    config = parse(cache)
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    batch_ends = np.asarray(batch_ends, dtype=np.int64)
    if batch_ends.size and (batch_ends[-1] != keys.size or np.any(np.diff(batch_ends) < 0) or batch_ends[0] < 0):
        raise ValueError(f"batch_ends must be non-decreasing and end at len(keys)={keys.size}")
    state = SetAssocState(config, slots)
    hits = misses = distinct_hits = distinct_misses = 0
    start = 0
    for end in batch_ends:
        uniq, multiplicity = batch_distinct(keys[start:end])
        start = end
        hit_slots, _ = state.serve(uniq)
        hit = hit_slots >= 0
        distinct_hits += int(np.count_nonzero(hit))
        distinct_misses += int(uniq.size - np.count_nonzero(hit))
        hits += int(multiplicity[hit].sum())
        misses += int(multiplicity[~hit].sum())
    return SetAssocResult(hits, misses, distinct_hits, distinct_misses,
                          {"cache": config.to_dict(), "slots": int(slots), "n_sets": state.n_sets,
                           "ways": state.ways, "batches": int(batch_ends.size)})
