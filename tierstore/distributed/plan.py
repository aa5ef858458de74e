"""Shard plans: which shard store holds which tables and row ranges, balanced for bytes and load.

A plan cuts every table into one or more *pieces* (row ranges ``[start, stop)``)
and gives each piece to one of ``N`` shards, at most one piece of a table per
shard.  A shard store holds each of its pieces as a table of the same name with
``stop - start`` rows (row ``r`` of the piece is row ``start + r`` of the table).

How it balances:

- *Bytes* are the stored bytes of the rows (what a host must hold on SSD).
- *Load* is the bytes a batch pools from the rows: an access count per row
  (from a placement profile of a trace, or the same for every row without one)
  times the row's float32 width.
- A table is cut into row ranges when its bytes or its load exceed
  ``(1 + imbalance) / N`` of the total, when its bytes exceed ``shard_bytes``, or
  when no shard could take it whole without passing ``(1 + imbalance)`` times the
  mean.  Whole tables are placed first, heaviest first, each on the shard whose
  larger normalized share (of load or bytes) stays smallest.
- A cut table is cut along what it weighs most in (load or bytes) over the least
  used shards, filling them to one level, at most one piece per shard.  Cut by
  load, a range of hot rows is narrow, so a table's hot rows land on several
  shards.  Without ``shard_bytes`` and a profile, every shard ends within
  ``1 + imbalance`` of the mean, give or take a row per cut.

Saved as JSON (``plan.json``, beside the shard stores it names).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from placement._json import JsonDataclass
from tierstore.config import TableConfig

PLAN_FORMAT = 1
PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class ShardPlanConfig(JsonDataclass):
    """How a shard plan is made.

    Parameters
    ----------
    num_shards : int
        Shards (one Ray actor, normally one host, each).
    shard_bytes : int or None
        Most stored bytes one shard may hold; None: no limit.
    imbalance : float
        A table holding more than ``(1 + imbalance) / num_shards`` of the total
        bytes or load is cut into row ranges.
    """

    num_shards: int = 2
    shard_bytes: int | None = None
    imbalance: float = 0.1

    def __post_init__(self):
        if int(self.num_shards) != self.num_shards or self.num_shards < 1:
            raise ValueError(f"num_shards must be a positive integer, got {self.num_shards!r}")
        if self.shard_bytes is not None and self.shard_bytes <= 0:
            raise ValueError(f"shard_bytes must be positive or None, got {self.shard_bytes!r}")
        if not self.imbalance >= 0:
            raise ValueError(f"imbalance must be >= 0, got {self.imbalance!r}")


@dataclass(frozen=True)
class ShardPiece(JsonDataclass):
    """Rows ``[start, stop)`` of ``table``, held by shard ``shard``.

    ``bytes`` are the stored bytes of those rows; ``load`` is their share (0-1) of
    the expected load of the whole plan.
    """

    table: str
    start: int
    stop: int
    shard: int
    bytes: int
    load: float

    @property
    def num_rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class ShardPlan:
    """Tables cut into pieces and assigned to shards (see the module docstring).

    Attributes
    ----------
    config : ShardPlanConfig
    tables : tuple of TableConfig
        The source store's tables.
    pieces : tuple of ShardPiece
        In table order, then row order.
    shard_dirs : tuple of str
        Shard store directories, relative to the plan file's folder (or absolute).
    load_source : {"profile", "uniform"}
        Where the expected load came from.
    """

    config: ShardPlanConfig
    tables: tuple[TableConfig, ...]
    pieces: tuple[ShardPiece, ...]
    shard_dirs: tuple[str, ...] = field(default=())
    load_source: str = "uniform"

    def __post_init__(self):
        object.__setattr__(self, "tables", tuple(self.tables))
        object.__setattr__(self, "pieces", tuple(self.pieces))
        dirs = tuple(self.shard_dirs) or tuple(f"shard-{s:03d}" for s in range(self.num_shards))
        object.__setattr__(self, "shard_dirs", dirs)
        self._check()

    def _check(self) -> None:
        n = self.num_shards
        if len(self.shard_dirs) != n:
            raise ValueError(f"shard plan: {len(self.shard_dirs)} shard directories for {n} shards")
        names = [t.name for t in self.tables]
        if len(set(names)) != len(names):
            raise ValueError(f"shard plan: table names must be distinct, got {names}")
        unknown = {p.table for p in self.pieces} - set(names)
        if unknown:
            raise ValueError(f"shard plan: pieces name unknown tables {sorted(unknown)}")
        for table in self.tables:
            pieces = self.pieces_of(table.name)
            stops = [p.start for p in pieces[1:]] + [table.num_rows]
            if not pieces or pieces[0].start != 0 or any(p.stop != s for p, s in zip(pieces, stops)) or any(
                p.stop <= p.start for p in pieces
            ):
                raise ValueError(f"shard plan: the pieces of table {table.name!r} must cover rows "
                                 f"[0, {table.num_rows}) in order, without gaps or overlaps")
            shards = [p.shard for p in pieces]
            if any(not 0 <= s < n for s in shards) or len(set(shards)) != len(shards):
                raise ValueError(f"shard plan: table {table.name!r} needs distinct shards in [0, {n}), got {shards}")

    @property
    def num_shards(self) -> int:
        return self.config.num_shards

    def table(self, name: str) -> TableConfig:
        """The source table called ``name``."""
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"unknown table {name!r}; tables: {sorted(t.name for t in self.tables)}")

    def pieces_of(self, name: str) -> list[ShardPiece]:
        """The pieces of table ``name``, in row order."""
        return sorted((p for p in self.pieces if p.table == name), key=lambda p: p.start)

    def shard_tables(self, shard: int) -> list[TableConfig]:
        """The tables of shard store ``shard``: one per piece, ``stop - start`` rows, same name and format."""
        by_name = {t.name: t for t in self.tables}
        return [TableConfig.from_dict({**by_name[p.table].to_dict(), "num_rows": p.num_rows})
                for p in self.pieces if p.shard == shard]

    def describe(self) -> dict:
        """Per shard: stored bytes, load share and pieces; and how far the worst shard is from the mean."""
        n = self.num_shards
        shard_bytes, shard_load = np.zeros(n), np.zeros(n)
        for p in self.pieces:
            shard_bytes[p.shard] += p.bytes
            shard_load[p.shard] += p.load
        return {
            "num_shards": n,
            "load_source": self.load_source,
            "split_tables": sorted({p.table for p in self.pieces if p.num_rows != self.table(p.table).num_rows}),
            "shards": [
                {"shard": s, "dir": self.shard_dirs[s], "bytes": int(shard_bytes[s]), "load": float(shard_load[s]),
                 "pieces": [f"{p.table}[{p.start}:{p.stop}]" for p in self.pieces if p.shard == s]}
                for s in range(n)
            ],
            "max_over_mean": {
                "bytes": float(shard_bytes.max() / shard_bytes.mean()) if shard_bytes.sum() else 1.0,
                "load": float(shard_load.max() / shard_load.mean()) if shard_load.sum() else 1.0,
            },
        }

    def to_dict(self) -> dict:
        return {
            "format": PLAN_FORMAT,
            "config": self.config.to_dict(),
            "tables": [t.to_dict() for t in self.tables],
            "pieces": [p.to_dict() for p in self.pieces],
            "shard_dirs": list(self.shard_dirs),
            "load_source": self.load_source,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ShardPlan":
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"shard plan format {data.get('format')!r}; this tierstore reads format {PLAN_FORMAT}")
        return cls(
            config=ShardPlanConfig.from_dict(data["config"]),
            tables=tuple(TableConfig.from_dict(t) for t in data["tables"]),
            pieces=tuple(ShardPiece.from_dict(p) for p in data["pieces"]),
            shard_dirs=tuple(data["shard_dirs"]),
            load_source=data["load_source"],
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ShardPlan":
        return cls.from_dict(json.loads(text))

    def save(self, path) -> Path:
        """Write the plan to ``path`` (a file; a folder gets ``plan.json``) through a rename."""
        path = Path(path)
        if path.is_dir():
            path = path / PLAN_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path) -> "ShardPlan":
        """Read a plan saved by :meth:`save` (``path``: the file or its folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / PLAN_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no shard plan at {path}")
        return cls.from_json(path.read_text())

    def shard_path(self, plan_path, shard: int) -> Path:
        """Directory of shard store ``shard`` for the plan saved at ``plan_path``."""
        plan_path = Path(plan_path)
        folder = plan_path if plan_path.is_dir() else plan_path.parent
        return (folder / self.shard_dirs[shard]).resolve()


def row_loads(table: TableConfig, profile=None) -> np.ndarray | None:
    """Expected load of each row of ``table`` (accesses x float32 row bytes), or None for a uniform load."""
    if profile is None:
        return None
    if table.name not in profile.tables:
        raise KeyError(f"the profile has no table {table.name!r}; profiled tables: {sorted(profile.tables)}")
    if profile.tables[table.name].num_rows != table.num_rows:
        raise ValueError(f"table {table.name!r}: the profile has {profile.tables[table.name].num_rows} rows, "
                         f"the store {table.num_rows}")
    return profile.row_counts(table.name).astype(np.float64) * table.cached_row_bytes


def _cut(num_rows: int, fractions: np.ndarray, cumulative: np.ndarray | None, max_rows: np.ndarray):
    """Bounds ``[0, ..., num_rows]`` of ranges holding ``fractions`` of the table's load (of its rows when
    ``cumulative`` is None), range ``j`` at most ``max_rows[j]`` rows and none empty; None when impossible."""
    k = fractions.size
    total = num_rows if cumulative is None else cumulative[-1]
    bounds = [0]
    for j in range(k - 1):
        target = fractions[: j + 1].sum() * total
        if cumulative is None:
            stop = int(round(target))
        else:
            stop = int(np.searchsorted(cumulative, target)) + 1
        low = max(bounds[-1] + 1, num_rows - int(max_rows[j + 1 :].sum()))
        high = min(bounds[-1] + int(max_rows[j]), num_rows - (k - 1 - j))
        if low > high:
            return None
        bounds.append(min(max(stop, low), high))
    if not 0 < num_rows - bounds[-1] <= max_rows[-1]:
        return None
    return bounds + [num_rows]


class _Shards:
    """Bytes, load and tables of each shard while a plan is being made."""

    def __init__(self, n: int, cap: float, mean_bytes: float, mean_load: float):
        self.bytes, self.load = np.zeros(n), np.zeros(n)
        self.cap, self.mean_bytes, self.mean_load = cap, mean_bytes, mean_load
        self.holds = [set() for _ in range(n)]

    def add(self, shard: int, table: str, size: float, load: float) -> None:
        self.bytes[shard] += size
        self.load[shard] += load
        self.holds[shard].add(table)

    def best_for(self, table: str, size: float, load: float) -> tuple[int, float]:
        """The shard whose larger normalized share (bytes or load) stays smallest with this piece, and that
        share (inf: no shard has room)."""
        score = np.maximum((self.bytes + size) / self.mean_bytes, (self.load + load) / self.mean_load)
        score[[s for s in range(score.size) if table in self.holds[s] or self.bytes[s] + size > self.cap]] = np.inf
        best = int(np.argmin(score))
        return best, float(score[best])


def make_shard_plan(tables, config: ShardPlanConfig, profile=None) -> ShardPlan:
    """Cut ``tables`` into pieces and assign them to ``config.num_shards`` shards.

    Tables that may stay whole go first, heaviest first, each to the shard whose
    larger normalized share (of bytes or load) stays smallest, unless that share
    would pass ``1 + imbalance``: such a table is cut after all.  Then each table
    to cut, heaviest first, is cut along what it weighs most in (load or bytes)
    over the least used shards, filling them to one level (and within their room
    under ``shard_bytes``).

    Parameters
    ----------
    tables : sequence of TableConfig
    config : ShardPlanConfig
    profile : placement.AccessProfile, optional
        Per-row access counts of a trace over these tables (``placement.profile``).

    Returns
    -------
    ShardPlan
    """
    tables = tuple(tables)
    if not tables:
        raise ValueError("a shard plan needs at least one table")
    n = config.num_shards
    cap = config.shard_bytes or math.inf
    loads = {t.name: row_loads(t, profile) for t in tables}
    table_bytes = {t.name: float(t.num_rows * t.row_bytes) for t in tables}
    table_load = {t.name: table_bytes[t.name] if loads[t.name] is None else float(loads[t.name].sum())
                  for t in tables}
    if profile is not None and not any(table_load.values()):
        raise ValueError("the profile saw no access to any of the tables")
    total_bytes, total_load = sum(table_bytes.values()), sum(table_load.values())
    if total_bytes > n * cap:
        raise ValueError(f"{int(total_bytes):,} bytes of tables do not fit {n} shards of {config.shard_bytes:,} bytes")
    shards = _Shards(n, cap, total_bytes / n, total_load / n)
    share = {t.name: (table_bytes[t.name] / shards.mean_bytes, table_load[t.name] / shards.mean_load) for t in tables}
    pieces_wanted = {t.name: min(n, t.num_rows, max(1, math.ceil(max(share[t.name]) / (1 + config.imbalance)),
                                                    math.ceil(table_bytes[t.name] / cap)))
                     for t in tables}
    placed, to_cut = {}, []
    for table in sorted(tables, key=lambda t: -max(share[t.name])):
        shard, score = shards.best_for(table.name, table_bytes[table.name], table_load[table.name])
        if pieces_wanted[table.name] > 1 or (score > 1 + config.imbalance and table.num_rows > 1 and n > 1):
            to_cut.append(table)
        else:
            placed[table.name] = _place_whole(table, shards, table_bytes[table.name], table_load[table.name])
    for table in to_cut:
        try:
            placed[table.name] = _place_cut_table(table, max(2, pieces_wanted[table.name]), loads[table.name],
                                                  share[table.name], shards)
        except ValueError:
            if pieces_wanted[table.name] > 1:
                raise
            placed[table.name] = _place_whole(table, shards, table_bytes[table.name], table_load[table.name])
    pieces = []
    for table in tables:
        row_load = loads[table.name]
        cumulative = None if row_load is None else np.concatenate([[0.0], np.cumsum(row_load)])
        for start, stop, shard in placed[table.name]:
            load = (stop - start) * table.row_bytes if cumulative is None else cumulative[stop] - cumulative[start]
            pieces.append(ShardPiece(table.name, start, stop, shard, (stop - start) * table.row_bytes,
                                     float(load) / total_load))
    return ShardPlan(config=config, tables=tables, pieces=tuple(pieces),
                     load_source="uniform" if profile is None else "profile")


def _place_whole(table: TableConfig, shards: _Shards, size: float, load: float) -> list:
    """Put all of ``table`` on the shard it unbalances least; record and return ``[(0, num_rows, shard)]``."""
    shard, score = shards.best_for(table.name, size, load)
    if score == math.inf:
        raise ValueError(f"no shard has room for table {table.name!r} ({int(size):,} bytes); raise shard_bytes "
                         "or num_shards")
    shards.add(shard, table.name, size, load)
    return [(0, table.num_rows, shard)]


def _place_cut_table(table: TableConfig, k: int, row_load, share, shards: _Shards):
    """Cut ``table`` over the least used shards, filling them to one level, along load when the table weighs
    more in load than in bytes (else along rows): at least ``k`` pieces, more when the level needs them or
    ``shard_bytes`` leaves too little room; record and return ``[(start, stop, shard)]``."""
    by_load = row_load is not None and share[1] >= share[0]
    cumulative = np.cumsum(row_load) if by_load else None
    weight = share[1] if by_load else share[0]
    n = shards.bytes.size
    used = shards.load / shards.mean_load if by_load else shards.bytes / shards.mean_bytes
    room = np.floor((shards.cap - shards.bytes) / table.row_bytes) if shards.cap != math.inf else (
        np.full(n, float(table.num_rows)))
    candidates = [int(s) for s in np.argsort(used, kind="stable") if room[s] >= 1]
    levels = [(weight + used[candidates[:m]].sum()) / m for m in range(1, len(candidates) + 1)]
    filled = max((m for m in range(1, len(candidates) + 1) if levels[m - 1] > used[candidates[m - 1]]), default=1)
    k = max(k, min(filled, table.num_rows))
    while k <= min(len(candidates), table.num_rows):
        chosen = candidates[:k]
        fill = np.maximum((weight + used[chosen].sum()) / k - used[chosen], 1e-9)
        fractions = fill / fill.sum()
        bounds = _cut(table.num_rows, fractions, cumulative, np.minimum(room[chosen], table.num_rows).astype(np.int64))
        if bounds is not None:
            pieces = []
            for shard, start, stop in zip(chosen, bounds[:-1], bounds[1:]):
                size = (stop - start) * table.row_bytes
                load = size if row_load is None else float(row_load[start:stop].sum())
                shards.add(shard, table.name, size, load)
                pieces.append((start, stop, shard))
            return pieces
        k += 1
    raise ValueError(f"table {table.name!r} ({table.num_rows * table.row_bytes:,} bytes) does not fit the room "
                     f"left on {n} shards of {shards.cap:,.0f} bytes")
