"""PyTorch front end: serve a store's tables to models, and export a trained model's tables into a store.

>>> import tierstore
>>> from tierstore.torch import TieredEmbeddingBagCollection
>>> tierstore.from_torch(trained_model, "emb", dtype="int8")                       # doctest: +SKIP
>>> ebc = TieredEmbeddingBagCollection(tierstore.open("emb", dram_cache_bytes=4 << 30))   # doctest: +SKIP
>>> model = DLRM(ebc, dense_in_features=13, dense_arch_layer_sizes=[512, 256, 64],          # doctest: +SKIP
...              over_arch_layer_sizes=[512, 256, 1])

Needs PyTorch (``pip install 'tierstore[torch]'``); torchrec is optional (see
:mod:`tierstore.torch.interop`).
"""

try:
    import torch  # noqa: F401
except ImportError as err:
    raise ImportError("tierstore.torch needs PyTorch: pip install 'tierstore[torch]'") from err

from tierstore.torch.export import from_torch, load_saved
from tierstore.torch.interop import EmbeddingBagConfig, KeyedTensor, PoolingType
from tierstore.torch.modules import TieredEmbeddingBag, TieredEmbeddingBagCollection

__all__ = [
    "EmbeddingBagConfig",
    "KeyedTensor",
    "PoolingType",
    "TieredEmbeddingBag",
    "TieredEmbeddingBagCollection",
    "from_torch",
    "load_saved",
]
