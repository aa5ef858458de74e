"""Cold start: compile-free latency figures, ``tierstore warmup``, and policy code that numba caches on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import tierstore
from cache_policies import available_policies, make_policy
from tierstore import TableConfig
from tierstore.cli import main as cli_main
from tierstore.stats import LookupStats
from tierstore.warmup import DEFAULT_TABLES, PAGES_PER_TABLE, WarmupConfig, warmup


def make_store(path, configs):
    store = tierstore.create(path, configs)
    rng = np.random.default_rng(0)
    for c in configs:
        store.load(c.name, rng.standard_normal((c.num_rows, c.dim)).astype(np.float32), progress=False)
    store.close()
    return path


def run_child(script: str, *args, cache_dir=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=1800)


def test_a_batch_during_which_numba_compiles_is_left_out_of_the_percentiles():
    stats = LookupStats()

    @numba.njit
    def compiled_on_first_call(x):
        return x + 1

    stats.start_batch()
    compiled_on_first_call(1)
    stats.record_batch(0.5)
    stats.start_batch()
    compiled_on_first_call(2)
    stats.record_batch(0.002)
    latency = stats.latency_percentiles()
    assert stats.batches == 2
    assert (latency["warmup_batches"], latency["warmup_ms"]) == (1, 500.0)
    assert latency["p50_ms"] == latency["p99_ms"] == 2.0


FIRST_LOOKUPS = """
    import json, sys
    import numpy as np
    import tierstore
    from numba.core import event
    compiles = []
    class Count(event.Listener):
        def on_start(self, e): compiles.append(e.data["dispatcher"].py_func.__qualname__)
        def on_end(self, e): pass
    event.register("numba:compile", Count())
    policy = None if sys.argv[3] == "default" else sys.argv[3]
    store = tierstore.open(sys.argv[1], dram_cache_bytes=int(sys.argv[2]), policy=policy)
    rng = np.random.default_rng(1)
    latencies = []
    for _ in range(3):
        for name in store.tables:
            store.lookup(name, rng.integers(0, 500, 256), np.arange(0, 256, 8), mode="mean")
        latencies.append(store.stats()["latency"])
    print(json.dumps({"latencies": latencies, "compiled": compiles}))
"""


@pytest.mark.parametrize("policy", ["s3fifo", "default"])
def test_the_first_lookups_of_a_process_count_as_warm_up_not_latency(tmp_path, policy):
    path = make_store(tmp_path / "s", [TableConfig("t", 500, 16)])
    done = run_child(FIRST_LOOKUPS, path, 500 * 16 * 4 // 5, policy)
    assert done.returncode == 0, done.stderr[-3000:]
    latencies = json.loads(done.stdout.splitlines()[-1])["latencies"]
    assert latencies[0]["warmup_batches"] == 1 and latencies[0]["p50_ms"] == 0.0  # it loaded (or compiled) code
    assert latencies[-1]["warmup_batches"] == 1 and latencies[-1]["p50_ms"] > 0.0  # the repeats loaded none


def test_warmup_drives_the_tables_of_a_given_store(tmp_path, capsys):
    path = make_store(tmp_path / "s", [TableConfig("a", 50, 16, "int8", rows_per_page=3, compression="zstd")])
    assert cli_main(["warmup", str(path), "--policies", "lru", "--admission", "tinylfu", "--io", "mmap",
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    [table] = result["config"]["tables"]
    assert (table["name"], table["dim"], table["dtype"], table["compression"]) == ("a", 16, "int8", "zstd")
    assert (table["rows_per_page"], table["num_rows"]) == (3, PAGES_PER_TABLE * 3)
    assert (result["config"]["policies"], result["config"]["admission"]) == (["lru"], ["tinylfu"])
    assert result["steps"] == ["create and load", "io=mmap: partial and whole-table DRAM tiers",
                               "policy set-associative default", "policy lru", "policy lru behind tinylfu",
                               "set-associative int64 tags", "a two-level B+tree read with many keys"]
    assert WarmupConfig.from_dict(result["config"]).store == str(path)


def test_warmup_without_a_store_covers_every_pooling_width_dtype_and_codec():
    widths = {t.dim for t in DEFAULT_TABLES}
    assert widths >= {16, 32, 64, 128} and len(widths) > 4
    assert {t.dtype for t in DEFAULT_TABLES} == {"float32", "float16", "int8"}
    assert {t.compression for t in DEFAULT_TABLES} == {None, "zstd"}


def test_warmup_rejects_bad_input_before_doing_anything(capsys):
    assert cli_main(["warmup", "--policies", "lruu"]) == 2
    assert "unknown policy 'lruu'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="io mode must be one of"):
        warmup(WarmupConfig(policies=("lru",), io_modes=("direct",)))


POLICY_STATES = """
    import json, sys
    import numpy as np
    from numba.core import event
    from cache_policies import available_policies, make_policy, simulate
    compiles = []
    class Count(event.Listener):
        def on_start(self, e): compiles.append(e.data["dispatcher"].py_func.__qualname__)
        def on_end(self, e): pass
    event.register("numba:compile", Count())
    keys = np.random.default_rng(0).integers(0, 50, 400)
    policies = [make_policy(n) for n in available_policies()] + [make_policy("lru", admission="tinylfu")]
    print(json.dumps({"misses": [simulate(keys, p, 10, sizes=1 + keys % 3).misses for p in policies],
                      "compiled": compiles}))
"""


def test_simulating_every_policy_loads_from_the_disk_cache_in_a_new_process():
    """The first child compiles what the suite's cache lacks (every policy, on a fresh checkout); the
    second finds everything there."""
    first = run_child(POLICY_STATES)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_child(POLICY_STATES)
    assert second.returncode == 0, second.stderr[-3000:]
    first, second = (json.loads(p.stdout.splitlines()[-1]) for p in (first, second))
    assert second["compiled"] == []
    assert second["misses"] == first["misses"]


@pytest.mark.slow
def test_after_warmup_a_new_process_compiles_nothing_for_any_policy(tmp_path):
    """Every exact policy and the set-associative default, over float32, float16 and int8 tables."""
    path = make_store(tmp_path / "s", [TableConfig("t", 500, 16), TableConfig("h", 500, 16, "float16"),
                                       TableConfig("q", 500, 16, "int8")])
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", "warmup", str(path), "--quiet"],
                          env={**os.environ, "NUMBA_CACHE_DIR": str(cache)}, capture_output=True, text=True,
                          timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    for policy in [*available_policies(), "default"]:
        child = run_child(FIRST_LOOKUPS, path, 3 * 500 * 16 * 4 // 5, policy, cache_dir=cache)
        assert child.returncode == 0, child.stderr[-3000:]
        assert json.loads(child.stdout.splitlines()[-1])["compiled"] == [], policy


def test_policy_kinds_name_the_source_they_were_compiled_from():
    """A kind's numba type carries the package's source fingerprint, so a loop that numba cached
    against older policy code is never loaded (numba itself only checks the loop's own file)."""
    from cache_policies.drive import SOURCE_FINGERPRINT

    state = make_policy("lirs").new_state(10, 10)
    assert SOURCE_FINGERPRINT in str(numba.typeof(state))
