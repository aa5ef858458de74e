"""Set-associative caching: the per-set decisions of tierstore's default DRAM tier, and their simulation.

A cache of ``n_sets * ways`` slots.  Key ``k`` may only live in set
:func:`set_of` ``(k)`` (a Fibonacci hash mapped onto ``[0, n_sets)`` by a
multiply-shift), in any of that set's ways; slot = ``set * ways + way``.  Each
way holds the key (an int64 tag, ``EMPTY`` when free), the tick of the last batch
that touched it (uint32) and, for the frequency rule, a small counter (uint8).
A set's tags, ticks and counters sit side by side in a few cache lines.

A batch of distinct keys is served by one parallel kernel, :func:`serve`, with no
lock and no global list: threads split the *sets* (each set is changed by one
thread only), and each thread takes its sets' keys in batch order, twice:

1. probe: compare the key's set's tags; a hit stamps the way with the batch's
   tick (and counts it);
2. admit: each missed key picks a victim among the ways the batch has not
   touched (an empty way first, else by the rule) and takes it over, stamped
   with the tick (unless the admission filter turns it away).  When every way of
   its set was touched by the batch, the key is not admitted.

Ways touched by the batch are never victims, so a caller can admit a batch's
misses before it reads any of the batch's rows, and copy each missed row
straight into its new slot.  Ties go to the lowest way, so every outcome
depends on neither the thread count nor timing: :func:`simulate_setassoc`
replays a trace through these very kernels and misses exactly what the live
tier misses.

Replacement rules (per set):

- ``"lru"``: the victim is the way touched longest ago (oldest tick).
- ``"lfu"``: LFU with aging.  A hit adds the key's occurrences in the batch to the
  way's counter (saturating at 255); the victim is the way with the lowest counter,
  the oldest among equals; a new key starts at 1.  Every ``AGE_PER_WAY * ways``
  insertions into a set halve its counters, so past popularity fades.

Optional admission filter ``"tinylfu"``: a missed key replaces its victim only
when it has been requested more often.  Each set keeps ``SKETCH_PER_WAY * ways``
uint8 counters (a count-min sketch of depth 2 over the keys that hash to the set)
that remember how often keys *not* in the cache were requested: each missed key
adds its occurrences in the batch, and the sketch is halved every
``SKETCH_RESET_PER_WAY * ways`` occurrences.  A cached key's frequency is its way's
counter (kept under either rule with the filter): the miss is admitted when its
estimate exceeds the victim's counter, and starts with its estimate as counter.
Only the thread that owns a set writes its sketch, in batch order.  Counting
occurrences, not one per batch, lets a row that turns hot displace a once-hot one
within a batch or two (measured on a drifting Zipf trace: counting once per batch
lost 16 percentage points to exact LRU; this filter is level with it), and
counting only missed keys costs hits nothing (against counting every key in the
sketch: 0.64 instead of 0.80 ms per Zipf batch, and 0.3-14 pp more hits per
request on the traces of ``bench.bench_setassoc``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numba
import numpy as np

from ._memory import aligned_empty, prefetch_cell

EMPTY = -1
RULES = ("lru", "lfu")
ADMISSIONS = ("none", "tinylfu")
RULE_LRU, RULE_LFU = 0, 1
MAX_COUNT = 255
AGE_PER_WAY = 8
SKETCH_PER_WAY = 4
SKETCH_RESET_PER_WAY = 16
PROBE_PREFETCH_DISTANCE = 32
"""Keys ahead whose set :func:`serve` prefetches as it probes (each set is a random read)."""
ADMIT_PREFETCH_DISTANCE = 16
"""Keys ahead whose set :func:`serve` prefetches again as it admits (a thread probes all its keys
first, so the lines of its first keys may have left the caches by then)."""
NAME_PREFIX = "setassoc"
DEFAULT_RULE = "lfu"
DEFAULT_WAYS = 16
DEFAULT_ADMISSION = "tinylfu"

_TOUCHED = np.int64((1 << 46) - 2)
"""Rank of a way the batch touched: above any counter-and-tick rank (``counter << 32 | tick``)."""
_NONE_LEFT = np.int64((_TOUCHED + 1) << 6)
_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xD6E8FEB86659FD93)
_U32 = np.uint64(32)
_U16 = np.uint64(16)


@dataclass(frozen=True)
class SetAssociative:
    """A set-associative cache: its per-set replacement rule, ways per set and admission filter.

    The defaults (LFU with aging, 16 ways, TinyLFU filter) had the best hit rates
    of the set-associative caches measured by ``bench.bench_setassoc`` on Zipf 0.9,
    1.05 and 1.2 and on the meta2022 preset (see ARCHITECTURE.md).

    Parameters
    ----------
    rule : {"lru", "lfu"}
        Per-set replacement rule (see the module docstring).
    ways : int
        Ways per set (slots a key may occupy), 1 to 64.
    admission : {"tinylfu", "none"}
        Admission filter in front of the rule.

    ``to_dict`` / ``from_dict`` round-trip through JSON; ``name`` is the
    ``"setassoc-<rule>"`` spelling that :func:`parse` reads back.
    """

    rule: str = DEFAULT_RULE
    ways: int = DEFAULT_WAYS
    admission: str = DEFAULT_ADMISSION

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


@numba.njit(inline="always")
def _sketch_index(key, depth, size):
    """Counter ``depth`` (0 or 1) of ``key`` among a set's ``size``: two halves of one 64-bit hash,
    each mapped onto ``[0, size)`` by a multiply-shift (no division)."""
    h = (np.uint64(key) ^ _U32) * _MIX
    half = (h >> _U32) if depth else (h & np.uint64(0xFFFFFFFF))
    return np.int64((half * np.uint64(size)) >> _U32)


@numba.njit(inline="always")
def _estimate(sketch, s, size, key):
    return min(sketch[s, _sketch_index(key, 0, size)], sketch[s, _sketch_index(key, 1, size)])


@numba.njit(inline="always")
def _count_key(sketch, sketch_adds, s, size, key, amount):
    """Add ``amount`` to ``key``'s counters in set ``s``'s sketch (conservative update), halving the
    sketch every ``SKETCH_RESET_PER_WAY * ways`` occurrences."""
    i0 = _sketch_index(key, 0, size)
    i1 = _sketch_index(key, 1, size)
    low = min(sketch[s, i0], sketch[s, i1])
    raised = min(np.int64(low) + amount, MAX_COUNT)
    if sketch[s, i0] == low:
        sketch[s, i0] = raised
    if sketch[s, i1] == low:
        sketch[s, i1] = raised
    sketch_adds[s] += amount
    if sketch_adds[s] >= SKETCH_RESET_PER_WAY * size // SKETCH_PER_WAY:
        sketch_adds[s] = 0
        for j in range(size):
            sketch[s, j] >>= 1


@numba.njit(inline="always")
def _victim(tags, stamps, counts, s, ways, tick, rule):
    """The way of set ``s`` to replace: the first empty way, else the rule's choice among ways not
    touched by this batch; ``-1`` when the batch touched every way.

    Branch-free: each way gets a rank (-1 empty, the tick for LRU, counter then tick for
    LFU, ``_TOUCHED`` if the batch touched it) and the least ``(rank, way)`` wins.
    """
    best = _NONE_LEFT
    for w in range(ways):
        stamp = np.int64(stamps[s, w])
        rank = (np.int64(counts[s, w]) << 32) | stamp if rule == RULE_LFU else stamp
        rank = -1 if tags[s, w] == EMPTY else (_TOUCHED if stamp == tick else rank)
        best = min(best, ((rank + 1) << 6) | w)
    return -1 if best >= _NONE_LEFT else best & 63


@numba.njit(inline="always")
def _age(counts, set_inserts, s, ways):
    set_inserts[s] += 1
    if set_inserts[s] >= AGE_PER_WAY * ways:
        set_inserts[s] = 0
        for w in range(ways):
            counts[s, w] >>= 1


@numba.njit(inline="always")
def _prefetch_set(record, s):
    """Prefetch set ``s``'s record (its tags, ticks, counters and sketch: a few adjacent lines)."""
    for offset in range(0, record.shape[1], 64):
        prefetch_cell(record, s, offset)


