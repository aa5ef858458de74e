"""``nn.Module``s over a store: ``TieredEmbeddingBag`` (as ``nn.EmbeddingBag``) and
``TieredEmbeddingBagCollection`` (as torchrec's ``EmbeddingBagCollection``).

Each forward is one pooled lookup through the store's public API (``Store.lookup``
or one ``Store.lookup_batch`` per round of tables, see below); the float32 array it
returns becomes the output tensor through ``torch.from_numpy``, without a copy.

They serve inference only.  They hold no parameters; run them under
``torch.inference_mode()`` or ``torch.no_grad()``.  With gradients on, the output
carries an autograd node whose backward raises, so ``loss.backward()`` through the
embeddings says what happened instead of training the dense part alone in silence.

Outputs go where the module is (``.to(device)``, ``device=``): on CUDA through
pinned host memory and a non-blocking copy.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from tierstore.batch import SparseBatch
from tierstore.model_info import POOLINGS, ModelInfo, TableFeatures
from tierstore.torch.interop import as_numpy, config_pooling, jagged_arrays, keyed_tensor, make_config


class _InferenceOnly(torch.autograd.Function):
    """Identity in forward; backward raises (tierstore rows cannot be trained)."""

    @staticmethod
    def forward(ctx, anchor, pooled):
        return pooled.view_as(pooled)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("tierstore embedding modules are inference-only: gradients cannot flow into rows served "
                           "from a store. Run the model under torch.inference_mode() or torch.no_grad(), or detach "
                           "the pooled embeddings before backward.")


_ANCHOR = torch.zeros((), requires_grad=True)


class _Served(nn.Module):
    """Shared by both modules: output placement on the module's device and the inference-only guard."""

    def __init__(self, device=None):
        super().__init__()
        self.register_buffer("_where", torch.empty(0, device=device), persistent=False)

    @property
    def device(self) -> torch.device:
        """Where outputs go (follows ``.to(device)``)."""
        return self._where.device

    def _output(self, pooled: np.ndarray) -> torch.Tensor:
        out = torch.from_numpy(pooled)
        device = self._where.device
        if device.type == "cuda":
            out = out.pin_memory().to(device, non_blocking=True)
        elif device.type != "cpu":
            out = out.to(device)
        if torch.is_grad_enabled():
            out = _InferenceOnly.apply(_ANCHOR, out)
        return out


class TieredEmbeddingBag(_Served):
    """One store table as an ``nn.EmbeddingBag``: ``forward(input, offsets=None, per_sample_weights=None)``.

    Parameters
    ----------
    store : tierstore.Store
        An open store (its DRAM tier and policy serve the lookups).
    table : str
        The table to serve.
    mode : {"sum", "mean", "max"}, optional
        Pooling; default: what the store recorded for the table at export
        (:attr:`tierstore.Store.model_info`), else "sum".
    include_last_offset : bool
        As ``nn.EmbeddingBag``: ``offsets`` has B + 1 entries ending at ``len(input)``.
    device : torch.device, optional
        Where outputs go (also set by ``.to(device)``).

    ``input`` is 1-D with ``offsets`` (bag starts), or 2-D ``[B, N]`` (B bags of N
    indices, ``offsets`` None).  Returns float32 ``[B, dim]``; empty bags give zeros.
    """

    def __init__(self, store, table: str, mode: str | None = None, include_last_offset: bool = False, device=None):
        super().__init__(device)
        if table not in store.tables:
            raise KeyError(f"unknown table {table!r}; tables: {sorted(store.tables)}")
        if mode is None:
            info = store.model_info
            recorded = {t.table: t.pooling for t in info.tables} if info is not None else {}
            mode = recorded.get(table, "sum")
        if mode not in POOLINGS:
            raise ValueError(f"mode must be one of {POOLINGS}, got {mode!r}")
        self.store = store
        self.table = table
        self.mode = mode
        self.include_last_offset = include_last_offset
        self.num_embeddings = store.tables[table].num_rows
        self.embedding_dim = store.tables[table].dim

    def forward(self, input, offsets=None, per_sample_weights=None) -> torch.Tensor:
        indices = as_numpy(input)
        weights = None if per_sample_weights is None else as_numpy(per_sample_weights)
        include_last = self.include_last_offset
        if indices.ndim == 2:
            if offsets is not None:
                raise ValueError("offsets must be None when input is 2-D (each row is one bag)")
            bags, size = indices.shape
            offsets, include_last = np.arange(bags + 1, dtype=np.int64) * size, True
            indices = indices.reshape(-1)
            weights = None if weights is None else weights.reshape(-1)
        elif indices.ndim == 1:
            if offsets is None:
                raise ValueError("offsets are required when input is 1-D")
            offsets = as_numpy(offsets)
        else:
            raise ValueError(f"input must be 1-D (with offsets) or 2-D, got shape {tuple(indices.shape)}")
        pooled = self.store.lookup(self.table, indices, offsets, weights, self.mode, include_last)
        return self._output(pooled)

    def extra_repr(self) -> str:
        return f"{self.table!r}, {self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"


