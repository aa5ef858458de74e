"""SSD page format: encoding rows into LMDB values and decoding them back.

A page is one LMDB value holding ``n_rows`` consecutive layout positions of one table::

    offset  size  field
    0       4     magic  b"TSPG"
    4       1     page format version (PAGE_VERSION)
    5       1     codec  (0 raw, 1 zstd)
    6       1     dtype  (0 float32, 1 float16, 2 int8)
    7       1     reserved, 0
    8       4     n_rows          (uint32, little-endian)
    12      4     payload_bytes   (uint32, stored bytes after the header, before padding)
    16      8     checksum        (uint64 over the padded stored payload)
    24      ...   payload, zero-padded to a multiple of 8 bytes

Raw payloads: float32 / float16 rows back to back; int8 pages hold ``n_rows * dim``
quantized bytes (padded to 8), then ``n_rows`` float32 scales, then ``n_rows`` float32
biases (row = q * scale + bias).  A zstd page stores the raw payload compressed.
Every offset is 8-aligned, so a batch of pages concatenated in one buffer can be read
through float32 / float16 views without copies.

Encoding, checksums, verification and row decoding are Numba kernels; Python runs per
batch of pages (and per page only to call zstd).
"""

from __future__ import annotations

import numba
import numpy as np
import zstandard

from tierstore.errors import CorruptStoreError
from tierstore.config import record_bytes
from tierstore.kernels import _prefetch_item, _store_row

MAGIC = b"TSPG"
MAGIC_U32 = int.from_bytes(MAGIC, "little")
PAGE_VERSION = 1
HEADER_BYTES = 24
CODECS = {None: 0, "zstd": 1}
DTYPE_CODES = {"float32": 0, "float16": 1, "int8": 2}
#: A value of at most this many bytes fits one LMDB overflow page (4096 B page minus its header).
LMDB_VALUE_LIMIT = 4080

_CHECK_OK, _CHECK_MAGIC, _CHECK_VERSION, _CHECK_SUM, _CHECK_SHAPE, _CHECK_PAYLOAD = 0, 1, 2, 3, 4, 5
_CHECK_MESSAGES = {
    _CHECK_MAGIC: "bad magic (not a tierstore page)",
    _CHECK_VERSION: "page format version newer than this tierstore reads",
    _CHECK_SUM: "checksum mismatch (corrupt page)",
    _CHECK_SHAPE: "header does not match the table (wrong dtype, codec, row count or length)",
    _CHECK_PAYLOAD: "payload size does not match the table's row count, width and dtype",
}


class CorruptPageError(CorruptStoreError):
    """A page failed verification; the message names the table and page."""


def pad8(n: int) -> int:
    """Round ``n`` up to a multiple of 8."""
    return (n + 7) & ~7


def raw_payload_bytes(dtype: str, dim: int, n_rows: int) -> int:
    """Unpadded raw payload size of a page holding ``n_rows`` rows."""
    if dtype == "float32":
        return n_rows * dim * 4
    if dtype == "float16":
        return n_rows * dim * 2
    return pad8(n_rows * dim) + 8 * n_rows


@numba.njit(nogil=True, cache=True)
def _raw_payload_bytes(dtype_code, dim, n_rows):
    """:func:`raw_payload_bytes` by dtype code, for kernels."""
    if dtype_code == 0:
        return n_rows * dim * 4
    if dtype_code == 1:
        return n_rows * dim * 2
    return ((n_rows * dim + 7) & ~7) + 8 * n_rows


def default_rows_per_page(dtype: str, dim: int) -> int:
    """Most rows whose raw page stays within one LMDB overflow page (at least 1)."""
    rows = 1
    while HEADER_BYTES + pad8(raw_payload_bytes(dtype, dim, rows + 1)) <= LMDB_VALUE_LIMIT:
        rows += 1
    return rows


