"""tierstore: pooled embedding lookups from GPU/DRAM caches over LMDB on SSD."""

from tierstore.batch import SparseBatch
from tierstore.config import TableConfig

__all__ = ["SparseBatch", "TableConfig"]
__version__ = "0.1.0"
