"""Reliability: fresh reads across processes, damaged files, full disks, closed handles, rollbacks, the checker.

One regression test per defect of issue 11; tests that could kill the process if they regressed (SIGBUS on a
truncated file or a full disk) run their store in a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import lmdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import pool

import tierstore
from tierstore import SparseBatch, TableConfig
from tierstore.check import check_store
from tierstore.cli import main
from tierstore.lmdb_direct import (
    BAD_PAGE,
    FOUND,
    NOT_FOUND,
    LmdbDirectReader,
    _find_key,
    _find_u64,
    _leaf_entries,
    _tree_leaves,
    read_meta,
)
from tierstore.meta import COMMIT_FILE, encode_meta

FORMAT1_STORE = Path(__file__).parent / "data" / "format1_store"


def make_store(path, tables: dict, layouts: dict | None = None) -> Path:
    store = tierstore.create(path, list(tables))
    for config, values in tables.items():
        store.load(config.name, values, progress=False)
    if layouts:
        store.apply_layout(layouts, progress=False)
    store.close()
    return Path(path)


def child(code: str, *args, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python; a signal shows as a negative return code."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def edit_meta(path, change, checksum: bool = True) -> None:
    """Rewrite the stored metadata through ``change(meta)``, with a valid checksum or keeping the old one."""
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin(write=True) as txn:
        db = env.open_db(b"__meta__", txn=txn)
        raw = bytes(txn.get(b"store", db=db))
        meta = json.loads(raw[12:])
        change(meta)
        body = encode_meta(meta)
        txn.put(b"store", body if checksum else raw[:12] + body[12:], db=db)
    env.close()


# ------------------------------------------------------------------ 1. stale reads
WRITER = """
    import sys, numpy as np, tierstore
    store = tierstore.open(sys.argv[1], readonly=False)
    for line in sys.stdin:
        store.update_rows("t", np.arange(0, 40, 3), np.full((14, 4), float(line), np.float32))
        print("done", flush=True)
