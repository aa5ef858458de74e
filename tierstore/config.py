"""Configuration dataclasses: tables and stores.  Every config round-trips through JSON."""

from __future__ import annotations

from dataclasses import dataclass

from placement._json import JsonDataclass as JsonConfig

DTYPES = ("float32", "float16", "int8")
COMPRESSIONS = (None, "zstd")
#: Bytes stored per row element, by storage dtype (int8 adds 8 bytes per row for scale and bias).
DTYPE_BYTES = {"float32": 4, "float16": 2, "int8": 1}
INT8_ROW_OVERHEAD = 8


def record_bytes(dtype: str, dim: int) -> int:
    """Bytes of one stored row of ``dim`` values: float32 / float16 values, or int8 codes (int4: two
    codes a byte) followed by a float32 scale and bias.  int4 is a record format of
    :mod:`tierstore.pool_records`, not yet a table dtype."""
    if dtype == "int4":
        return (dim + 1) // 2 + INT8_ROW_OVERHEAD
    return dim * DTYPE_BYTES[dtype] + (INT8_ROW_OVERHEAD if dtype == "int8" else 0)


@dataclass(frozen=True)
class TableConfig(JsonConfig):
    """One embedding table, as torchrec's ``EmbeddingBagConfig`` would name it.

    Parameters
    ----------
    name : str
        Table name, unique within a store.
    num_rows : int
        Number of embedding rows.
    dim : int
        Embedding dimension.
    dtype : {"float32", "float16", "int8"}
        Storage dtype on SSD and in the DRAM caches.  Lookups always return float32
        (rows are dequantized as they are pooled); int8 is row-wise quantized
        (float32 scale and bias per row).
    rows_per_page : int or None
        Rows packed into one LMDB value.  ``None`` picks the most rows whose page
        stays under LMDB's overflow threshold (about 4080 bytes).
    compression : {None, "zstd"}
        Per-page codec.
    """

    name: str
    num_rows: int
    dim: int
    dtype: str = "float32"
    rows_per_page: int | None = None
    compression: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("TableConfig.name must be a non-empty string")
        if int(self.num_rows) <= 0:
            raise ValueError(f"table {self.name!r}: num_rows must be positive, got {self.num_rows}")
        if int(self.dim) <= 0:
            raise ValueError(f"table {self.name!r}: dim must be positive, got {self.dim}")
        if self.dtype not in DTYPES:
            raise ValueError(f"table {self.name!r}: dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(
                f"table {self.name!r}: compression must be one of {COMPRESSIONS}, got {self.compression!r}"
            )
        if self.rows_per_page is not None and int(self.rows_per_page) <= 0:
            raise ValueError(f"table {self.name!r}: rows_per_page must be positive, got {self.rows_per_page}")

    @property
    def row_bytes(self) -> int:
        """Bytes of one stored row (payload, before compression)."""
        return record_bytes(self.dtype, self.dim)

    @property
    def cached_row_bytes(self) -> int:
        """Bytes of one row held in a DRAM cache: its stored record, padded to 8 bytes
        (:func:`tierstore.pool_records.record_stride`; a 64-dim int8 row takes 72)."""
        from tierstore.pool_records import record_stride

        return record_stride(self.dtype, self.dim)
