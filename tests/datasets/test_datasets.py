"""Datasets from folders, manifests and built-ins: fingerprints, splits and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import make_image

from featstore import open_store
from featstore.datasets import add_dataset, dataset_from_source
from featstore.errors import BadImageError, DatasetError, DatasetMismatchError, ManifestError


def test_split_folders(image_folder):
    ds = dataset_from_source("tiny", str(image_folder))
    assert ds.n == 18
    assert ds.classes == ["cat", "dog", "fox"]
    assert ds.split_counts() == {"test": 6, "train": 12}
    assert ds.ids[0] == "test/cat/cat_test_0.jpg"  # relative ids: location-independent
    assert ds.id == f"tiny-{ds.fingerprint[:12]}"
    train = ds.split_indices("train")
    assert len(train) == 12
    assert all(ds.ids[i].startswith("train/") for i in train)
    assert ds.load_image(0).mode == "RGB"


def test_same_images_elsewhere_same_id_changed_bytes_new_id(image_folder, tmp_path):
    first = dataset_from_source("tiny", str(image_folder))
    copy = tmp_path / "elsewhere"
    shutil.copytree(image_folder, copy)
    assert dataset_from_source("tiny", str(copy)).id == first.id
    make_image(copy / "train/cat/cat_train_0.jpg", seed=999)  # same name, other pixels
    assert dataset_from_source("tiny", str(copy)).id != first.id


def test_class_folders_get_a_seeded_stratified_split(tmp_path):
    for cls in ("a", "b"):
        for i in range(10):
            make_image(tmp_path / "data" / cls / f"{i}.png", seed=i + (100 if cls == "b" else 0))
    ds = dataset_from_source("plain", str(tmp_path / "data"))
    assert ds.split_counts() == {"train": 16, "test": 4}
    test_labels = ds.labels[ds.split_indices("test")]
    assert sorted(np.bincount(test_labels).tolist()) == [2, 2]
    assert dataset_from_source("plain", str(tmp_path / "data")).id == ds.id  # deterministic


def test_truncated_jpeg_is_named_and_nothing_is_written(image_folder, tmp_path):
    bad = image_folder / "train/dog/dog_train_1.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    store = open_store(str(tmp_path / "s.zarr"))
    with pytest.raises(BadImageError, match=r"dog_train_1\.jpg is not a readable image"):
        add_dataset(store, "tiny", str(image_folder))
    assert store.list_datasets() == []
    ds = add_dataset(store, "tiny", str(image_folder), skip_bad=True)
    assert ds.n == 17
    assert ds.skipped[0]["path"].endswith("dog_train_1.jpg")
    assert store.get_dataset("tiny").skipped == ds.skipped


def test_text_file_posing_as_image(image_folder):
    (image_folder / "train/cat/fake.jpg").write_text("definitely not a jpeg")
    with pytest.raises(BadImageError, match=r"fake.jpg is not a readable image"):
        dataset_from_source("tiny", str(image_folder))


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        dataset_from_source("x", str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no subfolders"):
        dataset_from_source("x", str(tmp_path / "empty"))
    (tmp_path / "hollow/train/cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no images"):
        dataset_from_source("x", str(tmp_path / "hollow"))


def test_csv_manifest_with_multilabel_and_errors(tmp_path):
    for i in range(4):
        make_image(tmp_path / f"img{i}.jpg", seed=i)
    (tmp_path / "m.csv").write_text(
        "path,labels,split,id\n"
        "img0.jpg,cat;dog,train,a\nimg1.jpg,dog,train,b\nimg2.jpg,cat;?dog,test,c\nimg3.jpg,cat,test,d\n"
    )
    ds = dataset_from_source("ml", str(tmp_path / "m.csv"))
    assert ds.multilabel
    assert ds.classes == ["cat", "dog"]
    np.testing.assert_array_equal(ds.labels, [[1, 1], [0, 1], [1, -1], [1, 0]])
    assert ds.ids == ["a", "b", "c", "d"]

    (tmp_path / "dup.csv").write_text("path,label,id\nimg0.jpg,cat,x\nimg1.jpg,dog,x\n")
    with pytest.raises(DatasetError, match="duplicate id 'x'"):
        dataset_from_source("d", str(tmp_path / "dup.csv"))
    (tmp_path / "nolabel.csv").write_text("path,split\nimg0.jpg,train\n")
    with pytest.raises(ManifestError, match="row 2: missing the 'label'"):
        dataset_from_source("d", str(tmp_path / "nolabel.csv"))
    (tmp_path / "gone.csv").write_text("path,label\nimg0.jpg,cat\nmissing.jpg,dog\n")
    with pytest.raises(BadImageError, match=r"missing.jpg does not exist"):
        dataset_from_source("d", str(tmp_path / "gone.csv"))


def test_json_manifest(tmp_path):
    make_image(tmp_path / "a.png", seed=1)
    make_image(tmp_path / "b.png", seed=2)
    (tmp_path / "m.json").write_text(
        json.dumps(
            [
                {"path": "a.png", "label": "x", "split": "train"},
                {"path": "b.png", "label": "y", "split": "test"},
            ]
        )
    )
    ds = dataset_from_source("j", str(tmp_path / "m.json"))
    assert ds.classes == ["x", "y"]
    assert ds.split_counts() == {"train": 1, "test": 1}
    (tmp_path / "bad.json").write_text(json.dumps([{"label": "x"}]))
    with pytest.raises(ManifestError, match="item 0: missing the 'path' column"):
        dataset_from_source("j", str(tmp_path / "bad.json"))


def test_builtin_digits_are_real_and_stable():
    ds = dataset_from_source("digits", "builtin:digits")
    assert ds.n == 1797
    assert ds.classes == [str(d) for d in range(10)]
    assert ds.split_counts() == {"train": 1347, "test": 450}
    image = ds.load_image(0)
    assert image.size == (64, 64)
    assert image.mode == "RGB"
    assert np.asarray(image).std() > 20  # real strokes, not a blank
    assert dataset_from_source("digits", "builtin:digits").fingerprint == ds.fingerprint
    with pytest.raises(DatasetError, match="no built-in dataset 'nope'"):
        dataset_from_source("x", "builtin:nope")


def test_registering_in_store_and_name_conflicts(store_url, image_folder, tmp_path):
    with open_store(store_url) as store:
        ds = add_dataset(store, "tiny", str(image_folder))
        assert add_dataset(store, "tiny", str(image_folder)).id == ds.id  # idempotent
        back = store.get_dataset("tiny")
        assert back.id == ds.id
        assert back.ids == ds.ids
        assert back.refs == ds.refs
        np.testing.assert_array_equal(back.labels, ds.labels)
        assert store.get_dataset(ds.id).name == "tiny"
        other = tmp_path / "other"
        make_image(other / "train/z/1.jpg", seed=5)
        with pytest.raises(DatasetMismatchError, match="already registered as 'tiny'"):
            add_dataset(store, "tiny", str(other))
        add_dataset(store, "tiny", str(other), replace=True)
        assert [d["name"] for d in store.list_datasets()] == ["tiny"]


def test_flowers12_registers_960_images_in_12_classes(tmp_path, flowers12):
    ds = dataset_from_source("flowers", str(flowers12))
    assert ds.n == 960
    assert len(ds.classes) == 12
    assert ds.split_counts() == {"test": 240, "train": 720}
    copy = tmp_path / "flowers-copy"
    shutil.copytree(flowers12, copy)
    assert dataset_from_source("flowers", str(copy)).id == ds.id
    victim = sorted((copy / "train" / "daisy").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(BadImageError, match=victim.name):
        dataset_from_source("flowers", str(copy))
