"""Run the ``tierstore`` command in a fresh process and measure it."""

from __future__ import annotations

import json
import subprocess
import sys

RUN_AND_REPORT_RSS = (
    "import json, resource, sys\n"
    "from tierstore.cli import main\n"
    "code = main(sys.argv[2:])\n"
    "json.dump({'code': code, 'maxrss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024},"
    " open(sys.argv[1], 'w'))\n"
)


def cli_peak_rss(tmp_path, *argv) -> int:
    """Run ``tierstore argv --quiet`` in a new process, assert it succeeded, return its peak RSS in bytes."""
    report = tmp_path / "rss.json"
    subprocess.run([sys.executable, "-c", RUN_AND_REPORT_RSS, str(report), *argv, "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    result = json.loads(report.read_text())
    assert result["code"] == 0
    return result["maxrss"]