def _features_of(store, tables, is_weighted) -> ModelInfo:
    """What the collection serves: ``tables`` (EmbeddingBagConfigs) if given, else what the store recorded,
    else one feature per store table, named after it, pooled by sum."""
    if tables is not None:
        features = []
        for config in tables:
            stored = store.tables.get(config.name)
            if stored is None:
                raise KeyError(f"table {config.name!r} is not in the store; tables: {sorted(store.tables)}")
            if (config.num_embeddings, config.embedding_dim) != (stored.num_rows, stored.dim):
                raise ValueError(f"table {config.name!r}: config says {config.num_embeddings} x "
                                 f"{config.embedding_dim}, the store holds {stored.num_rows} x {stored.dim}")
            features.append(TableFeatures(config.name, tuple(config.feature_names), config_pooling(config)))
        return ModelInfo(tuple(features), bool(is_weighted))
    info = store.model_info
    if info is None:
        info = ModelInfo(tuple(TableFeatures(name, (name,)) for name in store.tables))
    for table in info.tables:
        if table.pooling not in ("sum", "mean"):
            raise ValueError(f"table {table.table!r} is pooled by {table.pooling}, which torchrec's PoolingType "
                             "lacks; serve it with TieredEmbeddingBag")
    weighted = info.weighted if is_weighted is None else bool(is_weighted)
    return ModelInfo(info.tables, weighted, info.source)


