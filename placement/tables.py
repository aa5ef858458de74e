"""Table metadata as the placement optimizer sees it: rows, bytes per row, rows per SSD page."""

from __future__ import annotations

from dataclasses import dataclass

from ._json import JsonDataclass

#: Usable bytes of one SSD page when the caller does not say (LMDB spills values over about 4080 B).
DEFAULT_PAGE_BYTES = 4000


@dataclass(frozen=True)
class TableSpec(JsonDataclass):
    """One embedding table.

    Parameters
    ----------
    name : str
        Table name.
    num_rows : int
        Number of rows.
    row_bytes : int
        Bytes one row occupies in a memory tier (GPU or DRAM); this is what budgets count.
    rows_per_page : int or None
        Consecutive SSD positions that form one page; ``None`` takes
        ``max(1, DEFAULT_PAGE_BYTES // row_bytes)``.
    """

    name: str
    num_rows: int
    row_bytes: int
    rows_per_page: int | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("TableSpec.name must be a non-empty string")
        for field in ("num_rows", "row_bytes"):
            value = getattr(self, field)
            if int(value) != value or value <= 0:
                raise ValueError(f"table {self.name!r}: {field} must be a positive integer, got {value!r}")
            object.__setattr__(self, field, int(value))
        if self.rows_per_page is None:
            object.__setattr__(self, "rows_per_page", max(1, DEFAULT_PAGE_BYTES // self.row_bytes))
        elif int(self.rows_per_page) != self.rows_per_page or self.rows_per_page <= 0:
            raise ValueError(f"table {self.name!r}: rows_per_page must be a positive integer, got {self.rows_per_page!r}")
        object.__setattr__(self, "rows_per_page", int(self.rows_per_page))

    @property
    def num_pages(self) -> int:
        """SSD pages the table occupies."""
        return -(-self.num_rows // self.rows_per_page)

    @property
    def total_bytes(self) -> int:
        """Bytes of the whole table in a memory tier."""
        return self.num_rows * self.row_bytes


def as_table_specs(tables) -> dict[str, TableSpec]:
    """Normalize table metadata to ``{name: TableSpec}``.

    Parameters
    ----------
    tables : mapping or sequence
        ``{name: (num_rows, row_bytes)}``, ``{name: (num_rows, row_bytes, rows_per_page)}``,
        ``{name: TableSpec}``, or a sequence of ``TableSpec``.

    Returns
    -------
    dict of str to TableSpec
        In the given order.
    """
    if isinstance(tables, dict):
        specs = {}
        for name, meta in tables.items():
            if isinstance(meta, TableSpec):
                if meta.name != name:
                    raise ValueError(f"table key {name!r} names a TableSpec called {meta.name!r}")
                specs[name] = meta
            else:
                meta = tuple(meta)
                if len(meta) not in (2, 3):
                    raise ValueError(
                        f"table {name!r}: expected (num_rows, row_bytes) or (num_rows, row_bytes, rows_per_page), got {meta!r}"
                    )
                specs[name] = TableSpec(name, *meta)
    else:
        specs = {}
        for spec in tables:
            if not isinstance(spec, TableSpec):
                raise ValueError(f"expected TableSpec items, got {type(spec).__name__}")
            if spec.name in specs:
                raise ValueError(f"table {spec.name!r} given twice")
            specs[spec.name] = spec
    if not specs:
        raise ValueError("no tables given")
    return specs