"""


@pytest.mark.parametrize("cache_rows, io, direct", [(40, "mmap", "1"), (40, "pread", "1"), (40, "mmap", "0"),
                                                     (10, "mmap", "1"), (10, "pread", "1"), (0, "mmap", "0")],
                         ids=["resident-mmap", "resident-pread", "resident-pylmdb", "cached-mmap", "cached-pread",
                              "uncached-pylmdb"])
def test_lookups_see_every_commit_another_process_finished(tmp_path, monkeypatch, cache_rows, io, direct):
    values = np.arange(160, dtype=np.float32).reshape(40, 4)
    path = make_store(tmp_path / "s", {TableConfig("t", 40, 4, rows_per_page=3): values})
    monkeypatch.setenv("TIERSTORE_LMDB_DIRECT", direct)
    ids, offsets = np.array([0, 3, 4, 39, 39, 6]), np.array([0, 2, 5])
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        with tierstore.open(path, dram_cache_bytes=cache_rows * 16, io=io if direct == "1" else "mmap") as store:
            if cache_rows == 40:
                store.warm("t")
                assert store._fully_resident("t")
            for step in range(1, 4):
                np.testing.assert_array_equal(store.lookup("t", ids, offsets), pool(values, ids, [0, 2, 5, 6]))
                writer.stdin.write(f"{step * 1000}\n")
                writer.stdin.flush()
                assert writer.stdout.readline() == "done\n"
                values[0:40:3] = step * 1000
                np.testing.assert_array_equal(store.lookup("t", ids, offsets), pool(values, ids, [0, 2, 5, 6]))
                batch = SparseBatch.from_tables({"t": (ids, np.array([0, 2, 5, 6]))})
                np.testing.assert_array_equal(store.lookup_batch(batch), pool(values, ids, [0, 2, 5, 6]))
                if cache_rows == 40:
                    store.warm("t")
    finally:
        writer.stdin.close()
        writer.wait(timeout=60)


def test_two_handles_in_one_process_share_the_store_and_see_each_others_writes(tmp_path):
    values = np.ones((20, 2), np.float32)
    path = make_store(tmp_path / "s", {TableConfig("t", 20, 2): values})
    writer = tierstore.open(path, readonly=False)
    reader = tierstore.open(path, dram_cache_bytes=20 * 8)
    assert reader.env is writer.env
    reader.warm("t")
    writer.update_rows("t", [4], np.full((1, 2), 9.0))
    np.testing.assert_array_equal(reader.lookup("t", [4, 5], [0, 1]), [[9, 9], [1, 1]])
    writer.close()
    np.testing.assert_array_equal(reader.get_rows("t", [4]), [[9, 9]])
    reader.close()
    with tierstore.open(path) as again:
        np.testing.assert_array_equal(again.get_rows("t", [4]), [[9, 9]])
    read_only = tierstore.open(path)
    with pytest.raises(ValueError, match="already open read-only in this process"):
        tierstore.open(path, readonly=False)
    read_only.close()
    tierstore.open(path, readonly=False).close()


def test_a_write_from_a_stale_handle_keeps_another_processs_commit(tmp_path):
    path = make_store(tmp_path / "s", {TableConfig("x", 10, 2): np.zeros((10, 2)), TableConfig("y", 10, 2): np.zeros((10, 2))})
    with tierstore.open(path, readonly=False) as store:
        done = child("""
            import sys, numpy as np, tierstore
            with tierstore.open(sys.argv[1], readonly=False) as s:
                s.apply_layout({"y": np.arange(10)[::-1]}, progress=False)
                s.update_rows("y", [1], np.full((1, 2), 5.0))
        """, path)
        assert done.returncode == 0, done.stderr
        store.load("x", np.full((10, 2), 3.0), progress=False)
        np.testing.assert_array_equal(store.get_rows("y", [1, 2]), [[5, 5], [0, 0]])
    with tierstore.open(path) as store:
        np.testing.assert_array_equal(store.get_rows("x", [0]), [[3, 3]])
        np.testing.assert_array_equal(store.get_rows("y", [1]), [[5, 5]])
        np.testing.assert_array_equal(store.row_positions("y"), np.arange(10)[::-1])
        assert store.check().ok


# ------------------------------------------------------------------ 2. positions and the direct reader
def position_bytes(path, table: str) -> tuple[int, int]:
    """File offset and length of ``table``'s (only) position chunk."""
    store = tierstore.open(path)
    reader = LmdbDirectReader(Path(path))
    try:
        snapshot = reader.pin(store.env.info()["last_txnid"])
        layout = store._meta["tables"][[e["config"]["name"] for e in store._meta["tables"]].index(table)]["layout"]
        record = reader.find_db(snapshot, f"pos:{table}:{layout}".encode())
        found = reader.entries(snapshot, record.root, "positions")
        return int(found.val_off[0]), int(found.val_len[0])
    finally:
        reader.close()
        store.close()


