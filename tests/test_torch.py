"""tierstore.torch without torchrec: the modules against torch's nn.EmbeddingBag and the numpy reference, and
from_torch on plain torch models and state dicts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import pool, stored_values
from test_store import bags, make_store

torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install -e '.[torch]'")

import tierstore  # noqa: E402
from tierstore import ModelInfo, SparseBatch, TableConfig, TableFeatures  # noqa: E402
from tierstore.torch import (  # noqa: E402
    EmbeddingBagConfig,
    KeyedTensor,
    PoolingType,
    TieredEmbeddingBag,
    TieredEmbeddingBagCollection,
    from_torch,
)
from tierstore.torch import interop  # noqa: E402


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(["float32", "float16", "int8"]), dim=st.integers(1, 12), num_rows=st.integers(1, 60),
       data=st.data())
def test_tiered_embedding_bag_matches_nn_embedding_bag(tmp_path_factory, dtype, dim, num_rows, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    values = rng.standard_normal((num_rows, dim)).astype(np.float32)
    path = make_store(tmp_path_factory.mktemp("eb"), {TableConfig("t", num_rows, dim, dtype): values})
    stored = torch.from_numpy(stored_values(values, dtype))
    cache_rows = data.draw(st.integers(0, num_rows + 1))
    with tierstore.open(path, dram_cache_bytes=cache_rows * dim * 4) as store:
        for _ in range(data.draw(st.integers(1, 3))):
            mode = data.draw(st.sampled_from(["sum", "mean", "max"]))
            last = data.draw(st.booleans())
            module = TieredEmbeddingBag(store, "t", mode=mode, include_last_offset=last)
            expected_module = torch.nn.EmbeddingBag.from_pretrained(stored, mode=mode, include_last_offset=last)
            if data.draw(st.booleans()):
                indices, offsets = data.draw(bags(num_rows))
                offsets = torch.from_numpy(offsets if last else offsets[:-1])
                indices = torch.from_numpy(indices)
                if not last and offsets.numel() == 0:
                    continue
            else:
                shape = (data.draw(st.integers(1, 6)), data.draw(st.integers(1, 5)))
                indices, offsets = torch.from_numpy(rng.integers(0, num_rows, shape)), None
            weights = None
            if mode == "sum" and data.draw(st.booleans()):
                weights = torch.from_numpy(rng.standard_normal(tuple(indices.shape)).astype(np.float32))
            with torch.inference_mode():
                got = module(indices, offsets, weights)
                expected = expected_module(indices, offsets, per_sample_weights=weights)
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.fixture
def shared_store(tmp_path):
    """Three tables; the store records that table ``b`` serves two features and ``c`` is pooled by mean."""
    rng = np.random.default_rng(1)
    tables = {TableConfig("a", 30, 4): rng.standard_normal((30, 4)).astype(np.float32),
              TableConfig("b", 50, 8, "int8"): rng.standard_normal((50, 8)).astype(np.float32),
              TableConfig("c", 20, 4, "float16"): rng.standard_normal((20, 4)).astype(np.float32)}
    path = make_store(tmp_path, tables)
    with tierstore.open(path, readonly=False) as store:
        store.set_model_info(ModelInfo((TableFeatures("a", ("fa",)), TableFeatures("b", ("fb1", "fb2")),
                                        TableFeatures("c", ("fc",), "mean"))))
    stored = {config.name: stored_values(values, config.dtype) for config, values in tables.items()}
    return path, stored


def feature_batch(rng, rows: dict, batch_size: int, weights: bool = False) -> SparseBatch:
    """A SparseBatch keyed by feature names with random bags (some empty)."""
    parts = {}
    for feature, num_rows in rows.items():
        lengths = rng.integers(0, 4, batch_size)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        indices = rng.integers(0, num_rows, offsets[-1])
        parts[feature] = (indices, offsets) + ((rng.standard_normal(indices.size).astype(np.float32),) if weights else ())
    return SparseBatch.from_tables(parts)


def expected_pooled(batch: SparseBatch, stored: dict, serving: dict, modes: dict, weighted: bool) -> dict:
    out = {}
    for feature, table in serving.items():
        indices, offsets, weights = batch.table(feature)
        out[feature] = pool(stored[table], indices, offsets, weights if weighted else None, modes[table])
    return out


SERVING = {"fa": "a", "fb1": "b", "fb2": "b", "fc": "c"}
ROWS = {"fa": 30, "fb1": 50, "fb2": 50, "fc": 20}


@pytest.mark.parametrize("cache_bytes", [0, 200, 1 << 20], ids=["no cache", "small cache", "all in DRAM"])
@pytest.mark.parametrize("without_torchrec", [False, True], ids=["torchrec types if installed", "fallback types"])
def test_collection_pools_shared_tables_and_mean_like_the_reference(shared_store, cache_bytes, without_torchrec):
    path, stored = shared_store
    rng = np.random.default_rng(2)
    with mock.patch.object(interop, "torchrec_module", lambda: None) if without_torchrec else mock.MagicMock(), \
            tierstore.open(path, dram_cache_bytes=cache_bytes) as store:
        ebc = TieredEmbeddingBagCollection(store)
        configs = ebc.embedding_bag_configs()
        assert [(c.name, list(c.feature_names), c.num_embeddings, c.embedding_dim) for c in configs] == [
            ("a", ["fa"], 30, 4), ("b", ["fb1", "fb2"], 50, 8), ("c", ["fc"], 20, 4)]
        assert [interop.config_pooling(c) for c in configs] == ["sum", "sum", "mean"]
        if without_torchrec:
            assert isinstance(configs[0], EmbeddingBagConfig) and configs[2].pooling is PoolingType.MEAN
        for batch_size in (5, 1, 0):
            batch = feature_batch(rng, {"fc": 20, "extra": 3, "fb2": 50, "fa": 30, "fb1": 50}, batch_size)
            with torch.inference_mode():
                keyed = ebc(batch)
            if without_torchrec:
                assert isinstance(keyed, KeyedTensor)
            assert keyed.keys() == ["fa", "fb1", "fb2", "fc"]
            assert keyed.length_per_key() == [4, 8, 8, 4]
            assert tuple(keyed.values().shape) == (batch_size, 24)
            expected = expected_pooled(batch, stored, SERVING, {"a": "sum", "b": "sum", "c": "mean"}, False)
            for feature, tensor in keyed.to_dict().items():
                np.testing.assert_allclose(tensor.numpy(), expected[feature], rtol=1e-5, atol=1e-5)


def test_weighted_collection_and_its_errors(shared_store):
    path, stored = shared_store
    rng = np.random.default_rng(3)
    configs = [EmbeddingBagConfig(30, 4, "a", feature_names=["fa"]),
               EmbeddingBagConfig(50, 8, "b", feature_names=["fb1", "fb2"])]
    with tierstore.open(path) as store:
        ebc = TieredEmbeddingBagCollection(store, configs, is_weighted=True)
        assert ebc.is_weighted()
        batch = feature_batch(rng, {"fa": 30, "fb1": 50, "fb2": 50}, 6, weights=True)
        with torch.inference_mode():
            keyed = ebc(batch)
        expected = expected_pooled(batch, stored, {"fa": "a", "fb1": "b", "fb2": "b"}, {"a": "sum", "b": "sum"}, True)
        for feature, tensor in keyed.to_dict().items():
            np.testing.assert_allclose(tensor.numpy(), expected[feature], rtol=1e-5, atol=1e-5)
        unweighted = feature_batch(rng, {"fa": 30, "fb1": 50, "fb2": 50}, 6)
        with pytest.raises(ValueError, match="carries no weights"):
            ebc(unweighted)
        with pytest.raises(KeyError, match=r"features \['fb2'\] are missing"):
            ebc(feature_batch(rng, {"fa": 30, "fb1": 50}, 2, weights=True))
        with pytest.raises(TypeError, match="KeyedJaggedTensor or a tierstore SparseBatch"):
            ebc({"fa": torch.zeros(1)})
        with pytest.raises(ValueError, match="config says 31 x 4"):
            TieredEmbeddingBagCollection(store, [EmbeddingBagConfig(31, 4, "a", feature_names=["fa"])])
        with pytest.raises(KeyError, match="'zzz' is not in the store"):
            TieredEmbeddingBagCollection(store, [EmbeddingBagConfig(31, 4, "zzz", feature_names=["fa"])])
        with pytest.raises(ValueError, match="out of range"):
            ebc(SparseBatch(("fa", "fb1", "fb2"), np.array([0, 99, 1]), lengths=np.ones(3, np.int64),
                            weights=np.ones(3, np.float32)))


def test_collection_without_recorded_info_serves_one_feature_per_table(tmp_path):
    rng = np.random.default_rng(4)
    values = rng.standard_normal((9, 3)).astype(np.float32)
    path = make_store(tmp_path, {TableConfig("x", 9, 3): values, TableConfig("y", 9, 3): values})
    with tierstore.open(path) as store:
        ebc = TieredEmbeddingBagCollection(store)
        assert ebc.feature_names() == ["x", "y"] and not ebc.is_weighted()
        batch = SparseBatch(("x", "y"), np.array([1, 2, 3]), lengths=np.array([2, 1]))
        with torch.inference_mode():
            keyed = ebc(batch)
        np.testing.assert_allclose(keyed.values().numpy(), np.concatenate([values[1] + values[2], values[3]])[None],
                                   rtol=1e-6)


def test_outputs_are_the_pooled_arrays_without_a_copy(shared_store):
    path, _ = shared_store
    with tierstore.open(path, dram_cache_bytes=1 << 20) as store:
        returned = []

        def spy(method):
            def call(*args, **kwargs):
                returned.append(method(*args, **kwargs))
                return returned[-1]
            return call

        with mock.patch.object(store, "lookup", spy(store.lookup)), \
                mock.patch.object(store, "lookup_batch", spy(store.lookup_batch)):
            with torch.inference_mode():
                single = TieredEmbeddingBag(store, "a")(torch.tensor([1, 2, 3]), torch.tensor([0, 2]))
                ebc = TieredEmbeddingBagCollection(store, [EmbeddingBagConfig(30, 4, "a", feature_names=["fa"]),
                                                           EmbeddingBagConfig(50, 8, "b", feature_names=["fb1"])])
                keyed = ebc(SparseBatch(("fa", "fb1"), np.array([1, 2, 3]), lengths=np.array([2, 1])))
        assert single.data_ptr() == returned[0].ctypes.data
        assert keyed.values().data_ptr() == returned[1].ctypes.data


def test_inference_only_and_device_placement(shared_store):
    path, stored = shared_store
    with tierstore.open(path) as store:
        bag = TieredEmbeddingBag(store, "a")
        assert bag.mode == "sum" and list(bag.parameters()) == []
        indices, offsets = torch.tensor([1, 2]), torch.tensor([0])
        with torch.inference_mode():
            assert not bag(indices, offsets).requires_grad
        out = bag(indices, offsets)
        np.testing.assert_allclose(out.detach().numpy(), stored["a"][[1]] + stored["a"][[2]], rtol=1e-6)
        with pytest.raises(RuntimeError, match="inference-only"):
            (out * torch.ones(4, requires_grad=True)).sum().backward()
        assert TieredEmbeddingBag(store, "c").mode == "mean"
        moved = bag.to("meta")
        assert moved.device.type == "meta"
        with torch.no_grad():
            assert bag(indices, offsets).device.type == "meta"
        ebc = TieredEmbeddingBagCollection(store, device="meta")
        with torch.no_grad():
            assert ebc(feature_batch(np.random.default_rng(0), ROWS, 2)).values().device.type == "meta"


def test_embedding_bag_input_errors(shared_store):
    path, _ = shared_store
    with tierstore.open(path) as store:
        bag = TieredEmbeddingBag(store, "a")
        with pytest.raises(ValueError, match="offsets must be None when input is 2-D"):
            bag(torch.zeros((2, 2), dtype=torch.long), torch.tensor([0]))
        with pytest.raises(ValueError, match="offsets are required"):
            bag(torch.zeros(2, dtype=torch.long))
        with pytest.raises(ValueError, match="1-D .* or 2-D"):
            bag(torch.zeros((1, 1, 1), dtype=torch.long))
        with pytest.raises(ValueError, match="out of range"):
            bag(torch.tensor([30]), torch.tensor([0]))
        with pytest.raises(KeyError, match="unknown table 'zzz'"):
            TieredEmbeddingBag(store, "zzz")
        with pytest.raises(ValueError, match="mode must be one of"):
            TieredEmbeddingBag(store, "a", mode="median")


def test_prefetching_gives_the_same_outputs(shared_store):
    path, _ = shared_store
    rng = np.random.default_rng(5)
    batches = [(i, feature_batch(rng, ROWS, 4)) for i in range(5)]
    with tierstore.open(path, dram_cache_bytes=300) as store:
        ebc = TieredEmbeddingBagCollection(store)
        with torch.inference_mode():
            plain = [ebc(batch).values().clone() for _, batch in batches]
            seen = []
            for i, batch in ebc.prefetching(batches):
                assert id(batch) in ebc._pending
                seen.append(ebc(batch).values())
                assert id(batch) not in ebc._pending
        assert not ebc._pending
        assert [i for i, _ in batches] == list(range(5))
        for a, b in zip(plain, seen):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert list(ebc.prefetching([])) == []


class Recommender(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.user = torch.nn.EmbeddingBag(40, 6, mode="mean")
        self.towers = torch.nn.ModuleDict({"item": torch.nn.EmbeddingBag(25, 6, mode="max"),
                                           "tag": torch.nn.Embedding(12, 6)})
        self.mlp = torch.nn.Linear(18, 1)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_from_torch_exports_plain_torch_modules(tmp_path, dtype):
    torch.manual_seed(0)
    model = Recommender()
    info = from_torch(model, tmp_path / "s", dtype=dtype, progress=False)
    assert info == ModelInfo((TableFeatures("user", ("user",), "mean"), TableFeatures("towers.item", ("towers.item",),
                                                                                       "max"),
                              TableFeatures("towers.tag", ("towers.tag",), "sum")), False,
                             "Recommender (torch embedding modules)")
    with tierstore.open(tmp_path / "s", dram_cache_bytes=1 << 20) as store:
        assert store.model_info == info
        assert {n: (t.num_rows, t.dim, t.dtype) for n, t in store.tables.items()} == {
            "user": (40, 6, dtype), "towers.item": (25, 6, dtype), "towers.tag": (12, 6, dtype)}
        for name, module in [("user", model.user), ("towers.item", model.towers["item"])]:
            served = TieredEmbeddingBag(store, name)
            assert served.mode == module.mode
            indices = torch.randint(0, module.num_embeddings, (7, 3))
            reference = torch.nn.EmbeddingBag.from_pretrained(
                torch.from_numpy(stored_values(module.weight.detach().numpy(), dtype)), mode=module.mode)
            with torch.inference_mode():
                torch.testing.assert_close(served(indices), reference(indices), rtol=1e-5, atol=1e-5)
        rows = store.get_rows("towers.tag", np.arange(12))
        np.testing.assert_allclose(rows, stored_values(model.towers["tag"].weight.detach().numpy(), dtype), rtol=1e-6)


def test_from_torch_reads_a_state_dict_with_configs(tmp_path):
    torch.manual_seed(1)
    state = {"sparse.embedding_bags.t1.weight": torch.randn(10, 4), "sparse.embedding_bags.t2.weight": torch.randn(6, 4),
             "dense.weight": torch.randn(3, 3)}
    info = from_torch(state, tmp_path / "plain", progress=False)
    assert info.tables == (TableFeatures("t1", ("t1",)), TableFeatures("t2", ("t2",)))
    configs = [EmbeddingBagConfig(6, 4, "t2", feature_names=["x", "y"], pooling=PoolingType.MEAN)]
    info = from_torch(state, tmp_path / "named", dtype={"t2": "float16"}, tables=configs, weighted=False,
                      progress=False)
    assert info.tables == (TableFeatures("t2", ("x", "y"), "mean"),)
    with tierstore.open(tmp_path / "named") as store:
        assert list(store.tables) == ["t2"] and store.tables["t2"].dtype == "float16"
        np.testing.assert_array_equal(store.get_rows("t2", np.arange(6)),
                                      state["sparse.embedding_bags.t2.weight"].half().float().numpy())


@pytest.mark.parametrize("source, options, error, message", [
    (lambda: torch.nn.Linear(2, 2), {}, ValueError, "no embedding tables found"),
    (lambda: {"w": torch.zeros(2, 2)}, {}, ValueError, "no embedding tables in the state dict"),
    (lambda: [1, 2], {}, TypeError, "exports an nn.Module or a state dict"),
    (lambda: torch.nn.EmbeddingBag(4, 2, max_norm=1.0), {}, ValueError, "max_norm"),
    (lambda: torch.nn.EmbeddingBag(4, 2, padding_idx=0), {}, ValueError, "padding_idx"),
    (lambda: torch.nn.EmbeddingBag(4, 2, device="meta"), {}, ValueError, "meta device"),
    (lambda: torch.nn.EmbeddingBag(4, 2), {"dtype": "bfloat16"}, ValueError, "dtype must be one of"),
    (lambda: torch.nn.EmbeddingBag(4, 2), {"dtype": {"nope": "int8"}}, KeyError, "unknown tables"),
    (lambda: torch.nn.EmbeddingBag(4, 2), {"tables": []}, ValueError, "tables= describes a state dict"),
    (lambda: {"embedding_bags.t.weight": torch.zeros(3, 2)}, {"tables": [EmbeddingBagConfig(4, 2, "t")]}, ValueError,
     r"weight is \(3, 2\), the config says \(4, 2\)"),
    (lambda: {"embedding_bags.t.weight": torch.zeros(3, 2)}, {"tables": [EmbeddingBagConfig(3, 2, "u")]}, KeyError,
     "no such weight"),
    (lambda: {"embedding_bags.t.weight": torch.zeros(3)}, {}, ValueError, "2-D float tensor"),
])
def test_from_torch_rejects_bad_input_and_writes_nothing(tmp_path, source, options, error, message):
    with pytest.raises(error, match=message):
        from_torch(source(), tmp_path / "s", progress=False, **options)
    assert not (tmp_path / "s").exists()


def test_from_torch_refuses_a_non_empty_directory_and_cleans_up_a_failed_write(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        from_torch(torch.nn.EmbeddingBag(4, 2), tmp_path / "full", progress=False)
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    with mock.patch.object(tierstore.Store, "set_model_info", side_effect=OSError("disk full")):
        with pytest.raises(OSError, match="disk full"):
            from_torch(torch.nn.EmbeddingBag(4, 2), tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with mock.patch.object(tierstore.Store, "set_model_info", side_effect=OSError("disk full")):
        with pytest.raises(OSError, match="disk full"):
            from_torch(torch.nn.EmbeddingBag(4, 2), tmp_path / "empty", progress=False)
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())


def test_from_torch_streams_a_table_at_a_time(tmp_path):
    """Exporting a 256 MiB table in 8 MiB chunks raises the process's peak RSS by far less than the table."""
    script = textwrap.dedent(f"""
        import resource, torch, tierstore
        small = torch.nn.ModuleDict({{"small": torch.nn.EmbeddingBag(100, 64)}})
        tierstore.from_torch(small, {str(tmp_path / "warm-up")!r}, dtype="int8", progress=False)
        weight = torch.randn(1 << 20, 64)
        model = torch.nn.ModuleDict({{"big": torch.nn.EmbeddingBag.from_pretrained(weight)}})
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tierstore.from_torch(model, {str(tmp_path / "s")!r}, dtype="int8", progress=False, chunk_bytes=8 << 20)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """)
    grew = int(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
               .stdout.split()[-1])
    print(f"peak RSS grew by {grew / 2**20:.0f} MiB")
    assert grew < 96 << 20, f"peak RSS grew by {grew / 2**20:.0f} MiB exporting a 256 MiB table"


def test_import_cli_reports_files_it_cannot_export(tmp_path, capsys):
    from tierstore.cli import main

    torch.save([1, 2], tmp_path / "list.pt")
    torch.save(Recommender().state_dict(), tmp_path / "plain.pt")
    assert main(["import", str(tmp_path / "list.pt"), str(tmp_path / "a"), "--quiet"]) == 1
    assert "exports an nn.Module or a state dict" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "plain.pt"), str(tmp_path / "b"), "--quiet"]) == 1
    assert "no embedding tables in the state dict" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "missing.pt"), str(tmp_path / "c")]) == 1
    assert "no such model file" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")
    model = torch.nn.ModuleDict({"bag": torch.nn.EmbeddingBag(10, 4, mode="mean")})
    torch.save(model, tmp_path / "module.pt")
    assert main(["import", str(tmp_path / "module.pt"), str(tmp_path / "d"), "--allow-pickle", "--json",
                 "--quiet", "--dtype", "int8"]) == 0
    assert json.loads(capsys.readouterr().out)["tables"] == [{"table": "bag", "feature_names": ["bag"],
                                                              "pooling": "mean"}]
