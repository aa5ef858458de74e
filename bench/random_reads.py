"""The device's random-read rate at a queue depth: the anchor of the cold-path benchmarks.

``fio`` (``randread``, 4 KiB, ``O_DIRECT``, libaio at the given ``iodepth``) when it
is installed; else a built-in measurement: ``depth`` threads, each running a nogil
Numba loop of 4 KiB ``pread`` calls on an ``O_DIRECT`` descriptor into a page-aligned
buffer of its own, so ``depth`` reads are in flight with no Python per read.  Both
read random 4 KiB-aligned blocks of the store's ``data.mdb``, bypassing the page cache.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np

from tierstore.lmdb_direct import pread

BLOCK = 4096


@numba.njit(nogil=True)
def _direct_reads(fd, offsets, buf):
    """``pread`` one block at each of ``offsets`` into ``buf``; returns how many came back short."""
    short = 0
    for offset in offsets:
        if pread(fd, buf.ctypes.data, BLOCK, offset) != BLOCK:
            short += 1
    return short


def _builtin(path: Path, depth: int, reads: int, seed: int) -> float:
    blocks = os.path.getsize(path) // BLOCK
    offsets = np.random.default_rng(seed).integers(0, blocks, reads).astype(np.int64) * BLOCK
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buffers = [np.frombuffer(mmap.mmap(-1, BLOCK), dtype=np.uint8) for _ in range(depth)]  # page-aligned
    try:
        _direct_reads(fd, offsets[:1], buffers[0])  # compile outside the timing
        with ThreadPoolExecutor(depth) as pool:
            start = time.perf_counter()
            short = sum(pool.map(_direct_reads, [fd] * depth, np.array_split(offsets, depth), buffers))
            seconds = time.perf_counter() - start
    finally:
        os.close(fd)
    if short:
        raise OSError(f"{short} of {reads} O_DIRECT reads of {path} came back short")
    return reads / seconds


def _fio(fio: str, path: Path, depth: int, reads: int) -> float:
    result = subprocess.run(
        [fio, "--name=anchor", f"--filename={path}", "--readonly", "--rw=randread", f"--bs={BLOCK}", "--direct=1",
         "--ioengine=libaio", f"--iodepth={depth}", f"--io_size={reads * BLOCK}", "--output-format=json"],
        check=True, capture_output=True, text=True)
    return float(json.loads(result.stdout)["jobs"][0]["read"]["iops"])


def random_read_rate(path, depth: int = 32, reads: int = 20_000, seed: int = 0, use_fio: bool = True) -> dict:
    """4 KiB random reads per second of file ``path`` at queue depth ``depth``, and which anchor measured it."""
    path = Path(path)
    fio = shutil.which("fio") if use_fio else None
    if fio is not None:
        return {"reads_per_s": _fio(fio, path, depth, reads), "depth": depth,
                "anchor": f"fio randread 4k direct libaio iodepth={depth}"}
    return {"reads_per_s": _builtin(path, depth, reads, seed), "depth": depth,
            "anchor": f"built-in: {depth} threads of 4k O_DIRECT pread (fio not installed)"}
