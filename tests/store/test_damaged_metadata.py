"""Issue 11, item 7: one damaged object never takes the store down. A truncated zarr.json of
one entry, of its array, of one dataset, or an empty done marker: ls, verify, datasets
list/show, copy, evaluate and gc name it and keep working for the rest; gc never deletes
data chunks because metadata is unreadable, and respects --older-than."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore import open_store
from featstore.errors import DamagedEntryError, EntryNotFoundError
from tests.eval_helpers import add_dataset, add_features, blobs, interleave_splits


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture
def store_dir(tmp_path: Path) -> tuple[str, dict[str, object]]:
    """A local Zarr store with two datasets and two entries of the first one."""
    url = str(tmp_path / "s.zarr")
    x, y = blobs([12, 12], dim=6)
    with open_store(url) as store:
        good = add_dataset(store, "good", y, interleave_splits(y))
        other = add_dataset(store, "other", y, interleave_splits(y))
        a = add_features(store, good, x, layer="fc", chunk_rows=8)
        b = add_features(store, good, x * 2, layer="fc2", chunk_rows=8)
    return url, {"good": good, "other": other, "a": a.key, "b": b.key}


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


@pytest.mark.parametrize("which", ["group", "array"])
def test_truncated_entry_metadata(store_dir, which):
    url, o = store_dir
    root = Path(url) / "features" / str(o["a"])
    _truncate(root / "zarr.json" if which == "group" else root / "data" / "zarr.json")
    code, out = _run("ls", "--store", url)
    assert code == 0
    assert "DAMAGED" in out
    assert str(o["b"]) in out
    assert "complete" in out
    code, out = _run("verify", "--store", url)
    assert code == 1
    assert f"{o['a']}: DAMAGED entry" in out
    assert f"featstore rm {o['a']}" in out
    assert f"{o['b']}: ok" in out
    with (
        open_store(url, mode="r") as store,
        pytest.raises(DamagedEntryError, match=str(o["a"])),
    ):
        store.get_entry(str(o["a"]))
    # evaluation of the healthy entry still works
    code, out = _run(
        "evaluate",
        "-d",
        "good",
        "-m",
        "toynet",
        "-l",
        "fc2",
        "--task",
        "classify",
        "--store",
        url,
    )
    assert code == 0, out
    # gc keeps it (its chunks and markers are data), even with --older-than 0
    chunks_before = sorted(p.name for p in root.rglob("*") if p.is_file())
    code, out = _run("gc", "--older-than", "0", "--store", url)
    assert code == 0
    assert str(o["a"]) not in out
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == chunks_before
    # copy goes on with the rest and names it
    dst = str(Path(url).parent / "dst.zarr")
    code, out = _run("copy", url, dst, "--all")
    assert code == 1
    assert "DAMAGED in the source" in out
    with open_store(dst, mode="r") as target:
        assert target.entry_keys() == [str(o["b"])]
        np.testing.assert_array_equal(
            target.get_entry(str(o["b"])).read(),
            open_store(url, mode="r").get_entry(str(o["b"])).read(),
        )


def test_array_metadata_gone_chunks_kept(store_dir):
    url, o = store_dir
    root = Path(url) / "features" / str(o["a"])
    (root / "data" / "zarr.json").unlink()
    os.utime(root / "zarr.json", (time.time() - 7200, time.time() - 7200))
    code, out = _run("verify", "--store", url)
    assert code == 1
    assert "no array metadata" in out
    code, out = _run("gc", "--older-than", "0", "--store", url)
    assert code == 0
    assert (root / "data" / "c").exists()
    assert (root / "_done" / "0").exists()


def test_gc_respects_older_than_for_entries_without_array(tmp_path):
    url = str(tmp_path / "s.zarr")
    open_store(url).close()
    young = Path(url) / "features" / "feat-0000000000000000000a"
    young.mkdir(parents=True)
    (young / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group"}))
    code, out = _run("gc", "--store", url)  # default: an hour
    assert code == 0
    assert young.exists()
    assert "nothing to remove" in out
    old = time.time() - 7200
    os.utime(young / "zarr.json", (old, old))
    code, out = _run("gc", "--store", url)
    assert code == 0
    assert not young.exists()


def test_truncated_dataset_metadata(store_dir):
    url, o = store_dir
    other = o["other"]
    _truncate(Path(url) / "datasets" / other.id / "zarr.json")  # type: ignore[attr-defined]
    code, out = _run("datasets", "list", "--store", url)
    assert code == 0
    assert "good" in out
    assert "DAMAGED" in out
    assert other.id in out
    code, out = _run("datasets", "show", "good", "--store", url)
    assert code == 0
    assert "good" in out
    code, out = _run("datasets", "show", other.id, "--store", url)  # type: ignore[attr-defined]
    assert code == 1
    assert "cannot be read" in out
    assert "featstore datasets rm" in out
    code, out = _run("verify", "--store", url)
    assert f"dataset {other.id}: DAMAGED" in out  # type: ignore[attr-defined]
    with open_store(url) as store:
        assert store.get_dataset("good").n == 24
        with pytest.raises(EntryNotFoundError, match="unreadable"):
            store.get_dataset("other")
    code, out = _run("datasets", "rm", other.id, "--store", url)  # type: ignore[attr-defined]
    assert code == 0
    code, out = _run("datasets", "list", "--store", url)
    assert "DAMAGED" not in out


def test_empty_done_marker(store_dir):
    url, o = store_dir
    (Path(url) / "features" / str(o["a"]) / "_done" / "1").write_bytes(b"")
    code, out = _run("ls", "--store", url)
    assert code == 0
    code, out = _run("verify", "--store", url)
    assert code == 1
    assert f"{o['a']}: DAMAGED chunks [1]" in out
    assert f"{o['b']}: ok" in out
    code, out = _run(
        "evaluate",
        "-d",
        "good",
        "-m",
        "toynet",
        "-l",
        "fc",
        "--task",
        "classify",
        "--store",
        url,
    )
    assert code == 1
    assert "chunk 1 (rows 8-16)" in out
    assert "damaged" in out
    with open_store(url, mode="r") as store:
        assert store.result_keys() == []  # nothing scored, nothing stored
