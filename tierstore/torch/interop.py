"""torchrec's types when torchrec is installed, small equivalents when it is not.

``tierstore.torch`` needs only PyTorch.  Where torchrec imports, the collection
hands out torchrec's own ``EmbeddingBagConfig`` and ``KeyedTensor`` and reads
``KeyedJaggedTensor``; elsewhere it uses :class:`EmbeddingBagConfig`,
:class:`PoolingType` and :class:`KeyedTensor` from this module, which have the
fields and methods torchrec's ``DLRM`` uses, and reads :class:`tierstore.SparseBatch`.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from tierstore.batch import SparseBatch

#: Store dtype -> torchrec ``DataType`` name.
DATA_TYPES = {"float32": "FP32", "float16": "FP16", "int8": "INT8"}


@functools.cache
def torchrec_module():
    """The ``torchrec`` module, or None where it is not installed."""
    try:
        import torchrec
    except ImportError:
        return None
    return torchrec


class PoolingType(enum.Enum):
    """torchrec's ``PoolingType`` (the values tierstore pools with)."""

    SUM = "SUM"
    MEAN = "MEAN"


@dataclass
class EmbeddingBagConfig:
    """The fields of torchrec's ``EmbeddingBagConfig`` that describe a served table."""

    num_embeddings: int
    embedding_dim: int
    name: str
    data_type: str = "FP32"
    feature_names: list[str] = field(default_factory=list)
    pooling: PoolingType = PoolingType.SUM


class KeyedTensor:
    """torchrec's ``KeyedTensor`` for ``key_dim=1``: ``values`` [B, sum(length_per_key)], one column block per key."""

    def __init__(self, keys: list[str], length_per_key: list[int], values: torch.Tensor):
        if values.dim() != 2 or values.shape[1] != sum(length_per_key) or len(keys) != len(length_per_key):
            raise ValueError(f"KeyedTensor: values {tuple(values.shape)} do not hold keys {keys} of widths "
                             f"{length_per_key}")
        self._keys = list(keys)
        self._length_per_key = list(length_per_key)
        self._values = values

    def keys(self) -> list[str]:
        return self._keys

    def values(self) -> torch.Tensor:
        return self._values

    def key_dim(self) -> int:
        return 1

    def length_per_key(self) -> list[int]:
        return self._length_per_key

    def offset_per_key(self) -> list[int]:
        return [0, *np.cumsum(self._length_per_key).tolist()]

    def to_dict(self) -> dict[str, torch.Tensor]:
        """``{key: values[:, a:b]}`` (views, no copies)."""
        return dict(zip(self._keys, torch.split(self._values, self._length_per_key, dim=1)))

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.to_dict()[key]


def make_config(table: str, num_rows: int, dim: int, dtype: str, feature_names, pooling: str):
    """An ``EmbeddingBagConfig`` (torchrec's where importable) for one served table; ``pooling`` is "sum"/"mean"."""
    torchrec = torchrec_module()
    if torchrec is None:
        return EmbeddingBagConfig(num_rows, dim, table, DATA_TYPES[dtype], list(feature_names),
                                  PoolingType[pooling.upper()])
    return torchrec.EmbeddingBagConfig(num_embeddings=num_rows, embedding_dim=dim, name=table,
                                       data_type=torchrec.DataType[DATA_TYPES[dtype]],
                                       feature_names=list(feature_names),
                                       pooling=torchrec.PoolingType[pooling.upper()])


def config_pooling(config) -> str:
    """"sum" or "mean" from an ``EmbeddingBagConfig``'s pooling (torchrec's or this module's)."""
    name = getattr(config.pooling, "value", config.pooling)
    if str(name).lower() not in ("sum", "mean"):
        raise ValueError(f"table {config.name!r}: pooling {name!r} is not served; tierstore pools SUM and MEAN")
    return str(name).lower()


def keyed_tensor(keys: list[str], length_per_key: list[int], values: torch.Tensor):
    """A ``KeyedTensor`` (torchrec's where importable)."""
    torchrec = torchrec_module()
    if torchrec is None:
        return KeyedTensor(keys, length_per_key, values)
    return torchrec.KeyedTensor(keys=keys, length_per_key=length_per_key, values=values)


def as_numpy(tensor) -> np.ndarray:
    """A CPU view of a tensor (no copy where it is already on the CPU), or the array itself."""
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def jagged_arrays(features):
    """``(keys, values, offsets[len(keys) * B + 1], weights or None, B)`` of a KeyedJaggedTensor or SparseBatch."""
    if isinstance(features, SparseBatch):
        return list(features.keys), features.values, features.offsets, features.weights, features.batch_size
    torchrec = torchrec_module()
    if torchrec is None or not isinstance(features, torchrec.KeyedJaggedTensor):
        raise TypeError(f"expected a torchrec KeyedJaggedTensor or a tierstore SparseBatch, got {type(features).__name__}")
    if features.variable_stride_per_key():
        raise ValueError("KeyedJaggedTensor with a variable batch size per key is not supported")
    weights = features.weights_or_none()
    return (list(features.keys()), as_numpy(features.values()), as_numpy(features.offsets()),
            None if weights is None else as_numpy(weights), int(features.stride()))
