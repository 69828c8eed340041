"""copy / export / import between stores: skip what the target has, never copy a damaged chunk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.datasets.sources import dataset_from_source
from featstore.errors import EntryNotFoundError, StoreError
from featstore.store import open_store
from featstore.store.copy import copy_store, entries_equal, export_hdf5, import_hdf5


def populate(url: str, image_folder: Path) -> dict[str, np.ndarray]:
    """A store with one dataset, two entries (one float16 5x2x2 maps, one float32) and a result."""
    store = open_store(url)
    dataset = dataset_from_source("tiny", str(image_folder))
    store.put_dataset(dataset)
    rng = np.random.default_rng(3)
    out = {}
    for key, shape, dtype in (("feat-a", (18, 5, 2, 2), "float16"), ("feat-b", (18, 7), "float32")):
        entry = store.create_entry(
            key,
            {"kind": "features", "dataset_id": dataset.id, "layer": key},
            shape,
            dtype,
            chunk_rows=4,
        )
        data = rng.standard_normal(shape).astype(dtype)
        for i in range(entry.n_chunks):
            start, stop = entry.chunk_bounds(i)
            entry.write_chunk(i, data[start:stop])
        entry.update_attrs(status="complete")
        out[key] = data
    store.put_result("res-1", {"key": "res-1", "dataset_id": dataset.id, "metrics": {"acc": 0.5}})
    return out


def test_copy_all_then_nothing_twice(tmp_path, image_folder):
    data = populate(str(tmp_path / "a.zarr"), image_folder)
    src, dst = open_store(str(tmp_path / "a.zarr"), "r"), open_store(str(tmp_path / "b.zarr"))
    summary = copy_store(src, dst)
    assert summary["ok"]
    assert summary["n_chunks_copied"] == 10
    assert len(summary["datasets"]["copied"]) == 1
    assert summary["results"]["copied"] == ["res-1"]
    for key, values in data.items():
        assert entries_equal(src.get_entry(key), dst.get_entry(key))
        np.testing.assert_array_equal(dst.get_entry(key).read(), values)
        assert dst.get_entry(key).attrs["status"] == "complete"
    assert dst.get_dataset("tiny").fingerprint == src.get_dataset("tiny").fingerprint
    again = copy_store(src, dst)
    assert again["n_chunks_copied"] == 0
    assert all(e["skipped"] == 5 for e in again["entries"])
    assert again["results"]["skipped"] == ["res-1"]
    assert again["datasets"]["copied"] == []


def test_copy_some_keys_brings_their_dataset(tmp_path, image_folder):
    populate(str(tmp_path / "a.zarr"), image_folder)
    src, dst = open_store(str(tmp_path / "a.zarr"), "r"), open_store(str(tmp_path / "b.zarr"))
    summary = copy_store(src, dst, ["feat-b", "res-1"])
    assert dst.entry_keys() == ["feat-b"]
    assert dst.result_keys() == ["res-1"]
    assert summary["datasets"]["copied"] == src.dataset_ids()
    with pytest.raises(EntryNotFoundError, match="no feature entry or result 'feat-zz'"):
        copy_store(src, dst, ["feat-zz"])


def test_copy_resumes_a_partial_target_and_refuses_damaged_source_chunks(tmp_path, image_folder):
    data = populate(str(tmp_path / "a.zarr"), image_folder)
    src = open_store(str(tmp_path / "a.zarr"))
    dst = open_store(str(tmp_path / "b.zarr"))
    target = dst.create_entry(
        "feat-b", dict(src.get_entry("feat-b").attrs), (18, 7), "float32", chunk_rows=4
    )
    target.write_chunk(0, data["feat-b"][:4])
    # damage chunk 2 of the source behind zarr's back (the marker's checksum no longer matches)
    chunk_file = tmp_path / "a.zarr" / "features" / "feat-b" / "data" / "c" / "2" / "0"
    good = chunk_file.read_bytes()
    shutil.copy(tmp_path / "a.zarr" / "features" / "feat-b" / "data" / "c" / "1" / "0", chunk_file)
    summary = copy_store(src, dst, ["feat-b"])
    report = summary["entries"][0]
    assert report["skipped"] == 1
    assert report["copied"] == [1, 3, 4]
    assert report["unavailable"] == [2]
    assert not summary["ok"]
    assert not report["complete"]
    assert dst.get_entry("feat-b").missing_chunks() == [2]
    chunk_file.write_bytes(good)  # repaired source: the next copy finishes the entry
    assert copy_store(src, dst, ["feat-b"])["entries"][0]["copied"] == [2]
    np.testing.assert_array_equal(dst.get_entry("feat-b").read(), data["feat-b"])


def test_export_hdf5_and_import_back(tmp_path, image_folder):
    data = populate(str(tmp_path / "a.zarr"), image_folder)
    src = open_store(str(tmp_path / "a.zarr"), "r")
    summary = export_hdf5(src, tmp_path / "out.h5")
    assert summary["ok"]
    assert summary["n_chunks_copied"] == 10
    with open_store(str(tmp_path / "out.h5"), "r") as h5:
        assert sorted(h5.entry_keys()) == ["feat-a", "feat-b"]
        np.testing.assert_array_equal(h5.get_entry("feat-a").read(), data["feat-a"])
        assert h5.get_result("res-1")["metrics"] == {"acc": 0.5}
    back = open_store(str(tmp_path / "c.zarr"))
    assert import_hdf5(tmp_path / "out.h5", back)["ok"]
    for key in data:
        assert entries_equal(src.get_entry(key), back.get_entry(key))
    assert back.get_entry("feat-a").verify() == {
        "missing": [],
        "damaged": [],
        "ok": 5,
        "unbound": [],
    }
    with pytest.raises(StoreError, match=r"must end in .h5"):
        export_hdf5(src, tmp_path / "out.zarr")


def test_cli_copy_export_import(tmp_path, image_folder):
    data = populate(str(tmp_path / "a.zarr"), image_folder)
    runner = CliRunner()
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    result = runner.invoke(cli, ["copy", a, b])
    assert result.exit_code == 2
    assert "name the KEYs to copy, or pass --all" in result.output
    result = runner.invoke(cli, ["copy", a, b, "--all", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n_chunks_copied"] == 10
    result = runner.invoke(cli, ["copy", a, b, "feat-a"])
    assert result.exit_code == 0
    assert "feat-a: 0 chunks copied, 5 already there" in result.output
    h5 = str(tmp_path / "x.h5")
    result = runner.invoke(cli, ["export", "--format", "hdf5", h5, "feat-a", "--store", b])
    assert result.exit_code == 0, result.output
    c = str(tmp_path / "c.zarr")
    result = runner.invoke(cli, ["import", h5, "--store", c])
    assert result.exit_code == 0
    assert result.output.strip().endswith("ok")
    np.testing.assert_array_equal(open_store(c, "r").get_entry("feat-a").read(), data["feat-a"])
    result = runner.invoke(cli, ["copy", a, str(tmp_path / "d.zarr"), "feat-nope"])
    assert result.exit_code == 1
    assert "Error: no feature entry or result 'feat-nope' in store" in result.output


def test_incremental_copy_moves_only_missing_and_changed_chunks(
    tmp_path, image_folder, monkeypatch
):
    """Issue 24 item 5: a target that mostly holds the source gets only what it lacks or
    holds with another checksum; the markers alone decide; a second copy moves 0 bytes."""
    from featstore.store.zarr_store import ZarrEntry

    data = populate(str(tmp_path / "a.zarr"), image_folder)
    src, dst = open_store(str(tmp_path / "a.zarr")), open_store(str(tmp_path / "b.zarr"))
    assert copy_store(src, dst, ["feat-a"])["n_chunks_copied"] == 5
    # the rest: feat-b's 5 chunks only, and it says how many bytes
    rest = copy_store(src, dst)
    assert rest["ok"]
    assert rest["n_chunks_copied"] == 5
    assert rest["n_chunks_skipped"] == 5
    assert rest["bytes_copied"] == data["feat-b"].nbytes
    assert rest["n_chunks_changed"] == 0
    # one chunk of the source is recomputed with other bytes: that chunk alone moves again
    entry = src.get_entry("feat-a")
    new = (data["feat-a"][4:8] + 1).astype("float16")
    entry.write_chunk(1, new)
    again = copy_store(src, dst)
    assert again["ok"]
    assert again["n_chunks_copied"] == 1
    assert again["n_chunks_changed"] == 1
    assert again["bytes_copied"] == new.nbytes
    assert [e["changed"] for e in again["entries"]] == [[1], []]
    np.testing.assert_array_equal(dst.get_entry("feat-a").read(slice(4, 8)), new)
    assert dst.get_entry("feat-a").attrs["status"] == "complete"

    # nothing left to move: no data of either side is read, 0 bytes transferred
    def no_reads(self, rows):
        raise AssertionError(f"data of {self.key} read by a copy that had nothing to move")

    monkeypatch.setattr(ZarrEntry, "_read_rows", no_reads)
    last = copy_store(src, dst)
    assert last["ok"]
    assert last["n_chunks_copied"] == 0
    assert last["bytes_copied"] == 0
    assert last["n_chunks_skipped"] == 10
    assert last["results"]["skipped"] == ["res-1"]


def test_cli_copy_says_what_it_transferred(tmp_path, image_folder):
    populate(str(tmp_path / "a.zarr"), image_folder)
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    first = CliRunner().invoke(cli, ["copy", a, b, "--all"])
    assert first.exit_code == 0, first.output
    assert (
        "transferred 10 chunks (1.2 KB, 0 of them changed); 0 chunks already there" in first.output
    )
    second = CliRunner().invoke(cli, ["copy", a, b, "--all", "--json"])
    assert second.exit_code == 0, second.output
    summary = json.loads(second.output)
    assert summary["bytes_copied"] == 0
    assert summary["n_chunks_copied"] == 0
    assert summary["n_chunks_skipped"] == 10
    third = CliRunner().invoke(cli, ["copy", a, b, "--all"])
    assert "transferred 0 chunks (0 B, 0 of them changed); 10 chunks already there" in third.output
