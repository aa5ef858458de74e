"""Store.prefetch: reads ahead change no result, never serve a page from before a commit, end cleanly on
close, and raise a failed read on the lookup that needs it.  Real LMDB stores in temp dirs."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import pool, stored_values

import tierstore
import tierstore.prefetch
from tierstore import CorruptPageError, SparseBatch, StoreClosedError, TableConfig
from tierstore.prefetch import PrefetchConfig

CACHES = [(0, None), (2000, None), (2000, "lru"), (1 << 30, None)]
"""(DRAM bytes, policy): no cache, the set-associative default, the exact LRU tier, a mirror of every row."""


def make_store(path, tables: dict):
    store = tierstore.create(path, list(tables))
    for config, values in tables.items():
        store.load(config.name, values, progress=False)
    store.close()
    return path


def random_batch(rng, tables: dict, bags: int, pooling: int) -> SparseBatch:
    parts = {}
    for config in tables:
        lengths = rng.integers(0, pooling + 1, bags)
        parts[config.name] = (rng.integers(0, config.num_rows, int(lengths.sum())),
                              np.concatenate([[0], np.cumsum(lengths)]))
    return SparseBatch.from_tables(parts)


def expected(tables: dict, batch: SparseBatch, mode: str) -> np.ndarray:
    return np.concatenate([pool(stored_values(values, config.dtype), *batch.table(config.name)[:2], mode=mode)
                           for config, values in tables.items()], axis=1)


def prefetch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("tierstore-prefetch")]


@st.composite
def stores(draw):
    dtypes = draw(st.lists(st.sampled_from(["float32", "float16", "int8"]), min_size=1, max_size=2))
    tables = {}
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    for k, dtype in enumerate(dtypes):
        config = TableConfig(f"t{k}", draw(st.integers(1, 400)), draw(st.sampled_from([3, 8, 16])), dtype,
                             rows_per_page=draw(st.sampled_from([None, 1, 5])),
                             compression=draw(st.sampled_from([None, "zstd"])))
        tables[config] = rng.standard_normal((config.num_rows, config.dim)).astype(np.float32)
    return tables


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables=stores(), cache=st.sampled_from(CACHES), mode=st.sampled_from(["sum", "mean", "max"]),
       max_bytes=st.sampled_from([0, 9000, 1 << 20]), seed=st.integers(0, 2**16), depth=st.sampled_from([1, 3, 32]))
def test_prefetched_lookups_equal_plain_lookups_and_the_reference(tmp_path_factory, tables, cache, mode, max_bytes,
                                                                  seed, depth):
    path = make_store(tmp_path_factory.mktemp("s") / "s", tables)
    rng = np.random.default_rng(seed)
    batches = [random_batch(rng, tables, int(rng.integers(0, 12)), 6) for _ in range(6)]
    config = PrefetchConfig(max_bytes=max_bytes, depth=depth)
    with tierstore.open(path, dram_cache_bytes=cache[0], policy=cache[1], prefetch=config) as ahead, \
            tierstore.open(path, dram_cache_bytes=cache[0], policy=cache[1]) as plain:
        ahead.prefetch(batches[0])
        for number, batch in enumerate(batches):
            if number + 1 < len(batches):
                ahead.prefetch(batches[number + 1])    # pipelined: the next batch reads while this one is looked up
            got = ahead.lookup_batch(batch, mode=mode)
            np.testing.assert_array_equal(got, plain.lookup_batch(batch, mode=mode))
            np.testing.assert_allclose(got, expected(tables, batch, mode), rtol=1e-5, atol=1e-5)
            assert ahead.stats()["prefetch"]["bytes_held"] <= max_bytes
        stats = ahead.stats()["prefetch"]
        assert stats["bytes_held"] == 0 and stats["batches"] == len(batches)
        assert ahead.stats()["dram"]["hits"] == plain.stats()["dram"]["hits"]


def test_lookups_take_the_pages_read_ahead_and_memory_stays_bounded(tmp_path):
    values = np.random.default_rng(1).standard_normal((3000, 16)).astype(np.float32)
    path = make_store(tmp_path / "s", {TableConfig("t", 3000, 16): values})
    ids = np.arange(0, 3000, 7)
    batch = SparseBatch.from_tables({"t": (ids, np.array([0, ids.size]))})
    with tierstore.open(path, prefetch=PrefetchConfig(max_bytes=40 * 4080)) as store:
        handle = store.prefetch(batch)
        assert handle.wait(60) and handle.done()
        stats = store.stats()["prefetch"]
        assert 0 < stats["bytes_held"] <= 40 * 4080 and stats["pages_read"] == 40
        assert stats["pages_over_budget"] > 0
        np.testing.assert_allclose(store.lookup_batch(batch), pool(values, ids, [0, ids.size]), rtol=1e-5)
        stats = store.stats()["prefetch"]
        first_pages = np.unique(ids // store.tables["t"].rows_per_page)[:40]
        served = int(np.count_nonzero(np.isin(ids // store.tables["t"].rows_per_page, first_pages)))
        assert stats["rows_served"] == served and stats["rows_read_late"] == ids.size - served
        assert stats["bytes_held"] == 0
        other = store.prefetch(batch)
        other.cancel()
        assert store.stats()["prefetch"]["bytes_held"] == 0 and store.stats()["prefetch"]["cancelled"] == 1
        store.lookup_batch(SparseBatch.from_tables({"t": (ids, np.array([0, ids.size]))}))  # another object: no handle
        assert store.stats()["prefetch"]["rows_served"] == served


def test_reads_in_flight_block_only_the_lookup_of_their_own_batch(tmp_path, monkeypatch):
    values = np.random.default_rng(7).standard_normal((2000, 16)).astype(np.float32)
    path = make_store(tmp_path / "s", {TableConfig("t", 2000, 16): values})
    disk_ready = threading.Event()
    read_pages = tierstore.prefetch.read_pages

    def slow_disk(*args):
        assert disk_ready.wait(60)
        return read_pages(*args)

    monkeypatch.setattr(tierstore.prefetch, "read_pages", slow_disk)
    ahead = SparseBatch.from_tables({"t": (np.arange(0, 2000, 3), np.array([0, 667]))})
    other = SparseBatch.from_tables({"t": (np.arange(1, 2000, 3), np.array([0, 667]))})
    with tierstore.open(path, dram_cache_bytes=8000) as store:
        handle = store.prefetch(ahead)
        np.testing.assert_allclose(store.lookup_batch(other), pool(values, other.values, [0, 667]), rtol=1e-5,
                                   atol=1e-4)
        assert not handle.done()
        results = []
        waiting = threading.Thread(target=lambda: results.append(store.lookup_batch(ahead)))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and not results      # waits for its own reads still in flight
        disk_ready.set()
        waiting.join(60)
        np.testing.assert_allclose(results[0], pool(values, ahead.values, [0, 667]), rtol=1e-5, atol=1e-4)
        assert store.stats()["prefetch"]["rows_served"] > 0


def test_a_commit_after_the_read_ahead_is_seen_by_the_lookup(tmp_path):
    values = np.ones((100, 4), np.float32)
    path = make_store(tmp_path / "s", {TableConfig("t", 100, 4, rows_per_page=3): values})
    ids = np.arange(100)
    batch = SparseBatch.from_tables({"t": (ids, np.arange(101))})
    with tierstore.open(path, readonly=False) as store:
        store.prefetch(batch).wait(60)
        store.update_rows("t", [5, 50], np.full((2, 4), 7.0, np.float32))
        got = store.lookup_batch(batch)
        assert store.stats()["prefetch"]["pages_stale"] > 0
    values[[5, 50]] = 7.0
    np.testing.assert_array_equal(got, values)


UPDATER = """
    import sys, numpy as np, tierstore
    store = tierstore.open(sys.argv[1], readonly=False)
    for line in sys.stdin:
        store.update_rows("t", np.arange(0, 600, 1), np.full((600, 8), float(line), np.float32))
        print("done", flush=True)
