"""A kill at any write of `datasets add` (with and without --replace), copy, import and
upgrade leaves the old state or the new one, never a half-made object, and the store works
on from there. The kills come from tests/crash_worker.py (each write step, one at a time)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featstore.datasets import Dataset, dataset_from_source
from featstore.store import open_store
from featstore.store.copy import copy_store, entries_equal, export_hdf5, import_hdf5
from featstore.store.upgrade import upgrade_store
from tests.conftest import make_image

WORKER = Path(__file__).resolve().parents[1] / "crash_worker.py"


def _source(root: Path, seed: int) -> str:
    for c in ("a", "b"):
        for i in range(3):
            make_image(root / c / f"{i}.jpg", seed=100 * seed + 10 * (c == "b") + i)
    return str(root)


def _kill_at_every_write(spec: dict[str, Any]) -> tuple[list[Path], int]:
    """Run the worker; returns the folders each kill left (k = 1..N, by ``every``) and N."""
    done = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cut = json.loads(done.stdout)
    steps = int((Path(spec["work"]) / "0" / "steps").read_text())
    every = spec.get("every", 1)
    assert cut == sorted(set(range(1, steps + 1, every)) | {steps}), (cut, steps)
    return [Path(spec["work"]) / str(k) for k in cut], steps


def _datasets(url: str) -> set[tuple[str, str, int]]:
    """(name, id, n) of every listed dataset; each must be whole and readable."""
    store = open_store(url)
    listed = store.list_datasets()
    assert not [d for d in listed if d.get("damaged")], listed
    out = set()
    for info in listed:
        ds = store.get_dataset(info["id"])
        assert ds.id == info["id"]
        assert len(ds.refs) == ds.n == info["n"]
        out.add((ds.name, ds.id, ds.n))
    assert store.get_dataset(info["name"]).id == info["id"] if listed else True
    return out


def _row(ds: Dataset) -> tuple[str, str, int]:
    return (ds.name, ds.id, ds.n)


@pytest.fixture
def sources(tmp_path: Path) -> list[Dataset]:
    """Three datasets: "other", and two different contents both called "same"."""
    return [
        dataset_from_source("other", _source(tmp_path / "src0", 0)),
        dataset_from_source("same", _source(tmp_path / "src1", 1)),
        dataset_from_source("same", _source(tmp_path / "src2", 2)),
    ]


@pytest.mark.parametrize("replace", [False, True])
def test_datasets_add_killed_at_every_write_leaves_old_or_new(tmp_path, sources, replace):
    other, first, second = sources
    template = tmp_path / "template"
    store = open_store(str(template / "s.zarr"))
    store.put_dataset(other)
    if replace:
        store.put_dataset(first)
    new = second if replace else first
    old_state = {_row(other)} | ({_row(first)} if replace else set())
    new_state = {_row(other), _row(new)}
    spec = {
        "op": "add",
        "template": str(template),
        "work": str(tmp_path / "work"),
        "name": "same",
        "source": new.source["root"],
        "replace": replace,
    }
    cases, steps = _kill_at_every_write(spec)
    assert steps >= 10  # arrays, their metadata, the attributes, the claim: many cut points
    seen = set()
    for case in cases:
        url = str(case / "s.zarr")
        state = _datasets(url)
        assert state in (old_state, new_state), (case.name, state)
        seen.add(frozenset(state))
        # the store works on: registering again ends in the new state, nothing left over
        store = open_store(url)
        store.put_dataset(new, replace=replace)
        assert _datasets(url) == new_state, case.name
        assert sorted(store.dataset_ids()) == sorted(i for _, i, _ in new_state), case.name
    assert frozenset(old_state) in seen  # a kill before the metadata's one write: not there
    if replace:  # a kill after the claim's swap, while the old one is removed: the new one
        assert frozenset(new_state) in seen


def _entry_source(tmp_path: Path, ds: Dataset) -> str:
    """A store holding ``ds``, one complete 3-chunk entry of it and one result record."""
    url = str(tmp_path / "srcstore.zarr")
    store = open_store(url)
    store.put_dataset(ds)
    values = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
    entry = store.create_entry(
        "feat-0123456789abcdef0123",
        {"dataset_id": ds.id, "status": "writing", "kind": "features"},
        values.shape,
        "float32",
        chunk_rows=4,
    )
    for c in range(entry.n_chunks):
        start, stop = entry.chunk_bounds(c)
        entry.write_chunk(c, values[start:stop])
    entry.update_attrs(status="complete", timings={"seconds": 1.0})
    store.put_result("res-0123456789abcdef0123", {"dataset_id": ds.id, "score": 0.5})
    return url


def _check_copy_target(src_url: str, dst_url: str) -> None:
    """Old or new per object: datasets whole, entries honest (complete only if every chunk
    is there and equal), records whole."""
    src, dst = open_store(src_url, mode="r"), open_store(dst_url)
    assert not dst.damaged_datasets()
    assert not dst.damaged_entries()
    for info in _datasets(dst_url):
        assert info in _datasets(src_url)
    for key in dst.entry_keys():
        entry = dst.get_entry(key)
        if entry.attrs.get("status") == "complete":
            assert entry.is_complete, key
            assert entries_equal(src.get_entry(key), entry), key
        else:
            assert entry.attrs.get("status") == "writing", entry.attrs
            check = entry.verify()
            assert not check["damaged"]
    for key in dst.result_keys():
        assert dst.get_result(key) == src.get_result(key)


@pytest.mark.parametrize("kind", ["copy", "import"])
def test_copy_and_import_killed_at_every_write_leave_old_or_new(tmp_path, sources, kind):
    src_url = _entry_source(tmp_path, sources[0])
    template = tmp_path / "template"
    template.mkdir()
    if kind == "copy":
        shutil.copytree(src_url, template / "src.zarr")
    else:
        export_hdf5(open_store(src_url, mode="r"), template / "src.h5")
    open_store(str(template / "dst.zarr"))  # an empty target store
    spec = {"op": kind, "template": str(template), "work": str(tmp_path / "work"), "every": 3}
    cases, _ = _kill_at_every_write(spec)
    for case in cases:
        dst_url = str(case / "dst.zarr")
        _check_copy_target(src_url, dst_url)
        # running it again finishes the copy
        if kind == "copy":
            summary = copy_store(open_store(src_url, mode="r"), open_store(dst_url))
        else:
            summary = import_hdf5(case / "src.h5", open_store(dst_url))
        assert summary["ok"], (case.name, summary)
        src, dst = open_store(src_url, mode="r"), open_store(dst_url, mode="r")
        for key in src.entry_keys():
            assert entries_equal(src.get_entry(key), dst.get_entry(key)), case.name
            assert dst.get_entry(key).attrs["status"] == "complete"
        assert _datasets(dst_url) == _datasets(src_url)


def _format_1_store(url: str, ds: Dataset) -> str:
    """A format-1 store: ``ds`` registered without image hashes, one entry keyed by it."""
    store = open_store(url)
    legacy = dataset_from_source(ds.name, ds.source["root"])
    legacy.image_hashes = None
    store.put_dataset(legacy)
    key = "feat-00000000000000000001"
    attrs = {"dataset_id": ds.id, "dataset_fingerprint": ds.fingerprint, "status": "complete"}
    entry = store.create_entry(key, attrs, (ds.n, 2), "float32", chunk_rows=4)
    for c in range(entry.n_chunks):
        start, stop = entry.chunk_bounds(c)
        entry.write_chunk(c, np.full((stop - start, 2), c, dtype=np.float32))
    store._set_format_version(1)
    return key


def test_upgrade_killed_at_every_write_leaves_old_or_new(tmp_path, sources):
    ds = sources[0]
    template = tmp_path / "template"
    key = _format_1_store(str(template / "s.zarr"), ds)
    spec = {"op": "upgrade", "template": str(template), "work": str(tmp_path / "work"), "every": 2}
    cases, _ = _kill_at_every_write(spec)
    hashed = 0
    for case in cases:
        url = str(case / "s.zarr")
        assert _datasets(url) == {_row(ds)}
        store = open_store(url)
        got = store.get_dataset(ds.id)
        assert got.image_hashes in (None, ds.image_hashes)  # old or new, never part
        hashed += got.image_hashes is not None
        images = store.get_entry(key).attrs.get("images")
        assert images in (None, ds.images_id)
        if store.format_version == 2:
            assert got.image_hashes is not None
            assert images == ds.images_id
        again = upgrade_store(store)  # and running it again finishes the job
        assert again["format"] == 2, case.name
        assert not again["datasets_failed"], case.name
        assert store.get_dataset(ds.id).images_id == ds.images_id
        assert store.get_entry(key).attrs["images"] == ds.images_id
    assert 0 < hashed < len(cases)  # kills before and after the dataset's swap


# --- what an older featstore left: a dataset listed with some of its attributes ------------
def _half_made(url: str, ds: Dataset, kept: int) -> None:
    """Register ``ds`` as featstore <= this change did when killed after writing ``kept``
    attributes: the arrays, then zarr.json rewritten once per attribute."""
    import zarr

    store = open_store(url)
    attrs, arrays = ds.to_arrays()
    group = zarr.open_group(store.zarr_store, path=f"datasets/{ds.id}", mode="a")
    for name, values in arrays.items():
        group.create_array(
            name, shape=values.shape, dtype=str if values.dtype.kind in "US" else values.dtype
        )[...] = values
    for name in list(attrs)[:kept]:
        group.attrs[name] = attrs[name]


def _cli(*args: str):
    from click.testing import CliRunner
    from featstore.cli.main import cli

    return CliRunner().invoke(cli, list(args))


def _one_line_error(result, start: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {start}"), result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_half_made_dataset_of_an_older_version_is_damaged_in_one_line(
    tmp_path, sources, monkeypatch
):
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))
    good, half, _ = sources
    url = str(tmp_path / "s.zarr")
    open_store(url).put_dataset(good)
    _half_made(url, half, kept=2)  # name and fingerprint: listed, with 0 classes, before
    why = f"dataset {half.id}: its registration is incomplete (no n, classes, split_names;"

    listed = _cli("datasets", "list", "--store", url)
    assert listed.exit_code == 0, listed.output
    assert good.id in listed.output
    assert "DAMAGED" in listed.output
    assert why in listed.output
    _one_line_error(_cli("datasets", "show", half.id, "--store", url), why)
    _one_line_error(_cli("datasets", "show", "same", "--store", url), "no dataset 'same' in store")
    shown = _cli("datasets", "show", "other", "--store", url)
    assert shown.exit_code == 0, shown.output
    assert good.id in shown.output, shown.output

    copied = _cli("copy", url, str(tmp_path / "copy.zarr"), "--all")
    assert copied.exit_code == 0, copied.output
    assert f"dataset {half.id}: not copied: DAMAGED in the source: {why}" in copied.output
    assert _datasets(str(tmp_path / "copy.zarr")) == {_row(good)}
    exported = _cli("export", str(tmp_path / "out.h5"), "--store", url)
    assert exported.exit_code == 0, exported.output
    assert f"dataset {half.id}: not copied: DAMAGED in the source" in exported.output
    assert _datasets(str(tmp_path / "out.h5")) == {_row(good)}

    extract = ["extract", "--store", url, "-d", "other", "-m", "resnet18", "-l", "penultimate"]
    extract += ["--weights", "random", "--resize", "40", "--crop", "32", "--device", "cpu"]
    extracted = _cli(*extract)
    assert extracted.exit_code == 0
    assert "done: 1 entries complete" in extracted.output

    again = _cli("datasets", "add", "same", half.source["root"], "--store", url)
    assert again.exit_code == 0, again.output  # the same source repairs it
    assert _datasets(url) == {_row(good), _row(half)}


def test_a_half_made_hdf5_dataset_is_damaged_too(tmp_path, sources):
    good, half, _ = sources
    path = str(tmp_path / "s.h5")
    with open_store(path) as store:
        store.put_dataset(good)
        attrs, arrays = half.to_arrays()
        store._put_dataset_arrays(half.id, {"name": attrs["name"]}, arrays)
    with open_store(path, mode="r") as store:
        assert store.dataset_ids() == [good.id]
        assert "registration is incomplete" in store.damaged_datasets()[half.id]
        summary = copy_store(store, open_store(str(tmp_path / "t.zarr")))
        assert list(summary["datasets"]["damaged"]) == [half.id]
    with open_store(path) as store:
        store.put_dataset(half)  # registering it again makes it whole
        assert {d["id"] for d in store.list_datasets()} == {good.id, half.id}
