"""The GPU tier (optional extra ``tierstore[gpu]``): a device slab of rows at their stored width, a
set-associative index on the device, and numba.cuda kernels for probe, admission and pooling.

Opened by ``tierstore.open(path, gpu_cache_bytes=...)``.  Nothing here imports
``numba.cuda`` until a GPU tier is built (:mod:`tierstore.gpu.runtime`).
"""

from tierstore.gpu.runtime import GpuUnavailableError, unavailable_reason

__all__ = ["GpuUnavailableError", "unavailable_reason"]
