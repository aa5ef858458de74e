"""The store's own records, checksummed: metadata, row -> position chunks and the commit record.

Format 2 (this one) adds checksums to what format 1 stored bare:

- metadata (``__meta__`` key ``store``): ``b"TSM2"``, an 8-byte BLAKE2b digest of
  the JSON, then the JSON (format version, commit counter ``epoch``, per-table
  config, layout, identity and ready flags, data version);
- each row -> position chunk (``pos:<table>:<layout>``): the int64 positions, then
  their 8-byte checksum (:func:`tierstore.pages.checksum_words`);
- the commit record, a small file ``commit`` beside ``data.mdb`` written and
  ``fsync``-ed after every commit that bumps the counter: two 16-byte slots
  (counter, checksum), the counter's parity picks the slot, so a torn write loses
  at most the newer slot.  A store whose counter is below the record's lost a
  commit it had made durable: LMDB rolled back (its meta pages carry no checksum).

Format 1 stores (no checksums, no commit record) still open; opening one writable
upgrades it to format 2 in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

from tierstore.config import TableConfig
from tierstore.errors import CorruptStoreError, IncompatibleStoreError
from tierstore.pages import checksum_words

FORMAT_VERSION = 2
META_MAGIC = b"TSM2"
COMMIT_FILE = "commit"
_SLOT = struct.Struct("<QQ")
_ENTRY_FIELDS = {"config": dict, "layout": int, "identity": bool, "ready": bool, "data_version": int}


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


def encode_meta(meta: dict) -> bytes:
    """The stored form of ``meta``: magic, digest, JSON."""
    body = json.dumps(meta).encode()
    return META_MAGIC + _digest(body) + body


def decode_meta(raw: bytes, where) -> dict:
    """Check and parse stored metadata (format 2, or format 1's bare JSON); CorruptStoreError if damaged.

    A store of a newer format raises :class:`IncompatibleStoreError`.
    """
    raw = bytes(raw)
    if raw.startswith(META_MAGIC):
        body = raw[len(META_MAGIC) + 8 :]
        if _digest(body) != raw[len(META_MAGIC) : len(META_MAGIC) + 8]:
            raise CorruptStoreError(f"{where}: the store's metadata fails its checksum (damaged)")
        meta = _parse(body, where)
        if meta.get("format_version") == 1:
            raise CorruptStoreError(f"{where}: checksummed metadata claims format 1")
    else:
        meta = _parse(raw, where)
        if isinstance(meta.get("format_version"), int) and meta["format_version"] > 1:
            raise CorruptStoreError(f"{where}: the store's metadata of format {meta['format_version']} carries no "
                                    f"checksum (damaged)")
    version = meta.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise IncompatibleStoreError(f"{where}: store format version {version} is newer than this tierstore reads "
                                     f"(format {FORMAT_VERSION}); upgrade tierstore")
    _check_shape(meta, where)
    return meta


def _parse(body: bytes, where) -> dict:
    try:
        meta = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptStoreError(f"{where}: the store's metadata is not JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CorruptStoreError(f"{where}: the store's metadata is not a JSON object")
    return meta


def _check_shape(meta: dict, where) -> None:
    """Every field a reader relies on is there with the right type (format 1 had no checksum to vouch for it)."""
    version = meta.get("format_version")
    tables = meta.get("tables")
    problem = None
    if type(version) is not int or version < 1:
        problem = f"format_version {version!r}"
    elif version >= 2 and type(meta.get("epoch")) is not int:
        problem = "no commit counter"
    elif not isinstance(tables, list) or not tables:
        problem = "no tables"
    else:
        for entry in tables:
            if not isinstance(entry, dict) or any(type(entry.get(k)) is not t for k, t in _ENTRY_FIELDS.items()):
                problem = f"table entry {entry!r}"
                break
            try:
                config = TableConfig.from_dict(entry["config"])
            except (TypeError, ValueError) as err:
                problem = f"table config {entry['config']!r} ({err})"
                break
            if any(type(getattr(config, field)) is not int for field in ("num_rows", "dim", "rows_per_page")):
                problem = f"table config {entry['config']!r}"
                break
        names = [e["config"]["name"] for e in tables if isinstance(e, dict) and isinstance(e.get("config"), dict)]
        if problem is None and len(set(names)) != len(names):
            problem = f"table names repeat: {names}"
    if problem is not None:
        raise CorruptStoreError(f"{where}: the store's metadata is malformed: {problem}")


def encode_positions(positions: np.ndarray) -> bytes:
    """A stored row -> position chunk: the int64 positions and their checksum."""
    words = np.ascontiguousarray(positions, dtype=np.int64)
    return words.tobytes() + np.uint64(checksum_words(words.view(np.uint64))).tobytes()


def decode_positions(items: list, config: TableConfig, checksummed: bool, where) -> np.ndarray:
    """The row -> position array from its stored ``(key, chunk)`` items (in key order), checked.

    The keys must be the chunk numbers 0, 1, ... (8-byte big-endian); each chunk's
    checksum (format 2), the total length and every position's range are checked;
    CorruptStoreError names the table and chunk otherwise.
    """
    parts = []
    for k, (key, raw) in enumerate(items):
        if bytes(key) != k.to_bytes(8, "big"):
            raise CorruptStoreError(f"{where}: table {config.name!r}: position chunk {k} is missing")
        raw = np.frombuffer(raw, dtype=np.uint8)
        if raw.size % 8 or (checksummed and raw.size < 8):
            raise CorruptStoreError(f"{where}: table {config.name!r}: position chunk {k} has {raw.size} bytes")
        words = raw[: raw.size - 8].view(np.uint64) if checksummed else raw.view(np.uint64)
        if checksummed and checksum_words(words) != raw[raw.size - 8 :].view(np.uint64)[0]:
            raise CorruptStoreError(f"{where}: table {config.name!r}: position chunk {k} fails its checksum (damaged)")
        parts.append(words.view(np.int64))
    positions = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if positions.size != config.num_rows:
        raise CorruptStoreError(f"{where}: table {config.name!r}: the position array has {positions.size} entries, "
                                f"the table {config.num_rows} rows")
    if positions.size and (positions.min() < 0 or positions.max() >= config.num_rows):
        raise CorruptStoreError(f"{where}: table {config.name!r}: a position is out of range")
    return positions


def read_commit(path) -> int | None:
    """The highest commit counter the commit record holds, or None if there is none (or it is unreadable)."""
    try:
        raw = (Path(path) / COMMIT_FILE).read_bytes()
    except FileNotFoundError:
        return None
    found = []
    for slot in range(2):
        chunk = raw[slot * _SLOT.size : (slot + 1) * _SLOT.size]
        if len(chunk) == _SLOT.size:
            epoch, check = _SLOT.unpack(chunk)
            if check == _slot_check(epoch) and epoch & 1 == slot:
                found.append(epoch)
    return max(found, default=None)


def write_commit(path, epoch: int) -> None:
    """Record ``epoch`` as committed: write its slot of the commit record and ``fsync`` it."""
    fd = os.open(Path(path) / COMMIT_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, _SLOT.pack(epoch, _slot_check(epoch)), (epoch & 1) * _SLOT.size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _slot_check(epoch: int) -> int:
    return int.from_bytes(_digest(struct.pack("<Q", epoch)), "little")
