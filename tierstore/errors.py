"""Errors a store raises about its files and its own state (bad arguments raise ValueError / KeyError)."""

from __future__ import annotations


class CorruptStoreError(RuntimeError):
    """The store's files are damaged: a checksum, a size or LMDB's own structure does not add up.

    The message names the file, and the table and page where one is involved.
    Nothing was returned from the damaged part; ``tierstore check STORE`` lists
    every problem.
    """


class StoreClosedError(ValueError):
    """The store was closed; open it again to use it."""


class IncompatibleStoreError(ValueError):
    """The store was written by a newer format, or does not match what the caller expects."""


class StoreWriteError(OSError):
    """A write failed (the disk or the LMDB map is full, say); nothing of it was committed.

    The message names the cause: a full LMDB map (open with a larger ``map_size``),
    a full disk, or the underlying error.
    """
