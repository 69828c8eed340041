"""Features keyed by image content (issue 11, items 4, 5, 10), on Zarr (disk, memory) and HDF5.

- two names, a relabelled or re-split copy of the same images share every entry (zero
  forward batches the second time), yet get their own evaluation results;
- a subset or permutation of an entry's images reads its rows by index, computing nothing;
- an image changed after registration stops the run, naming the file, writing nothing for it;
- registering moved files again re-points the stored locations;
- a format-1 store keeps working, and ``featstore upgrade`` converts it in place.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.datasets import add_dataset, dataset_from_source
from featstore.errors import DatasetError, EvaluationError, ImageChangedError
from featstore.evaluate.features.selection import resolve_parts
from featstore.evaluate.probes.task import plan_classification
from featstore.extract import ExtractionRequest, extract, lookup, plan
from featstore.keys import make_key
from featstore.store import open_store
from featstore.store.content import RowView
from featstore.store.upgrade import upgrade_store
from featstore.sweep.plan import subset_dataset
from tests.conftest import make_image

SMALL = {"resize": 40, "crop": 32}
KW = {"weights": "random", "preprocess": SMALL}
RUN = {"batch_size": 6}
ARGS = (["resnet18"], ["fc"], "avg", ["plain"])


@pytest.fixture(autouse=True)
def _weights_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))


def _manifest(path: Path, rows: list[tuple[str, str, str]]) -> str:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return str(path)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.jpg"))


def _cli(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --- item 5: the key holds the images, nothing else ----------------------------------------
def test_two_names_and_a_relabelled_copy_share_every_entry(store_url, image_folder, tmp_path):
    store = open_store(store_url)
    flowers = add_dataset(store, "flowers", str(image_folder))
    first = extract(store, ExtractionRequest.parse("flowers", *ARGS, **KW), **RUN)
    assert first["forward_batches"] > 0
    assert first["complete_before"] == 0

    add_dataset(store, "flowers12", str(image_folder))
    again = extract(store, ExtractionRequest.parse("flowers12", *ARGS, **KW), **RUN)
    assert again["forward_batches"] == 0
    assert again["computed_chunks"] == 0
    assert again["keys"] == first["keys"]
    assert again["complete_before"] == 1

    # same files in the same order, other labels and splits: same images id, same entry
    files = [Path(r) for r in flowers.refs]
    rows = [(str(p), f"k{i % 2}", "test" if i % 3 == 0 else "train") for i, p in enumerate(files)]
    relabelled = add_dataset(store, "relabelled", _manifest(tmp_path / "m.csv", rows))
    assert relabelled.fingerprint != flowers.fingerprint
    assert relabelled.images_id == flowers.images_id
    third = extract(store, ExtractionRequest.parse("relabelled", *ARGS, **KW), **RUN)
    assert third["forward_batches"] == 0
    assert third["keys"] == first["keys"]
    assert store.entry_keys() == first["keys"]

    # one entry, but a result per dataset: labels and splits are part of the result key
    a = plan_classification(store, "flowers", {"model": "resnet18", "layer": "fc"})
    b = plan_classification(store, "relabelled", {"model": "resnet18", "layer": "fc"})
    assert a.feature_keys == b.feature_keys
    assert a.key != b.key


def test_cli_says_cached_for_a_second_name(store_url, image_folder):
    assert (
        _cli("datasets", "add", "flowers", str(image_folder), "--store", store_url).exit_code == 0
    )
    assert _cli("datasets", "add", "copy", str(image_folder), "--store", store_url).exit_code == 0
    base = ["extract", "--store", store_url, "-m", "resnet18", "-l", "fc", "--weights", "random"]
    base += ["--resize", "40", "--crop", "32"]
    first = _cli(*base, "-d", "flowers")
    assert first.exit_code == 0
    assert "done: 1 entries complete" in first.output
    second = _cli(*base, "-d", "copy")
    assert second.exit_code == 0, second.output
    assert "plan: 1 entries for dataset copy (18 images), 1 cached" in second.output
    assert "nothing to compute: all 1 entries are cached" in second.output
    as_json = json.loads(_cli(*base, "-d", "copy", "--json").output)
    assert as_json["forward_batches"] == 0
    assert as_json["dataset_id"].startswith("copy-")


# --- item 5: a subset or permutation reads rows by index -------------------------------------
def test_a_subset_reads_its_rows_by_index(store_url, image_folder, tmp_path):
    store = open_store(store_url)
    full = add_dataset(store, "full", str(image_folder))
    (key,) = extract(store, ExtractionRequest.parse("full", *ARGS, **KW), **RUN)["keys"]
    stored = store.get_entry(key).read()

    # a few-shot draw in another order: 2 train + 1 test image per class, reversed
    chosen = [i for i, s in enumerate(full.ids) if s.split("_")[-1] in ("0.jpg", "1.jpg")]
    chosen = chosen[::-1]
    rows = [
        (full.refs[i], full.classes[int(full.labels[i])], full.ids[i].split("/")[0]) for i in chosen
    ]
    few = add_dataset(store, "few", _manifest(tmp_path / "few.csv", rows))
    p = plan(store, ExtractionRequest.parse("few", *ARGS, weights="random", preprocess=SMALL))
    (e,) = p.entries
    assert e.by_index
    assert e.source == key
    assert e.complete
    assert p.to_dict()["n_by_index"] == 1
    assert p.to_dict()["images_to_compute"] == 0
    summary = extract(store, ExtractionRequest.parse("few", *ARGS, **KW), **RUN)
    assert summary["forward_batches"] == 0
    assert store.entry_keys() == [key]

    view = lookup(store, "few", "resnet18", "fc", weights="random", preprocess=SMALL)
    assert isinstance(view, RowView)
    assert view.shape == (few.n, *stored.shape[1:])
    np.testing.assert_array_equal(view.read(), stored[chosen])
    np.testing.assert_array_equal(view.read([2, 0]), stored[[chosen[2], chosen[0]]])
    np.testing.assert_array_equal(view.read(slice(1, 4)), stored[chosen[1:4]])
    (part,) = resolve_parts(store, few, {"model": "resnet18", "layer": "fc"})
    np.testing.assert_array_equal(part.plain.read(), stored[chosen])
    # by key too: the entry of the superset, read in this dataset's order
    (by_key,) = resolve_parts(store, few, key)
    np.testing.assert_array_equal(by_key.plain.read(), stored[chosen])

    # a sweep subset: the same, without registering anything
    sub = subset_dataset(full, 9)
    (se,) = plan(
        store, ExtractionRequest.parse(sub, *ARGS, weights="random", preprocess=SMALL)
    ).entries
    assert se.by_index
    assert se.source == key
    assert extract(store, ExtractionRequest.parse(sub, *ARGS, **KW), **RUN)["forward_batches"] == 0


def test_an_entry_of_other_images_is_refused_by_key(store_url, image_folder, tmp_path):
    store = open_store(store_url)
    add_dataset(store, "full", str(image_folder))
    (key,) = extract(store, ExtractionRequest.parse("full", *ARGS, **KW), **RUN)["keys"]
    other = tmp_path / "other"
    for i in range(4):
        make_image(other / ("train" if i < 2 else "test") / f"c{i % 2}" / f"x{i}.jpg", 100 + i)
    ds = add_dataset(store, "other", str(other))
    with pytest.raises(EvaluationError, match="holds features of other images"):
        resolve_parts(store, ds, key)
    assert (
        plan(store, ExtractionRequest.parse("other", *ARGS, weights="random", preprocess=SMALL))
        .entries[0]
        .exists
        is False
    )


# --- item 4: extraction checks the bytes it decodes ----------------------------------------
def test_a_changed_image_stops_the_run_and_names_the_files(store_url, image_folder):
    store = open_store(store_url)
    ds = add_dataset(store, "flowers", str(image_folder))
    changed = [ds.refs[10], ds.refs[16]]
    for n, path in enumerate(changed):
        make_image(Path(path), 999 + n)  # new bytes behind a registered name
    with pytest.raises(ImageChangedError) as info:
        extract(store, ExtractionRequest.parse("flowers", *ARGS, **KW, chunk_rows=4), batch_size=4)
    message = str(info.value)
    assert "2 images of dataset 'flowers' changed" in message
    assert changed[0] in message
    assert changed[1] in message
    assert f"featstore datasets add flowers {image_folder} --replace" in message
    assert "\n" not in message
    key = (
        plan(store, ExtractionRequest.parse("flowers", *ARGS, weights="random", preprocess=SMALL))
        .entries[0]
        .key
    )
    done = store.get_entry(key).done_chunks() if store.has_entry(key) else set()
    assert done == {0, 1}  # rows 0-7 were verified; the chunks of rows 10 and 16 never land
    # the advice works: register the current files, and the run completes
    add_dataset(store, "flowers", str(image_folder), replace=True)
    assert (
        extract(store, ExtractionRequest.parse("flowers", *ARGS, **KW), **RUN)["forward_batches"]
        > 0
    )


def test_cli_extract_refuses_a_changed_image(store_url, image_folder):
    assert (
        _cli("datasets", "add", "flowers", str(image_folder), "--store", store_url).exit_code == 0
    )
    target = next(p for p in _files(image_folder) if "dog_train_1" in p.name)
    make_image(target, 4242)
    out = CliRunner().invoke(
        cli,
        ["extract", "--store", store_url, "-d", "flowers", "-m", "resnet18", "-l", "fc",
         "--weights", "random", "--resize", "40", "--crop", "32"],
    )  # fmt: skip
    assert out.exit_code == 1
    assert f"1 images of dataset 'flowers' changed since it was registered: {target}" in out.output
    assert "Traceback" not in out.output


# --- item 10: moved data -------------------------------------------------------------------
def test_registering_moved_files_repoints_them(store_url, image_folder, tmp_path):
    store = open_store(store_url)
    before = add_dataset(store, "flowers", str(image_folder))
    moved = tmp_path / "moved"
    shutil.move(str(image_folder), str(moved))
    with pytest.raises(DatasetError, match="was the dataset moved"):
        extract(store, ExtractionRequest.parse("flowers", *ARGS, **KW), **RUN)
    store.close()
    out = _cli("datasets", "add", "flowers", str(moved), "--store", store_url)
    assert out.exit_code == 0, out.output
    assert f"re-pointed 18 image locations to {moved}" in out.output
    store = open_store(store_url)
    after = store.get_dataset("flowers")
    assert after.id == before.id
    assert [info["id"] for info in store.list_datasets()] == [before.id]
    assert all(r.startswith(str(moved)) for r in after.refs)
    assert extract(store, ExtractionRequest.parse("flowers", *ARGS, **KW), **RUN)["images"] == 18
    # the same place again is a no-op
    assert add_dataset(store, "flowers", str(moved)).repointed == 0


# --- old stores ----------------------------------------------------------------------------
def _as_format_1(store, ds, key) -> str:
    """Rewrite a store as format 1 wrote it: no image hashes, entries keyed by dataset."""
    entry = store.get_entry(key)
    data, attrs = entry.read(), dict(entry.attrs)
    store.delete_entry(key)
    store.delete_dataset(ds.id)
    legacy = dataset_from_source(ds.name, ds.source["root"])
    legacy.image_hashes = None
    store.put_dataset(legacy)
    factors = {k: attrs[k] for k in ("model", "layer", "layer_target", "preprocess", "view",
                                     "pooling", "dtype", "compute_dtype")}  # fmt: skip
    old = {"dataset_id": ds.id, "dataset_fingerprint": ds.fingerprint, **factors}
    old_key = make_key("feat", old)
    keep = {k: v for k, v in attrs.items() if k not in ("images", "shape", "dtype", "chunk_rows")}
    new = store.create_entry(old_key, {**keep, **old}, data.shape, data.dtype.name, chunk_rows=4)
    for c in range(new.n_chunks):
        start, stop = new.chunk_bounds(c)
        new.write_chunk(c, data[start:stop])
    new.update_attrs(status="complete")
    store._set_format_version(1)
    return old_key


def test_a_format_1_store_keeps_working_and_upgrades(store_url, image_folder):
    store = open_store(store_url)
    ds = add_dataset(store, "flowers", str(image_folder))
    (key,) = extract(store, ExtractionRequest.parse("flowers", *ARGS, **KW), **RUN)["keys"]
    stored = store.get_entry(key).read()
    old_key = _as_format_1(store, ds, key)
    store.close()

    store = open_store(store_url)
    assert store.format_version == 1
    assert store.get_dataset("flowers").image_hashes is None
    # read as it is: planning finds the old entry, evaluation reads it
    p = plan(store, ExtractionRequest.parse("flowers", *ARGS, weights="random", preprocess=SMALL))
    assert [e.key for e in p.entries] == [old_key]
    assert p.entries[0].complete
    assert (
        extract(store, ExtractionRequest.parse("flowers", *ARGS, **KW), **RUN)["forward_batches"]
        == 0
    )
    (part,) = resolve_parts(store, "flowers", {"model": "resnet18", "layer": "fc"})
    np.testing.assert_array_equal(part.plain.read(), stored)
    # a new entry needs the images id: the error says how to get it
    with pytest.raises(DatasetError, match="run `featstore upgrade`"):
        extract(
            store,
            ExtractionRequest.parse("flowers", ["resnet18"], ["layer4"], "avg", ["plain"], **KW),
            **RUN,
        )
    store.close()

    out = _cli("upgrade", "--store", store_url)
    assert out.exit_code == 0, out.output
    assert "store format 1 -> 2: 1 datasets and 1 entries upgraded" in out.output
    store = open_store(store_url)
    assert store.format_version == 2
    assert store.get_dataset("flowers").images_id == ds.images_id
    assert store.get_entry(old_key).attrs["images"] == ds.images_id
    # the upgraded entry now serves every dataset of these images
    add_dataset(store, "second", str(image_folder))
    again = extract(store, ExtractionRequest.parse("second", *ARGS, **KW), **RUN)
    assert again["forward_batches"] == 0
    assert again["keys"] == [old_key]
    assert upgrade_store(store)["entries_upgraded"] == []  # twice: nothing more to do


def test_upgrade_reports_changed_files_and_keeps_the_old_key(store_url, image_folder):
    store = open_store(store_url)
    ds = add_dataset(store, "flowers", str(image_folder))
    (key,) = extract(store, ExtractionRequest.parse("flowers", *ARGS, **KW), **RUN)["keys"]
    old_key = _as_format_1(store, ds, key)
    make_image(Path(ds.refs[3]), 777)
    summary = upgrade_store(store)
    assert summary["format"] == 1
    assert summary["entries_left"] == [old_key]
    (failed,) = summary["datasets_failed"]
    assert failed["id"] == ds.id
    assert "changed since it was registered" in failed["reason"]
    assert store.get_dataset("flowers").image_hashes is None  # left as it was


def test_image_lists_check_themselves(store_url):
    from featstore.datasets.core import images_id
    from featstore.errors import StoreError
    from featstore.store.content import pack_hashes, unpack_hashes

    hashes = [f"{i:064x}" for i in range(5)]
    ident = images_id(hashes)
    store = open_store(store_url)
    store.put_image_list(ident, hashes)
    assert store.get_image_list(ident) == hashes
    assert store.get_image_list(images_id(hashes[::-1])) is None
    with pytest.raises(DatasetError, match="do not hash to"):
        pack_hashes(ident, hashes[:4])
    with pytest.raises(StoreError, match="is damaged"):
        unpack_hashes(ident, pack_hashes(ident, hashes)[:-3])
    with pytest.raises(StoreError, match="is not an images id"):
        store.get_image_list("../../etc")