@numba.njit(nogil=True, cache=True)
def checksum_words(words):
    """64-bit checksum of a uint64 array: four independent multiply-xorshift lanes."""
    k = np.uint64(0x9E3779B97F4A7C15)
    s32 = np.uint64(32)
    h0 = np.uint64(0x243F6A8885A308D3)
    h1 = np.uint64(0x13198A2E03707344)
    h2 = np.uint64(0xA4093822299F31D0)
    h3 = np.uint64(0x082EFA98EC4E6C89)
    n = words.size
    i = 0
    while i + 4 <= n:
        h0 = (h0 ^ words[i]) * k
        h1 = (h1 ^ words[i + 1]) * k
        h2 = (h2 ^ words[i + 2]) * k
        h3 = (h3 ^ words[i + 3]) * k
        h0 ^= h0 >> s32
        h1 ^= h1 >> s32
        h2 ^= h2 >> s32
        h3 ^= h3 >> s32
        i += 4
    while i < n:
        h0 = (h0 ^ words[i]) * k
        h0 ^= h0 >> s32
        i += 1
    h = h0 ^ (h1 * np.uint64(3)) ^ (h2 * np.uint64(5)) ^ (h3 * np.uint64(7)) ^ np.uint64(n)
    return (h ^ (h >> s32)) * k


@numba.njit(nogil=True, cache=True)
def _write_header(buf, start, codec, dtype_code, n_rows, payload_bytes):
    buf[start] = 84
    buf[start + 1] = 83
    buf[start + 2] = 80
    buf[start + 3] = 71
    buf[start + 4] = PAGE_VERSION
    buf[start + 5] = codec
    buf[start + 6] = dtype_code
    buf[start + 7] = 0
    buf[start + 8 : start + 12] = np.array([n_rows], np.uint32).view(np.uint8)
    buf[start + 12 : start + 16] = np.array([payload_bytes], np.uint32).view(np.uint8)
    stop = start + HEADER_BYTES + ((payload_bytes + 7) & ~7)
    words = buf[start + HEADER_BYTES : stop].view(np.uint64)
    buf[start + 16 : start + 24] = np.array([checksum_words(words)], np.uint64).view(np.uint8)


@numba.njit(nogil=True, cache=True, parallel=True)
def _quantize(rows, records, levels):
    """Row-wise quantization to codes ``0 .. levels``: 255 (int8, a byte a code) or 15 (int4, two codes
    a byte, low nibble first); the codes, then float32 scale and bias, fill ``records``."""
    n, dim = rows.shape
    codes = records.shape[1] - 8
    scales = np.empty(n, dtype=np.float32)
    biases = np.empty(n, dtype=np.float32)
    for r in numba.prange(n):
        row = rows[r]
        lo = row.min()
        scale = (row.max() - lo) / np.float32(levels)
        inv = np.float32(0.0) if scale == 0 else np.float32(1.0) / scale
        rec = records[r]
        rec[:codes] = 0
        for j in range(dim):
            q = np.uint8(min(np.float32(levels), max(0.0, np.floor((row[j] - lo) * inv + 0.5))))
            if levels == 255:
                rec[j] = q
            else:
                rec[j >> 1] |= q << ((j & 1) << 2)
        scales[r] = scale
        biases[r] = lo
    records[:, codes : codes + 4] = scales.view(np.uint8).reshape(n, 4)
    records[:, codes + 4 : codes + 8] = biases.view(np.uint8).reshape(n, 4)


