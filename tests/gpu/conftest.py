"""The GPU tier's tests: run in a process of their own, never in the CPU suite's.

``tests/test_gpu.py`` runs this folder in a subprocess under numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba is imported), so the
simulator never touches the suite's process or its CPU kernels; on a machine with
a GPU, ``bench/gpu_check.sh`` runs it on the device.  Either sets
``TIERSTORE_GPU_TESTS=1``; without it (the plain ``pytest`` run of the whole
suite) nothing here is collected.
"""

import os
import sys
from pathlib import Path

import pytest

if not os.environ.get("TIERSTORE_GPU_TESTS"):
    collect_ignore_glob = ["test_*.py"]
else:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tierstore.gpu.runtime import unavailable_reason

    _REASON = unavailable_reason()

    def pytest_collection_modifyitems(config, items):
        if _REASON is not None:
            for item in items:
                item.add_marker(pytest.mark.skip(reason=_REASON))

    def pytest_report_header(config):
        from tierstore.gpu.runtime import simulated

        where = "numba's CUDA simulator" if simulated() else "a CUDA GPU"
        return f"tierstore GPU tests on {where}" if _REASON is None else f"tierstore GPU tests skipped: {_REASON}"
