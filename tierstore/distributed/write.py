"""Writing the shard stores of a plan from a source store, through the public Store API only.

Each shard store is a normal tierstore store (``tierstore.create``, then
``Store.load`` per piece), fed a chunk at a time from the source's
``Store.get_rows``, so memory stays bounded by ``chunk_bytes`` whatever the
table sizes.  ``plan.json`` is written last: a folder without it holds no
finished shards.

Rows cross as the float32 values the source decodes: float32 and float16 rows
arrive bit-exact; int8 rows are quantized again from their decoded values, which
gives back the same codes but may move a row's scale or bias by a rounding step
(under 1e-6 of the row's span).  Shards are written in row order (identity
layout); ``tierstore place`` lays a shard out like any store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import tierstore
from tierstore.distributed.plan import PLAN_FILE, ShardPlan


def _rows_of(source, table: str, start: int, stop: int, chunk_rows: int):
    for first in range(start, stop, chunk_rows):
        yield source.get_rows(table, np.arange(first, min(first + chunk_rows, stop), dtype=np.int64))


def write_shards(source_path, out_dir, plan: ShardPlan, chunk_bytes: int = 64 << 20,
                 progress: bool = False) -> Path:
    """Write ``plan``'s shard stores under ``out_dir`` from the store at ``source_path``; returns the plan file.

    Parameters
    ----------
    source_path : str or Path
        The single store (every table loaded).
    out_dir : str or Path
        A new or empty folder: it gets one store per shard and ``plan.json``.
    plan : ShardPlan
        Made for the source's tables (``make_shard_plan``).
    chunk_bytes : int
        Rows copied per step (bounds the memory used).
    progress : bool
        Progress bars on stderr.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; shard stores need a new folder")
    with tierstore.open(source_path, tables=list(plan.tables)) as source:
        out_dir.mkdir(parents=True, exist_ok=True)
        for shard in range(plan.num_shards):
            tables = plan.shard_tables(shard)
            with tierstore.create(plan.shard_path(out_dir, shard), tables) as store:
                for piece in (p for p in plan.pieces if p.shard == shard):
                    config = plan.table(piece.table)
                    chunk_rows = max(1, chunk_bytes // (config.dim * 4))
                    store.load(piece.table, _rows_of(source, piece.table, piece.start, piece.stop, chunk_rows),
                               progress=progress, chunk_bytes=chunk_bytes)
    return plan.save(out_dir / PLAN_FILE)
