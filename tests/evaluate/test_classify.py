"""Classification from cached entries: SVM and logistic regression, records, and bad input."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from eval_helpers import add_dataset, add_features, blobs, interleave_splits
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import LinearSVC

from featstore.errors import (
    EntryNotFoundError,
    EvaluationError,
    IncompleteEntryError,
    TransformError,
)
from featstore.evaluate.probes.arrays import classify_arrays
from featstore.evaluate.probes.protocol import ClassifierSpec, lambda_grid, split_rows
from featstore.evaluate.probes.task import evaluate_classification
from featstore.store import open_store

SEL = {"model": "toynet", "layer": "fc"}


@pytest.fixture
def store():
    return open_store(f"memory://classify-{uuid.uuid4().hex}")


@pytest.fixture
def blob_set(store):
    """3 separable classes of 20 images, every 4th image of a class in test."""
    X, y = blobs([20, 20, 20])
    ds = add_dataset(store, "blobs", y, interleave_splits(y))
    add_features(store, ds, X)
    return ds, X, y


# --- the classifiers ------------------------------------------------------------------


def test_lambda_grid_has_45_log_spaced_values_from_1e_6_to_1e5():
    grid = lambda_grid()
    assert len(grid) == 45
    assert grid[0] == pytest.approx(1e-6, rel=1e-12)
    assert grid[-1] == pytest.approx(1e5, rel=1e-12)
    ratios = grid[1:] / grid[:-1]
    np.testing.assert_allclose(ratios, 10 ** (11 / 44), rtol=1e-9)  # 11 decades in 44 steps


def test_svm_separates_separable_blobs_and_stores_the_record(store, blob_set):
    record = evaluate_classification(store, "blobs", SEL)
    assert record["metrics"] == {"accuracy": 1.0, "mean_class_accuracy": 1.0}
    assert record["chosen"]["C"] in (0.01, 0.1, 1.0, 10.0)
    assert record["chosen"]["cv_folds"] == 5
    assert record["sizes"] == {"n_train": 45, "n_val": 0, "n_test": 15, "dim": 8}
    assert record["per_class"]["accuracy"] == {"c0": 1.0, "c1": 1.0, "c2": 1.0}
    assert record["cached"] is False
    assert store.result_keys() == [record["key"]]
    stored = store.get_result(record["key"])
    assert stored["task"] == "classify"
    assert stored["transform"] == "l2"
    assert stored["factors"]["layer"] == "fc"
    assert stored["factors"]["model"] == "toynet"
    assert "cached" not in stored


def test_asking_again_is_a_lookup_and_force_recomputes(store, blob_set):
    first = evaluate_classification(store, "blobs", SEL)
    again = evaluate_classification(store, "blobs", SEL, transform=" L2 ")  # same canonical spec
    assert again["cached"] is True
    assert again["key"] == first["key"]
    assert again["created"] == first["created"]
    forced = evaluate_classification(store, "blobs", SEL, force=True)
    assert forced["cached"] is False
    assert forced["key"] == first["key"]
    other = evaluate_classification(store, "blobs", SEL, class_weight="balanced")
    assert other["key"] != first["key"]
    assert len(store.result_keys()) == 2


def test_svm_c_is_chosen_by_cross_validation_on_training_rows_only():
    # overlapping classes, so C matters; the test rows are far off and would change the choice
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(-1, 1.5, (40, 2)), rng.normal(1, 1.5, (40, 2))]).astype(
        np.float32
    )
    y = np.repeat([0, 1], 40)
    names = (["train"] * 30 + ["test"] * 10) * 2
    X[np.array(names) == "test"] *= -3.0  # test rows mirrored: only a train-only CV is unaffected
    splits = split_rows(_FakeDataset(names))
    grid = (0.0001, 0.01, 1.0, 100.0)
    out = classify_arrays(X, y, splits, ClassifierSpec(c_grid=grid, cv=4), seed=0)
    reference = GridSearchCV(
        LinearSVC(random_state=0, max_iter=10000),
        {"C": list(grid)},
        scoring="accuracy",
        cv=StratifiedKFold(4, shuffle=True, random_state=0),
    ).fit(X[splits.train], y[splits.train])
    assert out["chosen"]["C"] == reference.best_params_["C"]
    np.testing.assert_allclose(
        list(out["chosen"]["cv_scores"].values()), reference.cv_results_["mean_test_score"]
    )
    assert out["chosen"]["cv_folds"] == 4
    assert out["sizes"]["n_test"] == 20


class _FakeDataset:
    """Just enough of a Dataset for split_rows."""

    def __init__(self, splits):
        self.name = "fake"
        self.split_names = sorted(set(splits))
        self.splits = np.array([self.split_names.index(s) for s in splits])

    def split_indices(self, name):
        return np.flatnonzero(self.splits == self.split_names.index(name))


def test_logreg_chooses_lambda_on_a_carved_validation_split_then_refits(store, blob_set):
    record = evaluate_classification(store, "blobs", SEL, classifier="logreg", seed=3)
    assert record["metrics"]["accuracy"] == 1.0
    chosen = record["chosen"]
    assert len(chosen["val_scores"]) == 45
    assert any(np.isclose(chosen["lambda"], lam) for lam in lambda_grid())
    # 45 training rows: 20% (9, stratified: 3 per class) become validation, refit on all 45
    assert record["sizes"]["n_train"] == 36
    assert record["sizes"]["n_val"] == 9
    assert chosen["C"] == pytest.approx(1.0 / (chosen["lambda"] * 45))
    assert record["protocol"]["val"] == "carved:0.2"
    assert record["protocol"]["refit"] == "train+val"
    assert record["classifier"]["lambda_grid"] == {
        "low": 1e-6,
        "high": 1e5,
        "n": 45,
        "spacing": "log",
    }


def test_logreg_uses_the_datasets_own_validation_split(store):
    X, y = blobs([10, 10])
    ds = add_dataset(store, "withval", y, interleave_splits(y, test_every=5, val_every=3))
    add_features(store, ds, X)
    record = evaluate_classification(store, "withval", SEL, classifier="logreg")
    n_val = int((np.array(interleave_splits(y, 5, 3)) == "val").sum())
    assert record["sizes"]["n_val"] == n_val
    assert record["protocol"]["val"] == "val"
    assert record["metrics"]["accuracy"] == 1.0


def test_concatenating_two_layers_separates_what_neither_does_alone(store):
    # layer A tells class 0 from {1, 2}; layer B tells class 1 from {0, 2}; together: all three
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    a = np.where(y == 0, 5.0, -5.0)[:, None] + 0.3 * rng.normal(size=(60, 1))
    b = np.where(y == 1, 5.0, -5.0)[:, None] + 0.3 * rng.normal(size=(60, 1))
    ds = add_dataset(store, "xor", y, interleave_splits(y))
    add_features(store, ds, a, layer="A")
    add_features(store, ds, b, layer="B")
    kw = {"transform": "none", "c_grid": [1.0]}
    alone = [
        evaluate_classification(store, "xor", {"model": "toynet", "layer": L}, **kw) for L in "AB"
    ]
    both = evaluate_classification(
        store, "xor", [{"model": "toynet", "layer": "A"}, {"model": "toynet", "layer": "B"}], **kw
    )
    assert all(r["metrics"]["accuracy"] <= 0.8 for r in alone)
    assert both["metrics"]["accuracy"] == 1.0
    assert both["factors"]["layer"] == ["A", "B"]
    assert both["factors"]["concat"] is True
    assert both["sizes"]["dim"] == 2
    assert len(both["features"]) == 2


def test_multilabel_svm_ignores_difficult_images_in_ap(store):
    # class 0 present on the first 10 images of each split half; difficult test images look positive
    rng = np.random.default_rng(0)
    n = 40
    present0 = np.tile(np.r_[np.ones(10), np.zeros(10)], 2).astype(int)
    X = np.stack([np.where(present0 == 1, 3.0, -3.0), rng.normal(size=n)], axis=1)
    X += 0.2 * rng.normal(size=X.shape)
    Y = np.stack([present0, 1 - present0], axis=1).astype(np.int8)
    difficult = [25, 26]  # absent test images whose features look like class 0
    X[difficult, 0] = 3.0
    Y[difficult, 0] = -1
    splits = ["train"] * 20 + ["test"] * 20
    ds = add_dataset(store, "voc", Y, splits, classes=["cat", "dog"])
    add_features(store, ds, X)
    record = evaluate_classification(store, "voc", SEL, transform="none")
    assert (
        record["per_class"]["ap_voc07"]["cat"] == 1.0
    )  # difficult ones ignored, not false positives
    assert record["per_class"]["ap"]["cat"] == 1.0
    assert set(record["metrics"]) == {"map_voc07", "map"}
    assert record["protocol"]["selection_metric"] == "average_precision"
    with pytest.raises(EvaluationError, match="this dataset is multi-label: use --classifier svm"):
        evaluate_classification(store, "voc", SEL, classifier="logreg")


# --- bad input: typed errors, nothing written -------------------------------------------


def test_an_incomplete_entry_is_refused(store):
    X, y = blobs([6, 6])
    ds = add_dataset(store, "part", y, interleave_splits(y))
    entry = add_features(store, ds, X, chunk_rows=4, complete=False)
    with pytest.raises(IncompleteEntryError) as err:
        evaluate_classification(store, "part", SEL)
    assert str(err.value) == (
        f"entry {entry.key} (model=toynet, layer=fc, view=plain) is incomplete: 1 of 3 chunks are "
        "missing; rerun the extraction to finish it (it resumes where it stopped)"
    )
    assert store.result_keys() == []


def test_a_dataset_with_one_class_is_refused(store):
    y = np.zeros(8, dtype=int)
    ds = add_dataset(store, "mono", y, ["train"] * 6 + ["test"] * 2, classes=["rose"])
    add_features(store, ds, np.ones((8, 3)))
    with pytest.raises(EvaluationError) as err:
        evaluate_classification(store, "mono", SEL)
    assert (
        str(err.value)
        == "dataset 'mono' has only one class ('rose'); classification needs at least two"
    )
    assert store.result_keys() == []


def test_a_dataset_without_a_test_split_is_refused(store):
    X, y = blobs([4, 4])
    ds = add_dataset(store, "notest", y, ["train"] * 8)
    add_features(store, ds, X)
    with pytest.raises(EvaluationError) as err:
        evaluate_classification(store, "notest", SEL)
    assert str(err.value) == (
        "dataset 'notest' has no test split (its splits: train); register it with one, e.g. a folder "
        "with train/ and test/ subfolders or a manifest with a split column"
    )
    assert store.result_keys() == []


def test_transforms_that_do_not_fit_the_entry_are_refused(store, blob_set):
    with pytest.raises(TransformError) as err:
        evaluate_classification(store, "blobs", SEL, transform="pool=gem")
    assert str(err.value) == "GeM needs a spatial map; this entry was stored with pooling=avg"
    with pytest.raises(TransformError) as err:
        evaluate_classification(store, "blobs", SEL, transform="pca=46")
    assert str(err.value) == (
        "pca=46 asks for more dimensions than the data allow: 45 training samples of 8 dims give at "
        "most 8 components; choose pca=N with N <= 8"
    )
    with pytest.raises(TransformError, match="flipavg needs the flip view of entry feat-"):
        evaluate_classification(store, "blobs", SEL, transform="flipavg")
    assert store.result_keys() == []


def test_missing_features_name_the_extraction_to_run(store, blob_set):
    with pytest.raises(EntryNotFoundError) as err:
        evaluate_classification(store, "blobs", {"model": "toynet", "layer": "conv9"})
    assert str(err.value) == (
        "no cached features with model=toynet, layer=conv9, view=plain for dataset 'blobs' (cached "
        "layers of this model: fc); extract them first, e.g. featstore extract -d blobs -m toynet -l conv9"
    )


def test_several_matching_entries_are_disambiguated_by_the_pool_step(store, blob_set):
    ds, X, _ = blob_set
    grid = np.repeat(X[:, :, None, None], 2, axis=2).repeat(2, axis=3)  # (N, 8, 2, 2)
    add_features(store, ds, grid, pooling="grid:max:2")
    record = evaluate_classification(store, "blobs", SEL, transform="pool=max,l2")
    assert record["factors"]["pooling"] == "grid:max:2"  # only the stored grid gives max pooling
    assert record["metrics"]["accuracy"] == 1.0
    assert evaluate_classification(store, "blobs", SEL)["factors"]["pooling"] == "avg"  # a vector
    add_features(store, ds, X, pooling="max")
    with pytest.raises(EvaluationError) as err:
        evaluate_classification(store, "blobs", SEL)  # avg and max vectors both fit "l2"
    message = str(err.value)
    assert message.startswith(  # the grid entry does not fit "l2" and is not a candidate
        "2 cached entries match features with model=toynet, layer=fc, view=plain for dataset "
        "'blobs': "
    )
    assert "(pooling=avg)" in message
    assert "(pooling=max)" in message
    assert "grid:max:2" not in message
    assert message.endswith("; choose one with --pool LAYER=SPEC or --key KEY")
    assert (
        evaluate_classification(store, "blobs", {**SEL, "pooling": "max"})["factors"]["pooling"]
        == "max"
    )


def test_flip_average_reads_the_flip_twin(store, blob_set):
    ds, X, _ = blob_set
    add_features(store, ds, X + 1.0, view="flip")
    record = evaluate_classification(store, "blobs", SEL, transform="flipavg,l2")
    assert len(record["features"]) == 2
    assert record["factors"]["view"] == "plain"


def test_a_class_with_one_training_sample_cannot_be_cross_validated():
    X = np.array([[0.0], [0.1], [0.2], [5.0], [0.05], [5.1]], dtype=np.float32)
    y = np.array([0, 0, 0, 1, 0, 1])
    splits = split_rows(_FakeDataset(["train"] * 4 + ["test"] * 2))
    with pytest.raises(EvaluationError) as err:
        classify_arrays(X, y, splits, ClassifierSpec(c_grid=(0.1, 1.0)), classes=["daisy", "rose"])
    assert str(err.value) == (
        "class 'rose' has a single training sample; choosing C by cross-validation needs at least 2 "
        "per class: give a single C (e.g. --svm-c 1) to skip the search"
    )
    out = classify_arrays(X, y, splits, ClassifierSpec(c_grid=(1.0,)), classes=["daisy", "rose"])
    assert out["chosen"]["C"] == 1.0
    assert out["metrics"]["accuracy"] == 1.0


def test_progress_counts_chunks_read_then_fitting_steps(store, blob_set):
    seen = []
    evaluate_classification(
        store,
        "blobs",
        SEL,
        classifier="logreg",
        progress=lambda done, total, info: seen.append((done, total, info["stage"])),
    )
    # 3 chunks of 20 rows, then 45 lambdas and the refit on train+val
    assert [s[0] for s in seen] == list(range(1, 50))
    assert {s[1] for s in seen} == {49}
    assert [s[2] for s in seen] == ["read"] * 3 + ["fit"] * 46


def test_a_layer_cached_with_other_pooling_says_what_is_cached(store, blob_set):
    with pytest.raises(EntryNotFoundError) as err:
        evaluate_classification(store, "blobs", {**SEL, "pooling": "gem:3"})
    assert str(err.value) == (
        "no cached features with model=toynet, layer=fc, pooling=gem:3, view=plain for dataset "
        "'blobs' (this layer is cached with pooling=avg view=plain); extract them first, e.g. "
        "featstore extract -d blobs -m toynet -l fc"
    )


def test_a_layer_extracted_under_an_alias_is_found_by_its_module_name(store, blob_set):
    ds, X, _ = blob_set
    # extraction records the module an alias names (a factor of the key)
    entry = add_features(
        store, ds, X, layer="penultimate", model="othernet", layer_target="_avg_pooling"
    )
    by_module = evaluate_classification(
        store, "blobs", {"model": "othernet", "layer": "_avg_pooling"}
    )
    by_alias = evaluate_classification(
        store, "blobs", {"model": "othernet", "layer": "penultimate"}
    )
    assert by_module["features"] == by_alias["features"] == [entry.key]


def test_the_record_says_where_its_time_went(store, blob_set):
    record = evaluate_classification(store, "blobs", SEL, transform="pca=4,l2")
    t = record["timings"]
    assert set(t) == {"read_s", "transform_s", "fit_s", "predict_s", "total_s"}
    assert all(v >= 0 for v in t.values())
    assert t["read_s"] > 0
    assert t["read_s"] + t["transform_s"] + t["fit_s"] + t["predict_s"] <= t["total_s"] * 1.01
