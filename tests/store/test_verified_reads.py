"""Issue 11, items 1 and 9 at the store: every read is checked against its done marker,
old sha256 markers still verify, and float16 overflow is refused instead of stored as inf.
Run on Zarr (disk and memory) and HDF5."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from featstore import open_store
from featstore.errors import DamagedChunkError, DtypeOverflowError, IncompleteEntryError
from featstore.store.checksum import chunk_checksum

KEY = "feat-0123456789abcdef0123"


def _filled(store, rows: int = 10, chunk_rows: int = 4, dtype: str = "float16"):
    rng = np.random.default_rng(1)
    data = np.maximum(rng.standard_normal((rows, 6)), 0).astype(dtype)
    entry = store.create_entry(KEY, {"kind": "features"}, data.shape, dtype, chunk_rows=chunk_rows)
    for i in range(entry.n_chunks):
        a, b = entry.chunk_bounds(i)
        entry.write_chunk(i, data[a:b])
    return entry, data


def _flip_rows(entry, index: int) -> None:
    """Overwrite chunk ``index``'s stored rows with other values, leaving its marker as it was."""
    a, b = entry.chunk_bounds(index)
    current = entry._read_rows(slice(a, b))
    entry._write_rows(a, b, (current + 1).astype(entry.dtype))


def test_markers_record_the_algorithm(store_url):
    with open_store(store_url) as store:
        entry, data = _filled(store)
        record = entry.marker(1)
        assert record["checksum"] == chunk_checksum(data[4:8], key=KEY, index=1)
        assert record["checksum"].startswith("xxh3_128@key:")
        np.testing.assert_array_equal(entry.read(), data)


def test_changed_bytes_raise_naming_entry_chunk_rows_and_fix(store_url):
    with open_store(store_url) as store:
        entry, data = _filled(store)
        _flip_rows(entry, 1)
        for read in (entry.read, lambda: entry.read(rows=[5]), lambda: entry.read(slice(3, 6))):
            with pytest.raises(DamagedChunkError) as err:
                read()
            text = str(err.value)
            assert f"chunk 1 (rows 4-8) of entry {KEY} is damaged" in text
            assert f"featstore repair {KEY}" in text
            assert "featstore verify --repair" in text
        # rows of other chunks are still served, checked
        np.testing.assert_array_equal(entry.read(rows=[0, 9, 2]), data[[0, 9, 2]])
        np.testing.assert_array_equal(entry.read(slice(8, 10)), data[8:10])
        report = entry.verify()
        assert report == {"missing": [], "damaged": [1], "ok": 2, "unbound": []}


def test_deleted_chunk_object_is_not_read_as_zeros(tmp_path):
    with open_store(str(tmp_path / "s.zarr")) as store:
        entry, _ = _filled(store)
        (tmp_path / "s.zarr" / "features" / KEY / "data" / "c" / "2" / "0").unlink()
        with pytest.raises(DamagedChunkError, match=r"chunk 2 \(rows 8-10\)"):
            entry.read()
        assert entry.verify()["damaged"] == [2]


def test_undecodable_chunk_is_named(tmp_path):
    with open_store(str(tmp_path / "s.zarr")) as store:
        entry, _ = _filled(store)
        (tmp_path / "s.zarr" / "features" / KEY / "data" / "c" / "0" / "0").write_bytes(b"junk")
        with pytest.raises(DamagedChunkError, match=r"chunk 0 \(rows 0-4\).*cannot be decoded"):
            entry.read()
        assert entry.verify()["damaged"] == [0]


def test_empty_done_marker_counts_as_damaged(tmp_path):
    with open_store(str(tmp_path / "s.zarr")) as store:
        entry, data = _filled(store)
        (tmp_path / "s.zarr" / "features" / KEY / "_done" / "1").write_bytes(b"")
        with pytest.raises(DamagedChunkError, match="holds no readable checksum"):
            entry.read()
        assert entry.verify() == {"missing": [], "damaged": [1], "ok": 2, "unbound": []}
        np.testing.assert_array_equal(entry.read(rows=[0]), data[[0]])


def test_old_sha256_markers_still_verify(tmp_path):
    with open_store(str(tmp_path / "s.zarr")) as store:
        entry, data = _filled(store)
        for i in range(entry.n_chunks):  # markers as featstore wrote them before xxh3
            a, b = entry.chunk_bounds(i)
            sha = hashlib.sha256(data[a:b].tobytes()).hexdigest()
            path = tmp_path / "s.zarr" / "features" / KEY / "_done" / str(i)
            path.write_text(json.dumps({"rows": [a, b], "sha256": sha}))
        np.testing.assert_array_equal(entry.read(), data)
        assert entry.verify()["unbound"] == [0, 1, 2]  # verified, of the older format
        _flip_rows(entry, 0)
        with pytest.raises(DamagedChunkError, match="chunk 0"):
            entry.read()


