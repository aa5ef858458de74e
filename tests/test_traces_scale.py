"""Streaming at scale: a 100M-request trace through stats, convert and compare (slow).

Each command runs in its own process; its peak RSS must stay below what the
trace's indices alone would take in memory (8 bytes per request), which no
implementation that loads the trace can do.  Run with ``pytest -m slow``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from processes import cli_peak_rss as run_cli

pytestmark = pytest.mark.slow


def test_100m_requests_stream_with_bounded_memory(tmp_path):
    trace = str(tmp_path / "big.tstrace")
    run_cli(tmp_path, "trace", "gen", trace, "--tables", "64", "--batch-size", "4096", "--batches", "28")
    stats_out = tmp_path / "stats.json"
    subprocess.run([sys.executable, "-m", "bench.cli", "trace", "stats", trace, "--json", "--quiet"], check=True,
                   stdout=stats_out.open("w"))
    requests = json.loads(stats_out.read_text())["requests"]
    assert requests > 99_000_000
    in_memory = 8 * requests
    peaks = {
        "stats": run_cli(tmp_path, "trace", "stats", trace),
        "convert_csv": run_cli(tmp_path, "trace", "convert", trace, str(tmp_path / "big.csv")),
        "convert_oracle": run_cli(tmp_path, "trace", "convert", trace, str(tmp_path / "big.oracleGeneral.bin")),
        "compare": run_cli(tmp_path, "compare", trace, "--policies", "lru", "--sizes", "1%",
                           "--out", str(tmp_path / "report"), "--tmpdir", str(tmp_path)),
    }
    for name, peak in peaks.items():
        assert peak < in_memory, f"{name}: peak RSS {peak / 2**20:.0f} MiB is not below the trace's own size"
