"""Test-wide Numba settings, applied before anything compiles.

Every array index is checked, so an out-of-bounds access raises instead of
corrupting memory.  Numba's disk cache does not key on that setting, so the
checked builds go to their own cache folder and never reach benchmarks or users.
"""

import os
from pathlib import Path

os.environ.setdefault("NUMBA_BOUNDSCHECK", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba-test-cache"))
