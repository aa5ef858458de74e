"""Embedding-access traces: formats, generators and statistics.

A trace is an iterable of :class:`tierstore.SparseBatch`.  Readers stream lazily;
writers consume any iterable.  Formats: ``tstrace`` (our own, chunked and
zstd-compressed), ``dlrm_datasets`` (Meta's ``torch.save`` tuples), ``oracleGeneral``
(libCacheSim's binary records) and ``csv`` (``table,row`` lines).
"""

from bench.traces.errors import TraceFormatError
from bench.traces.formats import FORMATS, detect_format, open_trace, write_trace

__all__ = ["FORMATS", "TraceFormatError", "detect_format", "open_trace", "write_trace"]
