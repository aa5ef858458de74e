"""How big a generated trace will be, measured on a sample before the real run.

The sample is one batch of a spread of the spec's tables (every k-th table, at
least 64 of them, with fewer bags per table if needed to stay near 2 M
requests), written with the real writer to a temporary file.  Its bytes per expected request, times the whole trace's
expected requests, give the estimate.  Compression and text width depend on row
ids and bag sizes, which the sample draws from the same laws, so the estimate is
close (2 % high for a full-scale meta2022 batch, within 10 % in the tests) but not exact.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass

import psutil

from bench.traces.formats import write_trace
from bench.traces.generate import TraceSpec, generate_parts
from tierstore.cli import human_bytes

#: Requests in the sample batch.
SAMPLE_REQUESTS = 1 << 21
#: Tables in the sample, at least (or all): with 2 of meta2022's 788 the estimate was 14 % high, with 64 2 %.
SAMPLE_TABLES = 64
#: Room kept free on the disk beyond the estimate.
DISK_MARGIN = 1.1
#: Bytes per request in memory when a batch is read back: int64 ids, plus their stored form while parts are joined.
READ_BACK_BYTES = 12


@dataclass(frozen=True)
class TraceSize:
    """Expected size of a trace and what writing and reading it take.

    Attributes
    ----------
    requests : float
        Expected requests in the whole trace.
    batch_requests : float
        Expected requests per batch.
    file_bytes : int
        Expected size of the output file.
    writer_memory_bytes : int
        Memory the writer holds at its peak (the whole trace for dlrm_datasets,
        which is one pickled tuple; a part of a batch for the others).
    """

    requests: float
    batch_requests: float
    file_bytes: int
    writer_memory_bytes: int

    @property
    def read_back_bytes(self) -> float:
        """Memory a reader needs to yield one batch."""
        return self.batch_requests * READ_BACK_BYTES


def sample_spec(spec: TraceSpec, requests: int = SAMPLE_REQUESTS) -> TraceSpec:
    """One batch of every k-th table of ``spec`` (at least ``SAMPLE_TABLES`` of them), about ``requests`` requests."""
    per_table = [spec.batch_size * t.pooling for t in spec.tables]
    stride = max(1, min(math.ceil(sum(per_table) / requests), math.ceil(len(spec.tables) / SAMPLE_TABLES)))
    tables = spec.tables[::stride]
    expected = sum(spec.batch_size * t.pooling for t in tables)
    batch_size = spec.batch_size if expected <= requests else max(1, int(spec.batch_size * requests / expected))
    return dataclasses.replace(spec, tables=tables, batch_size=batch_size, num_batches=1, shift_every=0)


def estimate_size(spec: TraceSpec, fmt: str, metadata: dict | None = None, row_bytes=1) -> TraceSize:
    """Write a sample of ``spec`` in format ``fmt`` and scale its size to the whole trace."""
    sample = sample_spec(spec)
    sample_expected = sample.batch_size * sum(t.pooling for t in sample.tables)
    with tempfile.TemporaryDirectory(prefix="tierstore-size-") as tmp:
        path = os.path.join(tmp, "sample")
        write_trace(path, generate_parts(sample), format=fmt, row_bytes=row_bytes)
        sample_bytes = os.path.getsize(path)
    scale = spec.expected_requests / sample_expected if sample_expected else 0.0
    header = len(json.dumps(metadata or {}))
    file_bytes = int(sample_bytes * scale) + header
    batch_requests = spec.batch_size * sum(t.pooling for t in spec.tables)
    bags = spec.num_batches * spec.batch_size * len(spec.tables)
    if fmt == "dlrm_datasets":
        writer_memory = int(24 * (spec.expected_requests + 2 * bags))  # the batches, per-table pieces, the whole
    else:
        writer_memory = 0
    return TraceSize(spec.expected_requests, batch_requests, file_bytes, writer_memory)


def check_room(path, size: TraceSize) -> None:
    """Raise OSError (nothing written) if the trace would not fit on ``path``'s disk or the writer in memory."""
    folder = os.path.dirname(os.path.abspath(path))
    free = shutil.disk_usage(folder).free
    if size.file_bytes * DISK_MARGIN > free:
        raise OSError(
            f"the trace would take about {human_bytes(size.file_bytes)} (plus {DISK_MARGIN - 1:.0%} to spare) but "
            f"{folder} has {human_bytes(free)} free; "
            "nothing was written (write fewer --batches, scale down with --tables/--batch-size, or write elsewhere)"
        )
    available = psutil.virtual_memory().available
    if size.writer_memory_bytes > available:
        raise OSError(
            f"the dlrm_datasets writer holds the whole trace in memory, about {human_bytes(size.writer_memory_bytes)}, "
            f"but {human_bytes(available)} is available; nothing was written (write tstrace, or fewer --batches)"
        )
