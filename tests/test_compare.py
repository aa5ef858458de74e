"""compare: the windowed grid replay against cache_policies.simulate, and the HTML report."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.compare import CompareConfig, compare, parse_policy, parse_size
from bench.traces.keystream import KeyStream
from bench.report import write_report
from bench.traces.generate import TableSpec, TraceSpec, generate
from cache_policies import simulate
from tierstore import SparseBatch

# Each policy's replay compiles once (5-25 s here, then numba's disk cache holds it), so the tests use
# representative ones: LRU, LIRS (which evicts during hits and admission, through take_evicted) and
# Belady (next-access times).
POLICIES = ("lru", "lirs")


def small_trace(seed=0, batches=12):
    spec = TraceSpec(
        tables=(TableSpec("a", 400, zipf=1.1, pooling=4), TableSpec("b", 90, zipf=0.6, pooling=2)),
        batch_size=32, num_batches=batches, seed=seed, drift=0.01,
    )
    return list(generate(spec))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.sampled_from(["3", "40", "200"]), byte_mode=st.booleans())
def test_grid_matches_simulate(tmp_path_factory, seed, size, byte_mode):
    trace = small_trace(seed)
    row_bytes = {"a": 32, "b": 96}
    config = CompareConfig(trace="mem", policies=POLICIES, sizes=(size,),
                           table_row_bytes=row_bytes if byte_mode else {}, windows=7)
    result = compare(trace, config, workdir=str(tmp_path_factory.mktemp("ks")))
    with KeyStream(trace) as stream:
        keys = stream.keys()
        sizes = np.asarray([row_bytes[stream.tables[t]] for t in stream.table_by_id])[
            np.concatenate([c[1] for c in stream.chunks(False)])] if byte_mode else None
    assert {p["policy"] for p in result["results"]} == set(POLICIES) | {"belady"}
    capacity = int(size)
    for point in result["results"]:
        ref = simulate(keys, parse_policy(point["policy"]), capacity, sizes=sizes)
        assert (point["hits"], point["misses"]) == (ref.hits, ref.misses), point["policy"]
        assert (point["byte_hits"], point["byte_misses"]) == (ref.byte_hits, ref.byte_misses)
        assert sum(t["hits"] for t in point["per_table"].values()) == point["hits"]
        assert sum(t["requests"] for t in point["per_table"].values()) == keys.size
        assert len(point["hit_ratio_over_time"]) == 7


def test_key_stream_and_next_access():
    trace = [SparseBatch(keys=("x", "y"), values=np.array([5, 6, 5, 5]), lengths=np.array([2, 1, 1, 0]))] * 2
    with KeyStream(trace, chunk=3) as stream:
        y = 1 << 40
        assert stream.keys().tolist() == [5, 6, 5, y | 5, 5, 6, 5, y | 5]
        nxt = np.concatenate([c[2] for c in stream.chunks(True)]).tolist()
        assert nxt == [2, 5, 4, 7, 6, -1, -1, -1]
        assert stream.n_keys == 3 and stream.tables == ["x", "y"]


def test_belady_bounds_every_policy_and_fractions_resolve(tmp_path):
    trace = small_trace(1, batches=30)
    result = compare(trace, CompareConfig(trace="mem", policies=("lru", "lirs"), sizes=("1%", "10%", "50%")),
                     workdir=str(tmp_path))
    n_keys = result["trace"]["distinct_keys"]
    for size, frac in (("1%", 0.01), ("10%", 0.1), ("50%", 0.5)):
        points = {p["policy"]: p for p in result["results"] if p["size"] == size}
        assert points["lru"]["capacity"] == max(1, int(frac * n_keys))
        assert all(points["belady"]["misses"] <= p["misses"] for p in points.values())


def test_size_and_policy_parsing_errors():
    assert parse_size("1%") == ("fraction", 0.01)
    assert parse_size("64MiB") == ("bytes", 64 << 20)
    assert parse_size("5000") == ("objects", 5000)
    with pytest.raises(ValueError, match="cannot parse"):
        parse_size("lots")
    with pytest.raises(ValueError, match="unknown unit"):
        parse_size("3parsecs")
    with pytest.raises(ValueError, match="available"):
        parse_policy("mru")
    with pytest.raises(ValueError, match="mix"):
        CompareConfig(trace="t", policies=("lru",), sizes=("100", "1MiB"))
    assert CompareConfig.from_json(CompareConfig(trace="t", policies=("lru",), sizes=("1%",)).to_json()).sizes == ("1%",)


def _decode_png(uri: str) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    config = CompareConfig(trace="small.tstrace", policies=("lru", "lirs"), sizes=("2%", "10%", "40%"), windows=10)
    result = compare(small_trace(2, batches=20), config, workdir=str(out))
    return result, write_report(result, out / "rep")


def test_report_files_carry_the_config(report):
    result, paths = report
    data = json.loads(open(paths["results.json"]).read())
    assert CompareConfig.from_dict(data["config"]) == CompareConfig.from_dict(result["config"])
    csv_text = open(paths["results.csv"]).read().splitlines()
    assert json.loads(csv_text[0].removeprefix("# config: ")) == json.loads(json.dumps(result["config"]))
    assert csv_text[1].startswith("policy,size,capacity")
    assert len(csv_text) == 2 + 3 * 3
    md = open(paths["summary.md"]).read()
    assert "| belady |" in md and "| lru |" in md
    html = open(paths["report.html"]).read()
    uris = re.findall(r'src="(data:image/png;base64,[^"]+)"', html)
    assert len(uris) == 3
    for uri in uris:
        img = _decode_png(uri)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0.05
    assert "http" not in html.replace("http-equiv", "")  # self-contained: nothing fetched


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium; CI installs it)")
    _, paths = report
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1200,2000", f"file://{paths['report.html']}"],
        check=True, capture_output=True, timeout=120,
    )
    import matplotlib.image as mpimg

    pixels = mpimg.imread(str(shot))[..., :3]
    assert pixels.std() > 0.05, "screenshot is blank"
    # matplotlib's first two line colours (tab:blue, tab:orange) only appear if the plots rendered
    for rgb in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):
        close = np.all(np.abs(pixels * 255 - np.asarray(rgb)) < 12, axis=-1)
        assert close.sum() > 200, f"plot colour {rgb} missing from the screenshot: images did not load"
