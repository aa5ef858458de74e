"""Fault injection: damage a small store's data file and read it in a child process, on every read path.

A trial copies a sample store, flips one bit (or truncates the file), and has a
worker process read every row of every table with ``io="mmap"``, ``io="pread"``
and through py-lmdb (``TIERSTORE_LMDB_DIRECT=0``), and run ``check``.  A trial
violates the store's promise when a read returns a wrong row without an error,
raises anything but :class:`tierstore.CorruptStoreError` (``CorruptPageError``
included) or :class:`tierstore.IncompatibleStoreError`, dies of a signal, hangs
past the timeout, or when ``check`` crashes or passes a store a read found damaged.

The bits to flip are drawn from byte classes of the sample store, found with the
direct reader: ``pages`` (tierstore pages), ``positions`` (row -> position
chunks), ``metadata`` (the ``__meta__`` values), ``lmdb`` (LMDB's meta pages, and
its branch and leaf pages and overflow page headers, less the values in them).

Run ``python -m bench.faults --trials 500`` for a sweep; it prints trials and
violations per fault class and read path, then a JSON line with its configuration.
The test suite (``tests/test_faults.py``) runs a few dozen hypothesis-chosen trials
per class through the same worker.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

READ_MODES = ("mmap", "pread", "lmdb")
ALLOWED_ERRORS = ("CorruptStoreError", "CorruptPageError", "IncompatibleStoreError")
CLASSES = ("pages", "positions", "metadata", "lmdb", "truncate")
START_TIMEOUT_S = 900
"""The worker's first reads compile the unchecked kernels (minutes on a busy 2-core machine)."""


@dataclass(frozen=True)
class FaultSweepConfig:
    """What a sweep ran with (embedded in its JSON output)."""

    trials: int = 200
    classes: str = ",".join(CLASSES)
    timeout_s: float = 30.0
    seed: int = 0
    workdir: str = ""


def build_sample_store(path) -> dict:
    """A small store touching every code path a read takes; returns ``{table: rows}`` as read back.

    ``f32``: float32, two rows per page (300 pages: LMDB needs a branch page);
    ``i8``: int8 with a shuffled layout (a position array); ``z16``: float16, zstd.
    """
    import tierstore
    from tierstore import TableConfig

    rng = np.random.default_rng(7)
    configs = [TableConfig("f32", 600, 16, rows_per_page=2), TableConfig("i8", 400, 8, "int8"),
               TableConfig("z16", 200, 6, "float16", compression="zstd")]
    store = tierstore.create(path, configs)
    for config in configs:
        store.load(config.name, rng.standard_normal((config.num_rows, config.dim)).astype(np.float32),
                   progress=False)
    store.apply_layout({"i8": rng.permutation(400)}, progress=False)
    rows = {c.name: store.get_rows(c.name, np.arange(c.num_rows)) for c in configs}
    store.close()
    return rows


def byte_classes(path) -> dict[str, np.ndarray]:
    """Offsets in ``path``/data.mdb of the bytes of each fault class (see the module docstring)."""
    import tierstore
    from tierstore.lmdb_direct import PAGE_HEADER, LmdbDirectReader

    store = tierstore.open(path)
    txn = store.env.begin()
    reader = LmdbDirectReader(Path(path))
    try:
        snapshot = reader.pin(txn.id())
        meta_bytes = PAGE_HEADER + 136
        spans = {"pages": [], "positions": [], "metadata": [],
                 "lmdb": [(0, meta_bytes), (reader.psize, reader.psize + meta_bytes)]}
        names = reader.entries(snapshot, snapshot.main_root, "main")
        for k, n, v in zip(names.key_off.tolist(), names.key_len.tolist(), names.val_off.tolist()):
            name = reader.view[k : k + n].tobytes()
            kind = {b"pag": "pages", b"pos": "positions", b"__m": "metadata"}[name[:3]]
            record = reader.find_db(snapshot, name)
            leaves = reader.leaves(snapshot, record.root, name.decode())
            branches = _branch_pages(reader, snapshot, record.root)
            for page in np.concatenate([leaves.astype(np.int64), branches]).tolist():
                spans["lmdb"].append((page * reader.psize, (page + 1) * reader.psize))
            found = reader.leaf_entries(snapshot, leaves, name.decode())
            for v_off, size, flags in zip(found.val_off.tolist(), found.val_len.tolist(), found.flags.tolist()):
                spans[kind].append((v_off, v_off + size))
                if flags & 1:
                    spans["lmdb"].append((v_off - PAGE_HEADER, v_off))
        found = {kind: np.unique(np.concatenate([np.arange(a, b) for a, b in runs])) for kind, runs in spans.items()}
        values = np.concatenate([found["pages"], found["positions"], found["metadata"]])
        found["lmdb"] = np.setdiff1d(found["lmdb"], values)  # small values sit inside leaf pages
        return found
    finally:
        txn.abort()
        reader.close()
        store.close()


