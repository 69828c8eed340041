"""One generic store test class run against Zarr on disk, Zarr in memory and HDF5."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featstore import open_store
from featstore.errors import (
    EntryMismatchError,
    EntryNotFoundError,
    FeatstoreError,
    IncompleteEntryError,
    NotAStoreError,
    ReadOnlyError,
    StoreNotFoundError,
    StoreVersionError,
)
from featstore.store.geometry import DEFAULT_CHUNK_BYTES, default_chunk_rows


def fill(entry, rng) -> np.ndarray:
    full = rng.standard_normal(entry.shape).astype(entry.dtype)
    for i in range(entry.n_chunks):
        start, stop = entry.chunk_bounds(i)
        entry.write_chunk(i, full[start:stop])
    return full


class TestStoreBackends:
    """The contract every backend keeps (parametrized by the store_url fixture)."""

    def test_new_store_records_format(self, store_url):
        with open_store(store_url) as store:
            assert store.entry_keys() == []
        with open_store(store_url, mode="r") as store:
            assert store.read_only

    def test_entry_roundtrip_and_markers(self, store_url):
        rng = np.random.default_rng(0)
        with open_store(store_url) as store:
            entry = store.create_entry(
                "feat-a", {"kind": "features", "layer": "fc7"}, (10, 3), chunk_rows=4
            )
            assert entry.n_chunks == 3
            assert entry.missing_chunks() == [0, 1, 2]
            assert not entry.is_complete
            data = fill(entry, rng)
            assert entry.is_complete
            np.testing.assert_array_equal(entry.read(), data)
            np.testing.assert_array_equal(entry.read(rows=[9, 0, 5]), data[[9, 0, 5]])
            np.testing.assert_array_equal(entry.read(rows=slice(3, 7)), data[3:7])
            assert entry.attrs["layer"] == "fc7"
        with open_store(store_url, mode="r") as store:
            again = store.get_entry("feat-a")
            assert again.is_complete
            assert again.attrs["layer"] == "fc7"
            np.testing.assert_array_equal(again.read(), data)

    def test_incomplete_entry_is_never_served(self, store_url):
        with open_store(store_url) as store:
            entry = store.create_entry("feat-b", {}, (10, 2), chunk_rows=4)
            entry.write_chunk(0, np.ones((4, 2)))
            assert entry.missing_chunks() == [1, 2]
            with pytest.raises(IncompleteEntryError, match="2 of its chunks are not written"):
                entry.read()
            np.testing.assert_array_equal(
                entry.read(rows=[0, 3]), np.ones((2, 2))
            )  # chunk 0 is done
            with pytest.raises(IncompleteEntryError):
                entry.read(rows=[8])

    def test_reopen_resumes_and_mismatch_is_refused(self, store_url):
        with open_store(store_url) as store:
            entry = store.create_entry("feat-c", {}, (6, 2), chunk_rows=2)
            entry.write_chunk(1, np.full((2, 2), 7))
            reopened = store.create_entry("feat-c", {}, (6, 2), chunk_rows=2)
            assert reopened.missing_chunks() == [0, 2]
            with pytest.raises(EntryMismatchError, match="exists with shape"):
                store.create_entry("feat-c", {}, (6, 3))

    def test_wrong_chunk_shape_is_refused(self, store_url):
        with open_store(store_url) as store:
            entry = store.create_entry("feat-d", {}, (5, 2), chunk_rows=2)
            with pytest.raises(
                EntryMismatchError, match=r"chunk 2 of entry feat-d needs shape \(1, 2\)"
            ):
                entry.write_chunk(2, np.ones((2, 2)))
            assert entry.missing_chunks() == [0, 1, 2]

    def test_read_only_refuses_writes(self, store_url):
        open_store(store_url).close()
        with open_store(store_url, mode="r") as store:
            with pytest.raises(ReadOnlyError, match="read-only"):
                store.create_entry("feat-e", {}, (2, 2))
            with pytest.raises(ReadOnlyError):
                store.put_result("res-x", {"a": 1})

    def test_results_roundtrip(self, store_url):
        with open_store(store_url) as store:
            store.put_result("res-1", {"metrics": {"accuracy": 0.5}, "task": "classify"})
            assert store.has_result("res-1")
            assert store.get_result("res-1")["metrics"]["accuracy"] == 0.5
            assert store.result_keys() == ["res-1"]
            store.delete_result("res-1")
            with pytest.raises(EntryNotFoundError):
                store.get_result("res-1")

    def test_delete_and_missing(self, store_url):
        with open_store(store_url) as store:
            store.create_entry("feat-f", {}, (2, 2))
            store.delete_entry("feat-f")
            assert not store.has_entry("feat-f")
            with pytest.raises(EntryNotFoundError, match="featstore ls"):
                store.get_entry("feat-f")

    def test_verify_names_damaged_chunks(self, store_url):
        with open_store(store_url) as store:
            entry = store.create_entry("feat-g", {}, (6, 4), chunk_rows=2)
            fill(entry, np.random.default_rng(1))
            assert entry.verify() == {"missing": [], "damaged": [], "ok": 3, "unbound": []}
            # damage chunk 1 behind the marker's back
            entry._write_rows(2, 4, np.zeros((2, 4), dtype=entry.dtype))
            assert entry.verify()["damaged"] == [1]

    def test_gc_removes_entries_that_never_finished_a_chunk(self, store_url):
        with open_store(store_url) as store:
            store.create_entry("feat-h", {}, (4, 2), chunk_rows=2)
            done = store.create_entry("feat-i", {}, (4, 2), chunk_rows=2)
            done.write_chunk(0, np.ones((2, 2)))
            removed = store.gc(older_than_s=-1)
            assert any("feat-h" in r for r in removed)
            assert store.has_entry("feat-i")
            assert not store.has_entry("feat-h")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 40),
    row=st.lists(st.integers(1, 5), min_size=0, max_size=3),
    dtype=st.sampled_from(["float16", "float32", "int8", "uint8", "float64"]),
    chunk_rows=st.integers(1, 16),
    backend=st.sampled_from(["zarr", "hdf5"]),
)
def test_roundtrip_random_shapes_and_dtypes(tmp_path_factory, n, row, dtype, chunk_rows, backend):
    path = tmp_path_factory.mktemp("h") / ("s.zarr" if backend == "zarr" else "s.h5")
    rng = np.random.default_rng(n)
    with open_store(str(path)) as store:
        entry = store.create_entry("feat-r", {}, (n, *row), dtype=dtype, chunk_rows=chunk_rows)
        data = (rng.standard_normal((n, *row)) * 50).astype(dtype)
        for i in reversed(range(entry.n_chunks)):  # order must not matter
            start, stop = entry.chunk_bounds(i)
            entry.write_chunk(i, data[start:stop])
        np.testing.assert_array_equal(entry.read(), data)
        assert entry.read().dtype == np.dtype(dtype)


def test_default_chunks_are_a_few_megabytes():
    rows = default_chunk_rows((2048,), "float16")
    assert rows * 2048 * 2 == DEFAULT_CHUNK_BYTES
    assert default_chunk_rows((10**8,), "float32") == 1  # huge rows: one per chunk


def test_zarr_arrays_use_zstd_and_write_empty_chunks(tmp_path):
    store = open_store(str(tmp_path / "s.zarr"))
    entry = store.create_entry("feat-z", {}, (8, 4), chunk_rows=4)
    entry.write_chunk(0, np.zeros((4, 4)))  # all zeros must still land as a chunk object
    meta = json.loads((tmp_path / "s.zarr/features/feat-z/data/zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"] if c["name"] == "zstd"] == ["zstd"]
    assert next(c for c in meta["codecs"] if c["name"] == "zstd")["configuration"]["level"] == 1
    assert os.path.exists(tmp_path / "s.zarr/features/feat-z/data/c/0/0")
    assert os.path.exists(tmp_path / "s.zarr/features/feat-z/_done/0")


def test_not_a_store_and_newer_format_are_refused(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    with pytest.raises(NotAStoreError, match="is not a featstore store"):
        open_store(str(other))
    with pytest.raises(StoreNotFoundError, match="no featstore store at"):
        open_store(str(tmp_path / "missing.zarr"), mode="r")
    path = tmp_path / "new.zarr"
    open_store(str(path))
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["featstore"]["format"] = 99
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreVersionError, match="format 99, newer than the format 2"):
        open_store(str(path))
    assert isinstance(StoreVersionError("x"), FeatstoreError)
    assert isinstance(StoreVersionError("x"), ValueError)


def test_hdf5_newer_format_is_refused(tmp_path):
    import h5py

    path = tmp_path / "s.h5"
    open_store(str(path)).close()
    with h5py.File(path, "a") as f:
        f.attrs["featstore"] = json.dumps({"format": 3})
    with pytest.raises(StoreVersionError, match="format 3"):
        open_store(str(path))
