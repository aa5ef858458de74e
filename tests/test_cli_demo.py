"""``tierstore demo`` as a user runs it: named phases, counts that agree, a kept store for replay, info and place."""

from __future__ import annotations

import json
import re

import pytest
from test_cli_store import assert_one_line_error, tierstore_cmd

from bench.traces import open_trace


def last_bar(stderr: str, name: str) -> tuple[int, int]:
    """(batches, requests) of the last update of progress bar ``name``."""
    updates = re.findall(rf"{name}: +\d+%\|[^|]*\| (\d+)/\d+ \[[^\]]*requests=([\d,]+)\]", stderr)
    assert updates, stderr
    batches, requests = updates[-1]
    return int(batches), int(requests.replace(",", ""))


def number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, (pattern, text)
    return int(match.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """One small demo run that keeps its store and trace: (folder, finished process)."""
    folder = tmp_path_factory.mktemp("demo") / "kept"
    proc = tierstore_cmd("demo", "--scale", "0.1", "--batches", "6", "--warmup", "3", "--keep", folder)
    assert proc.returncode == 0, proc.stderr
    return folder, proc


def test_phases_are_named_and_bar_and_summary_agree(kept):
    folder, proc = kept
    out, err = proc.stdout, proc.stderr
    assert err.index("the first batch compiles") < err.index("warm-up:   0%") < err.index("measured:   0%")
    assert last_bar(err, "warm-up") == (2, number(r"2 more batches \(([\d,]+) requests\)", out))
    measured = number(r"measured: 6 batches, ([\d,]+) requests", out)
    assert last_bar(err, "measured") == (6, measured)
    compiled = number(r"the first batch \(([\d,]+) requests\) compiled", out)
    batches = list(open_trace(folder / "demo.tstrace"))
    sizes = [b.values.size for b in batches]
    assert len(batches) == 9 and sizes[0] == compiled and sum(sizes[3:]) == measured
    dram_hits = number(r"\(([\d,]+) of [\d,]+\)", out)
    ssd_requests = number(r"SSD tier \(LMDB\): served [\d.]+% \(([\d,]+) requests\)", out)
    assert dram_hits + ssd_requests == measured and dram_hits > 0
    reads = number(r"over the whole run \(warm-up included\): ([\d,]+) page reads", out)
    distinct = number(r"of ([\d,]+) distinct pages", out)
    assert reads - distinct == number(r"; ([\d,]+) re-reads", out)
    assert distinct <= number(r"in ([\d,]+) LMDB pages", out)
    assert "``" not in out


def test_the_kept_store_and_trace_serve_replay_info_and_place(kept):
    folder, proc = kept
    store, trace = folder / "store", folder / "demo.tstrace"
    replay = tierstore_cmd("replay", store, trace, "--warmup", "3", "--json", "--quiet")
    assert replay.returncode == 0, replay.stderr
    result = json.loads(replay.stdout)
    measured = number(r"measured: 6 batches, ([\d,]+) requests", proc.stdout)
    assert result["measured_batches"] == 6 and result["pooled_rows"] == measured
    assert result["store_stats"]["dram"]["hits"] == number(r"\(([\d,]+) of [\d,]+\)", proc.stdout)

    info = json.loads(tierstore_cmd("info", store, "--json").stdout)
    assert all(t["loaded"] and t["identity_layout"] for t in info["tables"].values())
    placed = tierstore_cmd("place", store, trace, "--json", "--quiet")
    assert placed.returncode == 0, placed.stderr
    after = json.loads(tierstore_cmd("info", store, "--json").stdout)
    assert any(not t["identity_layout"] for t in after["tables"].values())
    assert all(after["tables"][n]["data_version"] == t["data_version"] for n, t in info["tables"].items())


@pytest.mark.parametrize("argv, words", [
    (["demo", "--batches", "0"], ["--batches", "must be >= 1"]),
    (["demo", "--policy", "nope"], ["unknown policy 'nope'", "lru"]),
    (["demo", "--cache-fraction", "2"], ["between 0 and 1"]),
    (["demo", "--scale", "0"], ["--scale"]),
    (["demo", "--warmup", "x"], ["expected an integer"]),
])
def test_demo_usage_errors(argv, words):
    assert_one_line_error(tierstore_cmd(*argv), 2, *words)


def test_keep_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "something").write_text("mine")
    proc = tierstore_cmd("demo", "--keep", tmp_path, "--scale", "0.001", "--batches", "1")
    assert_one_line_error(proc, 1, "not empty")
    assert [p.name for p in tmp_path.iterdir()] == ["something"]
