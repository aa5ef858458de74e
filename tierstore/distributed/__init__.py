"""Scale-out on Ray: shard plans, shard stores and ``ShardedStore`` (extra ``tierstore[ray]``).

>>> plan = make_shard_plan(store.tables.values(), ShardPlanConfig(num_shards=4), profile)   # doctest: +SKIP
>>> write_shards("emb", "emb-shards", plan)                                                  # doctest: +SKIP
>>> sharded = ShardedStore.open("emb-shards/plan.json", dram_cache_bytes=8 << 30)            # doctest: +SKIP
>>> pooled = sharded.lookup_batch(batch)                                                     # doctest: +SKIP

Plans, shard stores, splitting and merging need no Ray; ``ShardedStore.open`` imports it.
"""

from tierstore.distributed.plan import ShardPiece, ShardPlan, ShardPlanConfig, make_shard_plan
from tierstore.distributed.route import BatchRouter, ShardRequest
from tierstore.distributed.server import ShardServer
from tierstore.distributed.sharded import ShardedConfig, ShardedStore, ShardUnavailableError, ShardWriteError
from tierstore.distributed.write import write_shards

__all__ = ["BatchRouter", "ShardPiece", "ShardPlan", "ShardPlanConfig", "ShardRequest", "ShardServer",
           "ShardUnavailableError", "ShardWriteError", "ShardedConfig", "ShardedStore", "make_shard_plan",
           "write_shards"]
