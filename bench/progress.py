"""Progress bars for long CLI work: tqdm on stderr, counting batches and requests."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from tqdm import tqdm

from bench.traces.batching import BatchPart
from tierstore import SparseBatch


def batch_progress(batches: Iterable[SparseBatch], desc: str, total: int | None = None,
                   enabled: bool = True) -> Iterator[SparseBatch]:
    """Yield ``batches`` while a tqdm bar on stderr counts batches and requests."""
    with tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, disable=not enabled, dynamic_ncols=True) as bar:
        requests = 0
        for batch in batches:
            requests += batch.values.size
            bar.set_postfix(requests=f"{requests:,}", refresh=False)
            bar.update(1)
            yield batch


def part_progress(parts: Iterable[BatchPart], desc: str, total_requests: float | None = None,
                  enabled: bool = True) -> Iterator[BatchPart]:
    """Yield batch parts while a tqdm bar on stderr counts requests (its unit) and whole batches."""
    total = int(total_requests) if total_requests else None
    with tqdm(total=total, desc=desc, unit="request", unit_scale=True, file=sys.stderr, disable=not enabled,
              dynamic_ncols=True) as bar:
        batches = 0
        for part in parts:
            batches += part.last
            bar.set_postfix(batches=f"{batches:,}", refresh=False)
            bar.update(part.batch.values.size)
            yield part
