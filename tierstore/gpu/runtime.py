"""Whether the GPU tier can run here, and the CUDA module it runs on.

The GPU tier needs numba's CUDA target, an optional extra (``pip install
"tierstore[gpu]"``, which installs ``numba-cuda``), and either an NVIDIA GPU with
its driver or numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set before numba
is imported: kernels then run as Python threads on the CPU, for tests).  Nothing
here imports ``numba.cuda`` until a store asks for a GPU tier.
"""

from __future__ import annotations

import functools
import importlib.util

import numba


class GpuUnavailableError(RuntimeError):
    """A GPU tier was asked for where it cannot run (no numba-cuda, or neither a GPU nor the simulator)."""


def simulated() -> bool:
    """Whether numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1`` when numba was imported)."""
    return bool(numba.config.ENABLE_CUDASIM)


def numba_cuda_installed() -> bool:
    """Whether the ``numba-cuda`` package (the ``gpu`` extra) is installed."""
    return importlib.util.find_spec("numba_cuda") is not None


@functools.cache
def _probe():
    """``(numba.cuda, None)`` when kernels can run here, else ``(None, reason)``."""
    if not numba_cuda_installed():
        return None, ("the GPU tier needs numba-cuda, which is not installed: pip install \"tierstore[gpu]\" "
                      "(numba-cuda==0.30.4)")
    from numba import cuda

    if simulated():
        return cuda, None
    try:
        available = cuda.is_available()
    except Exception as err:  # a broken driver install raises instead of answering
        return None, f"the GPU tier found no usable CUDA driver ({err})"
    if not available:
        return None, ("the GPU tier found no CUDA GPU (numba.cuda.is_available() is False); on a machine without "
                      "one, numba's CUDA simulator runs it for tests: set NUMBA_ENABLE_CUDASIM=1 before numba is "
                      "imported")
    return cuda, None


def unavailable_reason() -> str | None:
    """Why the GPU tier cannot run here, or None when it can."""
    return _probe()[1]


def require_cuda():
    """``numba.cuda``, or :class:`GpuUnavailableError` saying what is missing."""
    cuda, reason = _probe()
    if cuda is None:
        raise GpuUnavailableError(reason)
    return cuda


@functools.cache
def torch_cuda():
    """The ``torch`` module when it has a usable CUDA device (outputs become torch CUDA tensors), else None."""
    if simulated() or importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch if torch.cuda.is_available() else None
