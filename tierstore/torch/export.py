"""``from_torch``: write a trained model's embedding tables into a new store.

Tables come from torchrec ``EmbeddingBagCollection``s, or ``nn.EmbeddingBag`` /
``nn.Embedding`` modules, found anywhere in a module, or from a state dict.  Each
table streams into the store a chunk of rows at a time (``weight[a:b]`` moved to
the CPU as float32, then encoded in the table's dtype), so the export holds one
chunk beyond what the caller already holds; a state dict saved with ``torch.save``
is read through a memory map (:func:`load_saved`).  Feature names, pooling and
weighting go into the store's metadata (:attr:`tierstore.Store.model_info`).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import tierstore
from tierstore.config import DTYPES, TableConfig
from tierstore.environment import remove_new_store
from tierstore.model_info import ModelInfo, TableFeatures
from tierstore.torch.interop import config_pooling, torchrec_module

#: A torchrec EmbeddingBagCollection's weights in a state dict: ``...embedding_bags.<table>.weight``.
EBC_WEIGHT = re.compile(r"(?:^|\.)embedding_bags\.([^.]+)\.weight$")


@dataclass(frozen=True)
class _Table:
    """One table to export: its weight tensor and what it serves."""

    features: TableFeatures
    weight: torch.Tensor


def _check_weight(name: str, weight) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"table {name!r}: weight must be a 2-D float tensor, got "
                         f"{getattr(weight, 'dtype', type(weight).__name__)} {tuple(getattr(weight, 'shape', ()))}")
    if weight.device.type == "meta":
        raise ValueError(f"table {name!r}: weight is on the meta device (no values to export)")
    if weight.shape[0] == 0 or weight.shape[1] == 0:
        raise ValueError(f"table {name!r}: weight has shape {tuple(weight.shape)}")
    return weight


def _from_module(model: nn.Module) -> tuple[list[_Table], bool, str]:
    torchrec = torchrec_module()
    collections = {}
    if torchrec is not None:
        collections = {path: m for path, m in model.named_modules()
                       if type(m) is torchrec.EmbeddingBagCollection}
    tables, weighted = [], set()
    for path, ebc in collections.items():
        weighted.add(ebc.is_weighted())
        for config in ebc.embedding_bag_configs():
            weight = _check_weight(config.name, ebc.embedding_bags[config.name].weight)
            features = TableFeatures(config.name, tuple(config.feature_names), config_pooling(config))
            tables.append(_Table(features, weight))
    inside = tuple(f"{path}." if path else "" for path in collections)
    for path, module in model.named_modules():
        if path in collections or (inside and path.startswith(inside)):
            continue
        if "EmbeddingBagCollection" in type(module).__name__:
            raise TypeError(f"{path or 'the model'} is a {type(module).__module__}.{type(module).__name__}; "
                            "from_torch exports torchrec's (unsharded, float) EmbeddingBagCollection")
        if isinstance(module, (nn.EmbeddingBag, nn.Embedding)):
            name = path or "embedding"
            if module.max_norm is not None:
                raise ValueError(f"{name}: max_norm renormalizes rows at lookup time, which a store does not do")
            if isinstance(module, nn.EmbeddingBag) and module.padding_idx is not None:
                raise ValueError(f"{name}: EmbeddingBag padding_idx (rows skipped while pooling) is not served")
            pooling = module.mode if isinstance(module, nn.EmbeddingBag) else "sum"
            tables.append(_Table(TableFeatures(name, (name,), pooling), _check_weight(name, module.weight)))
    if len(weighted) > 1:
        raise ValueError("the model mixes weighted and unweighted EmbeddingBagCollections; export them separately")
    kinds = "torchrec EmbeddingBagCollection" if collections else "torch embedding modules"
    return tables, weighted == {True}, f"{type(model).__name__} ({kinds})"


def _state_key(state: Mapping, name: str) -> str:
    for key in state:
        if key == name or key.endswith(f"embedding_bags.{name}.weight") or key == f"{name}.weight":
            return key
    raise KeyError(f"table {name!r}: no such weight in the state dict (looked for {name!r}, "
                   f"'...embedding_bags.{name}.weight', '{name}.weight')")


def _from_state_dict(state: Mapping, tables) -> list[_Table]:
    if tables is None:
        found = [(m.group(1), key) for key in state if (m := EBC_WEIGHT.search(key))]
        if not found:
            raise ValueError("no embedding tables in the state dict: it has no '...embedding_bags.<table>.weight' "
                             "keys (torchrec's); pass tables=[EmbeddingBagConfig(...), ...] to name them")
        return [_Table(TableFeatures(name, (name,)), _check_weight(name, state[key])) for name, key in found]
    out = []
    for config in tables:
        weight = _check_weight(config.name, state[_state_key(state, config.name)])
        if tuple(weight.shape) != (config.num_embeddings, config.embedding_dim):
            raise ValueError(f"table {config.name!r}: weight is {tuple(weight.shape)}, the config says "
                             f"({config.num_embeddings}, {config.embedding_dim})")
        out.append(_Table(TableFeatures(config.name, tuple(config.feature_names), config_pooling(config)), weight))
    return out


def _dtypes(names: list[str], dtype) -> dict[str, str]:
    chosen = dict(dtype) if isinstance(dtype, Mapping) else {name: dtype for name in names}
    unknown = set(chosen) - set(names)
    if unknown:
        raise KeyError(f"dtype names unknown tables {sorted(unknown)}; tables: {names}")
    for name, value in chosen.items():
        if value not in DTYPES:
            raise ValueError(f"table {name!r}: dtype must be one of {DTYPES}, got {value!r}")
    return {name: chosen.get(name, "float32") for name in names}


def _chunks(weight: torch.Tensor, rows: int):
    with torch.no_grad():
        for start in range(0, weight.shape[0], rows):
            yield weight[start : start + rows].to("cpu", torch.float32).numpy()


def from_torch(source, path, dtype="float32", tables=None, weighted: bool = False, progress: bool = True,
               chunk_bytes: int = 64 << 20) -> ModelInfo:
    """Export every embedding table of a model (or state dict) into a new store at ``path``.

    Parameters
    ----------
    source : torch.nn.Module or Mapping[str, Tensor]
        A module holding torchrec ``EmbeddingBagCollection``s (their configs give
        table names, features and pooling) and/or ``nn.EmbeddingBag`` / ``nn.Embedding``
        modules (table and feature named by the module's path, pooled by its mode;
        ``nn.Embedding`` as "sum"); or a state dict.  In a state dict, tables are the
        ``...embedding_bags.<table>.weight`` entries (one feature per table, named
        after it, "sum"), unless ``tables`` names them.
    path : str or Path
        New store directory (must not exist or be empty).
    dtype : {"float32", "float16", "int8"} or dict
        Storage dtype for every table, or ``{table: dtype}`` (others: float32).
    tables : list of EmbeddingBagConfig, optional
        For a state dict: which tables to export, with their features and pooling.
    weighted : bool
        For a state dict: the features carry per-sample weights.
    progress : bool
        Progress bars while loading.
    chunk_bytes : int
        Rows are moved and encoded this many float32 bytes at a time.

    Returns
    -------
    ModelInfo
        What the store recorded (also :attr:`tierstore.Store.model_info`).

    Raises
    ------
    ValueError, KeyError, TypeError
        Nothing to export, unsupported modules or options, mismatched shapes, bad dtypes:
        raised before anything is written.  A failure while writing removes the new store.
    """
    if isinstance(source, nn.Module):
        if tables is not None:
            raise ValueError("tables= describes a state dict; a module's own configs describe its tables")
        found, weighted, described = _from_module(source)
    elif isinstance(source, Mapping):
        found, described = _from_state_dict(source, tables), "state dict"
    else:
        raise TypeError(f"from_torch exports an nn.Module or a state dict, got {type(source).__name__}")
    if not found:
        raise ValueError(f"no embedding tables found in {described}")
    info = ModelInfo(tuple(t.features for t in found), bool(weighted), described)
    dtypes = _dtypes([t.features.table for t in found], dtype)
    configs = [TableConfig(t.features.table, int(t.weight.shape[0]), int(t.weight.shape[1]), dtypes[t.features.table])
               for t in found]
    path = Path(path)
    existed = path.exists()
    store = tierstore.create(path, configs)
    try:
        for table, config in zip(found, configs):
            rows = max(1, chunk_bytes // (4 * config.dim))
            store.load(config.name, _chunks(table.weight, rows), progress=progress, chunk_bytes=chunk_bytes)
        store.set_model_info(info)
    except BaseException:
        store.close()
        remove_new_store(path, made_dir=not existed)
        raise
    store.close()
    return info



def load_saved(path, allow_pickle: bool = False):
    """Read a file written by ``torch.save`` (a state dict, or with ``allow_pickle`` a whole module).

    Tensors are memory-mapped (``torch.load(mmap=True)``), so a large state dict is
    read a chunk at a time by :func:`from_torch` rather than all at once.  Without
    ``allow_pickle`` only tensors and plain containers load (``weights_only=True``):
    unpickling a module runs code from the file, so do it only for files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file {path}")
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=not allow_pickle)
    except pickle.UnpicklingError as err:
        if allow_pickle:
            raise
        raise ValueError(f"{path} holds more than tensors (a pickled module?); if you trust the file, load it "
                         f"with allow_pickle=True (CLI: --allow-pickle). torch said: {str(err).splitlines()[0]}") from err