"""


def test_prefetch_racing_update_rows_from_another_process_never_returns_stale_rows(tmp_path):
    path = make_store(tmp_path / "s", {TableConfig("t", 600, 8): np.zeros((600, 8), np.float32)})
    ids = np.arange(600)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(UPDATER), str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        with tierstore.open(path, dram_cache_bytes=600 * 32 // 4) as store:
            for version in range(1, 13):
                batch = SparseBatch.from_tables({"t": (ids, np.arange(601))})
                handle = store.prefetch(batch)
                if version % 2:
                    handle.wait(60)                # read ahead entirely before the commit, or racing it
                writer.stdin.write(f"{version}\n")
                writer.stdin.flush()
                assert writer.stdout.readline() == "done\n"   # committed before the lookup begins
                np.testing.assert_array_equal(store.lookup_batch(batch), np.full((600, 8), version, np.float32))
    finally:
        writer.stdin.close()
        writer.wait(timeout=60)


def test_close_with_prefetches_in_flight_stops_cleanly(tmp_path):
    values = np.random.default_rng(2).standard_normal((20000, 16)).astype(np.float32)
    path = make_store(tmp_path / "s", {TableConfig("t", 20000, 16): values})
    rng = np.random.default_rng(3)
    store = tierstore.open(path, dram_cache_bytes=4096)
    handles = [store.prefetch(SparseBatch.from_tables({"t": (rng.integers(0, 20000, 4000), np.array([0, 4000]))}))
               for _ in range(20)]
    store.close()
    assert prefetch_threads() == []
    assert all(h.done() for h in handles)
    handles[0].cancel()
    with pytest.raises(StoreClosedError):
        store.prefetch(handles[1].batch)
    with pytest.raises(StoreClosedError):
        store.lookup_batch(handles[1].batch)
    with tierstore.open(path, readonly=False) as writer:  # no reader slot or lock is left held
        writer.update_rows("t", [0], np.zeros((1, 16), np.float32))


def page_file_span(path, table: str, page: int) -> tuple[int, int]:
    with tierstore.open(path) as store, store.reading():
        _, starts, ends, *_ = store._ssd[table].locate_direct(np.array([page]))
    return int(starts[0]), int(ends[0])


def two_batches(rows_per_page: int, bad_page: int):
    """A batch reading page ``bad_page`` and one that does not."""
    bad = np.array([bad_page * rows_per_page, 0, 1])
    good = np.array([0, 1, (bad_page + 3) * rows_per_page])
    return (SparseBatch.from_tables({"t": (bad, np.array([0, 3]))}),
            SparseBatch.from_tables({"t": (good, np.array([0, 3]))}))


def test_a_corrupt_page_read_ahead_is_raised_by_the_lookup_that_needs_it(tmp_path):
    values = np.random.default_rng(4).standard_normal((400, 8)).astype(np.float32)
    path = make_store(tmp_path / "s", {TableConfig("t", 400, 8, rows_per_page=4): values})
    start, _ = page_file_span(path, "t", 20)
    fd = os.open(path / "data.mdb", os.O_RDWR)
    try:
        os.pwrite(fd, bytes([os.pread(fd, 1, start + 40)[0] ^ 0x10]), start + 40)
    finally:
        os.close(fd)
    bad, good = two_batches(4, 20)
    with tierstore.open(path) as store:
        bad_handle, good_handle = store.prefetch(bad), store.prefetch(good)
        assert bad_handle.wait(60) and good_handle.wait(60)
        np.testing.assert_allclose(store.lookup_batch(good), pool(values, good.values, [0, 3]), rtol=1e-5)
        with pytest.raises(CorruptPageError, match=r"table 't', page 20: .*read ahead by prefetch"):
            store.lookup_batch(bad)
        with pytest.raises(CorruptPageError, match="page 20"):   # read by the lookup itself: caught too
            store.lookup_batch(bad)
        np.testing.assert_allclose(store.lookup_batch(good), pool(values, good.values, [0, 3]), rtol=1e-5)


def test_a_damaged_overflow_header_read_ahead_is_raised_by_the_lookup_that_needs_it(tmp_path):
    values = np.random.default_rng(6).standard_normal((400, 64)).astype(np.float32)
    path = make_store(tmp_path / "s", {TableConfig("t", 400, 64): values})   # pages of 4056 bytes: overflow runs
    with tierstore.open(path) as store:
        rows_per_page = store.tables["t"].rows_per_page
    start, _ = page_file_span(path, "t", 20)
    fd = os.open(path / "data.mdb", os.O_RDWR)
    try:
        header = start - 16                                             # the run's own page number comes first
        os.pwrite(fd, bytes([os.pread(fd, 1, header)[0] ^ 0x01]), header)
    finally:
        os.close(fd)
    bad, good = two_batches(rows_per_page, 20)
    with tierstore.open(path) as store:
        assert store.prefetch(bad).wait(60) and store.prefetch(good).wait(60)
        np.testing.assert_allclose(store.lookup_batch(good), pool(values, good.values, [0, 3]), rtol=1e-5)
        with pytest.raises(tierstore.CorruptStoreError, match="page 20: its LMDB overflow page header is damaged"):
            store.lookup_batch(bad)
        with pytest.raises(tierstore.CorruptStoreError):               # the walk of the lookup itself finds it too
            store.lookup_batch(bad)


def test_an_io_error_read_ahead_is_raised_by_the_lookup_that_needs_it(tmp_path, monkeypatch):
    values = np.random.default_rng(5).standard_normal((400, 8)).astype(np.float32)
    path = make_store(tmp_path / "s", {TableConfig("t", 400, 8, rows_per_page=4): values})
    failing, _ = page_file_span(path, "t", 20)
    read_pages = tierstore.prefetch.read_pages

    def failing_disk(fd, starts, lengths, offsets, buf, stop):
        """The file as a disk with one unreadable block (at page 20's offset)."""
        before = np.flatnonzero(starts == failing)
        if not before.size:
            return read_pages(fd, starts, lengths, offsets, buf, stop)
        done, _ = read_pages(fd, starts[: before[0]], lengths[: before[0]], offsets[: before[0]], buf, stop)
        return done, OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(tierstore.prefetch, "read_pages", failing_disk)
    bad, good = two_batches(4, 20)
    with tierstore.open(path, prefetch=PrefetchConfig(depth=1)) as store:
        bad_handle, good_handle = store.prefetch(bad), store.prefetch(good)
        assert bad_handle.wait(60) and good_handle.wait(60)
        np.testing.assert_allclose(store.lookup_batch(good), pool(values, good.values, [0, 3]), rtol=1e-5)
        with pytest.raises(OSError, match=r"table 't', page 20: reading ahead failed: .*Input/output error"):
            store.lookup_batch(bad)
        assert store.stats()["prefetch"]["bytes_held"] == 0
        np.testing.assert_allclose(store.lookup_batch(bad), pool(values, bad.values, [0, 3]), rtol=1e-5)


def test_prefetch_config_round_trips_and_rejects_bad_values(tmp_path):
    config = PrefetchConfig(max_bytes=1 << 20, depth=8)
    assert PrefetchConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="depth"):
        PrefetchConfig(depth=0)
    with pytest.raises(ValueError, match="max_bytes"):
        PrefetchConfig(max_bytes=-1)
    path = make_store(tmp_path / "s", {TableConfig("t", 10, 4): np.zeros((10, 4), np.float32)})
    with tierstore.open(path) as store:
        with pytest.raises(KeyError, match="unknown table"):
            store.prefetch(SparseBatch.from_tables({"u": (np.array([0]), np.array([0, 1]))}))
        assert store.stats()["prefetch"]["batches"] == 0 and prefetch_threads() == []
