"""Progress bars for long CLI work: tqdm on stderr, counting batches and requests."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from tqdm import tqdm

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
