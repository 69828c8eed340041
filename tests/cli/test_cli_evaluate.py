"""`featstore evaluate` through click's CliRunner: tables, lookups, exit codes, exact errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from eval_helpers import add_dataset, add_features, blobs, interleave_splits
from featstore.cli.main import cli

from featstore.evaluate.features.settings import evaluate_settings, settings_from_factors
from featstore.store import open_store


@pytest.fixture
def store_path(tmp_path):
    return str(tmp_path / "s.zarr")


@pytest.fixture
def layered(store_path):
    """Dataset 'blobs' (3 separable classes) with layers l1 (separable), l2 (noise), l3 (separable)."""
    store = open_store(store_path)
    X, y = blobs([12, 12, 12])
    ds = add_dataset(store, "blobs", y, interleave_splits(y))
    noise = np.random.default_rng(5).normal(size=X.shape)
    for layer, values in (("l1", X), ("l2", noise), ("l3", 2 * X)):
        add_features(store, ds, values, layer=layer)
    return store


def run(store_path, *args):
    return CliRunner().invoke(cli, ["evaluate", "--store", store_path, *args])


def test_three_layers_print_one_table(store_path, layered):
    result = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "l1,l2,l3", "--task", "classify")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"blobs: task classify, svm, transform l2; store {store_path}"
    assert lines[1].split() == [
        "setting",
        "dim",
        "accuracy",
        "mean_class_accuracy",
        "chosen",
        "cached",
        "seconds",
    ]
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert list(rows) == ["l1", "l2", "l3"]
    assert rows["l1"][1:4] == ["8", "1.0000", "1.0000"]
    assert rows["l3"][2] == "1.0000"
    assert float(rows["l2"][2]) < 0.8  # noise features
    assert all(r[-2] == "no" for r in rows.values())  # computed, not looked up
    assert len(layered.result_keys()) == 3

    again = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "l1,l2,l3")
    assert again.exit_code == 0
    assert [line.split()[-2] for line in again.output.splitlines()[3:]] == ["yes", "yes", "yes"]


def test_json_output_and_logreg(store_path, layered):
    result = run(
        store_path, "-d", "blobs", "-m", "toynet", "-l", "l1", "--classifier", "logreg", "--json"
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert len(records) == 1
    rec = records[0]
    assert rec["setting"] == "l1"
    assert rec["task"] == "classify"
    assert rec["cached"] is False
    assert rec["classifier"]["name"] == "logreg"
    assert rec["metrics"]["accuracy"] == 1.0
    assert rec["key"] in layered.result_keys()


def test_concat_is_one_row_and_svm_c_grid_is_used(store_path, layered):
    result = run(
        store_path,
        "-d",
        "blobs",
        "-m",
        "toynet",
        "-l",
        "l1,l3",
        "--concat",
        "--svm-c",
        "0.5",
        "--transform",
        "concat,l2",
        "--json",
    )
    assert result.exit_code == 0, result.output
    (rec,) = json.loads(result.output)
    assert rec["setting"] == "l1+l3"
    assert rec["sizes"]["dim"] == 16
    assert rec["chosen"]["C"] == 0.5
    assert rec["classifier"]["C_grid"] == [0.5]
    assert rec["factors"]["layer"] == ["l1", "l3"]


def test_errors_are_clear_and_nothing_is_written(store_path, layered):
    cases = [
        (
            ["-l", "l1", "--transform", "pool=gem"],
            "Error: GeM needs a spatial map; this entry was stored with pooling=avg\n",
        ),
        (
            ["-l", "l1", "--transform", "pca=30"],
            "Error: pca=30 asks for more dimensions than the data allow: 27 training samples of 8 dims "
            "give at most 8 components; choose pca=N with N <= 8\n",
        ),
        (
            ["-l", "l1,nope"],
            "Error: no cached features with model=toynet, layer=nope, view=plain for dataset 'blobs' "
            "(cached layers of this model: l1, l2, l3); extract them first, e.g. featstore extract -d "
            "blobs -m toynet -l nope\n",
        ),
        (
            ["-l", "l1", "--transform", "pca=x"],
            "Error: transform step 'pca=x': pca needs a positive number of dimensions\n",
        ),
    ]
    for args, message in cases:
        result = run(store_path, "-d", "blobs", "-m", "toynet", *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output == message
    assert layered.result_keys() == []  # l1 was fine, but the command checks every row first


def test_bad_option_values_exit_2(store_path, layered):
    result = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "l1", "--svm-c", "1,x")
    assert result.exit_code == 2
    assert (
        "Invalid value for '--svm-c': '1,x' is not a comma-separated list of numbers"
        in result.output
    )
    result = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "l1", "--cv", "1")
    assert result.exit_code == 2


def test_an_option_the_task_or_classifier_does_not_read_is_refused(store_path, layered):
    base = ("-d", "blobs", "-m", "toynet", "-l", "l1")
    for extra, what in (
        (
            ("--classifier", "logreg", "--svm-c", "1"),
            "--svm-c does not apply to --task classify --classifier logreg",
        ),
        (
            ("--classifier", "knn", "--solver", "sklearn"),
            "--solver does not apply to --task classify --classifier knn",
        ),
        (
            ("--task", "transferability", "--cv", "3"),
            "--cv does not apply to --task transferability",
        ),
        (
            (
                "--measure",
                "rsa",
            ),
            "--measure does not apply to --task classify --classifier svm",
        ),
    ):
        result = run(store_path, *base, *extra)
        assert result.exit_code == 2, result.output
        assert what in result.output, result.output
    assert layered.result_keys() == []  # refused before anything was evaluated
    ok = run(store_path, *base, "--classifier", "logreg", "--class-weight", "balanced")
    assert ok.exit_code == 0, ok.output


def test_incomplete_entry_one_class_and_no_test_split_through_the_cli(store_path):
    store = open_store(store_path)
    X, y = blobs([6, 6])
    part = add_dataset(store, "part", y, interleave_splits(y))
    entry = add_features(store, part, X, chunk_rows=4, complete=False)
    mono = add_dataset(
        store, "mono", np.zeros(6, dtype=int), ["train"] * 4 + ["test"] * 2, classes=["rose"]
    )
    add_features(store, mono, X[:6])
    notest = add_dataset(store, "notest", y, ["train"] * 12)
    add_features(store, notest, X)
    expected = {
        "part": f"Error: entry {entry.key} (model=toynet, layer=fc, view=plain) is incomplete: 1 of 3 "
        "chunks are missing; rerun the extraction to finish it (it resumes where it stopped)\n",
        "mono": "Error: dataset 'mono' has only one class ('rose'); classification needs at least two\n",
        "notest": "Error: dataset 'notest' has no test split (its splits: train); register it with one, "
        "e.g. a folder with train/ and test/ subfolders or a manifest with a split column\n",
    }
    for name, message in expected.items():
        result = run(store_path, "-d", name, "-m", "toynet", "-l", "fc")
        assert (result.exit_code, result.output) == (1, message)
    assert store.result_keys() == []


# --- the library behind the command ---------------------------------------------------------


def test_settings_from_factors_rows_and_concat():
    rows = settings_from_factors(["a", "b"], ["x", "y"], pooling="avg")
    assert [[(s["model"], s["layer"]) for s in row] for row in rows] == [
        [("a", "x")],
        [("a", "y")],
        [("b", "x")],
        [("b", "y")],
    ]
    assert rows[0][0] == {"model": "a", "layer": "x", "pooling": "avg", "view": "plain"}
    (joined,) = settings_from_factors(["a"], ["x", "y"], concat=True)
    assert [s["layer"] for s in joined] == ["x", "y"]


def test_evaluate_settings_labels_rows_and_reports_progress(layered):
    seen = []
    records = evaluate_settings(
        _fake_evaluate,
        layered,
        "blobs",
        settings_from_factors(["m1", "m2"], ["l1"]),
        progress=lambda d, t, info: seen.append((d, t, info["setting"])),
    )
    assert [r["setting"] for r in records] == ["m1:l1", "m2:l1"]
    assert seen == [(1, 1, "m1:l1"), (1, 1, "m2:l1")]


def _fake_evaluate(store, dataset, features, force, progress, **options):
    progress(1, 1, {})
    return {"key": features[0]["model"], "cached": False}
