"""Fault injection: hypothesis flips bits of a small store's data file (or cuts it short), and a worker process
reads every row on each read path (io="mmap", io="pread", py-lmdb) and runs check (see bench/faults.py).

No silently wrong row, no signal, no hang, only CorruptStoreError / IncompatibleStoreError, and check never
passes a store a read found damaged.  ``python -m bench.faults --trials 500`` runs the bigger sweep.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import faults

TRIALS = 40
FLIPS = settings(max_examples=TRIALS, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    work = tmp_path_factory.mktemp("faults")
    np.savez(work / "expected.npz", **faults.build_sample_store(work / "sample"))
    worker = faults.Worker(str(work / "expected.npz"))
    yield work, faults.byte_classes(work / "sample"), worker
    worker.close()


def read_damaged(sample, kind: str, **damage) -> dict:
    work, _, worker = sample
    faults.damage(work / "sample", work / "trial", **damage)
    outcomes = {mode: worker.run(str(work / "trial"), mode, str(work / "sample"))
                for mode in faults.READ_MODES + ("check",)}
    assert not faults.violations(outcomes, kind), outcomes
    return outcomes


def test_byte_classes_cover_every_kind_of_byte(sample):
    _, classes, _ = sample
    assert all(classes[kind].size > 100 for kind in ("pages", "positions", "metadata", "lmdb"))
    assert not np.intersect1d(classes["pages"], classes["lmdb"]).size


@pytest.mark.parametrize("kind", ["pages", "positions", "metadata", "lmdb"])
def test_a_flipped_bit_never_gives_a_wrong_row_a_signal_or_a_hang(sample, kind):
    offsets = sample[1][kind]

    @FLIPS
    @given(index=st.integers(0, offsets.size - 1), bit=st.integers(0, 7))
    def flip(index, bit):
        outcomes = read_damaged(sample, kind, offset=int(offsets[index]), bit=bit)
        if kind != "lmdb":  # every byte of tierstore's own records is checked
            assert all(outcomes[mode].startswith("error:Corrupt") for mode in faults.READ_MODES), outcomes
            assert outcomes["check"] == "problems"

    flip()


def test_a_truncated_data_file_is_an_error_on_every_read_path(sample):
    size = (sample[0] / "sample" / "data.mdb").stat().st_size

    @FLIPS
    @given(length=st.integers(0, size - 1))
    def cut(length):
        outcomes = read_damaged(sample, "truncate", length=length)
        assert all(outcomes[mode].startswith("error:CorruptStoreError") for mode in faults.READ_MODES), outcomes

    cut()
