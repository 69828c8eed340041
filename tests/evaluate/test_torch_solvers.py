"""The batched torch solvers against scikit-learn, warm starts, and thread independence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from featstore.evaluate import classify_arrays
from featstore.evaluate.probes.protocol import ClassifierSpec, Splits, edge_warning
from featstore.evaluate.probes.torch_linear import Design, logreg_newton, svm_newton
from featstore.evaluate.probes.torch_solver import _svm_costs, _svm_targets


def problem(n=240, d=16, k=4, noise=2.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    y = rng.integers(0, k, n)
    X = (centers[y] + noise * rng.normal(size=(n, d))).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, y


def splits_of(n, seed=0, n_test=None):
    idx = np.random.default_rng(seed).permutation(n)
    n_test = n_test or n // 3
    empty = np.zeros(0, dtype=np.int64)
    return Splits(np.sort(idx[n_test:]), empty, np.sort(idx[:n_test]), "train", None)


def torch_svm(X, y, C, class_weight=None, tol=1e-9):
    design = Design(X, dtype=torch.float64)
    classes = np.unique(y)
    Y = torch.as_tensor(_svm_targets(y, classes))
    cost = torch.as_tensor(_svm_costs(y, classes, np.arange(len(y)), class_weight))[None] * C
    W, info = svm_newton(design, Y, cost, tol=tol)
    assert info.unconverged == 0
    return W[0].numpy()


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_svm_weights_equal_linearsvc(k, class_weight):
    X, y = problem(k=k)
    if class_weight:  # unbalanced classes so the weights matter
        keep = (y != 0) | (np.arange(len(y)) % 3 == 0)
        X, y = X[keep], y[keep]
    W = torch_svm(X, y, 1.0, class_weight)
    ref = LinearSVC(C=1.0, tol=1e-8, max_iter=200000, class_weight=class_weight).fit(X, y)
    expect = np.vstack([ref.coef_.T, ref.intercept_[None]])  # intercept regularised, last row
    np.testing.assert_allclose(W, expect, rtol=0, atol=2e-4 * np.abs(expect).max())


def test_logreg_weights_equal_logisticregression():
    X, y = problem(k=3)
    lam = 1e-2
    design = Design(X, dtype=torch.float64, center=True)
    W, info = logreg_newton(design, torch.as_tensor(y), 3, lam, tol=1e-10)
    assert info.unconverged == 0
    W = design.unshift(W).numpy()
    ref = LogisticRegression(C=1.0 / (lam * len(y)), tol=1e-10, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(W[:-1], ref.coef_.T, atol=1e-4 * np.abs(ref.coef_).max())
    # the intercept is defined up to a shift shared by all classes
    np.testing.assert_allclose(
        W[-1] - W[-1].mean(), ref.intercept_ - ref.intercept_.mean(), atol=1e-4
    )


def test_warm_started_path_equals_cold_solves():
    X, y = problem()
    design = Design(X, dtype=torch.float64)
    classes = np.unique(y)
    Y = torch.as_tensor(_svm_targets(y, classes))
    base = torch.as_tensor(_svm_costs(y, classes, np.arange(len(y)), None))[None]
    warm = None
    for C in (0.01, 0.1, 1.0, 10.0):
        warm, _ = svm_newton(design, Y, base * C, W0=warm, tol=1e-10)
        cold, _ = svm_newton(design, Y, base * C, tol=1e-10)
        np.testing.assert_allclose(warm.numpy(), cold.numpy(), atol=1e-6)
    cdesign = Design(X, dtype=torch.float64, center=True)
    yt = torch.as_tensor(y)
    warm = None
    for lam in (1.0, 1e-2, 1e-4):
        warm, _ = logreg_newton(cdesign, yt, 4, lam, W0=warm, tol=1e-10)
        cold, _ = logreg_newton(cdesign, yt, 4, lam, tol=1e-10)
        a, b = cdesign.unshift(warm).numpy(), cdesign.unshift(cold).numpy()
        np.testing.assert_allclose(a[:-1], b[:-1], atol=1e-5)


def _both(X, y, splits, **spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = classify_arrays(X, y, splits, ClassifierSpec(solver="sklearn", **spec))
    new = classify_arrays(X, y, splits, ClassifierSpec(solver="torch", **spec))
    return ref, new


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "svm"},
        {"name": "svm", "c_grid": (0.5,)},
        {"name": "svm", "class_weight": "balanced"},
        {"name": "logreg", "lambda_range": (1e-4, 1e1, 11)},
    ],
    ids=["svm-grid", "svm-one-C", "svm-balanced", "logreg-path"],
)
def test_classify_arrays_torch_matches_sklearn(spec):
    X, y = problem(n=300, k=5)
    ref, new = _both(X, y, splits_of(len(y)), **spec)
    assert abs(new["metrics"]["accuracy"] - ref["metrics"]["accuracy"]) <= 0.005 + 1e-9
    name = "lambda" if spec["name"] == "logreg" else "C"
    if spec["name"] == "logreg":
        grid = sorted(float(v) for v in ref["chosen"]["val_scores"])
    else:
        grid = sorted(spec.get("c_grid", (0.01, 0.1, 1.0, 10.0)))
    pos = [int(np.argmin(np.abs(np.log(grid) - np.log(r["chosen"][name])))) for r in (ref, new)]
    assert abs(pos[0] - pos[1]) <= 1  # the same or adjacent grid value
    assert new["chosen"]["convergence_warnings"] == 0


def test_a_class_with_two_samples_gets_two_folds_and_matches_sklearn():
    X, y = problem(n=200, k=4)
    rare = np.flatnonzero(y == 3)
    X, y = np.delete(X, rare[2:], axis=0), np.delete(y, rare[2:])
    test = np.flatnonzero(y != 3)[:50]
    train = np.setdiff1d(np.arange(len(y)), test)
    splits = Splits(train, np.zeros(0, dtype=np.int64), test, "train", None)
    ref, new = _both(X, y, splits, name="svm")
    assert new["chosen"]["cv_folds"] == ref["chosen"]["cv_folds"] == 2
    assert new["chosen"]["C"] == ref["chosen"]["C"]
    assert new["metrics"]["accuracy"] == pytest.approx(ref["metrics"]["accuracy"], abs=0.005)


def test_multilabel_with_difficult_matches_sklearn():
    rng = np.random.default_rng(3)
    n, d, k = 240, 12, 3
    Y = (rng.random((n, k)) < 0.35).astype(np.int8)
    X = (Y @ rng.normal(size=(k, d)) + 0.8 * rng.normal(size=(n, d))).astype(np.float32)
    Y[rng.random((n, k)) < 0.08] = -1  # difficult: not trained on, ignored in AP
    splits = splits_of(n, seed=1)
    for grid in ((1.0,), (0.01, 0.1, 1.0)):
        ref, new = _both(X, Y, splits, name="svm", c_grid=grid)
        assert new["metrics"]["map"] == pytest.approx(ref["metrics"]["map"], abs=0.005)
        assert new["metrics"]["map_voc07"] == pytest.approx(ref["metrics"]["map_voc07"], abs=0.005)
        for name, c in ref["chosen"]["C"].items():
            assert abs(np.log10(new["chosen"]["C"][name]) - np.log10(c)) <= 1 + 1e-9


def test_results_do_not_depend_on_the_thread_count():
    X, y = problem(n=400, d=24, k=6, seed=5)
    splits = splits_of(len(y), seed=5)
    for spec in (
        ClassifierSpec(name="svm"),
        ClassifierSpec(name="logreg", lambda_range=(1e-4, 1e1, 6)),
        ClassifierSpec(name="knn"),
    ):
        one = classify_arrays(X, y, splits, spec, threads=1)
        two = classify_arrays(X, y, splits, spec, threads=2)
        assert one["metrics"] == two["metrics"]
        assert {k: v for k, v in one["chosen"].items() if "score" in k or k in ("C", "lambda")} == {
            k: v for k, v in two["chosen"].items() if "score" in k or k in ("C", "lambda")
        }


def test_threads_are_restored_after_an_evaluation():
    before = torch.get_num_threads()
    X, y = problem(n=90)
    classify_arrays(X, y, splits_of(len(y)), ClassifierSpec(c_grid=(1.0,)), threads=1)
    assert torch.get_num_threads() == before


def test_solver_is_part_of_the_key_and_validated():
    torch_key = ClassifierSpec(solver="torch").key()
    assert torch_key["solver"] == "torch"
    assert torch_key["tol"] == pytest.approx(1e-6)
    assert ClassifierSpec(solver="sklearn").key() != torch_key
    assert ClassifierSpec(solver="torch", tol=1e-5).key() != torch_key
    from featstore.errors import EvaluationError

    with pytest.raises(EvaluationError, match="unknown solver"):
        ClassifierSpec(solver="cuml").validate()


def test_edge_warning_names_the_end_of_the_grid():
    grid = (0.01, 0.1, 1.0, 10.0)
    assert "largest" in edge_warning("C", 10.0, grid)
    assert "smallest" in edge_warning("C", 0.01, grid)
    assert edge_warning("C", 0.1, grid) is None
    X, y = problem(n=120)
    out = classify_arrays(X, y, splits_of(len(y)), ClassifierSpec(c_grid=(1e-6, 1e-5, 1e-4)))
    assert "grid_edge" in out["chosen"]  # tiny C all score alike: the first (edge) wins


def test_validation_ties_go_to_the_lowest_log_loss():
    from featstore.evaluate.probes.protocol import choose_on_validation, log_loss

    assert choose_on_validation([0.5, 0.9, 0.9, 0.8], [0.1, 0.7, 0.4, 0.05]) == 2
    assert choose_on_validation([0.9, 0.9], [0.3, 0.3]) == 0  # a full tie: the first
    scores = np.array([[2.0, 0.0], [0.0, 1.0]])
    expect = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0))])
    assert log_loss(scores, np.array([3, 7]), np.array([3, 7])) == pytest.approx(expect)


def test_flat_validation_accuracy_picks_the_same_lambda_in_both_solvers():
    X, y = problem(n=300, k=3, noise=0.3)  # separable: validation accuracy flat over lambdas
    spec = {"name": "logreg", "lambda_range": (1e-3, 1e2, 11)}
    ref, new = _both(X, y, splits_of(len(y)), **spec)
    flat = [v for v in new["chosen"]["val_scores"].values() if v == new["chosen"]["val_accuracy"]]
    assert len(flat) > 1  # a tie that "first maximum" would settle by the grid's order
    assert new["chosen"]["lambda"] == pytest.approx(ref["chosen"]["lambda"])
    assert new["chosen"]["val_log_loss"] == pytest.approx(ref["chosen"]["val_log_loss"], abs=1e-3)


@pytest.mark.parametrize("solver", ["torch", "sklearn"])
def test_progress_names_each_grid_value_and_fold(solver):
    X, y = problem(n=150, k=3)
    seen = []
    spec = ClassifierSpec(name="svm", c_grid=(0.1, 1.0, 10.0), cv=3, solver=solver)
    classify_arrays(X, y, splits_of(len(y)), spec, progress=lambda d, t, i: seen.append((d, t, i)))
    total = seen[0][1]
    assert [d for d, _, _ in seen] == list(range(1, total + 1))  # one tick per solve, in order
    assert {i["C"] for _, _, i in seen} == {0.1, 1.0, 10.0}
    if solver == "sklearn":  # every (C, fold) fit, then the refit
        assert total == 3 * 3 + 1
        assert {i.get("fold") for _, _, i in seen[:-1]} == {1, 2, 3}
    else:  # each C solves all folds and classes at once
        assert total == 3 + 1
        assert all(i["folds"] == 3 for _, _, i in seen[:-1])
    assert seen[-1][2]["refit"] == "all"
    lam = []
    spec = ClassifierSpec(name="logreg", lambda_range=(1e-3, 1e1, 5), solver=solver)
    classify_arrays(X, y, splits_of(len(y)), spec, progress=lambda d, t, i: lam.append(i))
    assert [i["lambda"] for i in lam[:5]] == ["10", "1", "0.1", "0.01", "0.001"]
    assert lam[-1]["refit"] == "train+val"


def test_default_tolerances_are_in_the_key():
    assert ClassifierSpec("svm").key()["tol"] == pytest.approx(1e-6)
    assert ClassifierSpec("logreg").key()["tol"] == pytest.approx(1e-4)
    assert ClassifierSpec("logreg", solver="sklearn").key()["tol"] == pytest.approx(1e-4)
    assert ClassifierSpec("logreg", tol=1e-6).key() != ClassifierSpec("logreg").key()


def test_solvers_run_on_the_device_asked_for():
    X, y = problem(n=120, k=3)
    out = classify_arrays(X, y, splits_of(len(y)), ClassifierSpec(device="cpu"))
    assert out["metrics"]["accuracy"] > 0.5
    from featstore.errors import FeatstoreError

    if not torch.cuda.is_available():
        with pytest.raises(FeatstoreError, match=r"(?i)cuda"):
            classify_arrays(X, y, splits_of(len(y)), ClassifierSpec(device="cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["svm", "logreg"])
def test_cuda_solvers_match_cpu(name):
    X, y = problem(n=400, d=24, k=6, seed=5)
    splits = splits_of(len(y), seed=5)
    spec = {"name": name, "lambda_range": (1e-4, 1e1, 6)}
    cpu = classify_arrays(X, y, splits, ClassifierSpec(device="cpu", **spec))
    gpu = classify_arrays(X, y, splits, ClassifierSpec(device="cuda", **spec))
    assert gpu["metrics"]["accuracy"] == pytest.approx(cpu["metrics"]["accuracy"], abs=0.005)
    value = "lambda" if name == "logreg" else "C"
    assert gpu["chosen"][value] == cpu["chosen"][value]


def test_logreg_cg_stays_out_of_the_shared_intercept_null_space():
    """One constant on every class's intercept changes no softmax and has no penalty: CG must
    neither step along it nor let round-off there blow the step up."""
    from featstore.evaluate.probes.torch_linear import (
        _LogregHessian,
        _pcg,
        _without_shared_intercept,
    )

    X, _y = problem(n=200, k=4)
    design = Design(X, dtype=torch.float64, center=True)
    prob = torch.softmax(torch.as_tensor(np.random.default_rng(0).normal(size=(200, 4))), dim=1)
    reg = design.feature_dir.reshape(-1, 1)
    op = _LogregHessian(design, prob, prob, 1e-3, reg)
    null = torch.zeros((design.r, 4), dtype=torch.float64)
    null[-1] = 1.0  # the intercept's own eigen-direction, the same for every class
    assert float(op(null).abs().max()) < 1e-12  # it is the Hessian's null space
    b = torch.as_tensor(np.random.default_rng(1).normal(size=(design.r, 4))) + 5.0 * null
    x, zx, _ = _pcg(op, b, torch.tensor([1e-10], dtype=torch.float64), 500, coupled=True)
    assert float((x * null).sum().abs()) < 1e-8 * float(x.norm())  # no step along it
    np.testing.assert_allclose(op(x).numpy(), _without_shared_intercept(b, reg).numpy(), atol=1e-6)
    np.testing.assert_allclose(zx.numpy(), (design.Z @ x).numpy(), atol=1e-8)


def test_logreg_path_with_reused_gradients_equals_cold_solves():
    from featstore.evaluate.probes.torch_linear import LogregPath

    X, y = problem(n=300, k=5, seed=2)
    design = Design(X, dtype=torch.float64, center=True)
    path = LogregPath(design, torch.as_tensor(y), 5, tol=1e-10)
    for lam in (1e2, 1.0, 1e-2, 1e-4):
        warm, info = path.solve(lam)
        cold, _ = logreg_newton(design, torch.as_tensor(y), 5, lam, tol=1e-10)
        assert info.unconverged == 0
        a, c = design.unshift(warm).numpy(), design.unshift(cold).numpy()
        np.testing.assert_allclose(a[:-1], c[:-1], atol=1e-6 * max(1.0, np.abs(c).max()))
