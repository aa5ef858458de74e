"""Host-to-device transfers of a batch: arrays packed into pinned host memory, sent in one copy.

Pinned (page-locked) host memory lets the driver copy straight over PCIe, without
its own staging copy.  A batch's arrays (staged rows, admission lists, bag ids,
offsets, weights) are laid out at aligned offsets of one pinned buffer, sent with
one host-to-device copy, and read on the device through views of one device
buffer.  Both buffers grow (doubling) and are reused batch after batch.
"""

from __future__ import annotations

import numpy as np

ALIGNMENT = 256


class Arena:
    """One pinned host buffer and one device buffer of the same size, reused for every batch.

    Use: :meth:`reserve` every array's bytes, :meth:`ready`, fill :meth:`host` views,
    :meth:`send`, then read :meth:`device` views in kernels.
    """

    def __init__(self, cuda):
        self._cuda = cuda
        self._host = None
        self._device = None
        self._used = 0
        self.bytes_sent = 0
        self.transfers = 0

    def reserve(self, shape, dtype) -> tuple:
        """Room for an array of ``shape`` and ``dtype``; returns its handle."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        offset = self._used
        self._used += -(-nbytes // ALIGNMENT) * ALIGNMENT
        return offset, tuple(int(n) for n in shape), dtype, nbytes

    def ready(self) -> None:
        """Grow both buffers to hold what was reserved (their contents are not kept)."""
        size = 0 if self._host is None else self._host.size
        if self._used > size:
            size = max(self._used, 2 * size, 1 << 16)
            self._host = self._cuda.pinned_array(size, dtype=np.uint8)
            self._device = self._cuda.device_array(size, dtype=np.uint8)

    def host(self, handle) -> np.ndarray:
        """The pinned host array of ``handle``, to fill before :meth:`send`."""
        offset, shape, dtype, nbytes = handle
        return self._host[offset : offset + nbytes].view(dtype).reshape(shape)

    def device(self, handle):
        """The device array of ``handle`` (valid after :meth:`send`)."""
        offset, shape, dtype, nbytes = handle
        return self._device[offset : offset + nbytes].view(dtype).reshape(shape)

    def send(self) -> None:
        """Copy everything reserved to the device in one transfer, then start over for the next batch."""
        if self._used:
            self._device[: self._used].copy_to_device(self._host[: self._used])
            self.bytes_sent += self._used
            self.transfers += 1
        self._used = 0
