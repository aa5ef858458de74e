"""The GPU tier: rows at their stored width in a device slab, a set-associative index on the device.

A byte budget over one or more tables becomes a slab of device rows
(:mod:`tierstore.gpu.records`; every slot as wide as the tier's widest row):

- **pinned** rows (a placement plan's ``PINNED_GPU`` rows) first, at slots of their
  own, read at open and never evicted (read again when their data changes);
- **mirror**: when the budget holds every row of the tier's tables, slot = row (plus
  the table's key base) and nothing is ever evicted; once a table is fully
  resident its lookups pool straight from the slab;
- otherwise ``n_sets * ways`` **set-associative** slots, decided on the device by
  the rules of :mod:`cache_policies.setassoc` (:mod:`tierstore.gpu.kernels`).

One batch, per tier (:meth:`GpuTier.pool_batch`):

1. host: each table's distinct rows (:func:`tierstore.kernels.unique_inverse`), pinned
   rows routed to their slots, set numbers of the rest;
2. device: one probe over every table's distinct rows (one copy in, one copy of the
   hit slots out);
3. host: the missed rows' stored records are fetched through the DRAM tier and SSD
   (the store's ``fetch``) and staged as device rows in pinned host memory, with the
   misses grouped by set and every table's bag rows, offsets and weights;
4. one host-to-device copy of all of it (:class:`tierstore.gpu.transfer.Arena`);
5. device: admission (one thread per set with misses, batch order), the admitted
   rows copied into their slots, and one pooling launch per row format and mode
   over all its tables, reading hits from the slab and misses from the staged rows.

Ways the batch touched are never victims and pinned slots are never in a set, so
the pooling kernels may run after the admission.
"""

from __future__ import annotations

import numpy as np

from cache_policies.setassoc import EMPTY, SetAssociative, geometry, set_of
from tierstore.gpu import kernels as gk
from tierstore.gpu.records import FORMATS, device_row_bytes, scale_word, stage_records
from tierstore.gpu.runtime import require_cuda, simulated
from tierstore.gpu.transfer import Arena
from tierstore.kernels import unique_inverse

NO_ROUTE = -1
LOAD_CHUNK_BYTES = 64 << 20
"""Rows read per step when pinned rows are loaded or a table is warmed."""


def _launch_shape():
    """``(lanes, rows per block, threads per 1-D block)``: a warp of lanes per row on a GPU; fewer under
    the simulator, where every thread is a Python thread (the kernels read the shape, nothing else changes)."""
    return (4, 2, 8) if simulated() else (32, 4, 128)


