"""Protocols are what ran: shots, k and folds beyond the data are refused in words (exit 2),
defaults adapt and the record says what ran; split problems are warned and recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_image
from eval_helpers import add_dataset, add_features, blobs, interleave_splits
from featstore.cli.main import cli

from featstore.store import open_store
from featstore.sweep import plan as plan_mod
from featstore.sweep.plan import factor_planner


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    """Dataset 'blobs': 3 classes of 12 images, 9 train + 3 test each; entry toynet/fc."""
    path = str(tmp_path / "s.zarr")
    store = open_store(path)
    X, y = blobs([12, 12, 12])
    ds = add_dataset(store, "blobs", y, interleave_splits(y))
    add_features(store, ds, X)
    return path


def evaluate(store_path: str, *args: str):
    base = ["evaluate", "--store", store_path, "-d", "blobs", "-m", "toynet", "-l", "fc"]
    return CliRunner().invoke(cli, [*base, *args])


def test_shots_beyond_the_smallest_class_are_refused(store_path: str) -> None:
    res = evaluate(store_path, "--svm-c", "1", "--shots", "1,1000")
    assert res.exit_code == 2
    assert res.output == (
        "Error: --shots 1000 is more than the data allows: class 'c0' has 9 images in the "
        "train split of dataset 'blobs'; use --shots 9 or fewer (a draw of K shots takes K "
        "images of every class)\n"
    )
    assert open_store(store_path, mode="r").result_keys() == []
    ok = evaluate(store_path, "--svm-c", "1", "--shots", "9", "--draws", "1", "--json")
    assert ok.exit_code == 0, ok.output
    assert set(json.loads(ok.output)[0]["metrics"]) == {"accuracy@9shot", "accuracy@9shot_std"} | {
        "mean_class_accuracy@9shot",
        "mean_class_accuracy@9shot_std",
    }


def test_knn_k_beyond_the_images_searched_is_refused(store_path: str) -> None:
    res = evaluate(store_path, "--classifier", "knn", "--knn-k", "1000")
    assert res.exit_code == 2
    assert res.output == (
        "Error: --knn-k 1000 is more than the data allows: each test image searches 27 "
        "labelled training images; use --knn-k 27 or fewer\n"
    )
    grid = evaluate(store_path, "--classifier", "knn", "--knn-k", "5,1000")
    assert grid.exit_code == 2
    assert grid.output == (
        "Error: --knn-k 1000 is more than the data allows: k is chosen by searching 21 "
        "training images (the others are the validation rows); give values up to 21, or one "
        "k (e.g. --knn-k 5)\n"
    )
    # the default grid (10, 20, 50, 100) keeps what 21 searched images hold, and says so
    ok = evaluate(store_path, "--classifier", "knn", "--json")
    assert ok.exit_code == 0, ok.output
    rec = json.loads(ok.output)[0]
    assert rec["classifier"]["k_grid"] == [10, 20]
    assert rec["chosen"]["k_grid"] == [10, 20]


def test_cv_beyond_the_smallest_class_is_refused_and_folds_are_recorded(store_path: str) -> None:
    res = evaluate(store_path, "--cv", "1000")
    assert res.exit_code == 2
    assert res.output == (
        "Error: --cv 1000 is more than the data allows: class 'c0' has 9 training images in "
        "dataset 'blobs', and stratified 1000-fold cross-validation needs 1000 of each; use "
        "--cv 9 or fewer\n"
    )
    ok = evaluate(store_path, "--cv", "9", "--json")
    assert ok.exit_code == 0, ok.output
    rec = json.loads(ok.output)[0]
    assert rec["protocol"]["cv_folds"] == 9
    assert rec["chosen"]["cv_folds"] == 9
    single = evaluate(store_path, "--cv", "3", "--svm-c", "1")
    assert single.exit_code == 1
    assert "--cv 3 has no effect with a single C (--svm-c 1)" in single.output


def test_default_folds_adapt_to_a_small_class_and_the_key_says_so(tmp_path: Path) -> None:
    path = str(tmp_path / "small.zarr")
    store = open_store(path)
    X, y = blobs([4, 12, 12])  # class c0: 3 training images
    ds = add_dataset(store, "small", y, interleave_splits(y))
    add_features(store, ds, X)
    res = CliRunner().invoke(
        cli, ["evaluate", "--store", path, "-d", "small", "-m", "toynet", "-l", "fc", "--json"]
    )
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output)[0]
    assert rec["protocol"]["cv_folds"] == 3
    assert rec["chosen"]["cv_folds"] == 3


def test_a_sweep_spec_beyond_the_data_is_refused_naming_the_cell(
    store_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ndatasets: [{name: blobs, tasks: [classify]}]\n"
        "networks: [{name: toynet, layers: [fc]}]\npooling: [avg]\ntransforms: [l2]\n"
        "classifiers: [knn]\noptions: {knn: {knn_k: [50]}}\nbaseline: {layer: fc}\n"
    )
    monkeypatch.setattr(plan_mod, "extract_planner", factor_planner)  # toynet: not a real network
    res = CliRunner().invoke(cli, ["sweep", str(spec), "--store", store_path])
    assert res.exit_code == 2
    assert res.output.endswith(
        "Error: sweep spec: cell blobs:classify:toynet/fc/avg/plain/l2/knn: options.knn.knn_k=50 "
        "is more than the data allows: each test image searches 27 labelled training images; "
        "use options.knn.knn_k=27 or fewer\n"
    )
    assert open_store(store_path, mode="r").result_keys() == []


def _folder(root: Path) -> Path:
    seed = 0
    for split, classes in (("train", ("cat", "dog")), ("test", ("cat", "dog", "fox"))):
        for cls in classes:
            for i in range(3 if split == "train" else 1):
                make_image(root / split / cls / f"{cls}_{split}_{i}.jpg", seed)
                seed += 1
    return root


def test_test_class_absent_from_training_is_warned_and_recorded(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    store = str(tmp_path / "w.zarr")
    res = CliRunner().invoke(cli, ["datasets", "add", "pets", str(root), "--store", store])
    assert res.exit_code == 0, res.output
    warning = (
        "warning: 1 test class(es) have no training image (fox): no classifier can predict "
        "them; add training images or drop them from the test split"
    )
    assert warning in res.output.splitlines()
    s = open_store(store)
    ds = s.get_dataset("pets")
    add_features(s, ds, np.random.default_rng(0).normal(size=(ds.n, 4)))
    ev = CliRunner().invoke(
        cli,
        ["evaluate", "--store", store, "-d", "pets", "-m", "toynet", "-l", "fc", "--svm-c", "1"],
    )
    assert ev.exit_code == 0, ev.output
    assert warning in ev.output.splitlines()
    (record,) = [s.get_result(k) for k in s.result_keys()]
    assert record["warnings"] == [warning.removeprefix("warning: ")]


def test_byte_identical_test_and_training_images_are_warned(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    shutil.rmtree(root / "test" / "fox")
    shutil.copy(root / "train" / "dog" / "dog_train_1.jpg", root / "test" / "dog" / "copy.jpg")
    res = CliRunner().invoke(
        cli, ["datasets", "add", "pets", str(root), "--store", str(tmp_path / "d.zarr")]
    )
    assert res.exit_code == 0, res.output
    assert [line for line in res.output.splitlines() if line.startswith("warning:")] == [
        "warning: 1 test image(s) are byte-identical to training images (e.g. test "
        "'test/dog/copy.jpg' = train 'train/dog/dog_train_1.jpg'): the test score counts images "
        "trained on; remove the duplicates from one split"
    ]
