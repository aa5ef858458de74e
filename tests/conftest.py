"""Test-wide settings: Numba checks every array index, so an out-of-bounds access raises instead of corrupting memory."""

import os

os.environ.setdefault("NUMBA_BOUNDSCHECK", "1")