def _blocks(n: int, per_block: int) -> int:
    return -(-n // per_block)


class GpuTier:
    """A GPU cache over ``tables`` with one byte budget.

    Parameters
    ----------
    tables : list of TableConfig
    budget_bytes : int
        Bytes of device rows (pinned and cached); the index (8-byte tag, 4-byte tick,
        1-byte counter per slot) comes on top, as in the DRAM tier.
    cache : cache_policies.setassoc.SetAssociative
        Rule (``lru`` or ``lfu``) and ways; the GPU tier has no admission filter.
    pinned : dict of str to int array, optional
        Rows of each table kept on the device for good (a plan's ``PINNED_GPU`` rows).
    """

    def __init__(self, tables, budget_bytes: int, cache: SetAssociative, pinned: dict | None = None):
        if cache.admission != "none":
            raise ValueError(f"the GPU tier has no {cache.admission!r} admission filter; use admission='none'")
        self._cuda = cuda = require_cuda()
        self.cache = cache
        self.budget_bytes = int(budget_bytes)
        self.tables = {t.name: t for t in tables}
        self.key_base = dict(zip(self.tables, np.cumsum([0] + [t.num_rows for t in tables]).tolist()))
        self.row_bytes = max(device_row_bytes(t.dtype, t.dim) for t in tables)
        pinned = {name: np.unique(np.asarray(rows, dtype=np.int64)) for name, rows in (pinned or {}).items()}
        n_pinned = sum(rows.size for rows in pinned.values())
        if n_pinned * self.row_bytes > self.budget_bytes:
            raise ValueError(f"the GPU tier's {n_pinned} pinned rows need {n_pinned * self.row_bytes} bytes, more "
                             f"than its budget of {self.budget_bytes}")
        total_rows = sum(t.num_rows for t in tables)
        self.mirror = total_rows * self.row_bytes <= self.budget_bytes
        if self.mirror:
            self.first_slot, self.n_sets, self.ways, slab_rows = 0, 0, 0, total_rows
            self.resident = {name: np.zeros(t.num_rows, dtype=np.bool_) for name, t in self.tables.items()}
            self.n_resident = dict.fromkeys(self.tables, 0)
        else:
            self.n_sets, self.ways = geometry((self.budget_bytes - n_pinned * self.row_bytes) // self.row_bytes,
                                              cache.ways)
            self.first_slot = n_pinned
            slab_rows = n_pinned + self.n_sets * self.ways
        self._routes, self._pinned, self._pinned_first, start = {}, pinned, {}, 0
        for name, rows in pinned.items():
            self._pinned_first[name] = start
            if not self.mirror:
                route = np.full(self.tables[name].num_rows, NO_ROUTE, dtype=np.int32)
                route[rows] = np.arange(start, start + rows.size)
                self._routes[name] = route
            start += rows.size
        self._stale_pinned = set(pinned)
        self._lfu = cache.rule == "lfu"
        self._tick = np.uint32(0)
        self._loc_limit = max(slab_rows, total_rows)
        slab = cuda.device_array((max(slab_rows, 1), self.row_bytes), dtype=np.uint8)
        self._slab = _views(slab)
        n_slots = self.n_sets * self.ways
        self._tags = cuda.to_device(np.full(max(n_slots, 1), EMPTY, dtype=np.int64))
        self._stamps = cuda.to_device(np.zeros(max(n_slots, 1), dtype=np.uint32))
        self._counts = cuda.to_device(np.zeros(max(n_slots, 1) if self._lfu else 1, dtype=np.uint8))
        self._set_inserts = cuda.to_device(np.zeros(max(self.n_sets, 1) if self._lfu else 1, dtype=np.int32))
        self._probe_arena = Arena(cuda)
        self._arena = Arena(cuda)
        self._results = cuda.pinned_array(1024, np.int64)
        self._admitted = cuda.to_device(np.zeros(1, dtype=np.int64))
        self._no_weights = cuda.to_device(np.zeros(1, dtype=np.float32))
        self.lanes, self.rows_per_block, self.threads = _launch_shape()
        self.counters = {"hits": 0, "misses": 0, "pinned_hits": 0, "rows_admitted": 0}

    # ----------------------------------------------------------------- state
    @property
    def pinned_rows(self) -> int:
        """Rows pinned on the device."""
        return sum(rows.size for rows in self._pinned.values())

    @property
    def stale(self) -> bool:
        """Whether pinned rows must be read again before the next batch (their data changed)."""
        return bool(self._stale_pinned)

    def fully_resident(self, table: str) -> bool:
        """True when every row of ``table`` is on the device (a mirror tier, filled)."""
        return self.mirror and self.n_resident[table] == self.tables[table].num_rows

    def occupied(self) -> int:
        """Slots holding a row now (reads the device's tags)."""
        if self.mirror:
            return sum(self.n_resident.values())
        cached = int(np.count_nonzero(self._tags.copy_to_host()[: self.n_sets * self.ways] != EMPTY))
        return self.pinned_rows + cached

    def stats(self) -> dict:
        """Hits and misses (accesses), pinned hits, rows admitted, bytes used and sent to the device."""
        c = dict(self.counters)
        if not self.mirror:
            c["rows_admitted"] = int(self._admitted.copy_to_host()[0])
        accesses = c["hits"] + c["misses"]
        return {**c, "hit_rate": c["hits"] / accesses if accesses else 0.0,
                "bytes_used": self.occupied() * self.row_bytes, "budget_bytes": self.budget_bytes,
                "bytes_sent": self._arena.bytes_sent + self._probe_arena.bytes_sent,
                "transfers": self._arena.transfers + self._probe_arena.transfers}

    def reset_counters(self) -> None:
        """Zero the hit and miss counters (the cache keeps its rows)."""
        self.counters = dict.fromkeys(self.counters, 0)
        self._admitted.copy_to_device(np.zeros(1, dtype=np.int64))

    def _next_tick(self) -> np.uint32:
        if self._tick == np.iinfo(np.uint32).max:
            stamps = self._stamps.copy_to_host() >> 1
            self._stamps.copy_to_device(stamps)
            self._tick = np.uint32(self._tick >> 1)
        self._tick = np.uint32(self._tick + 1)
        return self._tick

    # ----------------------------------------------------------------- changes
    def invalidate(self, table: str, rows: np.ndarray) -> None:
        """Forget cached copies of ``rows`` of ``table`` (their data changed); pinned ones are read again."""
        rows = np.asarray(rows, dtype=np.int64)
        if table in self._pinned and np.isin(self._pinned[table], rows).any():
            self._stale_pinned.add(table)
        if self.mirror:
            self.resident[table][rows] = False
            self.n_resident[table] = int(np.count_nonzero(self.resident[table]))
            return
        if self.n_sets == 0 or rows.size == 0:
            return
        first = self.key_base[table]
        if rows.size == self.tables[table].num_rows:  # the whole table (a reload): no keys to send
            slots = self.n_sets * self.ways
            gk.remove_range[_blocks(slots, self.threads), self.threads](
                self._tags, first, first + self.tables[table].num_rows)
            return
        keys = rows + first
        arena = self._probe_arena
        parts = [arena.reserve(keys.shape, np.int64), arena.reserve(keys.shape, np.int64)]
        arena.ready()
        arena.host(parts[0])[:] = keys
        arena.host(parts[1])[:] = set_of(keys, self.n_sets)
        arena.send()
        gk.remove[_blocks(keys.size, self.threads), self.threads](self._tags, arena.device(parts[0]),
                                                                  arena.device(parts[1]), self.ways)

    def load_pinned(self, fetch) -> None:
        """Read pinned rows whose copies are missing or stale into their slots (at open; after updates)."""
        for table in sorted(self._stale_pinned):
            rows = self._pinned[table]
            if self.mirror:
                self._load_rows(table, rows, rows + self.key_base[table], fetch)
                self._mark_resident(table, rows)
            else:
                self._load_rows(table, rows, self._pinned_first[table] + np.arange(rows.size), fetch)
            self._stale_pinned.discard(table)

    def warm(self, table: str, fetch) -> None:
        """Read every row of ``table`` onto the device (a mirror tier only)."""
        if not self.mirror:
            raise ValueError(f"table {table!r}: warming the GPU tier needs a GPU budget that holds every row of "
                             "its tables")
        rows = np.flatnonzero(~self.resident[table]).astype(np.int64)
        self._load_rows(table, rows, rows + self.key_base[table], fetch)
        self._mark_resident(table, rows)

    def _mark_resident(self, table: str, rows: np.ndarray) -> None:
        self.resident[table][rows] = True
        self.n_resident[table] = int(np.count_nonzero(self.resident[table]))

    def _load_rows(self, table: str, rows: np.ndarray, slots: np.ndarray, fetch) -> None:
        """Fetch ``rows`` a chunk at a time and copy them into slab ``slots``."""
        config = self.tables[table]
        step = max(1, LOAD_CHUNK_BYTES // self.row_bytes)
        for start in range(0, rows.size, step):
            chunk = rows[start : start + step]
            records = fetch(table, chunk, False)
            arena = self._arena
            staged = arena.reserve((chunk.size, self.row_bytes), np.uint8)
            dest = arena.reserve((chunk.size,), np.int64)
            arena.ready()
            stage_records(records, config.dtype, config.dim, arena.host(staged))
            arena.host(dest)[:] = slots[start : start + step]
            arena.send()
            self._copy_rows(arena.device(staged), arena.device(dest))

    def _copy_rows(self, staged, slots) -> None:
        n = slots.shape[0]
        gk.copy_rows[_blocks(n, self.rows_per_block), (self.lanes, self.rows_per_block)](
            self._slab["f32"], staged.view(np.float32), slots, self.row_bytes // 4)

    # ----------------------------------------------------------------- lookups
    def _probe(self, keys: np.ndarray, sets: np.ndarray, tick) -> np.ndarray:
        """Slab row of each key found in the set-associative slots (-1 for a miss); hits are stamped."""
        arena = self._probe_arena
        parts = [arena.reserve(keys.shape, np.int64), arena.reserve(keys.shape, np.int64),
                 arena.reserve(keys.shape, np.int64)]
        arena.ready()
        arena.host(parts[0])[:] = keys
        arena.host(parts[1])[:] = sets
        arena.send()
        found = arena.device(parts[2])
        gk.probe[_blocks(keys.size, self.threads), self.threads](
            self._tags, self._stamps, self._counts, arena.device(parts[0]), arena.device(parts[1]), self.ways,
            tick, self._lfu, self.first_slot, found)
        if self._results.size < keys.size:
            self._results = self._cuda.pinned_array(max(keys.size, 2 * self._results.size), np.int64)
        hits = self._results[: keys.size]
        found.copy_to_host(hits)
        return hits.copy()

    def _place(self, requests):
        """Per request: where each distinct row is (slab row or -1), and which rows are pinned."""
        placed = []
        probe_keys, probe_sets, probe_at = [], [], []
        for k, (name, idx, *_rest) in enumerate(requests):
            if self.fully_resident(name):
                placed.append(None)
                continue
            uniq, inverse = unique_inverse(idx)
            keys = uniq + self.key_base[name]
            route = self._routes.get(name)
            pinned = route[uniq].astype(np.int64) if route is not None else None
            if self.mirror:
                slot = np.where(self.resident[name][uniq], keys, -1)
            else:
                slot = np.full(uniq.size, -1, dtype=np.int64) if pinned is None else pinned.copy()
                if self.n_sets:
                    todo = np.arange(uniq.size) if pinned is None else np.flatnonzero(pinned < 0)
                    probe_keys.append(keys[todo])
                    probe_sets.append(set_of(keys[todo], self.n_sets))
                    probe_at.append((k, todo))
            placed.append([uniq, inverse, keys, slot, pinned])
        sets_of = {}
        if sum(k.size for k in probe_keys):
            keys = np.concatenate(probe_keys)
            sets = np.concatenate(probe_sets)
            found = self._probe(keys, sets, self._next_tick())
            start = 0
            for (k, todo), part_sets in zip(probe_at, probe_sets):
                placed[k][3][todo] = found[start : start + todo.size]
                sets_of[k] = (todo, part_sets)
                start += todo.size
        return placed, sets_of

    def pool_batch(self, requests, fetch, out) -> None:
        """Pool a batch's requests into the device array ``out``.

        Parameters
        ----------
        requests : list of (table, idx, offsets, weights, mode_code, column)
            Checked bags of tables of this tier (``offsets`` B + 1 entries); a
            table's result goes to ``out[:, column : column + dim]``.
        fetch : callable
            ``fetch(table, rows)`` -> the stored records (uint8 ``[len(rows),
            row_bytes]``) of distinct ``rows``, read through the DRAM tier and SSD
            (None when every table is fully resident).  If it raises, the tier is
            as before the batch but for the recency of the rows the batch found.
        out : device array, float32 [B, width]
        """
        if self._stale_pinned:
            self.load_pinned(fetch)
        placed, sets_of = self._place(requests)
        staged, bags, n_staged = [], [], 0
        admission = {"keys": [], "sets": [], "slots": []}
        counts = dict.fromkeys(("hits", "misses", "pinned_hits"), 0)
        for k, ((name, idx, *_rest), where) in enumerate(zip(requests, placed)):
            if where is None:
                bags.append((idx, self.key_base[name]))
                counts["hits"] += idx.size
                continue
            uniq, inverse, keys, slot, pinned = where
            missed = np.flatnonzero(slot < 0)
            if missed.size:
                staged.append((name, fetch(name, uniq[missed])))
            loc_of_row = slot.copy()
            loc_of_row[missed] = -1 - (n_staged + np.arange(missed.size))
            n_staged += missed.size
            loc = loc_of_row[inverse]
            bags.append((loc, 0))
            hits = int(np.count_nonzero(loc >= 0))
            counts["hits"] += hits
            counts["misses"] += idx.size - hits
            if pinned is not None:
                counts["pinned_hits"] += int(np.count_nonzero(pinned[inverse] >= 0))
            if self.mirror:
                admission["slots"].append(keys[missed])
            elif self.n_sets and missed.size:
                todo, part_sets = sets_of[k]
                admission["keys"].append(keys[missed])
                admission["sets"].append(part_sets[np.searchsorted(todo, missed)])
        self._send_and_pool(requests, staged, n_staged, admission, bags, out)
        for key, value in counts.items():
            self.counters[key] += value
        if self.mirror:
            for (name, *_rest), where in zip(requests, placed):
                if where is not None:
                    self._mark_resident(name, where[0][where[3] < 0])
                    self.counters["rows_admitted"] += int(np.count_nonzero(where[3] < 0))

    def _send_and_pool(self, requests, staged, n_staged, admission, bags, out) -> None:
        """One transfer of the batch's staged rows, admission lists and bags; then admit, copy and pool."""
        arena = self._arena
        rows_part = arena.reserve((n_staged, self.row_bytes), np.uint8) if n_staged else None
        lists = {}
        if n_staged and admission["keys"]:
            keys, sets = np.concatenate(admission["keys"]), np.concatenate(admission["sets"])
            order = np.argsort(sets, kind="stable")
            set_starts = np.append(np.flatnonzero(np.diff(sets[order], prepend=-1) != 0), order.size)
            lists = {"keys": keys, "sets": sets, "order": order, "set_starts": set_starts}
        elif n_staged and admission["slots"]:
            lists = {"slots": np.concatenate(admission["slots"])}
        parts = {name: arena.reserve(values.shape, np.int64) for name, values in lists.items()}
        if "keys" in lists:
            parts["slots"] = arena.reserve((n_staged,), np.int64)
        # Bag rows and offsets go over as int32 when they fit (half the bytes to send and to read).
        index = np.int32 if max(self._loc_limit, n_staged, max(off[-1] for _, _, off, *_ in requests)) < \
            np.iinfo(np.int32).max else np.int64
        launches = self._reserve_pooling(requests, bags, index)
        arena.ready()
        if rows_part is not None:
            rows, start = arena.host(rows_part), 0
            for name, records in staged:
                config = self.tables[name]
                stage_records(records, config.dtype, config.dim, rows[start : start + records.shape[0]])
                start += records.shape[0]
        for name, values in lists.items():
            arena.host(parts[name])[:] = values
        for _, members, launch_parts in launches:
            self._fill_pooling(requests, bags, members, launch_parts)
        arena.send()
        if "keys" in lists:
            gk.admit[_blocks(lists["set_starts"].size - 1, self.threads), self.threads](
                self._tags, self._stamps, self._counts, self._set_inserts, arena.device(parts["keys"]),
                arena.device(parts["sets"]), arena.device(parts["order"]), arena.device(parts["set_starts"]),
                self.ways, self._tick, self._lfu, self.first_slot, arena.device(parts["slots"]), self._admitted)
        if "slots" in parts:
            self._copy_rows(arena.device(rows_part), arena.device(parts["slots"]))
        extra = self._slab if rows_part is None else _views(arena.device(rows_part))
        for (fmt, mode, weighted), members, (loc_part, off_part, w_part, tables_part) in launches:
            n_bags = requests[members[0]][2].size - 1
            view = _VIEWS[fmt]
            gk.pool_kernel(fmt, mode, weighted)[_blocks(len(members) * n_bags, self.rows_per_block),
                                                (self.lanes, self.rows_per_block)](
                self._slab[view], self._slab["f32"], extra[view], extra["f32"], arena.device(loc_part),
                arena.device(off_part), arena.device(w_part) if weighted else self._no_weights,
                arena.device(tables_part), n_bags, out)

    def _reserve_pooling(self, requests, bags, index) -> list:
        """One pooling launch per (format, mode, weighting) among the requests with bags: its requests and
        arena parts (bag rows, offsets, weights, per-table parameters)."""
        groups = {}
        for k, (name, _, off, weights, mode, _) in enumerate(requests):
            if off.size > 1:
                groups.setdefault((FORMATS[self.tables[name].dtype], mode, weights is not None), []).append(k)
        arena = self._arena
        launches = []
        for (fmt, mode, weighted), members in groups.items():
            n_loc = sum(bags[k][0].size for k in members)
            n_offsets = sum(requests[k][2].size for k in members)
            launches.append(((fmt, mode, weighted), members, (
                arena.reserve((n_loc,), index), arena.reserve((n_offsets,), index),
                arena.reserve((n_loc,), np.float32) if weighted else None,
                arena.reserve((len(members), 6), np.int64))))
        return launches

    def _fill_pooling(self, requests, bags, members, parts) -> None:
        """Write one launch's bag rows, offsets, weights and per-table parameters into the arena."""
        arena = self._arena
        loc_part, off_part, w_part, tables_part = parts
        locs, offsets, table_rows = arena.host(loc_part), arena.host(off_part), arena.host(tables_part)
        weights = None if w_part is None else arena.host(w_part)
        at_loc = at_offset = 0
        for row, k in enumerate(members):
            name, _, off, table_weights, _, column = requests[k]
            loc, base = bags[k]
            locs[at_loc : at_loc + loc.size] = loc
            offsets[at_offset : at_offset + off.size] = off
            if weights is not None:
                weights[at_loc : at_loc + loc.size] = table_weights
            dim = self.tables[name].dim
            table_rows[row] = (at_loc, at_offset, base, column, dim, scale_word(dim))
            at_loc += loc.size
            at_offset += off.size


_VIEWS = {FORMATS["float32"]: "f32", FORMATS["float16"]: "f16", FORMATS["int8"]: "u8"}
"""The view of a slab that each row format's kernels read its values through."""


def _views(rows) -> dict:
    """A uint8 device array of rows, and the same memory as float16 and float32."""
    return {"u8": rows, "f16": rows.view(np.float16), "f32": rows.view(np.float32)}