@numba.njit(cache=True, nogil=True, parallel=True)
def serve(record, tags, stamps, counts, set_inserts, sketch, sketch_adds, keys, occurrences, tick, rule, tinylfu,
          allowed, hit_slots, slots, n_threads):
    """Serve one batch of distinct ``keys``: find each in its set, then admit the missed ones.

    Parameters
    ----------
    record, tags, stamps, counts, set_inserts, sketch, sketch_adds
        The cache's state (:class:`SetAssocState`: ``record`` holds one row per set,
        the others are views of its columns); changed in place.
    keys : int64[n]
        The batch's distinct keys, in batch order.
    occurrences : int64[n] or int64[0]
        How often each key occurs in the batch (empty: once each): what a hit adds
        to its way's counter, and a missed key to its set's sketch.
    tick : uint32
        This batch's tick (above every stamp in ``stamps``).
    allowed : bool[n] or bool[0]
        Keys that may be admitted (empty: all).
    hit_slots : int64[n]
        Written: each key's slot (``set * ways + way``) before admission (``-1``: missed).
    slots : int64[n]
        Written: each key's slot after the batch (``-1``: missed and not admitted).
    n_threads : int
        Each thread owns a contiguous range of sets.  The keys are sorted by owner
        (counting sort, batch order kept); each owner probes its keys in batch order
        (a hit stamps the way with ``tick`` and adds its occurrences to the way's counter), then
        admits its missed keys in batch order.  A set is only ever touched by its
        owner.

    Returns
    -------
    int
        Slots that were empty and now hold a key.
    """
    n = keys.size
    n_sets, ways = tags.shape
    sketch_size = sketch.shape[1]
    every_key = allowed.size == 0
    once = occurrences.size == 0
    n_parts = min(n_threads, max(n_sets, 1))
    # Counting sort of the keys by owner (stable: batch order within each owner).  Set s is owned
    # by (s * per_set) >> 32: increasing in s, below n_parts, and with no division per key.
    per_set = np.uint64((n_parts << 32) // n_sets)
    set_of_key = np.empty(n, dtype=np.int64)
    owner = np.empty(n, dtype=np.int64)
    starts = np.zeros(n_parts + 1, dtype=np.int64)
    for i in range(n):
        s = _set_of(keys[i], n_sets)
        set_of_key[i] = s
        owner[i] = np.int64((np.uint64(s) * per_set) >> _U32)
        starts[owner[i] + 1] += 1
    for p in range(n_parts):
        starts[p + 1] += starts[p]
    fill = starts[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[fill[owner[i]]] = i
        fill[owner[i]] += 1
    # Each owner writes its results at its keys' positions in ``order``: its own range, no shared lines.
    found_at = np.empty(n, dtype=np.int64)
    placed_at = np.empty(n, dtype=np.int64)
    filled = 0
    for part in numba.prange(n_parts):
        lo = starts[part]
        hi = starts[part + 1]
        queue = np.empty(hi - lo, dtype=np.int64)
        n_queued = 0
        for j in range(lo, hi):
            if j + PROBE_PREFETCH_DISTANCE < hi:
                _prefetch_set(record, set_of_key[order[j + PROBE_PREFETCH_DISTANCE]])
            key = keys[order[j]]
            s = set_of_key[order[j]]
            found = 0
            for w in range(ways):
                found = max(found, w + 1 if tags[s, w] == key else 0)
            slot = -1
            if found:
                w = found - 1
                slot = s * ways + w
                stamps[s, w] = tick
                if rule == RULE_LFU or tinylfu:
                    counts[s, w] = min(np.int64(counts[s, w]) + (1 if once else occurrences[order[j]]), MAX_COUNT)
            found_at[j] = placed_at[j] = slot
            if not found:
                queue[n_queued] = j
                n_queued += 1
        for k in range(n_queued):
            if k + ADMIT_PREFETCH_DISTANCE < n_queued:
                _prefetch_set(record, set_of_key[order[queue[k + ADMIT_PREFETCH_DISTANCE]]])
            j = queue[k]
            i = order[j]
            s = set_of_key[i]
            key = keys[i]
            if tinylfu:
                _count_key(sketch, sketch_adds, s, sketch_size, key, 1 if once else occurrences[i])
            if not (every_key or allowed[i]):
                continue
            w = _victim(tags, stamps, counts, s, ways, tick, rule)
            if w < 0:
                continue
            if tags[s, w] == EMPTY:
                filled += 1
            elif tinylfu and _estimate(sketch, s, sketch_size, key) <= counts[s, w]:
                continue
            tags[s, w] = key
            stamps[s, w] = tick
            if rule == RULE_LFU or tinylfu:
                counts[s, w] = min(_estimate(sketch, s, sketch_size, key), MAX_COUNT) if tinylfu else 1
                _age(counts, set_inserts, s, ways)
            placed_at[j] = s * ways + w
    for j in range(n):
        hit_slots[order[j]] = found_at[j]
        slots[order[j]] = placed_at[j]
    return filled


@numba.njit(inline="always")
def _find(tags, key):
    """Slot holding ``key``, or ``-1``."""
    n_sets, ways = tags.shape
    s = _set_of(key, n_sets)
    for w in range(ways):
        if tags[s, w] == key:
            return s * ways + w
    return -1


@numba.njit(cache=True, nogil=True)
def find(tags, keys):
    """Slot holding each key (``-1`` where it is not cached); changes nothing."""
    slots = np.empty(keys.size, dtype=np.int64)
    for i in range(keys.size):
        slots[i] = _find(tags, keys[i])
    return slots


@numba.njit(cache=True, nogil=True)
def remove(tags, keys):
    """Drop ``keys`` from the cache; returns the freed slot of each (``-1`` where it was not cached)."""
    ways = tags.shape[1]
    freed = np.empty(keys.size, dtype=np.int64)
    for i in range(keys.size):
        slot = _find(tags, keys[i])
        if slot >= 0:
            tags[slot // ways, slot % ways] = EMPTY
        freed[i] = slot
    return freed


def _record_layout(ways: int, tag_bytes: int, tinylfu: bool) -> dict:
    """Byte offsets of a set's fields in its record, and the record's size (whole cache lines)."""
    layout = {"tags": 0, "stamps": ways * tag_bytes}
    layout["counts"] = layout["stamps"] + 4 * ways
    layout["set_inserts"] = -(-(layout["counts"] + ways) // 4) * 4
    layout["sketch_adds"] = layout["set_inserts"] + 4
    layout["sketch"] = layout["sketch_adds"] + 4
    end = layout["sketch"] + (SKETCH_PER_WAY * ways if tinylfu else 0)
    layout["size"] = -(-end // 64) * 64
    return layout


class SetAssocState:
    """The decision state of a set-associative cache of ``slots`` slots (no rows: the caller keeps those).

    Parameters
    ----------
    config : SetAssociative
    slots : int
        Slots available; the cache uses ``n_sets * ways`` of them (:func:`geometry`).
    key_limit : int, optional
        Keys are in ``[0, key_limit)``; under ``2**31`` the tags are int32 (half the
        cache lines per probe), else int64.  Decisions do not depend on it.
    """

    def __init__(self, config: SetAssociative, slots: int, key_limit: int | None = None):
        self.config = config
        self.n_sets, self.ways = geometry(int(slots), config.ways)
        narrow = key_limit is not None and key_limit <= np.iinfo(np.int32).max
        tag_type = np.int32 if narrow else np.int64
        tinylfu = config.admission == "tinylfu"
        layout = _record_layout(self.ways, np.dtype(tag_type).itemsize, tinylfu)
        #: One row per set: its ``ways`` tags, ticks and counters, its two counts and its sketch,
        #: in whole cache lines side by side; the attributes below are views of its columns.
        self.record = aligned_empty((self.n_sets, layout["size"]), np.uint8, 64)
        self.record[:] = 0
        w = self.ways

        def column(name, width, dtype):
            return self.record[:, layout[name] : layout[name] + width * np.dtype(dtype).itemsize].view(dtype)

        self.tags = column("tags", w, tag_type)
        self.tags[:] = EMPTY
        self.stamps = column("stamps", w, np.uint32)
        self.counts = column("counts", w, np.uint8)
        self.set_inserts = column("set_inserts", 1, np.int32)[:, 0]
        self.sketch_adds = column("sketch_adds", 1, np.int32)[:, 0]
        self.sketch = column("sketch", SKETCH_PER_WAY * w if tinylfu else 0, np.uint8)
        self.tick = np.uint32(0)
        self.occupied = 0
        self._rule = RULES.index(config.rule)
        self._tinylfu = tinylfu

    @property
    def slots(self) -> int:
        """Slots in use (``n_sets * ways``)."""
        return self.n_sets * self.ways

    def keys(self) -> np.ndarray:
        """The key held by each slot (``EMPTY`` where none), a flat copy."""
        return self.tags.reshape(-1).astype(np.int64)

    def _next_tick(self) -> np.uint32:
        if self.tick == np.iinfo(np.uint32).max:
            # Order-preserving renumbering, once every 2**32 batches.
            self.stamps >>= 1
            self.tick = np.uint32(self.tick >> 1)
        self.tick = np.uint32(self.tick + 1)
        return self.tick

    def serve(self, keys: np.ndarray, allowed: np.ndarray | None = None,
              occurrences: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Serve one batch of distinct keys: probe, then admit the misses.

        Parameters
        ----------
        keys : int64[n]
            Distinct keys, in the batch's order.
        allowed : bool[n], optional
            Keys that may be admitted (default: all).
        occurrences : int64[n], optional
            How often each key occurs in the batch (default: once each).

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
        slots = np.empty(n, dtype=np.int64)
        self.occupied += serve(self.record, self.tags, self.stamps, self.counts, self.set_inserts, self.sketch,
                               self.sketch_adds, keys, _NO_COUNTS if occurrences is None else occurrences,
                               self._next_tick(), self._rule, self._tinylfu,
                               _NO_MASK if allowed is None else allowed, hit_slots, slots, numba.get_num_threads())
        return hit_slots, slots

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Slot holding each key (``-1`` where it is not cached), without touching any state."""
        if self.n_sets == 0:
            return np.full(keys.size, -1, dtype=np.int64)
        return find(self.tags, np.ascontiguousarray(keys, dtype=np.int64))

    def remove(self, keys: np.ndarray) -> np.ndarray:
        """Drop ``keys``; the freed slot of each (``-1`` where it was not cached)."""
        if self.n_sets == 0:
            return np.full(keys.size, -1, dtype=np.int64)
        freed = remove(self.tags, np.ascontiguousarray(keys, dtype=np.int64))
        self.occupied -= int(np.count_nonzero(freed >= 0))
        return freed


_NO_MASK = np.zeros(0, dtype=np.bool_)
_NO_COUNTS = np.zeros(0, dtype=np.int64)


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
        Requested keys (>= 0).
    batch_ends : array of int
        End (exclusive) of each batch in ``keys``, increasing, the last ``len(keys)``.
    cache : SetAssociative or str
        The cache (see :func:`parse`).
    slots : int
        Slots (rows) the cache may hold.
    """
    config = parse(cache)
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    if keys.size and keys.min() < 0:
        raise ValueError(f"keys must be >= 0, got {keys.min()}")
    batch_ends = np.asarray(batch_ends, dtype=np.int64)
    if batch_ends.size and (batch_ends[-1] != keys.size or np.any(np.diff(batch_ends) < 0) or batch_ends[0] < 0):
        raise ValueError(f"batch_ends must be non-decreasing and end at len(keys)={keys.size}")
    state = SetAssocState(config, slots, int(keys.max()) + 1 if keys.size else 0)
    hits = misses = distinct_hits = distinct_misses = 0
    start = 0
    for end in batch_ends:
        uniq, multiplicity = batch_distinct(keys[start:end])
        start = end
        hit_slots, _ = state.serve(uniq, occurrences=multiplicity)
        hit = hit_slots >= 0
        distinct_hits += int(np.count_nonzero(hit))
        distinct_misses += int(uniq.size - np.count_nonzero(hit))
        hits += int(multiplicity[hit].sum())
        misses += int(multiplicity[~hit].sum())
    return SetAssocResult(hits, misses, distinct_hits, distinct_misses,
                          {"cache": config.to_dict(), "slots": int(slots), "n_sets": state.n_sets,
                           "ways": state.ways, "batches": int(batch_ends.size)})
