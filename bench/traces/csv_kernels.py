"""Numba kernels that format and parse ``table,row`` CSV lines without per-line Python."""

from __future__ import annotations

import numba
import numpy as np

FNV_OFFSET = np.uint64(14695981039346656037)
FNV_PRIME = np.uint64(1099511628211)


@numba.njit(cache=True)
def format_lines(table_ids, rows, name_bytes, name_offsets, out):
    """Write ``name,row\\n`` for each request into ``out``; return the bytes used.

    ``out`` must hold at least ``sum(len(name) + 22)`` bytes.
    """
    pos = 0
    digits = np.empty(20, dtype=np.uint8)
    for i in range(rows.size):
        t = table_ids[i]
        for j in range(name_offsets[t], name_offsets[t + 1]):
            out[pos] = name_bytes[j]
            pos += 1
        out[pos] = 44  # ','
        pos += 1
        v = rows[i]
        n = 0
        while True:
            digits[n] = 48 + v % 10
            v //= 10
            n += 1
            if v == 0:
                break
        for j in range(n - 1, -1, -1):
            out[pos] = digits[j]
            pos += 1
        out[pos] = 10  # '\n'
        pos += 1
    return pos


@numba.njit(cache=True)
def parse_lines(buf, name_hash, name_start, name_len, rows):
    """Parse complete ``name,row`` lines of ``buf`` (which must end with a newline).

    Returns ``(lines, bad)``: the number of lines parsed and the byte position of the
    first malformed line (-1 when all are well-formed).  Table names are identified by
    their 64-bit FNV-1a hash.
    """
    pos = 0
    line = 0
    n = buf.size
    while pos < n:
        start = pos
        h = FNV_OFFSET
        while pos < n and buf[pos] != 44 and buf[pos] != 10:
            h = (h ^ np.uint64(buf[pos])) * FNV_PRIME
            pos += 1
        if pos >= n or buf[pos] != 44 or pos == start:
            return line, start
        name_hash[line] = h
        name_start[line] = start
        name_len[line] = pos - start
        pos += 1
        v = 0
        digits = 0
        while pos < n and buf[pos] != 10 and buf[pos] != 13:
            c = buf[pos]
            if c < 48 or c > 57 or digits >= 18:
                return line, start
            v = v * 10 + (c - 48)
            digits += 1
            pos += 1
        if digits == 0:
            return line, start
        if pos < n and buf[pos] == 13:
            pos += 1
        if pos >= n or buf[pos] != 10:
            return line, start
        rows[line] = v
        pos += 1
        line += 1
    return line, -1
