"""tierstore: pooled embedding lookups from GPU/DRAM caches over LMDB on SSD.

>>> import tierstore
>>> store = tierstore.create("/tmp/emb", [tierstore.TableConfig("user", 1_000_000, 64)])
>>> store.load("user", "user.npy")                       # doctest: +SKIP
>>> store = tierstore.open("/tmp/emb", dram_cache_bytes=256 << 20)  # set-associative cache  # doctest: +SKIP
>>> pooled = store.lookup("user", indices, offsets, mode="sum")                      # doctest: +SKIP
"""

from tierstore.batch import SparseBatch
from tierstore.config import TableConfig
from tierstore.pages import CorruptPageError
from tierstore.store import IO_MODES, IncompatibleStoreError, Store, StoreWriteError, create, open

__all__ = [
    "IO_MODES",
    "CorruptPageError",
    "IncompatibleStoreError",
    "SparseBatch",
    "Store",
    "StoreWriteError",
    "TableConfig",
    "create",
    "open",
]
__version__ = "0.1.0"