class TieredEmbeddingBagCollection(_Served):
    """torchrec's ``EmbeddingBagCollection`` interface over a store.

    Parameters
    ----------
    store : tierstore.Store
        An open store.
    tables : list of EmbeddingBagConfig, optional
        torchrec's (or :class:`tierstore.torch.EmbeddingBagConfig`): which store tables
        serve which features and how they pool (SUM or MEAN).  Default: what
        ``from_torch`` recorded in the store, or one feature per table named after it.
    is_weighted : bool, optional
        Features carry per-sample weights (KeyedJaggedTensor ``weights``); default:
        what the store recorded, else False.
    device : torch.device, optional
        Where outputs go (also set by ``.to(device)``).

    ``forward(features)`` takes a ``KeyedJaggedTensor`` (or a :class:`tierstore.SparseBatch`
    whose keys are feature names) holding at least this collection's features, and
    returns a ``KeyedTensor`` (torchrec's, or :class:`tierstore.torch.KeyedTensor`
    without torchrec): keys are the features table by table, values ``[B, sum(dims)]``.

    Tables serving one feature each are pooled by a single ``Store.lookup_batch``
    whose output is the KeyedTensor's storage.  When features share a table, round
    ``r`` looks up every table's ``r``-th feature, and the rounds' outputs are then
    put in feature order (one copy of those columns, as torchrec's own ``torch.cat``).

    :meth:`prefetch` and :meth:`prefetching` pool the next batch on a background
    thread while the current one's dense part runs (Numba kernels release the GIL).
    """

    def __init__(self, store, tables=None, is_weighted: bool | None = None, device=None):
        super().__init__(device)
        info = _features_of(store, tables, is_weighted)
        self.store = store
        self._weighted = info.weighted
        self._configs = [make_config(t.table, store.tables[t.table].num_rows, store.tables[t.table].dim,
                                     store.tables[t.table].dtype, t.feature_names, t.pooling) for t in info.tables]
        self._modes = {t.table: t.pooling for t in info.tables}
        self._feature_names = info.feature_names
        self._length_per_key = [store.tables[t.table].dim for t in info.tables for _ in t.feature_names]
        depth = max(len(t.feature_names) for t in info.tables)
        self._rounds = [[(t.table, t.feature_names[r]) for t in info.tables if r < len(t.feature_names)]
                        for r in range(depth)]
        self._executor = None
        self._pending: dict[int, tuple] = {}

    def embedding_bag_configs(self) -> list:
        """The served tables as ``EmbeddingBagConfig``s, in output order."""
        return list(self._configs)

    def is_weighted(self) -> bool:
        """Whether bags are pooled with the features' per-sample weights."""
        return self._weighted

    def feature_names(self) -> list[str]:
        """Output keys: every feature, table by table."""
        return list(self._feature_names)

    def forward(self, features):
        pending = self._pending.pop(id(features), None)
        if pending is not None and pending[0] is features:
            pooled = pending[1].result()
        else:
            pooled = self.pool(features)
        return keyed_tensor(self._feature_names, self._length_per_key, self._output(pooled))

    def pool(self, features) -> np.ndarray:
        """The pooled embeddings of ``features`` as a float32 array ``[B, sum(dims)]`` in output order."""
        keys, values, offsets, weights, bags = jagged_arrays(features)
        position = {key: k for k, key in enumerate(keys)}
        missing = [f for f in self._feature_names if f not in position]
        if missing:
            raise KeyError(f"features {missing} are missing from the batch (it has {keys})")
        if self._weighted and weights is None:
            raise ValueError("this collection is weighted (is_weighted=True), but the batch carries no weights")
        weights = weights if self._weighted else None
        if len(self._rounds) == 1 and keys == self._feature_names:
            tables = [table for table, _ in self._rounds[0]]
            return self.store.lookup_batch(SparseBatch(tables, values, offsets=offsets, weights=weights), self._modes)
        pooled = []
        for round_ in self._rounds:
            spans = [(offsets[position[f] * bags], offsets[(position[f] + 1) * bags]) for _, f in round_]
            batch = SparseBatch(
                tuple(table for table, _ in round_),
                np.concatenate([values[a:b] for a, b in spans]),
                lengths=np.concatenate([np.diff(offsets[position[f] * bags : (position[f] + 1) * bags + 1])
                                        for _, f in round_]),
                weights=None if weights is None else np.concatenate([weights[a:b] for a, b in spans]),
            )
            pooled.append((round_, self.store.lookup_batch(batch, self._modes)))
        if len(pooled) == 1:
            return pooled[0][1]
        columns = {}
        for round_, out in pooled:
            views = self.store.table_views([table for table, _ in round_], out)
            columns.update({feature: views[table] for table, feature in round_})
        return np.concatenate([columns[f] for f in self._feature_names], axis=1)

    def prefetch(self, features) -> None:
        """Start pooling ``features`` on a background thread; ``forward`` on the same object takes the result."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierstore-prefetch")
        self._pending[id(features)] = (features, self._executor.submit(self.pool, features))

    def prefetching(self, batches, features=None):
        """Yield each of ``batches`` once the next one's lookups have started on a background thread.

        Parameters
        ----------
        batches : iterable
            Model inputs, e.g. ``(dense, kjt)`` pairs.
        features : callable, optional
            Picks a batch's sparse features; default: the last element of a tuple/list, or the batch itself.

        Examples
        --------
        >>> for dense, kjt in ebc.prefetching(batches):             # doctest: +SKIP
        ...     logits = model(dense, kjt)   # batch i's dense part runs while batch i+1 is pooled
        """
        select = features or (lambda batch: batch[-1] if isinstance(batch, (tuple, list)) else batch)
        iterator = iter(batches)
        try:
            current = next(iterator)
        except StopIteration:
            return
        self.prefetch(select(current))
        try:
            for following in iterator:
                self.prefetch(select(following))
                yield current
                current = following
            yield current
        finally:
            self._pending.clear()

    def extra_repr(self) -> str:
        tables = ", ".join(f"{c.name}: {list(c.feature_names)}" for c in self._configs)
        return f"{tables}, weighted={self._weighted}"
