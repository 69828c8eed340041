"""Crash and concurrency: a SIGKILLed writer resumes; two writers of disjoint chunks lose nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from featstore import open_store

sys.path.insert(0, str(Path(__file__).parents[1]))
from store_writer import expected_rows

WRITER = str(Path(__file__).parents[1] / "store_writer.py")
N_ROWS, CHUNK_ROWS = 200, 10  # 20 chunks


def start_writer(url: str, chunks: str = "all", delay: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            WRITER,
            url,
            "feat-proc",
            str(N_ROWS),
            str(CHUNK_ROWS),
            chunks,
            str(delay),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("backend", ["s.zarr", "s.h5"])
def test_killed_writer_resumes_to_identical_data(tmp_path, backend):
    url = str(tmp_path / backend)
    proc = start_writer(url, delay=0.05)
    written = 0
    assert proc.stdout is not None
    while written < 5:  # wait until a few chunks landed, then kill without warning
        line = proc.stdout.readline()
        assert line, "writer ended before it could be killed"
        written += 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    with open_store(url, mode="r") as store:
        entry = store.get_entry("feat-proc")
        missing = entry.missing_chunks()
        assert 0 < len(missing) < entry.n_chunks, "the kill should leave a partial entry"
        assert not entry.is_complete

    rerun = start_writer(url)
    assert rerun.wait(timeout=120) == 0
    with open_store(url, mode="r") as store:
        entry = store.get_entry("feat-proc")
        assert entry.is_complete
        np.testing.assert_array_equal(entry.read(), expected_rows(0, N_ROWS))
        assert entry.verify()["damaged"] == []


def test_two_processes_fill_disjoint_chunks_of_one_entry(tmp_path):
    url = str(tmp_path / "s.zarr")
    open_store(url).create_entry(
        "feat-proc", {"kind": "features", "writer": "test"}, (N_ROWS, 64), chunk_rows=CHUNK_ROWS
    )
    evens = ",".join(str(i) for i in range(0, 20, 2))
    odds = ",".join(str(i) for i in range(1, 20, 2))
    first, second = start_writer(url, evens, 0.01), start_writer(url, odds, 0.01)
    assert first.wait(timeout=120) == 0
    assert second.wait(timeout=120) == 0
    entry = open_store(url, mode="r").get_entry("feat-proc")
    assert entry.missing_chunks() == []
    np.testing.assert_array_equal(entry.read(), expected_rows(0, N_ROWS))


def test_two_processes_on_all_chunks_never_lose_rows(tmp_path):
    """Both writers race over every chunk: chunks are whole, so duplicates are harmless."""
    url = str(tmp_path / "s.zarr")
    procs = [start_writer(url, "all", 0.005) for _ in range(2)]
    time.sleep(0.01)
    assert all(p.wait(timeout=120) == 0 for p in procs)
    entry = open_store(url, mode="r").get_entry("feat-proc")
    assert entry.is_complete
    np.testing.assert_array_equal(entry.read(), expected_rows(0, N_ROWS))
