"""Bad command lines across the trace, compare and replay commands: one line on stderr, exit 2 (usage) or 1 (failed)."""

from __future__ import annotations

import numpy as np
import pytest
from test_cli_store import assert_one_line_error, tierstore_cmd

from bench.traces import write_trace
from bench.traces.generate import TableSpec, TraceSpec, generate
from tierstore import TableConfig, create


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A store with table 'a', a trace over tables 'a' and 'z', and a text file."""
    d = tmp_path_factory.mktemp("cli-errors")
    with create(d / "store", [TableConfig("a", 100, 4)]) as store:
        store.load("a", np.zeros((100, 4), np.float32), progress=False)
    spec = TraceSpec(tables=(TableSpec("a", 100), TableSpec("z", 50)), batch_size=4, num_batches=3)
    write_trace(d / "t.tstrace", generate(spec))
    (d / "notes.txt").write_text("hello\n")
    return d


@pytest.mark.parametrize("argv, code, words", [
    (["nope"], 2, ["invalid choice: 'nope'"]),
    (["trace"], 2, ["SUBCOMMAND"]),
    (["trace", "gen", "{d}/x.tstrace", "--batches", "-1"], 2, ["--batches", "must be >= 0"]),
    (["trace", "gen", "{d}/x.tstrace", "--preset", "nope"], 2, ["--preset", "meta2022"]),
    (["trace", "gen", "{d}/x.bin", "--to", "parquet"], 2, ["unknown trace format 'parquet'", "dlrm_datasets"]),
    (["trace", "gen", "{d}/x.tstrace", "--rows", "10"], 2, ["--preset zipf"]),
    (["trace", "gen", "{d}/x.unknown", "--preset", "zipf"], 1, ["cannot tell the trace format", "oracleGeneral"]),
    (["trace", "stats", "{d}/missing.tstrace"], 1, ["missing.tstrace"]),
    (["trace", "stats", "{d}/notes.txt", "--format", "tstrace"], 1, ["not a tierstore trace"]),
    (["trace", "convert", "{d}/t.tstrace", "{d}/t.csv", "--from-format", "ORACLE", "--batch-requests", "0"], 2,
     ["--batch-requests", "must be >= 1"]),
    (["compare", "{d}/t.tstrace", "--sizes", "ten"], 2, ["cannot parse cache size 'ten'"]),
    (["compare", "{d}/t.tstrace", "--policies", "nope"], 2, ["unknown policy 'nope'"]),
    (["replay", "{d}/store", "{d}/t.tstrace", "--quiet"], 2, ["['z'] are not in the store", "--fold"]),
    (["replay", "{d}/store", "{d}/t.tstrace", "--dram-cache", "5"], 2, ["bytes (256MiB) or a percentage"]),
    (["replay", "{d}/store", "{d}/t.tstrace", "--policy", "nope"], 2, ["unknown policy 'nope'"]),
    (["replay", "{d}/nostore", "{d}/t.tstrace"], 1, ["no tierstore store"]),
])
def test_bad_command_lines(files, argv, code, words):
    proc = tierstore_cmd(*(a.format(d=files) for a in argv))
    assert_one_line_error(proc, code, *words)
    assert "Traceback" not in proc.stderr and not (files / "x.tstrace").exists()


def test_format_aliases_and_letter_case_are_accepted(files):
    proc = tierstore_cmd("trace", "convert", files / "t.tstrace", files / "t.bin", "--to", "ORACLE", "--quiet")
    assert proc.returncode == 0, proc.stderr
    stats = tierstore_cmd("trace", "stats", files / "t.bin", "--format", "oracleGeneral", "--table-shift", "40",
                          "--json", "--quiet")
    assert stats.returncode == 0, stats.stderr
