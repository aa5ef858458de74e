"""What a store remembers of the model its tables came from: features per table and pooling.

``tierstore.from_torch`` records it when it exports a trained model, and
``tierstore.torch.TieredEmbeddingBagCollection`` rebuilds torchrec's
``EmbeddingBagConfig`` list from it, so a service needs nothing but the store.
It lives in the store's metadata JSON (:meth:`tierstore.Store.set_model_info`),
committed in one write transaction like everything else readers see.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierstore.config import JsonConfig

POOLINGS = ("sum", "mean", "max")


@dataclass(frozen=True)
class TableFeatures(JsonConfig):
    """The features one table serves, in output order, and how their bags are pooled.

    Parameters
    ----------
    table : str
        Store table name.
    feature_names : tuple of str
        Features looked up in this table (several features may share a table).
    pooling : {"sum", "mean", "max"}
        torchrec's ``PoolingType`` has SUM and MEAN; "max" comes from ``nn.EmbeddingBag(mode="max")``.
    """

    table: str
    feature_names: tuple[str, ...]
    pooling: str = "sum"

    def __post_init__(self):
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        if not self.feature_names or not all(isinstance(f, str) and f for f in self.feature_names):
            raise ValueError(f"table {self.table!r}: feature_names must be non-empty strings, got {self.feature_names}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"table {self.table!r}: pooling must be one of {POOLINGS}, got {self.pooling!r}")


@dataclass(frozen=True)
class ModelInfo:
    """Features, pooling and weighting of a model's embedding tables, in the model's table order.

    Parameters
    ----------
    tables : tuple of TableFeatures
    weighted : bool
        The features carry per-sample weights (torchrec's ``is_weighted``).
    source : str
        What the tables were exported from (for people reading the store).
    """

    tables: tuple[TableFeatures, ...]
    weighted: bool = False
    source: str = ""

    def __post_init__(self):
        object.__setattr__(self, "tables", tuple(self.tables))
        names = [t.table for t in self.tables]
        if not names:
            raise ValueError("ModelInfo needs at least one table")
        if len(set(names)) != len(names):
            raise ValueError(f"ModelInfo names a table more than once: {names}")
        features = self.feature_names
        if len(set(features)) != len(features):
            raise ValueError(f"ModelInfo: a feature is served by more than one table: {features}")

    @property
    def feature_names(self) -> list[str]:
        """Every feature, table by table (torchrec's KeyedTensor key order)."""
        return [f for t in self.tables for f in t.feature_names]

    def to_dict(self) -> dict:
        """Plain JSON-ready form (what the store's metadata holds)."""
        return {"tables": [t.to_dict() for t in self.tables], "weighted": self.weighted, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelInfo":
        """Inverse of :meth:`to_dict`; unknown fields raise ``ValueError``."""
        unknown = set(data) - {"tables", "weighted", "source"}
        if unknown:
            raise ValueError(f"ModelInfo: unknown fields {sorted(unknown)}")
        tables = tuple(TableFeatures.from_dict(t) for t in data.get("tables", ()))
        return cls(tables, bool(data.get("weighted", False)), str(data.get("source", "")))
