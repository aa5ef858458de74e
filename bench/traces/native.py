"""tierstore's own trace format (``.tstrace``): chunked, zstd-compressed, streamable.

Layout (all integers little-endian)::

    file header   b"TSTRACE\\0" | u32 version | u32 meta_len | meta JSON | u32 crc32(version..meta)
    chunk ...     b"TSCK" | u32 n_entries | u64 payload_len | u64 raw_len | u32 crc32(payload) | payload
    end marker    b"TSND" | u32 total_batches | u64 0 | u64 total_values | u32 0

A chunk's payload is zstd-compressed and holds several entries: a u32-prefixed JSON
index (per entry: keys, bags per key, value count, weighted or not, and ``"more":
true`` when the batch goes on in the next entry; the dtypes used) followed by every
entry's lengths, then every entry's values, then the weights.  An entry is a whole
batch, or a part of one (some of its tables, in key order; version 2): writers of
batches too large for memory write them a part at a time, and readers join the
parts, so they hold one whole batch.
Values are stored as ``uint32`` when they fit, else ``int64``.  Readers hold one chunk
at a time (and the stored parts of the batch they are joining, which they copy into
the batch's int64 arrays once: 12 bytes per request at the peak); writers buffer
about ``chunk_values`` values and lengths before compressing, so memory stays
bounded whatever the trace length.  Every length a reader meets is checked against
the file's size before anything is read or allocated, chunk payloads carry a CRC and
their frame's size, and the end marker's counts are checked: truncation and
corruption raise one :class:`~bench.traces.errors.TraceFormatError` naming the file
and the byte offset.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterable, Iterator

import numpy as np
import zstandard

from bench.traces.batching import as_parts, concat_tables
from bench.traces.errors import TraceFormatError
from tierstore import SparseBatch

MAGIC = b"TSTRACE\x00"
VERSION = 2
CHUNK = struct.Struct("<4sIQQI")
CHUNK_MAGIC = b"TSCK"
END_MAGIC = b"TSND"
DEFAULT_CHUNK_VALUES = 1 << 22


def _dtype_for(values: np.ndarray) -> np.dtype:
    if values.size == 0 or (values.min() >= 0 and values.max() < 2**32):
        return np.dtype("<u4")
    return np.dtype("<i8")


class NativeTraceWriter:
    """Write batches to a ``.tstrace`` file, one compressed chunk at a time.

    The file is written under a temporary name and moved into place by :meth:`close`,
    so a crash never leaves a file that looks complete.

    Parameters
    ----------
    path : str or PathLike
        Output file.
    metadata : dict, optional
        JSON-serialisable metadata stored in the header (for example the generator config).
    chunk_values : int
        Values plus bag lengths buffered before a chunk is compressed and written.
    level : int
        zstd compression level.
    """

    def __init__(self, path, metadata: dict | None = None, chunk_values: int = DEFAULT_CHUNK_VALUES, level: int = 3):
        self.path = os.fspath(path)
        self._partial = self.path + ".partial"
        self._file = open(self._partial, "wb")
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._chunk_values = int(chunk_values)
        self._pending: list[tuple[SparseBatch, bool]] = []
        self._pending_values = 0
        self._inside_batch = False
        self.batches = 0
        self.values = 0
        meta = json.dumps(metadata or {}, sort_keys=True).encode()
        head = struct.pack("<II", VERSION, len(meta)) + meta
        self._file.write(MAGIC + head + struct.pack("<I", zlib.crc32(head)))

    def write(self, batch: SparseBatch) -> None:
        """Append one batch."""
        self.write_part(batch, last=True)

    def write_part(self, part: SparseBatch, last: bool) -> None:
        """Append some tables of a batch; ``last`` ends the batch (the next part starts a new one)."""
        self._pending.append((part, last))
        self._pending_values += part.values.size + part.lengths.size
        self.batches += bool(last)
        self._inside_batch = not last
        self.values += part.values.size
        if self._pending_values >= self._chunk_values:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        batches = [b for b, _ in self._pending]
        values = [b.values for b in batches]
        lengths = [b.lengths for b in batches]
        value_dtype = max((_dtype_for(v) for v in values), key=lambda d: d.itemsize)
        length_dtype = max((_dtype_for(n) for n in lengths), key=lambda d: d.itemsize)
        index = {
            "values_dtype": value_dtype.str,
            "lengths_dtype": length_dtype.str,
            "batches": [
                {"keys": list(b.keys), "b": b.batch_size, "n": int(b.values.size), "w": b.weights is not None}
                | ({} if last else {"more": True})
                for b, last in self._pending
            ],
        }
        head = json.dumps(index).encode()
        parts = [struct.pack("<I", len(head)), head]
        parts += [np.ascontiguousarray(n, dtype=length_dtype).tobytes() for n in lengths]
        parts += [np.ascontiguousarray(v, dtype=value_dtype).tobytes() for v in values]
        parts += [np.ascontiguousarray(b.weights, dtype="<f4").tobytes() for b in batches if b.weights is not None]
        raw = b"".join(parts)
        payload = self._compressor.compress(raw)
        self._file.write(CHUNK.pack(CHUNK_MAGIC, len(batches), len(payload), len(raw), zlib.crc32(payload)))
        self._file.write(payload)
        self._pending = []
        self._pending_values = 0

    def close(self) -> None:
        """Flush, write the end marker and move the file into place."""
        if self._file.closed:
            return
        if self._inside_batch:
            self.abort()
            raise ValueError(f"{self.path}: the trace ends inside a batch (its last part is missing); nothing written")
        self._flush()
        self._file.write(CHUNK.pack(END_MAGIC, self.batches, 0, self.values, 0))
        self._file.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        """Discard a partly written file."""
        if not self._file.closed:
            self._file.close()
        if os.path.exists(self._partial):
            os.remove(self._partial)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write(path, batches: Iterable[SparseBatch], metadata: dict | None = None, **options) -> dict:
    """Write ``batches`` (SparseBatch or BatchPart items) to a ``.tstrace`` file.

    Returns ``{"batches": n, "values": n}``.
    """
    with NativeTraceWriter(path, metadata=metadata, **options) as writer:
        for part in as_parts(batches):
            writer.write_part(part.batch, part.last)
    return {"batches": writer.batches, "values": writer.values}


class NativeTraceReader:
    """Stream the batches of a ``.tstrace`` file, one chunk in memory at a time.

    Parameters
    ----------
    path : str or PathLike
        The trace file.

    Attributes
    ----------
    metadata : dict
        The metadata stored by the writer.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            self.metadata, self._data_start = self._read_header(f)

    def _fail(self, offset: int, problem: str):
        raise TraceFormatError(self.path, offset, problem)

    def _read_exact(self, f, n: int, what: str, size: int, at: int | None = None) -> bytes:
        """``n`` bytes at the file's position; every length is checked against the ``size`` bytes of the file
        first.  Errors name offset ``at`` (the record holding the length), else the position."""
        offset = f.tell()
        if n > size - offset:
            self._fail(offset if at is None else at,
                       f"truncated or corrupt: {what} needs {n} bytes, only {size - offset} remain")
        return f.read(n)

    def _read_header(self, f):
        size = os.fstat(f.fileno()).st_size
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            self._fail(0, f"not a tierstore trace: magic {magic!r}, expected {MAGIC!r}")
        head = self._read_exact(f, 8, "file header", size)
        version, meta_len = struct.unpack("<II", head)
        if version > VERSION:
            self._fail(len(MAGIC), f"format version {version} is newer than this reader's {VERSION}")
        meta = self._read_exact(f, meta_len, "header metadata", size, at=len(MAGIC))
        (crc,) = struct.unpack("<I", self._read_exact(f, 4, "header checksum", size))
        if zlib.crc32(head + meta) != crc:
            self._fail(len(MAGIC), "header checksum mismatch (corrupt header)")
        try:
            metadata = json.loads(meta)
        except ValueError as err:
            self._fail(len(MAGIC) + 8, f"header metadata is not JSON: {err}")
        return metadata, f.tell()

    def __iter__(self) -> Iterator[SparseBatch]:
        decompressor = zstandard.ZstdDecompressor()
        batches_seen = values_seen = 0
        parts: list[SparseBatch] = []
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(self._data_start)
            while True:
                offset = f.tell()
                if offset == size:
                    self._fail(offset, "file ends without the end-of-trace marker (truncated)")
                head = self._read_exact(f, CHUNK.size, "chunk header", size)
                magic, count, payload_len, raw_len, crc = CHUNK.unpack(head)
                if magic == END_MAGIC:
                    if parts:
                        self._fail(offset, "the trace ends inside a batch (its last part is missing)")
                    self._check_end(offset, count, payload_len, raw_len, crc, batches_seen, values_seen, size)
                    return
                if magic != CHUNK_MAGIC:
                    self._fail(offset, f"bad chunk magic {magic!r} (corrupt file)")
                payload = self._read_exact(f, payload_len, "the chunk payload", size, at=offset)
                if zlib.crc32(payload) != crc:
                    self._fail(offset, "chunk checksum mismatch (corrupt data)")
                if zstandard.frame_content_size(payload) != raw_len:
                    self._fail(offset, f"chunk header says {raw_len} bytes uncompressed, its frame says "
                                       f"{zstandard.frame_content_size(payload)}")
                try:
                    raw = decompressor.decompress(payload, max_output_size=raw_len)
                except zstandard.ZstdError as err:
                    self._fail(offset, f"chunk does not decompress: {err}")
                if len(raw) != raw_len:
                    self._fail(offset, f"chunk decompressed to {len(raw)} bytes, header says {raw_len}")
                for part, more in self._decode_chunk(raw, offset, count):
                    values_seen += part.values.size
                    parts.append(part)
                    if not more:
                        yield concat_tables(parts)
                        parts = []
                        batches_seen += 1

    def _check_end(self, offset, n_batches, zero, total_values, crc, batches_seen, values_seen, size) -> None:
        if n_batches != batches_seen:
            self._fail(offset, f"end marker counts {n_batches} batches but {batches_seen} were read")
        if total_values != values_seen:
            self._fail(offset, f"end marker counts {total_values} values but {values_seen} were read")
        if zero or crc:
            self._fail(offset, "end marker's reserved fields are not zero (corrupt marker)")
        if offset + CHUNK.size != size:
            self._fail(offset + CHUNK.size, "unexpected data after the end-of-trace marker")

    def _decode_chunk(self, raw: bytes, offset: int, n_entries: int) -> list[tuple[SparseBatch, bool]]:
        """Entries of one (checksummed) chunk as (part, batch goes on), values and lengths in their stored dtypes,
        viewing ``raw``; any inconsistency is a TraceFormatError at the chunk's offset."""
        try:
            (head_len,) = struct.unpack_from("<I", raw)
            if 4 + head_len > len(raw):
                raise ValueError(f"index of {head_len} bytes in a {len(raw)}-byte chunk")
            index = json.loads(raw[4 : 4 + head_len])
            specs = index["batches"]
            if len(specs) != n_entries:
                self._fail(offset, f"chunk index lists {len(specs)} entries, header says {n_entries}")
            dtypes = {"<u4", "<i8"}
            if index["lengths_dtype"] not in dtypes or index["values_dtype"] not in dtypes:
                raise ValueError(f"dtypes {index['lengths_dtype']!r}, {index['values_dtype']!r}")
            length_dtype = np.dtype(index["lengths_dtype"])
            value_dtype = np.dtype(index["values_dtype"])
            counts = [len(s["keys"]) * int(s["b"]) for s in specs]
            sizes = [int(s["n"]) for s in specs]
            n_weights = sum(n for n, s in zip(sizes, specs) if s["w"])
            pos = 4 + head_len
            need = pos + sum(counts) * length_dtype.itemsize + sum(sizes) * value_dtype.itemsize + 4 * n_weights
            if min(counts + sizes, default=0) < 0 or need != len(raw):
                self._fail(offset, "chunk payload size does not match its index")
            lengths = np.frombuffer(raw, dtype=length_dtype, count=sum(counts), offset=pos)
            pos += lengths.nbytes
            values = np.frombuffer(raw, dtype=value_dtype, count=sum(sizes), offset=pos)
            pos += values.nbytes
            weights = np.frombuffer(raw, dtype="<f4", count=n_weights, offset=pos)
            entries = []
            l0 = v0 = w0 = 0
            for spec, count, n in zip(specs, counts, sizes):
                batch_weights = None
                if spec["w"]:
                    batch_weights = weights[w0 : w0 + n].copy()
                    w0 += n
                part = SparseBatch(keys=tuple(spec["keys"]), values=values[v0 : v0 + n],
                                   lengths=lengths[l0 : l0 + count], weights=batch_weights)
                entries.append((part, bool(spec.get("more"))))
                l0 += count
                v0 += n
            return entries
        except TraceFormatError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, struct.error) as err:
            self._fail(offset, f"chunk index is malformed: {type(err).__name__}: {err}")


def read(path) -> NativeTraceReader:
    """Open a ``.tstrace`` file for streaming."""
    return NativeTraceReader(path)
