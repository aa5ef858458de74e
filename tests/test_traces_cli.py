"""``trace gen|convert|stats`` and ``compare`` through the command-line entry point."""

from __future__ import annotations

import json
import os

import pytest

from bench.cli import main


def run_json(capsys, *argv) -> dict:
    assert main([*argv, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_gen_stats_convert_round_trip(tmp_path, capsys):
    trace = str(tmp_path / "g.tstrace")
    gen = run_json(capsys, "trace", "gen", trace, "--preset", "zipf", "--tables", "3", "--rows", "500",
                   "--batches", "5", "--batch-size", "64", "--seed", "4")
    assert gen["batches"] == 5 and gen["spec"]["seed"] == 4 and os.path.getsize(trace) == gen["bytes"]
    stats = run_json(capsys, "trace", "stats", trace)
    assert stats["requests"] == gen["requests"] and stats["num_tables"] == 3
    for fmt, extra in (("csv", ["--batch-requests", "1000"]), ("pt", []), ("oracleGeneral.bin", ["--table-shift", "40"])):
        out = str(tmp_path / f"g.{fmt}")
        conv = run_json(capsys, "trace", "convert", trace, out)
        assert conv["requests"] == gen["requests"]
        again = run_json(capsys, "trace", "stats", out, *extra)
        assert again["requests"] == stats["requests"]
        assert again["distinct_rows"] == stats["distinct_rows"]
        assert sorted(t["distinct_rows"] for t in again["tables"].values()) == sorted(
            t["distinct_rows"] for t in stats["tables"].values())


def test_gen_meta_preset_and_spec_file(tmp_path, capsys):
    spec_text = run_json(capsys, "trace", "gen", "unused.tstrace", "--tables", "8", "--batch-size", "32",
                         "--batches", "2", "--print-spec")
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec_text))
    out = str(tmp_path / "m.tstrace")
    gen = run_json(capsys, "trace", "gen", out, "--spec", str(spec_path))
    assert gen["spec"]["preset"] == "meta2022" and len(gen["spec"]["tables"]) == 8


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["trace", "stats", str(tmp_path / "missing.tstrace")]) == 1
    err = capsys.readouterr().err
    assert "missing.tstrace" in err and err.count("\n") == 1
    bad = tmp_path / "bad.tstrace"
    bad.write_bytes(b"TSTRACE\x00garbage")
    assert main(["trace", "stats", str(bad)]) == 1
    assert "byte offset" in capsys.readouterr().err


def test_compare_cli_writes_report(tmp_path, capsys):
    trace = str(tmp_path / "c.tstrace")
    run_json(capsys, "trace", "gen", trace, "--preset", "zipf", "--tables", "2", "--rows", "300",
             "--batches", "4", "--batch-size", "32")
    out = run_json(capsys, "compare", trace, "--policies", "lru", "--sizes", "5%,50%", "--out", str(tmp_path / "r"))
    assert {p["policy"] for p in out["results"]} == {"lru", "belady"}
    assert all(os.path.exists(p) for p in out["files"].values())
