"""Errors raised by trace readers and writers."""

from __future__ import annotations


class TraceFormatError(ValueError):
    """A trace file is corrupt, truncated or not in the expected format.

    The message names the file and the byte offset where the problem was found.

    Parameters
    ----------
    path : str
        The trace file.
    offset : int
        Byte offset in the file where the problem starts.
    problem : str
        What is wrong.
    """

    def __init__(self, path, offset: int, problem: str):
        self.path = str(path)
        self.offset = int(offset)
        self.problem = problem
        super().__init__(f"{self.path}: at byte offset {self.offset}: {problem}")
