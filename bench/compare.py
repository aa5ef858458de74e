"""Cache-policy comparison on a trace: a (policy x cache size) grid, Belady always included.

The trace is turned into an on-disk :class:`~bench.traces.keystream.KeyStream`, then each
grid point streams it through a ``cache_policies`` policy state.  The replay loop
follows ``cache_policies.simulate`` exactly (hit -> ``on_hit``; miss -> ``admit``,
evict while over capacity, ``on_insert``) and additionally counts hits per time
window and per table, chunk by chunk, so memory stays O(distinct keys).

Sizes: ``"1%"`` is a share of the working set (distinct keys, or their bytes in byte
mode); ``"5000"`` is a number of rows; ``"64MiB"`` is bytes.  Byte mode (any byte
size, or ``row_bytes`` given) weighs each request by its table's row size.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numba
import numpy as np

from bench.traces.keystream import KeyStream
from cache_policies import available_policies, make_policy
from tierstore.config import JsonConfig

UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "kb": 10**3, "mb": 10**6,
         "gb": 10**9, "tb": 10**12}
SIZE_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(%|[a-zA-Z]*)\s*$")
BOUND = "belady"


def parse_size(text: str) -> tuple[str, float]:
    """``"1%"`` -> ("fraction", 0.01); ``"64MiB"`` -> ("bytes", 67108864); ``"5000"`` -> ("objects", 5000)."""
    match = SIZE_PATTERN.match(text)
    if not match:
        raise ValueError(f"cannot parse cache size {text!r}: use a percentage (1%), a row count (5000) or bytes (64MiB)")
    value, unit = float(match.group(1)), match.group(2).lower()
    if unit == "%":
        if not 0 < value <= 100:
            raise ValueError(f"cache size {text!r}: a percentage must be in (0, 100]")
        return "fraction", value / 100
    if unit == "":
        return "objects", value
    if unit not in UNITS:
        raise ValueError(f"cache size {text!r}: unknown unit {unit!r}; known: {sorted(UNITS)}")
    return "bytes", value * UNITS[unit]


def parse_policy(text: str):
    """``"s3fifo"`` or ``"s3fifo:small_size_ratio=0.2:ghost_size_ratio=0.9"`` -> a Policy."""
    name, *params = text.strip().split(":")
    if name not in available_policies():
        raise ValueError(f"unknown policy {name!r}; available: {available_policies()}")
    kwargs = {}
    for p in params:
        key, eq, value = p.partition("=")
        if not eq:
            raise ValueError(f"policy parameter {p!r} in {text!r} must be key=value")
        kwargs[key] = _literal(value)
    return make_policy(name, **kwargs)


def _literal(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


@dataclass(frozen=True)
class CompareConfig(JsonConfig):
    """Everything a comparison ran with (embedded in every output).

    Parameters
    ----------
    trace : str
        Trace path.
    policies : tuple of str
        Policy specs (``name`` or ``name:key=value:...``); Belady is added if absent.
    sizes : tuple of str
        Cache sizes (see the module notes).
    row_bytes : int or None
        Bytes per cached row in byte mode (default 256 = 64 float32 when byte sizes are given).
    table_row_bytes : dict
        Per-table overrides of ``row_bytes``.
    windows : int
        Time windows for the hit-ratio-over-time series.
    reader : dict
        Options the trace was opened with.
    """

    trace: str
    policies: tuple[str, ...]
    sizes: tuple[str, ...]
    row_bytes: int | None = None
    table_row_bytes: dict = field(default_factory=dict)
    windows: int = 100
    reader: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "policies", tuple(self.policies))
        object.__setattr__(self, "sizes", tuple(self.sizes))
        if not self.sizes:
            raise ValueError("compare needs at least one cache size")
        for p in self.policies:
            parse_policy(p)
        kinds = {parse_size(s)[0] for s in self.sizes}
        if {"objects", "bytes"} <= kinds:
            raise ValueError(f"cache sizes mix row counts and bytes: {list(self.sizes)}")
        if self.windows < 1:
            raise ValueError(f"windows must be >= 1, got {self.windows}")

    @property
    def byte_mode(self) -> bool:
        """Whether capacities and sizes are in bytes."""
        return self.row_bytes is not None or bool(self.table_row_bytes) or any(
            parse_size(s)[0] == "bytes" for s in self.sizes)

    def policy_list(self) -> list[str]:
        """The policies to run, Belady last."""
        names = list(self.policies)
        if not any(p.split(":")[0] == BOUND for p in names):
            names.append(BOUND)
        return names

    def to_dict(self):
        return dataclasses.asdict(self)


@numba.njit(cache=True)
def _drain_evicted(state, resident):
    slot = state.take_evicted()
    while slot != -1:
        resident[slot] = False
        slot = state.take_evicted()


@numba.njit(cache=True)
def _replay_chunk(state, ids, next_access, key_by_id, size_by_id, table_by_id, resident, first_index, window,
                  window_hits, window_requests, table_hits, table_requests, byte_counts):
    """Replay one chunk through the slot protocol of ``cache_policies.base``.

    Hits per window and per table accumulate in place; evictions the policy makes
    on its own (``take_evicted``) are drained after ``on_hit``, ``admit`` and the
    eviction loop, as ``cache_policies.simulate`` does.
    """
    use_next = next_access.shape[0] > 0
    for i in range(ids.shape[0]):
        slot = ids[i]
        size = size_by_id[slot]
        table = table_by_id[slot]
        w = (first_index + i) // window
        window_requests[w] += 1
        table_requests[table] += 1
        if use_next:
            state.set_next_access(next_access[i])
        if resident[slot]:
            state.on_hit(slot)
            _drain_evicted(state, resident)
            window_hits[w] += 1
            table_hits[table] += 1
            byte_counts[0] += size
            continue
        byte_counts[1] += size
        admitted = state.admit(key_by_id[slot], size)
        _drain_evicted(state, resident)
        if not admitted:
            continue
        while state.used + size > state.capacity:
            resident[state.victim()] = False
        _drain_evicted(state, resident)
        state.on_insert(slot, key_by_id[slot], size)
        resident[slot] = True


def _sizes_by_id(stream: KeyStream, config: CompareConfig) -> np.ndarray:
    if not config.byte_mode:
        return np.ones(stream.n_keys, dtype=np.int64)
    default = config.row_bytes or 256
    unknown = set(config.table_row_bytes) - set(stream.tables)
    if unknown:
        raise KeyError(f"table_row_bytes names tables not in the trace: {sorted(unknown)}; trace has {stream.tables}")
    per_table = np.asarray([int(config.table_row_bytes.get(t, default)) for t in stream.tables], dtype=np.int64)
    return per_table[stream.table_by_id]


def _capacity(size: str, stream: KeyStream, working_set_bytes: int, byte_mode: bool) -> int:
    kind, value = parse_size(size)
    if kind == "fraction":
        return max(1, int(value * (working_set_bytes if byte_mode else stream.n_keys)))
    return max(1, int(value))


def simulate_point(stream: KeyStream, policy_spec: str, capacity: int, size_by_id: np.ndarray,
                   windows: int) -> dict:
    """Run one (policy, capacity) over the stream; counts, ratios and series."""
    policy = parse_policy(policy_spec)
    state = policy.new_state(capacity, max(stream.n_keys, 1))
    resident = np.zeros(max(stream.n_keys, 1), dtype=np.bool_)
    window = max(1, -(-stream.n_requests // windows))
    n_windows = max(1, -(-stream.n_requests // window))
    window_hits = np.zeros(n_windows, np.int64)
    window_requests = np.zeros(n_windows, np.int64)
    table_hits = np.zeros(len(stream.tables), np.int64)
    table_requests = np.zeros(len(stream.tables), np.int64)
    byte_counts = np.zeros(2, np.int64)
    for first, ids, nxt in stream.chunks(policy.needs_next_access):
        _replay_chunk(state, ids, nxt, stream.key_by_id, size_by_id, stream.table_by_id, resident, first, window,
                      window_hits, window_requests, table_hits, table_requests, byte_counts)
    hits = int(window_hits.sum())
    byte_total = int(byte_counts.sum())
    return {
        "policy": policy_spec,
        "policy_config": policy.to_dict(),
        "capacity": int(capacity),
        "hits": hits,
        "misses": stream.n_requests - hits,
        "miss_ratio": 1 - hits / stream.n_requests if stream.n_requests else 0.0,
        "byte_hits": int(byte_counts[0]),
        "byte_misses": int(byte_counts[1]),
        "byte_miss_ratio": int(byte_counts[1]) / byte_total if byte_total else 0.0,
        "window_requests": window,
        "hit_ratio_over_time": (window_hits / np.maximum(window_requests, 1)).tolist(),
        "per_table": {
            name: {"requests": int(r), "hits": int(h), "miss_ratio": 1 - h / r if r else 0.0}
            for name, h, r in zip(stream.tables, table_hits, table_requests)
        },
    }


def compare(batches, config: CompareConfig, workdir: str | None = None, progress=None) -> dict:
    """Simulate the grid of ``config`` on ``batches``; return a JSON-ready result.

    Parameters
    ----------
    batches : iterable of SparseBatch
        The trace.
    config : CompareConfig
        Policies, sizes and options (embedded in the result).
    workdir : str, optional
        Where the temporary key-stream files go.
    progress : callable, optional
        ``progress(done, total, label)`` after each grid point.
    """
    with KeyStream(batches, workdir=workdir) as stream:
        size_by_id = _sizes_by_id(stream, config)
        working_set_bytes = int(size_by_id.sum())
        byte_mode = config.byte_mode
        policies = config.policy_list()
        grid = [(p, s) for p in policies for s in config.sizes]
        results = []
        for done, (policy, size) in enumerate(grid):
            capacity = _capacity(size, stream, working_set_bytes, byte_mode)
            point = simulate_point(stream, policy, capacity, size_by_id, config.windows)
            point["size"] = size
            results.append(point)
            if progress:
                progress(done + 1, len(grid), f"{policy} @ {size}")
        table_requests = np.bincount(
            stream.table_by_id, minlength=len(stream.tables)) if stream.n_keys else np.zeros(0, np.int64)
        return {
            "config": config.to_dict(),
            "trace": {
                "requests": stream.n_requests,
                "batches": len(stream.batch_ends),
                "distinct_keys": stream.n_keys,
                "tables": stream.tables,
                "distinct_rows_per_table": dict(zip(stream.tables, table_requests.tolist())),
                "working_set_bytes": working_set_bytes if byte_mode else None,
            },
            "capacity_unit": "bytes" if byte_mode else "rows",
            "policies": policies,
            "results": results,
        }
