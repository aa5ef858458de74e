"""``tierstore create | load | info`` as a user runs them: separate processes, real files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import tierstore


def tierstore_cmd(*argv, cwd=None) -> subprocess.CompletedProcess:
    """Run ``python -m tierstore argv`` and return the finished process (text output)."""
    return subprocess.run([sys.executable, "-m", "tierstore", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def assert_one_line_error(proc, code: int, *words):
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_create_load_info_then_lookups_match_the_file(tmp_path):
    store = tmp_path / "emb"
    made = tierstore_cmd("create", store, "--table", "user:1000:16", "--table", "item:300:8:int8", "--json")
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    assert {n: t["loaded"] for n, t in info["tables"].items()} == {"user": False, "item": False}
    assert info["tables"]["item"]["config"]["dtype"] == "int8"

    rows = np.random.default_rng(0).standard_normal((1000, 16)).astype(np.float32)
    np.save(tmp_path / "user.npy", rows)
    loaded = tierstore_cmd("load", store, "user", tmp_path / "user.npy", "--json")
    assert loaded.returncode == 0, loaded.stderr
    result = json.loads(loaded.stdout)
    assert result["rows"] == 1000 and result["after"]["data_version"] == 1 and result["after"]["bytes_on_disk"] > 0
    assert "load user" in loaded.stderr

    text = tierstore_cmd("info", store)
    assert text.returncode == 0
    assert "1,000 x 16" in text.stdout and "loaded" in text.stdout and "empty" in text.stdout
    info = json.loads(tierstore_cmd("info", store, "--json").stdout)
    user = info["tables"]["user"]
    assert user["pages"] == -(-1000 // user["config"]["rows_per_page"]) and user["layout"] >= 1
    assert info["tables"]["item"]["pages"] == 0 and info["file_bytes"] >= info["used_bytes"] > 0

    with tierstore.open(store) as opened:
        np.testing.assert_array_equal(opened.get_rows("user", np.arange(1000)), rows)


def test_load_from_a_fortran_ordered_integer_file(tmp_path):
    store = tmp_path / "s"
    assert tierstore_cmd("create", store, "--table", "t:50:4:float16", "--json").returncode == 0
    rows = np.asfortranarray(np.arange(200, dtype=np.int16).reshape(50, 4))
    np.save(tmp_path / "t.npy", rows)
    assert tierstore_cmd("load", store, "t", tmp_path / "t.npy", "--quiet").returncode == 0
    with tierstore.open(store) as opened:
        np.testing.assert_array_equal(opened.get_rows("t", np.arange(50)), rows.astype(np.float32))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A store with one empty table t[20, 4] and .npy files good and bad; its info before any command."""
    d = tmp_path_factory.mktemp("bad-args")
    assert tierstore_cmd("create", d / "store", "--table", "t:20:4", "--json").returncode == 0
    np.save(d / "ok.npy", np.ones((20, 4), np.float32))
    np.save(d / "wrong.npy", np.ones((20, 3), np.float32))
    (d / "text.npy").write_text("not numpy")
    (d / "rows.csv").write_text("1,2,3,4\n")
    return d, json.loads(tierstore_cmd("info", d / "store", "--json").stdout)


@pytest.mark.parametrize("argv, code, words", [
    (["create", "{d}/new", "--table", "a:x:4"], 2, ["ROWS and DIM must be integers", "--help"]),
    (["create", "{d}/new", "--table", "a:10"], 2, ["NAME:ROWS:DIM[:DTYPE]"]),
    (["create", "{d}/new", "--table", "a:10:4:float64"], 2, ["float32, float16, int8"]),
    (["create", "{d}/new", "--table", "a:0:4"], 2, ["num_rows must be positive"]),
    (["create", "{d}/new", "--table", "a:5:4", "--table", "a:5:4"], 2, ["twice"]),
    (["create", "{d}/new"], 2, ["--table"]),
    (["create", "{d}/store", "--table", "a:5:4"], 1, ["not empty"]),
    (["load", "{d}/store", "nope", "{d}/ok.npy"], 2, ["no table 'nope'", "t"]),
    (["load", "{d}/store", "t", "{d}/wrong.npy"], 1, ["[20, 4]", "float32 [20, 3]"]),
    (["load", "{d}/store", "t", "{d}/missing.npy"], 1, ["no such file"]),
    (["load", "{d}/store", "t", "{d}/text.npy"], 1, ["not a .npy array file"]),
    (["load", "{d}/store", "t", "{d}/rows.csv"], 2, [".npy"]),
    (["load", "{d}/nostore", "t", "{d}/ok.npy"], 1, ["no tierstore store"]),
    (["info", "{d}/nostore"], 1, ["no tierstore store"]),
    (["info"], 2, ["store"]),
    (["info", "{d}/store", "--bogus"], 2, ["--bogus"]),
])
def test_bad_arguments_give_one_line_and_change_nothing(files, argv, code, words):
    d, before = files
    proc = tierstore_cmd(*(a.format(d=d) for a in argv))
    assert_one_line_error(proc, code, *words)
    assert json.loads(tierstore_cmd("info", d / "store", "--json").stdout) == before
    assert not (d / "new").exists() or not any((d / "new").iterdir())
