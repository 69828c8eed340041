"""Issue 11: a hypothesis state machine interleaving chunk writes, simulated kills (rows
written, marker not), chunk damage (stored bytes changed under their marker), torn markers,
repair and reads, on Zarr in memory, Zarr on disk and HDF5. Invariant: a read either
returns exactly the bytes a clean run wrote, or raises IncompleteEntryError (a chunk is
missing) or DamagedChunkError (a chunk is damaged); never other bytes."""

from __future__ import annotations

import shutil
import tempfile
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from featstore import open_store
from featstore.errors import DamagedChunkError, IncompleteEntryError

KEY = "feat-00000000000000000abc"
ROWS, CHUNK, DIM = 11, 4, 3
N_CHUNKS = 3
TRUTH = (np.arange(ROWS * DIM, dtype=np.float32).reshape(ROWS, DIM) / 7).astype(np.float16)
chunks = st.integers(0, N_CHUNKS - 1)


class IntegrityMachine(RuleBasedStateMachine):
    backend = "memory"

    @initialize()
    def open(self) -> None:
        self.tmp = tempfile.mkdtemp()
        url = {
            "memory": f"memory://machine-{uuid.uuid4().hex}/s.zarr",
            "zarr": f"{self.tmp}/s.zarr",
            "hdf5": f"{self.tmp}/s.h5",
        }[self.backend]
        self.store = open_store(url)
        self.entry = self.store.create_entry(KEY, {}, TRUTH.shape, "float16", chunk_rows=CHUNK)
        self.state = ["missing"] * N_CHUNKS  # per chunk: missing | ok | damaged

    def _bounds(self, c: int) -> tuple[int, int]:
        return self.entry.chunk_bounds(c)

    @rule(c=chunks)
    def write(self, c: int) -> None:
        if self.state[c] == "missing":  # a run only writes chunks it is missing
            a, b = self._bounds(c)
            self.entry.write_chunk(c, TRUTH[a:b])
            self.state[c] = "ok"

    @rule(c=chunks)
    def killed_mid_write(self, c: int) -> None:
        if self.state[c] == "missing":
            a, b = self._bounds(c)
            self.entry._write_rows(a, b, (TRUTH[a:b] * 0).astype(np.float16))  # no marker

    @rule(c=chunks, delta=st.sampled_from([1.0, -2.0, 1000.0]))
    def damage(self, c: int, delta: float) -> None:
        if self.state[c] == "ok":
            a, b = self._bounds(c)
            self.entry._write_rows(a, b, (TRUTH[a:b] + np.float16(delta)).astype(np.float16))
            self.state[c] = "damaged"

    @rule(c=chunks)
    def torn_marker(self, c: int) -> None:
        if self.state[c] == "ok" and self.backend != "hdf5":  # HDF5 markers are one dataset
            self.store.fs.pipe_file(self.entry._marker_path(c), b"")
            self.state[c] = "damaged"

    @rule()
    def repair(self) -> None:
        report = self.entry.verify()
        assert sorted(report["damaged"]) == [i for i, s in enumerate(self.state) if s == "damaged"]
        assert report["missing"] == [i for i, s in enumerate(self.state) if s == "missing"]
        for c in report["damaged"]:
            self.entry.invalidate_chunk(c)
        for c in report["damaged"] + report["missing"]:
            a, b = self._bounds(c)
            self.entry.write_chunk(c, TRUTH[a:b])
            self.state[c] = "ok"

    @rule(rows=st.lists(st.integers(0, ROWS - 1), min_size=1, max_size=6))
    def read_rows(self, rows: list[int]) -> None:
        self._check(rows, lambda: self.entry.read(rows=rows))

    @rule(start=st.integers(0, ROWS - 1), length=st.integers(1, ROWS))
    def read_slice(self, start: int, length: int) -> None:
        stop = min(ROWS, start + length)
        self._check(list(range(start, stop)), lambda: self.entry.read(slice(start, stop)))

    @invariant()
    def full_read(self) -> None:
        if hasattr(self, "entry"):
            self._check(list(range(ROWS)), self.entry.read)

    def _check(self, rows: list[int], read) -> None:
        needed = {self.state[r // CHUNK] for r in rows}
        if "missing" in needed:
            with pytest.raises(IncompleteEntryError):
                read()
        elif "damaged" in needed:
            with pytest.raises(DamagedChunkError):
                read()
        else:
            assert read().tobytes() == TRUTH[rows].tobytes()

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.mark.parametrize("backend", ["memory", "zarr", "hdf5"])
def test_no_read_returns_other_bytes(backend):
    machine = type(f"Machine_{backend}", (IntegrityMachine,), {"backend": backend})
    run = settings(
        max_examples=15,
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )(machine).TestCase
    run().runTest()