def to_records(rows: np.ndarray, dtype: str) -> np.ndarray:
    """Stored form of float rows ``[n, dim]``: uint8 records ``[n, record_bytes(dtype, dim)]`` (int8 rows
    quantized here; also int4, a record format of :mod:`tierstore.pool_records`)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if dtype == "float32":
        return rows.view(np.uint8)
    if dtype == "float16":
        return rows.astype(np.float16).view(np.uint8)
    records = np.empty((rows.shape[0], record_bytes(dtype, rows.shape[1])), dtype=np.uint8)
    _quantize(rows, records, 15 if dtype == "int4" else 255)
    return records


@numba.njit(nogil=True, cache=True, parallel=True)
def _encode_raw_pages(records, dtype_code, dim, rows_per_page, buf, page_starts):
    """Lay row records out as raw pages at ``page_starts`` of ``buf`` (int8: codes, then scales, then biases)."""
    n, width = records.shape
    for p in numba.prange(page_starts.size - 1):
        first = p * rows_per_page
        count = min(rows_per_page, n - first)
        start = page_starts[p]
        body = buf[start + HEADER_BYTES : page_starts[p + 1]]
        if dtype_code != 2:
            for r in range(count):
                body[r * width : (r + 1) * width] = records[first + r]
            payload = count * width
        else:
            qbytes = (count * dim + 7) & ~7
            for r in range(count):
                rec = records[first + r]
                body[r * dim : (r + 1) * dim] = rec[:dim]
                body[qbytes + 4 * r : qbytes + 4 * r + 4] = rec[dim : dim + 4]
                body[qbytes + 4 * (count + r) : qbytes + 4 * (count + r) + 4] = rec[dim + 4 : dim + 8]
            payload = qbytes + 8 * count
        body[payload:] = 0
        _write_header(buf, start, 0, dtype_code, count, payload)


def encode_pages(records: np.ndarray, dtype: str, dim: int, rows_per_page: int, compression: str | None):
    """Encode row records (see :func:`to_records`) into pages.

    Parameters
    ----------
    records : ndarray, uint8 [n, TableConfig.row_bytes]
        Rows in layout order; page ``i`` holds rows ``i*rows_per_page ...``.
    dtype, dim, rows_per_page, compression
        As in :class:`tierstore.TableConfig`.

    Returns
    -------
    buf : ndarray of uint8
        All pages back to back.
    page_starts : ndarray of int64
        Page ``i`` is ``buf[page_starts[i]:page_starts[i+1]]``.
    """
    records = np.ascontiguousarray(records, dtype=np.uint8)
    n = records.shape[0]
    n_pages = -(-n // rows_per_page)
    last = n - (n_pages - 1) * rows_per_page
    full = HEADER_BYTES + pad8(raw_payload_bytes(dtype, dim, rows_per_page))
    page_sizes = np.full(n_pages, full, dtype=np.int64)
    if n_pages:
        page_sizes[-1] = HEADER_BYTES + pad8(raw_payload_bytes(dtype, dim, last))
    page_starts = np.zeros(n_pages + 1, dtype=np.int64)
    np.cumsum(page_sizes, out=page_starts[1:])
    buf = np.empty(int(page_starts[-1]), dtype=np.uint8)
    _encode_raw_pages(records, DTYPE_CODES[dtype], dim, rows_per_page, buf, page_starts)
    if compression == "zstd":
        return _compress_pages(buf, page_starts)
    return buf, page_starts


def _compress_pages(raw: np.ndarray, page_starts: np.ndarray):
    """Re-encode raw pages with zstd payloads (one C call compresses every page, threaded)."""
    n_pages = page_starts.size - 1
    headers = raw[page_starts[:-1, None] + np.arange(HEADER_BYTES)]
    payload_bytes = headers[:, 12:16].copy().view(np.uint32).ravel().astype(np.int64)
    frames = zstandard.BufferWithSegmentsCollection(
        zstandard.BufferWithSegments(
            raw.tobytes(),
            np.stack([page_starts[:-1] + HEADER_BYTES, payload_bytes], axis=1).astype(np.uint64).tobytes(),
        )
    )
    compressed = zstandard.ZstdCompressor(level=3).multi_compress_to_buffer(frames, threads=-1)
    sizes = np.array([len(compressed[i]) for i in range(n_pages)], dtype=np.int64)
    page_starts_out = np.zeros(n_pages + 1, dtype=np.int64)
    np.cumsum(HEADER_BYTES + ((sizes + 7) & ~7), out=page_starts_out[1:])
    out = np.zeros(int(page_starts_out[-1]), dtype=np.uint8)
    for i in range(n_pages):
        start = page_starts_out[i] + HEADER_BYTES
        out[start : start + sizes[i]] = np.frombuffer(compressed[i].tobytes(), np.uint8)
    _seal_pages(out, page_starts_out, headers, sizes)
    return out, page_starts_out


@numba.njit(nogil=True, cache=True)
def _seal_pages(buf, page_starts, raw_headers, payload_bytes):
    for p in range(page_starts.size - 1):
        hdr = raw_headers[p]
        n_rows = hdr[8:12].copy().view(np.uint32)[0]
        _write_header(buf, page_starts[p], 1, hdr[6], n_rows, payload_bytes[p])


@numba.njit(nogil=True, cache=True, parallel=True)
def _verify_pages(buf, starts, ends, codec, dtype_code, dim, expected_rows, status):
    """Check magic, version, header fields, payload size (raw pages) and checksum of every page;
    write a status code each."""
    for p in numba.prange(starts.size):
        start = starts[p]
        stop = ends[p]
        if stop - start < HEADER_BYTES:
            status[p] = _CHECK_SHAPE
            continue
        hdr = buf[start : start + HEADER_BYTES]
        if hdr[0:4].copy().view(np.uint32)[0] != MAGIC_U32:
            status[p] = _CHECK_MAGIC
            continue
        if hdr[4] != PAGE_VERSION:
            status[p] = _CHECK_VERSION if hdr[4] > PAGE_VERSION else _CHECK_SHAPE
            continue
        n_rows = hdr[8:12].copy().view(np.uint32)[0]
        payload = hdr[12:16].copy().view(np.uint32)[0]
        if (
            hdr[5] != codec
            or hdr[6] != dtype_code
            or hdr[7] != 0
            or n_rows != expected_rows[p]
            or HEADER_BYTES + ((payload + 7) & ~7) != stop - start
        ):
            status[p] = _CHECK_SHAPE
            continue
        if codec == 0 and payload != _raw_payload_bytes(dtype_code, dim, n_rows):
            status[p] = _CHECK_PAYLOAD
            continue
        words = buf[start + HEADER_BYTES : stop].view(np.uint64)
        if checksum_words(words) != hdr[16:24].copy().view(np.uint64)[0]:
            status[p] = _CHECK_SUM
            continue
        status[p] = _CHECK_OK


def page_status(buf, starts, ends, table, expected_rows) -> np.ndarray:
    """Verification status of each page ``buf[starts[i]:ends[i]]`` of ``table`` (0: good; see :func:`status_message`)."""
    status = np.empty(starts.size, dtype=np.uint8)
    _verify_pages(buf, starts, ends, CODECS[table.compression], DTYPE_CODES[table.dtype], table.dim,
                  expected_rows.astype(np.uint32), status)
    return status


def status_message(code: int) -> str:
    """What a non-zero :func:`page_status` code means."""
    return _CHECK_MESSAGES[int(code)]


def verify_pages(buf, starts, ends, table, page_ids, expected_rows) -> None:
    """Raise :class:`CorruptPageError` naming the table and page if any page ``buf[starts[i]:ends[i]]`` is bad."""
    status = page_status(buf, starts, ends, table, expected_rows)
    bad = np.flatnonzero(status)
    if bad.size:
        first = bad[0]
        raise CorruptPageError(
            f"table {table.name!r}, page {int(page_ids[first])}: {_CHECK_MESSAGES[int(status[first])]}"
            + (f" ({bad.size} bad pages in this read)" if bad.size > 1 else "")
        )


def decompress_pages(buf: np.ndarray, starts: np.ndarray, table, page_ids: np.ndarray, n_rows: np.ndarray):
    """Turn verified zstd pages ``buf[starts[i]:...]`` into raw pages ``(out, out_starts)`` (headers kept).

    Each page's payload must decompress to exactly the size of its ``n_rows`` rows of
    ``table`` (else :class:`CorruptPageError` naming the table and page).
    """
    n_pages = starts.size
    payload = buf[starts[:, None] + np.arange(12, 16)].copy().view(np.uint32).ravel().astype(np.uint64)
    first = int(starts.min(initial=0))
    stop = int((starts + HEADER_BYTES + payload.astype(np.int64)).max(initial=0))
    segments = np.stack([(starts - first).astype(np.uint64) + HEADER_BYTES, payload], axis=1)
    frames = zstandard.BufferWithSegments(buf[first:stop].tobytes(), segments.tobytes())
    try:
        raw = zstandard.ZstdDecompressor().multi_decompress_to_buffer(frames, threads=-1)
    except zstandard.ZstdError as err:
        raise CorruptPageError(f"table {table.name!r}: a zstd page does not decompress ({err})") from None
    sizes = np.array([len(raw[i]) for i in range(n_pages)], dtype=np.int64)
    want = np.array([raw_payload_bytes(table.dtype, table.dim, int(n)) for n in n_rows], dtype=np.int64)
    if np.any(sizes != want):
        bad = int(np.argmax(sizes != want))
        raise CorruptPageError(f"table {table.name!r}, page {int(page_ids[bad])}: {_CHECK_MESSAGES[_CHECK_PAYLOAD]} "
                               f"(decompressed to {int(sizes[bad])} bytes, {int(want[bad])} expected)")
    out_starts = np.zeros(n_pages + 1, dtype=np.int64)
    np.cumsum(HEADER_BYTES + ((sizes + 7) & ~7), out=out_starts[1:])
    out = np.zeros(int(out_starts[-1]), dtype=np.uint8)
    for i in range(n_pages):
        out[out_starts[i] : out_starts[i] + HEADER_BYTES] = buf[starts[i] : starts[i] + HEADER_BYTES]
        out[out_starts[i] + HEADER_BYTES : out_starts[i] + HEADER_BYTES + sizes[i]] = np.frombuffer(raw[i].tobytes(),
                                                                                                    np.uint8)
    return out, out_starts[:-1]


#: float16 bit pattern -> float32 value (numba has no float16 arithmetic on the CPU).
DECODE_PREFETCH_DISTANCE = 8
"""Rows ahead whose records :func:`decode_rows` prefetches: missed rows sit in random pages,
so each is a TLB and cache miss, and only several in flight hide that latency."""
HALF_TO_FLOAT = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def decode_rows(buf, starts, page_rank, slot, dtype_code, dim, out):
    """Decode row ``slot[i]`` of the raw page at ``starts[page_rank[i]]`` into ``out[i]`` as float32."""
    _decode_rows(buf, starts, page_rank, slot, dtype_code, dim, HALF_TO_FLOAT, buf.ctypes.data % 4 == 0, out)


@numba.njit(nogil=True, cache=True, parallel=True)
def _decode_rows(buf, starts, page_rank, slot, dtype_code, dim, half_to_float, buf_aligned, out):
    """float32 records at 4-byte aligned addresses (LMDB overflow pages, ``pread`` copies) are
    copied with one ``memcpy`` each: element-wise stores fill the store buffer and stall on
    each row's cache misses, where a few vector stores per row keep many rows in flight."""
    n = page_rank.size
    record = dim * (4 if dtype_code == 0 else 2 if dtype_code == 1 else 1)
    floats = buf[: buf.size // 4 * 4].view(np.float32)
    for i in numba.prange(n):
        ahead = i + DECODE_PREFETCH_DISTANCE
        if ahead < n:
            first = starts[page_rank[ahead]] + HEADER_BYTES + slot[ahead] * record
            for line in range(first, first + record, 64):
                _prefetch_item(buf, line)
        start = starts[page_rank[i]] + HEADER_BYTES
        s = slot[i]
        if dtype_code == 0:
            first = start + s * record
            if buf_aligned and first % 4 == 0:
                _store_row(out, i, floats[first // 4 : first // 4 + dim])
            else:
                src = buf[first : first + record].view(np.float32)
                for j in range(dim):
                    out[i, j] = src[j]
        elif dtype_code == 1:
            src16 = buf[start + s * dim * 2 : start + (s + 1) * dim * 2].view(np.uint16)
            for j in range(dim):
                out[i, j] = half_to_float[src16[j]]
        else:
            n_rows = buf[start - HEADER_BYTES + 8 : start - HEADER_BYTES + 12].copy().view(np.uint32)[0]
            qbytes = (n_rows * dim + 7) & ~7
            scale = buf[start + qbytes + 4 * s : start + qbytes + 4 * s + 4].copy().view(np.float32)[0]
            bias = buf[start + qbytes + 4 * (n_rows + s) : start + qbytes + 4 * (n_rows + s) + 4].copy().view(
                np.float32
            )[0]
            for j in range(dim):
                out[i, j] = np.float32(buf[start + s * dim + j]) * scale + bias


@numba.njit(nogil=True, cache=True, parallel=True)
def extract_records(buf, starts, page_rank, slot, dtype_code, dim, out):
    """Copy the stored record of row ``slot[i]`` of the raw page at ``starts[page_rank[i]]`` into ``out[i]``."""
    width = out.shape[1]
    for i in numba.prange(page_rank.size):
        start = starts[page_rank[i]] + HEADER_BYTES
        s = slot[i]
        if dtype_code != 2:
            out[i, :] = buf[start + s * width : start + (s + 1) * width]
        else:
            n_rows = buf[start - HEADER_BYTES + 8 : start - HEADER_BYTES + 12].copy().view(np.uint32)[0]
            qbytes = (n_rows * dim + 7) & ~7
            out[i, :dim] = buf[start + s * dim : start + (s + 1) * dim]
            out[i, dim : dim + 4] = buf[start + qbytes + 4 * s : start + qbytes + 4 * s + 4]
            out[i, dim + 4 : dim + 8] = buf[start + qbytes + 4 * (n_rows + s) : start + qbytes + 4 * (n_rows + s) + 4]
