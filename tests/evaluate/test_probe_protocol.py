"""The probe protocol is written once: every back end gets the same rows, classes and warnings."""

from __future__ import annotations

import numpy as np
import pytest

from featstore.errors import EvaluationError
from featstore.evaluate.probes.arrays import classify_arrays
from featstore.evaluate.probes.protocol import ClassifierSpec, Splits, eligible_classes

SOLVERS = ("sklearn", "torch")


def _blobs(n: int = 120, k: int = 3, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = (rng.normal(size=(k, d))[y] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    idx = rng.permutation(n)
    splits = Splits(
        np.sort(idx[40:]), np.zeros(0, dtype=np.int64), np.sort(idx[:40]), "train", None
    )
    return X, y, splits


def _voc(seed: int = 3):
    """Three classes; class 2 has no positive test row, class 1 a single positive to train on."""
    rng = np.random.default_rng(seed)
    n, d = 180, 10
    Y = (rng.random((n, 3)) < 0.4).astype(np.int8)
    Y[rng.random((n, 3)) < 0.05] = -1  # difficult
    test = np.arange(60)
    Y[test, 2] = 0  # nothing to score class 2 on
    train_pos = np.flatnonzero(Y[60:, 1] == 1) + 60
    Y[train_pos[1:], 1] = 0  # class 1: one positive training row, no stratified CV
    X = (np.clip(Y, 0, 1) @ rng.normal(size=(3, d)) + 0.7 * rng.normal(size=(n, d))).astype(
        np.float32
    )
    splits = Splits(np.arange(60, n), np.zeros(0, dtype=np.int64), test, "train", None)
    return X, Y, splits


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_grid_edge_is_reported_on_every_back_end(solver: str) -> None:
    X, y, splits = _blobs()
    svm = classify_arrays(X, y, splits, ClassifierSpec(c_grid=(1e-6, 1e-5, 1e-4), solver=solver))
    assert "is the smallest value of its grid" in svm["chosen"]["grid_edge"]
    logreg = classify_arrays(
        X, y, splits, ClassifierSpec("logreg", lambda_range=(1e2, 1e5, 3), solver=solver)
    )
    assert logreg["chosen"]["lambda"] == pytest.approx(100.0)
    assert "lambda=100 is the smallest value" in logreg["chosen"]["grid_edge"]
    inside = classify_arrays(X, y, splits, ClassifierSpec(c_grid=(1.0,), solver=solver))
    assert "grid_edge" not in inside["chosen"]  # a single C: no grid to be at the end of


@pytest.mark.parametrize("solver", SOLVERS)
def test_multi_label_skips_the_same_classes_in_the_same_words(solver: str) -> None:
    X, Y, splits = _voc()
    spec = ClassifierSpec(c_grid=(1e-6, 1e-5, 1e-4), solver=solver)
    out = classify_arrays(X, Y, splits, spec, classes=["a", "b", "c"])
    skipped = out["chosen"]["skipped_classes"]
    assert skipped["c"] == "no positive test sample"
    assert "class 'present' has a single training sample" in skipped["b"]
    assert set(skipped) == {"b", "c"}
    assert out["per_class"]["ap"]["b"] is None
    assert out["per_class"]["ap"]["a"] is not None
    assert out["chosen"]["C"]["a"] == 1e-6
    assert "the chosen C of 1 of 1 classes is at an end of the grid" in out["chosen"]["grid_edge"]
    assert set(out["chosen"]["cv_scores"]) == {"a"}


def test_eligibility_is_one_function_for_both_back_ends() -> None:
    _X, Y, splits = _voc()
    fit_rows = np.concatenate([splits.train, splits.val])
    jobs, skipped = eligible_classes(Y, fit_rows, splits.test, ["a", "b", "c"], ClassifierSpec())
    assert list(jobs) == [0]
    assert set(skipped) == {"b", "c"}
    assert not np.isin(jobs[0].rows, np.flatnonzero(Y[:, 0] == -1)).any()  # difficult left out
    assert jobs[0].folds == 5
    single, _ = eligible_classes(
        Y, fit_rows, splits.test, ["a", "b", "c"], ClassifierSpec(c_grid=(1.0,))
    )
    assert sorted(single) == [0, 1]
    assert single[1].folds is None


@pytest.mark.parametrize("solver", SOLVERS)
def test_no_scorable_class_is_refused_before_any_fit(solver: str) -> None:
    X, Y, splits = _voc()
    Y[splits.test] = 0
    with pytest.raises(EvaluationError, match="no class has positives in both"):
        classify_arrays(X, Y, splits, ClassifierSpec(solver=solver))


def test_classify_arrays_reaches_no_store_and_the_protocol_no_back_end() -> None:
    import grimp  # import-linter's graph: the contracts' own view

    graph = grimp.build_graph("featstore")
    for pure in ("featstore.evaluate.probes.arrays", "featstore.evaluate.probes.protocol"):
        chain = graph.find_shortest_chain(importer=pure, imported="featstore.store")
        assert chain is None, chain
    for back_end in ("sklearn_solver", "torch_solver", "knn"):
        module = f"featstore.evaluate.probes.{back_end}"
        assert (
            graph.find_shortest_chain(
                importer="featstore.evaluate.probes.protocol", imported=module
            )
            is None
        )
        assert graph.find_shortest_chain(
            importer=module, imported="featstore.evaluate.probes.protocol"
        )
