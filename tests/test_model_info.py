"""Model info in the store's metadata: round trip, validation, one transaction, other handles follow."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_store import make_store

import tierstore
from tierstore import ModelInfo, TableConfig, TableFeatures


def two_tables(tmp_path):
    rng = np.random.default_rng(0)
    return make_store(tmp_path, {TableConfig("a", 10, 4): rng.standard_normal((10, 4)).astype(np.float32),
                                 TableConfig("b", 7, 4): rng.standard_normal((7, 4)).astype(np.float32)})


INFO = ModelInfo((TableFeatures("a", ("f1", "f2"), "mean"), TableFeatures("b", ("f3",))), weighted=True,
                 source="test model")


def test_model_info_round_trips_and_survives_reopen(tmp_path):
    path = two_tables(tmp_path)
    with tierstore.open(path, readonly=False) as store:
        assert store.model_info is None
        store.set_model_info(INFO)
        assert store.model_info == INFO
    with tierstore.open(path) as store:
        assert store.model_info == INFO
        assert store.model_info.feature_names == ["f1", "f2", "f3"]
        assert store.lookup("a", np.array([1, 2]), np.array([0])).shape == (1, 4)
    with tierstore.open(path, readonly=False) as store:
        store.set_model_info(None)
    with tierstore.open(path) as store:
        assert store.model_info is None


def test_another_process_sees_new_model_info(tmp_path):
    path = two_tables(tmp_path)
    with tierstore.open(path) as reader:
        assert reader.model_info is None
        code = (f"import tierstore; s = tierstore.open({str(path)!r}, readonly=False); "
                f"s.set_model_info(tierstore.ModelInfo.from_dict({INFO.to_dict()!r}))")
        subprocess.run([sys.executable, "-c", code], check=True)
        assert reader.model_info == INFO


def test_bad_model_info_raises_and_writes_nothing(tmp_path):
    path = two_tables(tmp_path)
    with tierstore.open(path, readonly=False) as store:
        store.set_model_info(INFO)
        with pytest.raises(KeyError, match="unknown table 'zzz'"):
            store.set_model_info(ModelInfo((TableFeatures("zzz", ("f",)),)))
        assert store.model_info == INFO
    with tierstore.open(path) as store:
        with pytest.raises(PermissionError, match="read-only"):
            store.set_model_info(None)
        assert store.model_info == INFO


@pytest.mark.parametrize("build, message", [
    (lambda: TableFeatures("a", ()), "feature_names must be non-empty"),
    (lambda: TableFeatures("a", ("f",), "median"), "pooling must be one of"),
    (lambda: ModelInfo(()), "at least one table"),
    (lambda: ModelInfo((TableFeatures("a", ("f",)), TableFeatures("a", ("g",)))), "more than once"),
    (lambda: ModelInfo((TableFeatures("a", ("f",)), TableFeatures("b", ("f",)))), "more than one table"),
    (lambda: ModelInfo.from_dict({"tables": [], "extra": 1}), "unknown fields"),
])
def test_model_info_validates(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_model_info_json_round_trip():
    assert ModelInfo.from_dict(INFO.to_dict()) == INFO
