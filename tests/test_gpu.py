"""The GPU tier from the CPU suite: its tests run in their own processes, so the CUDA simulator (and numba's
CUDA target itself) never enters this one.

- ``tests/gpu`` runs in a subprocess under ``NUMBA_ENABLE_CUDASIM=1``;
- every kernel is compiled to PTX for a Hopper GPU (no GPU needed) where numba-cuda finds its compiler;
- without a GPU and without the simulator, ``gpu_cache_bytes`` is a clear error and the store opens as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tierstore
from tierstore import TableConfig
from tierstore.gpu import runtime

ROOT = Path(__file__).resolve().parents[1]
needs_numba_cuda = pytest.mark.skipif(not runtime.numba_cuda_installed(),
                                      reason='numba-cuda is not installed (pip install "tierstore[gpu]")')


def _run(args, timeout, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "TIERSTORE_GPU_TESTS")}
    environment.update(env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=timeout)


@needs_numba_cuda
def test_gpu_tier_tests_pass_on_the_cuda_simulator():
    done = _run(["-m", "pytest", "tests/gpu", "-q", "-p", "no:cacheprovider"], 900,
                NUMBA_ENABLE_CUDASIM="1", TIERSTORE_GPU_TESTS="1")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


@needs_numba_cuda
def test_every_kernel_compiles_for_a_gpu():
    """PTX for compute capability 9.0 (H100/H200) of every kernel at the types the tier launches them with."""
    done = _run(["-c", textwrap.dedent("""
        import sys
        from tierstore.gpu import kernels
        try:
            ptx = kernels.compile_all((9, 0))
        except Exception as err:
            if type(err).__name__ in ("DynamicLibNotFoundError", "NvvmSupportError", "NvrtcSupportError"):
                print("NO-COMPILER", err)
                sys.exit(3)
            raise
        assert all(".target sm_90" in text for text in ptx.values())
        print(len(ptx), "kernels")
    """)], 600)
    if done.returncode == 3:
        pytest.skip(f"numba-cuda finds no CUDA compiler here (NVVM/NVRTC): {done.stdout.strip()[:300]}")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]


@needs_numba_cuda
def test_without_gpu_or_simulator_gpu_cache_bytes_is_a_clear_error(tmp_path):
    store = tierstore.create(tmp_path / "s", [TableConfig("t", 10, 4)])
    store.load("t", np.ones((10, 4), np.float32), progress=False)
    store.close()
    done = _run(["-c", textwrap.dedent(f"""
        import numpy as np, tierstore
        from numba import cuda
        if cuda.is_available():
            print("HAS-GPU")
            raise SystemExit(0)
        try:
            tierstore.open({str(tmp_path / "s")!r}, gpu_cache_bytes=1 << 20)
        except tierstore.gpu.GpuUnavailableError as err:
            print("ERROR", err)
        with tierstore.open({str(tmp_path / "s")!r}, dram_cache_bytes=1 << 20) as store:
            print("POOLED", store.lookup("t", np.arange(4), np.array([0, 2])).sum())
    """)], 300)
    assert done.returncode == 0, done.stderr[-3000:]
    if "HAS-GPU" in done.stdout:
        pytest.skip("this machine has a CUDA GPU")
    assert "ERROR the GPU tier found no CUDA GPU" in done.stdout and "NUMBA_ENABLE_CUDASIM=1" in done.stdout
    assert "POOLED 16.0" in done.stdout


def test_without_numba_cuda_gpu_cache_bytes_is_a_clear_error(tmp_path, monkeypatch):
    store = tierstore.create(tmp_path / "s", [TableConfig("t", 10, 4)])
    store.load("t", np.ones((10, 4), np.float32), progress=False)
    store.close()
    monkeypatch.setattr(runtime, "numba_cuda_installed", lambda: False)
    runtime._probe.cache_clear()
    try:
        with pytest.raises(runtime.GpuUnavailableError, match=r'pip install "tierstore\[gpu\]"'):
            tierstore.open(tmp_path / "s", gpu_cache_bytes=1 << 20)
    finally:
        runtime._probe.cache_clear()
    with tierstore.open(tmp_path / "s") as store:
        assert not store.serves_cuda
        assert "gpu" not in store.stats()
        with pytest.raises(ValueError, match="gpu_cache_bytes"):
            store.lookup("t", np.arange(2), np.array([0]), device="cuda")
        np.testing.assert_array_equal(store.lookup("t", np.arange(2), np.array([0]), device="cpu"), 2.0)


def test_the_suite_process_never_meets_the_simulator():
    """The GPU tests above ran elsewhere: this process has not imported numba's CUDA target or its simulator,
    so every CPU kernel of the suite compiles and runs as it would without the GPU extra."""
    import numba

    assert "numba.cuda" not in sys.modules
    assert not numba.config.ENABLE_CUDASIM and "NUMBA_ENABLE_CUDASIM" not in os.environ