def _branch_pages(reader, snapshot, root) -> np.ndarray:
    """Branch pages of the tree at ``root`` (all pages it uses, less its leaves and overflow runs)."""
    seen = np.zeros(snapshot.n_pages, dtype=np.uint8)
    leaves = reader.leaves(snapshot, root, "tree", seen)
    seen[leaves.astype(np.int64)] = 0
    return np.flatnonzero(seen)


def damage(source, target, offset: int | None = None, bit: int = 0, length: int | None = None) -> None:
    """Copy store ``source`` to ``target`` with bit ``bit`` of byte ``offset`` flipped, or cut to ``length`` bytes."""
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    data = bytearray((Path(source) / "data.mdb").read_bytes())
    if offset is not None:
        data[offset] ^= 1 << bit
    if length is not None:
        del data[length:]
    (target / "data.mdb").write_bytes(bytes(data))
    if (Path(source) / "commit").exists():
        shutil.copy(Path(source) / "commit", target / "commit")


class Worker:
    """A child process that reads damaged stores on request; survives nothing, so it is restarted as needed.

    Parameters
    ----------
    expected : str
        An ``.npz`` of the sample store's rows per table.
    timeout_s : float
        How long one read may take before it counts as a hang.
    """

    def __init__(self, expected: str, timeout_s: float = 30.0):
        self.expected = expected
        self.timeout_s = timeout_s
        self.proc = None

    def _start(self, warm_store: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_BOUNDSCHECK", "NUMBA_CACHE_DIR")}
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.faults", "--worker", self.expected],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=Path(__file__).resolve().parents[1])
        for mode in READ_MODES + ("check",):
            outcome = self._ask({"path": warm_store, "mode": mode}, START_TIMEOUT_S)
            if outcome != "ok":
                raise RuntimeError(f"the fault worker cannot read the intact store ({mode}): {outcome}")

    def run(self, path: str, mode: str, warm_store: str) -> str:
        """Read store ``path`` on read path ``mode`` (or ``check``): ``ok``, ``problems`` (check),
        ``wrong``, ``error:<Type>: message``, ``signal:<n>`` or ``hang``."""
        if self.proc is None or self.proc.poll() is not None:
            self._start(warm_store)
        return self._ask({"path": path, "mode": mode}, self.timeout_s)

    def _ask(self, job: dict, timeout: float) -> str:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            return "hang"
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return f"signal:{-code}" if code < 0 else f"exit:{code}"
        return json.loads(line)["outcome"]

    def close(self) -> None:
        """Stop the worker."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def violations(outcomes: dict[str, str], kind: str) -> list[str]:
    """What is wrong with one trial's outcomes ``{mode: outcome}`` (empty: the store kept its promise).

    On damage to LMDB's own pages the py-lmdb path (``lmdb``) is not judged: liblmdb
    trusts its pages, and that path reads them without the bounded walker.
    """
    found = []
    for mode, outcome in outcomes.items():
        if outcome in ("ok", "problems") or (kind == "lmdb" and mode == "lmdb"):
            continue
        if outcome.startswith("error:") and outcome.split(":")[1] in ALLOWED_ERRORS and mode != "check":
            continue
        found.append(f"{mode}: {outcome}")
    if outcomes.get("check") == "ok":
        found += [f"check passed, but {mode} failed: {o}" for mode, o in outcomes.items()
                  if mode != "check" and o.startswith("error:") and not (kind == "lmdb" and mode == "lmdb")]
    return found


def worker_main(expected: str) -> None:
    """Serve read jobs from stdin (one JSON line each), one JSON line of outcome per job."""
    import tierstore
    from tierstore.check import check_store

    rows = dict(np.load(expected))
    for line in sys.stdin:
        job = json.loads(line)
        try:
            if job["mode"] == "check":
                outcome = "ok" if check_store(job["path"]).ok else "problems"
            else:
                os.environ["TIERSTORE_LMDB_DIRECT"] = "0" if job["mode"] == "lmdb" else "1"
                io = "pread" if job["mode"] == "pread" else "mmap"
                with tierstore.open(job["path"], io=io) as store:
                    same = all(np.array_equal(store.get_rows(name, np.arange(want.shape[0])), want)
                               for name, want in rows.items())
                outcome = "ok" if same else "wrong"
        except Exception as err:  # every exception is an outcome to judge
            outcome = f"error:{type(err).__name__}: {str(err)[:300]}"
        print(json.dumps({"outcome": outcome}), flush=True)


def sweep(config: FaultSweepConfig) -> dict:
    """Run ``config.trials`` random trials per class; return trials and violations per class and mode."""
    work = Path(config.workdir or tempfile.mkdtemp(prefix="tierstore-faults-"))
    sample = work / "sample"
    if sample.exists():
        shutil.rmtree(sample)
    np.savez(work / "expected.npz", **build_sample_store(sample))
    classes = byte_classes(sample)
    size = (sample / "data.mdb").stat().st_size
    rng = np.random.default_rng(config.seed)
    worker = Worker(str(work / "expected.npz"), config.timeout_s)
    results = {}
    try:
        for kind in config.classes.split(","):
            counts = Counter()
            examples = []
            for _ in range(config.trials):
                if kind == "truncate":
                    damage(sample, work / "trial", length=int(rng.integers(0, size)))
                else:
                    damage(sample, work / "trial", int(rng.choice(classes[kind])), int(rng.integers(0, 8)))
                outcomes = {mode: worker.run(str(work / "trial"), mode, str(sample))
                            for mode in READ_MODES + ("check",)}
                for mode, outcome in outcomes.items():
                    counts[f"{mode}:{':'.join(outcome.split(':')[:2])}"] += 1
                problems = violations(outcomes, kind)
                counts["violations"] += bool(problems)
                if problems and len(examples) < 5:
                    examples.append(problems)
            results[kind] = {"trials": config.trials, **dict(sorted(counts.items())), "examples": examples}
    finally:
        worker.close()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", metavar="EXPECTED", help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=FaultSweepConfig.trials, help="trials per fault class")
    parser.add_argument("--classes", default=FaultSweepConfig.classes, help="comma-separated: " + ",".join(CLASSES))
    parser.add_argument("--timeout-s", type=float, default=FaultSweepConfig.timeout_s)
    parser.add_argument("--seed", type=int, default=FaultSweepConfig.seed)
    parser.add_argument("--workdir", default="", help="keep the sample store and trials here")
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    config = FaultSweepConfig(args.trials, args.classes, args.timeout_s, args.seed, args.workdir)
    results = sweep(config)
    for kind, result in results.items():
        print(f"{kind:10s} trials {result['trials']:5d}  violations {result['violations']:4d}  "
              + "  ".join(f"{k} {v}" for k, v in result.items() if k not in ("trials", "violations", "examples")))
        for example in result["examples"]:
            print(f"    {example}")
    print(json.dumps({"config": asdict(config), "results": results}))
    return 1 if any(r["violations"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