@pytest.mark.parametrize("bit", [0, 37, 62], ids=["low bit", "high bit", "top bit"])
@pytest.mark.parametrize("io", tierstore.IO_MODES)
def test_a_flipped_position_is_caught_by_its_checksum(tmp_path, io, bit):
    values = np.arange(300, dtype=np.float32).reshape(100, 3)
    path = make_store(tmp_path / "s", {TableConfig("t", 100, 3): values}, {"t": np.arange(100)[::-1]})
    offset, _ = position_bytes(path, "t")
    with open(path / "data.mdb", "r+b") as f:
        f.seek(offset + 8 * 17 + bit // 8)
        byte = f.read(1)[0]
        f.seek(offset + 8 * 17 + bit // 8)
        f.write(bytes([byte ^ (1 << (bit % 8))]))
    with pytest.raises(tierstore.CorruptStoreError, match=r"table 't': position chunk 0 fails its checksum"):
        tierstore.open(path, io=io)
    report = check_store(path)
    assert not report.ok and report.problems[0].table == "t"


@st.composite
def damaged_maps(draw):
    """A random byte map (2-12 pages of 512 bytes) and a root page, sometimes a plausible one."""
    psize = 512
    n_pages = draw(st.integers(2, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m = rng.integers(0, 256, n_pages * psize, dtype=np.uint8)
    for page in range(n_pages):  # make many pages look like LMDB pages, so the walk goes deep
        if draw(st.booleans()):
            base = page * psize
            m[base : base + 8] = np.frombuffer(np.uint64(page).tobytes(), np.uint8)
            m[base + 10] = draw(st.sampled_from([1, 2, 4]))
            m[base + 11] = 0
            lower = draw(st.integers(16, 40))
            m[base + 12 : base + 14] = np.frombuffer(np.uint16(lower).tobytes(), np.uint8)
            m[base + 14 : base + 16] = np.frombuffer(np.uint16(draw(st.integers(lower, psize))).tobytes(), np.uint8)
    return m, psize, n_pages, np.uint64(draw(st.integers(0, n_pages + 2)))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(case=damaged_maps(), key=st.integers(0, 2**64 - 1))
def test_the_direct_reader_stays_within_the_map_on_any_bytes(case, key):
    # The suite runs with NUMBA_BOUNDSCHECK=1: a read outside the map would raise IndexError here.
    m, psize, n_pages, root = case
    starts, lengths, status = np.empty(1, np.int64), np.empty(1, np.int64), np.empty(1, np.int8)
    _find_u64(m, psize, n_pages, root, np.array([key], np.uint64), starts, lengths, status)
    assert status[0] in (FOUND, NOT_FOUND, BAD_PAGE)
    if status[0] == FOUND:
        assert 0 <= starts[0] and starts[0] + lengths[0] <= m.size
    found = _find_key(m, psize, n_pages, root, np.frombuffer(np.uint64(key).tobytes(), np.uint8))
    assert found[0] != FOUND or found[1] + found[2] <= m.size
    seen = np.zeros(n_pages, np.uint8)
    leaves = np.empty(n_pages, np.uint64)
    status, count, _ = _tree_leaves(m, psize, n_pages, root, seen, leaves)
    if status == 0 and count <= leaves.size:
        out = [np.empty(count * psize, np.int64) for _ in range(5)]
        _leaf_entries(m, psize, n_pages, leaves[:count], seen, *out)


def test_the_direct_reader_finds_what_py_lmdb_finds(tmp_path):
    path = make_store(tmp_path / "s", {TableConfig("t", 900, 4, rows_per_page=2): np.zeros((900, 4))})
    env = lmdb.open(str(path), readonly=True, max_dbs=8)
    reader = LmdbDirectReader(path)
    with env.begin() as txn:
        name = next(bytes(k) for k, _ in txn.cursor() if bytes(k).startswith(b"pages:"))
        db = env.open_db(name, txn=txn, create=False)
        stored = {bytes(k): bytes(v) for k, v in txn.cursor(db=db)}
        snapshot = reader.pin(txn.id())
        root = reader.find_db(snapshot, name).root
        keys = np.array([int.from_bytes(k, "big") for k in stored] + [10**6], np.uint64)
        starts, lengths, status = reader.locate(snapshot, root, keys)
    assert reader.leaves(snapshot, root, "pages").size > 1  # a branch page was walked
    assert list(status) == [FOUND] * len(stored) + [NOT_FOUND]
    assert [reader.view[s : s + n].tobytes() for s, n in zip(starts[:-1], lengths[:-1])] == list(stored.values())
    reader.close()
    env.close()


# ------------------------------------------------------------------ 3. metadata
@pytest.mark.parametrize("field, value", [("layout", 3), ("data_version", 7)])
def test_an_edited_metadata_field_fails_its_checksum_at_open(tmp_path, field, value):
    path = make_store(tmp_path / "s", {TableConfig("t", 10, 32): np.zeros((10, 32))})
    edit_meta(path, lambda meta: meta["tables"][0].update({field: value}), checksum=False)
    with pytest.raises(tierstore.CorruptStoreError, match="metadata fails its checksum"):
        tierstore.open(path)
    assert "fails its checksum" in str(check_store(path).problems[0])


@pytest.mark.parametrize("io, direct", [("mmap", "1"), ("pread", "1"), ("mmap", "0")])
@pytest.mark.parametrize("compression", [None, "zstd"])
def test_pages_whose_size_does_not_fit_the_table_shape_are_corrupt(tmp_path, monkeypatch, io, direct, compression):
    # Metadata with a valid checksum but a wrong width (a writer bug): the page decoders catch it.
    path = make_store(tmp_path / "s", {TableConfig("t", 10, 32, rows_per_page=5, compression=compression):
                                       np.zeros((10, 32))})
    edit_meta(path, lambda meta: meta["tables"][0]["config"].update(dim=33))
    monkeypatch.setenv("TIERSTORE_LMDB_DIRECT", direct)
    with tierstore.open(path, io=io) as store, pytest.raises(tierstore.CorruptPageError,
                                                            match=r"table 't', page 0: payload size"):
        store.get_rows("t", [0])
    assert not check_store(path).ok


def test_metadata_naming_a_missing_layout_is_an_error_not_a_hang(tmp_path):
    path = make_store(tmp_path / "s", {TableConfig("t", 10, 2): np.zeros((10, 2))})
    edit_meta(path, lambda meta: meta["tables"][0].update(layout=12345))
    done = child("""
        import sys, tierstore
        try:
            tierstore.open(sys.argv[1])
        except tierstore.CorruptStoreError as err:
            print(err)
    """, path, timeout=120)
    assert "names databases that are not in the store" in done.stdout, done.stderr
    assert any("page database (layout 12345) is missing" in str(p) for p in check_store(path).problems)


# ------------------------------------------------------------------ 4. truncation, full disk at create
TRUNCATED_OPEN = """
    import sys, tierstore
    for io in tierstore.IO_MODES:
        try:
            tierstore.open(sys.argv[1], io=io)
            print("opened")
        except tierstore.CorruptStoreError as err:
            print("corrupt:", err)
"""


@pytest.mark.parametrize("keep", [0, 100, 4096, 8192 + 5, -4096, -1])
def test_a_truncated_data_file_is_an_error_at_open_not_a_sigbus(tmp_path, keep):
    path = make_store(tmp_path / "s", {TableConfig("t", 2000, 16): np.zeros((2000, 16))})
    data = (path / "data.mdb").read_bytes()
    (path / "data.mdb").write_bytes(data[:keep])
    done = child(TRUNCATED_OPEN, path, env={"TIERSTORE_LMDB_DIRECT": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("corrupt:") == 2, done.stdout
    assert "truncated" in done.stdout or "too short" in done.stdout
    done = child(TRUNCATED_OPEN.replace("tierstore.IO_MODES", '["mmap"]'), path, env={"TIERSTORE_LMDB_DIRECT": "0"})
    assert done.returncode == 0 and done.stdout.startswith("corrupt:"), done.stdout + done.stderr[-2000:]


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MiB tmpfs (root only)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a 20 MiB tmpfs for the full-disk tests")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


CREATE_ON_FULL_DISK = """
    import sys, tierstore
    from tierstore import TableConfig
    try:
        tierstore.create(sys.argv[1], [TableConfig("t", 10, 4)]).close()
        print("created")
    except tierstore.StoreWriteError as err:
        print("write error:", err)
"""


@pytest.mark.parametrize("free", [0, 4096, 12288, 16384])
def test_create_on_a_full_disk_is_a_clear_error(small_disk, free):
    (small_disk / "filler").write_bytes(b"x" * (20 * 2**20 - free))
    done = child(CREATE_ON_FULL_DISK, small_disk / "s")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "write error:" in done.stdout and "no space left on the device" in done.stdout, done.stdout
    assert not (small_disk / "s").exists()


# ------------------------------------------------------------------ 5. disk full during a load
FULL_DISK_LOAD = """
    import shutil, sys, numpy as np, tierstore
    from tierstore import TableConfig
    path = sys.argv[1]
    store = tierstore.create(path, [TableConfig("a", 100, 4), TableConfig("big", 400_000, 16),
                                    TableConfig("mid", 50_000, 16)])
    store.load("a", np.ones((100, 4)), progress=False)
    free = shutil.disk_usage(path).free
    try:
        store.load("big", np.zeros((400_000, 16), np.float32), progress=False, chunk_bytes=1 << 20)
        print("loaded")
    except tierstore.StoreWriteError as err:
        print("write error:", err)
    print("freed:", shutil.disk_usage(path).free >= free - (1 << 20))
    print("intact:", np.array_equal(store.get_rows("a", np.arange(100)), np.ones((100, 4))))
    store.load("mid", np.full((50_000, 16), 2.0), progress=False)
    print("reused:", np.array_equal(store.get_rows("mid", [7]), np.full((1, 16), 2.0)))
    free = shutil.disk_usage(path).free
    with open(path + "/../filler", "wb") as filler:
        filler.write(b"x" * (free - (1 << 20)))
    free = shutil.disk_usage(path).free
    try:
        store.apply_layout({"mid": np.arange(50_000)[::-1]}, progress=False)
    except tierstore.StoreWriteError as err:
        print("layout error:", err)
    print("layout freed:", shutil.disk_usage(path).free >= free - (64 << 10))
    print("kept:", np.array_equal(store.row_positions("mid"), np.arange(50_000)))
    store.close()
    print("check:", tierstore.check.check_store(path).summary())
"""


def test_a_load_that_fills_the_disk_names_it_and_frees_what_it_wrote(small_disk):
    done = child("import tierstore.check\n" + textwrap.dedent(FULL_DISK_LOAD), small_disk / "s")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "write error: loading table 'big'" in out and "no space left on the device" in out, out
    assert "given back to the disk" in out and "freed: True" in out and "intact: True" in out, out
    assert "reused: True" in out, out
    assert "layout error: rewriting layouts" in out and "given back to the disk" in out.split("layout error")[1], out
    assert "layout freed: True" in out and "kept: True" in out, out
    assert "no problems found" in out, out


def test_a_full_map_is_named_with_its_size(tmp_path):
    path = tmp_path / "small"
    store = tierstore.create(path, [TableConfig("a", 10, 4), TableConfig("big", 200_000, 16)], map_size=1 << 20)
    store.load("a", np.ones((10, 4)), progress=False)
    with pytest.raises(tierstore.StoreWriteError, match=r"LMDB map is full \(map_size=1048576"):
        store.load("big", np.zeros((200_000, 16), np.float32), progress=False)
    np.testing.assert_array_equal(store.get_rows("a", np.arange(10)), np.ones((10, 4)))
    store.close()
    assert check_store(path).ok


# ------------------------------------------------------------------ 7. API edges
def test_every_call_on_a_closed_store_raises_one_clear_error(tmp_path):
    path = make_store(tmp_path / "s", {TableConfig("t", 10, 2): np.zeros((10, 2))})
    for cache in (0, 80):
        store = tierstore.open(path, dram_cache_bytes=cache, readonly=False)
        if cache:
            store.warm("t")
        store.close()
        store.close()
        batch = SparseBatch.from_tables({"t": (np.array([1]), np.array([0, 1]))})
        calls = [lambda: store.lookup("t", [1], [0]), lambda: store.lookup_batch(batch),
                 lambda: store.get_rows("t", [1]), lambda: store.warm("t"), lambda: store.row_positions("t"),
                 lambda: store.update_rows("t", [1], np.zeros((1, 2))), lambda: store.load("t", np.zeros((10, 2))),
                 lambda: store.apply_layout({"t": np.arange(10)}), lambda: store.check()]
        for call in calls:
            with pytest.raises(tierstore.StoreClosedError, match="closed; open the store again"):
                call()


def test_bool_indices_pool_like_torch(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(6, 2)
    path = make_store(tmp_path / "s", {TableConfig("t", 6, 2): values})
    indices, offsets = np.array([True, False, True]), np.array([0, 1])
    with tierstore.open(path) as store:
        got = store.lookup("t", indices, offsets)
    np.testing.assert_array_equal(got, pool(values, indices.astype(np.int64), [0, 1, 3]))
    torch = pytest.importorskip("torch", reason="torch is an optional extra")
    want = torch.nn.functional.embedding_bag(torch.from_numpy(indices), torch.from_numpy(values),
                                             torch.from_numpy(offsets), mode="sum")
    np.testing.assert_array_equal(got, want.numpy())


def test_empty_offsets_with_indices_and_unknown_mode_tables_are_named(tmp_path):
    path = make_store(tmp_path / "s", {TableConfig("t", 6, 2): np.zeros((6, 2))})
    with tierstore.open(path) as store:
        with pytest.raises(ValueError, match=r"offsets is empty \(no bags\) but there are 3 indices"):
            store.lookup("t", [1, 2, 3], [])
        assert store.lookup("t", [], []).shape == (0, 2)
        batch = SparseBatch.from_tables({"t": (np.array([1]), np.array([0, 1]))})
        with pytest.raises(KeyError, match=r"mode names unknown tables \['u'\]"):
            store.lookup_batch(batch, mode={"t": "sum", "u": "max"})


def test_two_handles_in_one_process_write_and_read_from_two_threads(tmp_path):
    """Handles on one store share its LMDB environment: one writing in a thread while another reads in another
    thread must neither hang (py-lmdb waits for LMDB's writer lock holding the GIL) nor read a torn version."""
    path = make_store(tmp_path / "s", {TableConfig("a", 400, 4): np.zeros((400, 4))})
    done = child("""
        import sys, threading, numpy as np, tierstore
        reader = tierstore.open(sys.argv[1], readonly=False)
        writer = tierstore.open(sys.argv[1], readonly=False)
        ids, finished, seen = np.arange(0, 400, 2), [], []
        def write():
            for k in range(1, 201):
                writer.update_rows("a", ids, np.full((ids.size, 4), float(k), np.float32))
            finished.append(True)
        thread = threading.Thread(target=write)
        thread.start()
        while not finished:
            rows = reader.get_rows("a", ids[:30])
            assert np.all(rows == rows[0, 0]), rows
            assert not seen or rows[0, 0] >= seen[-1]
            seen.append(rows[0, 0])
        thread.join()
        assert reader.get_rows("a", ids[:1])[0, 0] == 200
        print(len(seen))
    """, path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0


# ------------------------------------------------------------------ 8. rollback
def roll_back_last_commit(path) -> None:
    """Make LMDB's newest meta page look older than the other one, as a damaged txn id would."""
    meta = read_meta(path)
    with open(path / "data.mdb", "r+b") as f:
        f.seek((meta.txn_id & 1) * meta.psize + 16 + 128)
        f.write(np.uint64(meta.txn_id - 2).tobytes())


def test_a_rolled_back_commit_is_detected_at_open(tmp_path):
    values = np.zeros((10, 2), np.float32)
    path = make_store(tmp_path / "s", {TableConfig("t", 10, 2): values})
    with tierstore.open(path, readonly=False) as store:
        store.update_rows("t", [3], np.ones((1, 2)))
    roll_back_last_commit(path)
    with pytest.raises(tierstore.CorruptStoreError, match=r"at commit 2, but commit 3 was made durable"):
        tierstore.open(path)
    assert any("older snapshot" in str(p) for p in check_store(path).problems)
    (path / COMMIT_FILE).unlink()
    with tierstore.open(path) as store:  # the operator accepts the older state
        np.testing.assert_array_equal(store.get_rows("t", [3]), [[0, 0]])


def test_a_running_reader_refuses_a_rolled_back_meta_page(tmp_path):
    path = make_store(tmp_path / "s", {TableConfig("t", 10, 2): np.zeros((10, 2))})
    with tierstore.open(path) as reader:
        done = child("""
            import sys, numpy as np, tierstore
            with tierstore.open(sys.argv[1], readonly=False) as s:
                s.update_rows("t", [3], np.ones((1, 2)))
        """, path)
        assert done.returncode == 0, done.stderr
        np.testing.assert_array_equal(reader.get_rows("t", [3]), [[1, 1]])
        roll_back_last_commit(path)
        # This process's LMDB still names the newest transaction (its lock file does): the meta page disagrees.
        with pytest.raises(tierstore.CorruptStoreError, match="holds another transaction id .* damaged meta page"):
            reader.get_rows("t", [3])


# ------------------------------------------------------------------ format versions
def test_a_format_1_store_opens_and_a_writable_open_upgrades_it(tmp_path):
    path = tmp_path / "old"
    shutil.copytree(FORMAT1_STORE, path)
    rows = dict(np.load(path / "rows.npz"))
    with tierstore.open(path) as store:
        assert store._meta["format_version"] == 1
        assert all(np.array_equal(store.get_rows(t, np.arange(len(v))), v) for t, v in rows.items())
    report = check_store(path)
    assert report.ok and report.format_version == 1 and "format 1" in report.notes[0]
    with tierstore.open(path, readonly=False) as store:
        assert store._meta["format_version"] == 2
        store.update_rows("a", [0], rows["a"][:1] + 1)
    rows["a"][0] += 1
    with tierstore.open(path) as store:
        assert all(np.array_equal(store.get_rows(t, np.arange(len(v))), v) for t, v in rows.items())
    report = check_store(path)
    assert report.ok and report.format_version == 2 and not report.notes


def test_a_newer_format_is_incompatible(tmp_path):
    path = make_store(tmp_path / "s", {TableConfig("t", 10, 2): np.zeros((10, 2))})
    edit_meta(path, lambda meta: meta.update(format_version=3))
    with pytest.raises(tierstore.IncompatibleStoreError, match="format version 3 is newer"):
        tierstore.open(path)


# ------------------------------------------------------------------ the checker
def test_check_reports_a_sound_store_and_names_table_and_page_of_damage(tmp_path, capsys):
    rng = np.random.default_rng(1)
    tables = {TableConfig("f", 300, 8, rows_per_page=4): rng.standard_normal((300, 8)),
              TableConfig("q", 200, 6, "int8", compression="zstd"): rng.standard_normal((200, 6)),
              TableConfig("later", 5, 2): None}
    store = tierstore.create(tmp_path / "s", list(tables))
    for config, values in tables.items():
        if values is not None:
            store.load(config.name, values, progress=False)
    store.apply_layout({"q": rng.permutation(200)}, progress=False)
    report = store.check()
    rows_per_page = store.tables["q"].rows_per_page
    store.close()
    assert report.ok and [t.pages for t in report.tables] == [75, -(-200 // rows_per_page), 0]
    assert main(["check", str(tmp_path / "s")]) == 0
    assert "no problems found" in capsys.readouterr().out
    data = bytearray((tmp_path / "s" / "data.mdb").read_bytes())
    marker = tables[list(tables)[0]][41, :2].astype(np.float32).tobytes()
    at = data.find(marker)
    data[at] ^= 1
    (tmp_path / "s" / "data.mdb").write_bytes(bytes(data))
    assert main(["check", str(tmp_path / "s"), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert not out["ok"] and out["problems"][0]["table"] == "f" and out["problems"][0]["page"] == 10
    assert "checksum" in out["problems"][0]["message"]


def test_a_handle_refuses_a_commit_counter_that_goes_back(tmp_path):
    # Reached when the files are replaced by an older copy under a running writer: LMDB then serves older data.
    path = make_store(tmp_path / "s", {TableConfig("t", 10, 2): np.zeros((10, 2))})
    with tierstore.open(path) as store:
        older = np.uint64(1).tobytes()
        with pytest.raises(tierstore.CorruptStoreError, match="commit counter went back from 2 to 1"):
            store._check_epoch({**store._meta, "epoch": 1}, older)


def test_a_crashed_load_is_a_note_of_check_and_the_next_load_drops_it(tmp_path):
    path = make_store(tmp_path / "s", {TableConfig("t", 4000, 8): np.ones((4000, 8))})
    done = child("""
        import os, signal, sys, numpy as np, tierstore
        store = tierstore.open(sys.argv[1], readonly=False)
        def chunks():
            for i in range(10):
                if i == 5:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield np.full((400, 8), 2.0)
        store.load("t", chunks(), progress=False, chunk_bytes=400 * 8 * 4)
    """, path)
    assert done.returncode == -9
    report = check_store(path)
    assert report.ok and "used by no table" in report.notes[0]
    with tierstore.open(path, readonly=False) as store:
        np.testing.assert_array_equal(store.get_rows("t", [0, 3999]), np.ones((2, 8)))
        store.load("t", np.full((4000, 8), 3.0), progress=False)
    report = check_store(path)
    assert report.ok and not report.notes