def test_old_hdf5_sha256_dataset_still_verifies(tmp_path):
    import h5py

    path = str(tmp_path / "s.h5")
    with open_store(path) as store:
        _, data = _filled(store)
    with h5py.File(path, "a") as f:  # the layout written before: _sha256, no _checksum
        group = f[f"features/{KEY}"]
        del group["_checksum"]
        shas = [hashlib.sha256(data[a : a + 4].tobytes()).hexdigest() for a in (0, 4, 8)]
        group.create_dataset(
            "_sha256", data=np.array(shas, dtype=object), dtype=h5py.string_dtype()
        )
    with open_store(path) as store:
        entry = store.get_entry(KEY)
        np.testing.assert_array_equal(entry.read(), data)
        entry.invalidate_chunk(1)
        entry.write_chunk(1, data[4:8])  # a resume on the old layout writes the new checksum
        assert entry.marker(1)["checksum"].startswith("xxh3_128@key:")
        np.testing.assert_array_equal(entry.read(), data)


def test_missing_chunk_is_still_incomplete_not_damaged(store_url):
    with open_store(store_url) as store:
        entry, _ = _filled(store)
        entry.invalidate_chunk(2)
        with pytest.raises(IncompleteEntryError):
            entry.read()


def test_content_checksum_follows_the_bytes(store_url):
    with open_store(store_url) as store:
        entry, data = _filled(store)
        before = entry.content_checksum()
        entry.invalidate_chunk(0)
        with pytest.raises(IncompleteEntryError):
            entry.content_checksum()
        entry.write_chunk(0, data[:4])  # the same bytes again: the same checksum
        assert entry.content_checksum() == before
        entry.invalidate_chunk(0)
        entry.write_chunk(0, data[:4] + 1)
        assert entry.content_checksum() != before


def test_float16_overflow_is_refused_not_stored_as_inf(store_url):
    with open_store(store_url) as store:
        entry = store.create_entry(KEY, {}, (8, 3), "float16", chunk_rows=4)
        rows = np.ones((4, 3), dtype=np.float32)
        rows[2, 1] = 70000.0
        with pytest.raises(DtypeOverflowError) as err:
            entry.write_chunk(1, rows)
        assert "chunk 1 (rows 4-8)" in str(err.value)
        assert "--dtype float32" in str(err.value)
        assert entry.done_chunks() == set()
        rows[2, 1] = 65504.0  # the largest float16 is fine, and so are inf/nan given as such
        rows[0, 0] = np.inf
        entry.write_chunk(1, rows)
        assert entry.read(rows=[4])[0, 0] == np.inf


def _assembled(blocks, shape, dtype):
    """The output a chunked reader builds from ``read_blocks``, and how many blocks it took."""
    out = np.full(shape, np.nan, dtype=dtype)
    n = 0
    for where, block in blocks:
        out[where] = block
        n += 1
    return out, n


@pytest.mark.parametrize(
    ("rows", "n_blocks"),
    [(None, 3), (slice(2, 9), 3), ([9, 0, 5, 5, 2, 8], 3), ([5, 6], 1), (np.array([], int), 0)],
    ids=["all", "slice", "unsorted-with-repeats", "one-chunk", "none"],
)
def test_read_blocks_gives_what_read_gives_one_chunk_at_a_time(store_url, rows, n_blocks):
    with open_store(store_url) as store:
        entry, _data = _filled(store)  # 10 rows in chunks of 4: [0-4) [4-8) [8-10)
        expected = entry.read(rows)
        out, n = _assembled(entry.read_blocks(rows), expected.shape, expected.dtype)
        np.testing.assert_array_equal(out, expected)
        assert n == n_blocks  # one block per chunk holding a wanted row


def test_read_blocks_refuses_an_incomplete_entry_before_any_block_and_checks_each_chunk(store_url):
    with open_store(store_url) as store:
        entry, _ = _filled(store)
        entry.invalidate_chunk(2)
        blocks = entry.read_blocks()
        with pytest.raises(IncompleteEntryError, match="1 of its chunks are not written"):
            next(blocks)  # refused before chunk 0 is served, as read() refuses it
        assert [len(b) for _, b in entry.read_blocks([0, 5])] == [1, 1]  # chunks 0, 1 only
        entry.write_chunk(2, np.zeros((2, 6)))
        _flip_rows(entry, 1)
        blocks = entry.read_blocks()
        next(blocks)  # chunk 0 is fine
        with pytest.raises(DamagedChunkError, match=r"chunk 1 .* is damaged"):
            next(blocks)


def test_row_view_blocks_follow_the_entry_chunks(tmp_path):
    from featstore.store.content import RowView

    with open_store(str(tmp_path / "s.zarr")) as store:
        entry, data = _filled(store, rows=12, chunk_rows=3)
        rows = np.array([11, 0, 7, 3, 10, 1, 6])  # a subset in another order
        view = RowView(entry, rows)
        seen = []
        original = entry._read_block
        entry._read_block = lambda lo, hi, records: seen.append(lo) or original(lo, hi, records)
        out, n = _assembled(view.read_blocks(), view.shape, entry.dtype)
        np.testing.assert_array_equal(out, data[rows])
        assert seen == [0, 3, 6, 9]
        assert n == 4
        out, _ = _assembled(view.read_blocks([6, 0, 0]), (3, 6), entry.dtype)
        np.testing.assert_array_equal(out, data[[6, 11, 11]])
