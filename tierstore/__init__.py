"""tierstore: pooled embedding lookups from GPU/DRAM caches over LMDB on SSD.

>>> import tierstore
>>> store = tierstore.create("/tmp/emb", [tierstore.TableConfig("user", 1_000_000, 64)])
>>> store.load("user", "user.npy")                       # doctest: +SKIP
>>> store = tierstore.open("/tmp/emb", dram_cache_bytes=256 << 20)  # set-associative cache  # doctest: +SKIP
>>> pooled = store.lookup("user", indices, offsets, mode="sum")                      # doctest: +SKIP
"""

from tierstore.batch import SparseBatch
from tierstore.config import TableConfig
from tierstore.errors import CorruptStoreError, IncompatibleStoreError, StoreClosedError, StoreWriteError
from tierstore.model_info import ModelInfo, TableFeatures
from tierstore.pages import CorruptPageError
from tierstore.store import IO_MODES, Store, create, open

__all__ = [
    "IO_MODES",
    "CorruptPageError",
    "CorruptStoreError",
    "IncompatibleStoreError",
    "ModelInfo",
    "SparseBatch",
    "Store",
    "StoreClosedError",
    "StoreWriteError",
    "TableConfig",
    "TableFeatures",
    "create",
    "open",
]
__version__ = "0.1.0"


def __getattr__(name):
    """``tierstore.from_torch``, imported on first use (it needs PyTorch, an optional extra)."""
    if name == "from_torch":
        from tierstore.torch.export import from_torch

        return from_torch
    raise AttributeError(f"module 'tierstore' has no attribute {name!r}")
