"""torchrec interop: DLRM on a TieredEmbeddingBagCollection gives torchrec's logits; from_torch on torchrec models;
the import CLI; the DLRM benchmark end to end at a tiny size."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install -e '.[torch]'")
torchrec = pytest.importorskip(
    "torchrec", reason="torchrec not installed: see README 'Serve a trained model' for the CPU install recipe")

from torchrec.inference.modules import quantize_inference_model  # noqa: E402
from torchrec.models.dlrm import DLRM  # noqa: E402

import tierstore  # noqa: E402
from tierstore.cli import main as cli_main  # noqa: E402
from tierstore.torch import TieredEmbeddingBagCollection, from_torch  # noqa: E402

DENSE_IN = 5
ARCH = dict(dense_in_features=DENSE_IN, dense_arch_layer_sizes=[16, 8], over_arch_layer_sizes=[16, 1])
#: Tables of different sizes; t1 serves two features, t2 pools by mean.
TABLES = [("t0", 50, ["f0"], "SUM"), ("t1", 300, ["f1", "f1b"], "SUM"), ("t2", 20, ["f2"], "MEAN"),
          ("t3", 1000, ["f3"], "SUM")]


def torchrec_dlrm(seed: int = 0, weighted: bool = False, tables=TABLES) -> DLRM:
    torch.manual_seed(seed)
    configs = [torchrec.EmbeddingBagConfig(name=name, embedding_dim=8, num_embeddings=rows, feature_names=features,
                                           pooling=torchrec.PoolingType[pooling])
               for name, rows, features, pooling in tables]
    ebc = torchrec.EmbeddingBagCollection(tables=configs, is_weighted=weighted, device=torch.device("cpu"))
    with torch.no_grad():
        for table in ebc.embedding_bags.values():
            table.weight.normal_()
    return DLRM(ebc, **ARCH).eval()


def tiered_dlrm(store, trained: DLRM) -> DLRM:
    """What a service writes: the collection from the store alone, the dense weights from the trained model."""
    model = DLRM(TieredEmbeddingBagCollection(store), **ARCH).eval()
    unmatched = model.load_state_dict(trained.state_dict(), strict=False)
    assert not unmatched.missing_keys
    return model


def random_batch(seed: int, batch_size: int = 16, tables=TABLES, weighted: bool = False):
    rng = np.random.default_rng(seed)
    keys, values, lengths = [], [], []
    for _, rows, features, _ in tables:
        for feature in features:
            bag = rng.integers(0, 4, batch_size)
            keys.append(feature)
            lengths.append(bag)
            values.append(rng.integers(0, rows, bag.sum()))
    values = torch.from_numpy(np.concatenate(values))
    weights = torch.rand(values.numel()) if weighted else None
    kjt = torchrec.KeyedJaggedTensor.from_lengths_sync(keys=keys, values=values,
                                                       lengths=torch.from_numpy(np.concatenate(lengths)),
                                                       weights=weights)
    return torch.from_numpy(rng.standard_normal((batch_size, DENSE_IN)).astype(np.float32)), kjt


@pytest.mark.parametrize("cache_bytes", [0, 4000, 1 << 22], ids=["SSD only", "small cache", "all in DRAM"])
def test_dlrm_logits_match_torchrec_fp32(tmp_path, cache_bytes):
    trained = torchrec_dlrm()
    info = from_torch(trained, tmp_path / "s", progress=False)
    assert [(t.table, t.feature_names, t.pooling) for t in info.tables] == [
        ("t0", ("f0",), "sum"), ("t1", ("f1", "f1b"), "sum"), ("t2", ("f2",), "mean"), ("t3", ("f3",), "sum")]
    with tierstore.open(tmp_path / "s", dram_cache_bytes=cache_bytes) as store:
        model = tiered_dlrm(store, trained)
        configs = model.sparse_arch.embedding_bag_collection.embedding_bag_configs()
        expected = trained.sparse_arch.embedding_bag_collection.embedding_bag_configs()
        assert [(c.name, c.num_embeddings, c.embedding_dim, c.feature_names, c.pooling) for c in configs] == [
            (c.name, c.num_embeddings, c.embedding_dim, c.feature_names, c.pooling) for c in expected]
        with torch.inference_mode():
            for seed in range(4):
                dense, kjt = random_batch(seed)
                logits, reference = model(dense, kjt), trained(dense, kjt)
                assert float((logits - reference).abs().max()) <= 1e-5
                keyed = model.sparse_arch.embedding_bag_collection(kjt)
                torch_keyed = trained.sparse_arch.embedding_bag_collection(kjt)
                assert isinstance(keyed, torchrec.KeyedTensor) and keyed.keys() == torch_keyed.keys()
                torch.testing.assert_close(keyed.values(), torch_keyed.values(), rtol=1e-5, atol=1e-5)


def test_weighted_ebc_round_trips(tmp_path):
    tables = [("w0", 40, ["a", "b"], "SUM"), ("w1", 70, ["c"], "SUM")]
    trained = torchrec_dlrm(seed=3, weighted=True, tables=tables)
    assert from_torch(trained, tmp_path / "s", progress=False).weighted
    with tierstore.open(tmp_path / "s", dram_cache_bytes=2000) as store:
        model = tiered_dlrm(store, trained)
        assert model.sparse_arch.embedding_bag_collection.is_weighted()
        with torch.inference_mode():
            for seed in range(3):
                dense, kjt = random_batch(seed, tables=tables, weighted=True)
                assert float((model(dense, kjt) - trained(dense, kjt)).abs().max()) <= 1e-5


def quantization_error(model: DLRM, trained: DLRM, batches) -> float:
    with torch.inference_mode():
        return max(float((model(dense, kjt) - trained(dense, kjt)).abs().max()) for dense, kjt in batches)


@pytest.mark.parametrize("dtype, torch_dtype", [("int8", torch.qint8), ("float16", torch.float16)])
def test_quantized_stores_stay_within_torchrecs_own_quantization_error(tmp_path, dtype, torch_dtype):
    """Compared with the fp32 model, int8/fp16 stores are off by no more than torchrec's own quantized
    inference modules (QuantEmbeddingBagCollection via quantize_inference_model) on the same tables."""
    trained = torchrec_dlrm(seed=1)
    names = [name for name, *_ in TABLES]
    quantized = quantize_inference_model(copy.deepcopy(trained), per_table_weight_dtype=dict.fromkeys(names,
                                                                                                      torch_dtype))
    from_torch(trained, tmp_path / "s", dtype=dtype, progress=False)
    batches = [random_batch(seed, batch_size=64) for seed in range(6)]
    with tierstore.open(tmp_path / "s", dram_cache_bytes=1 << 22) as store:
        ours = quantization_error(tiered_dlrm(store, trained), trained, batches)
    theirs = quantization_error(quantized, trained, batches)
    print(f"{dtype}: max |logit error| tierstore {ours:.2e}, torchrec quantized {theirs:.2e}")
    assert 0 < theirs
    assert ours <= theirs + 1e-6  # fp16 rounds exactly as torchrec does: equal up to summation order


def test_prefetching_loop_gives_the_same_logits(tmp_path):
    trained = torchrec_dlrm(seed=2)
    from_torch(trained, tmp_path / "s", progress=False)
    batches = [random_batch(seed) for seed in range(6)]
    with tierstore.open(tmp_path / "s", dram_cache_bytes=3000) as store:
        model = tiered_dlrm(store, trained)
        with torch.inference_mode():
            plain = [model(dense, kjt) for dense, kjt in batches]
            piped = [model(dense, kjt) for dense, kjt in model.sparse_arch.embedding_bag_collection.prefetching(batches)]
    for a, b in zip(plain, piped):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_from_torch_refuses_quantized_collections(tmp_path):
    quantized = quantize_inference_model(torchrec_dlrm())
    with pytest.raises(TypeError, match="exports torchrec's .*EmbeddingBagCollection"):
        from_torch(quantized, tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_import_cli_reads_state_dicts_and_trusted_modules(tmp_path, capsys):
    trained = torchrec_dlrm(seed=4)
    torch.save(trained.state_dict(), tmp_path / "state.pt")
    torch.save(trained, tmp_path / "model.pt")
    assert cli_main(["import", str(tmp_path / "state.pt"), str(tmp_path / "from-state"), "--dtype", "float16",
                     "--quiet"]) == 0
    assert "t1: features t1 (sum)" in capsys.readouterr().out
    with tierstore.open(tmp_path / "from-state") as store:
        assert store.tables["t3"].dtype == "float16"
        np.testing.assert_array_equal(
            store.get_rows("t3", np.arange(1000)),
            trained.sparse_arch.embedding_bag_collection.embedding_bags["t3"].weight.detach().half().float().numpy())
    assert cli_main(["import", str(tmp_path / "model.pt"), str(tmp_path / "refused"), "--quiet"]) == 1
    assert "--allow-pickle" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    assert cli_main(["import", str(tmp_path / "model.pt"), str(tmp_path / "from-model"), "--allow-pickle",
                     "--quiet"]) == 0
    assert "t1: features f1, f1b (sum)" in capsys.readouterr().out
    with tierstore.open(tmp_path / "from-model") as store:
        assert store.model_info.tables[2].pooling == "mean"


def test_dlrm_benchmark_runs_end_to_end(tmp_path):
    from bench.bench_dlrm import CASES, DlrmBenchConfig, format_report, run_bench

    config = DlrmBenchConfig(max_rows=3000, batch_size=32, batches=2, repeats=1, warm_batches=3, dense_arch="16,64",
                             over_arch="16,1", workdir=str(tmp_path), device="cpu")
    result = run_bench(config, log=lambda line: None)
    assert result["max_abs_logit_diff"] <= 1e-5
    assert set(result["cases"]) == set(CASES)
    assert all(case["samples_per_s"] > 0 and case["p99_ms"] >= case["p50_ms"] for case in result["cases"].values())
    assert result["tiers"]["dram"]["dram_hit_rate"] == 1.0
    assert 0 < result["tiers"]["cache"]["ssd_hit_rate"] < 1
    assert result["config"]["max_rows"] == 3000
    assert "dram / torchrec" in format_report(result)


def test_dlrm_demo_command(tmp_path, capsys):
    assert cli_main(["dlrm-demo", "--max-rows", "500", "--batches", "1", "--repeats", "1", "--device", "cpu",
                     "--workdir", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["max_abs_logit_diff"] <= 1e-5 and result["config"]["batch_size"] == 2048
    assert {"torchrec", "dram", "cache", "dram+pipe", "cache+pipe"} <= set(result["cases"])
    assert not list(tmp_path.iterdir())
