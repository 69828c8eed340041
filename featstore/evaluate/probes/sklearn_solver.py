"""The scikit-learn back end of the probe protocol: the reference loop, one fit at a time.

- SVM (Azizpour et al.): ``LinearSVC`` (one-vs-rest), C chosen by stratified k-fold
  cross-validation on the training rows from a grid (GridSearchCV's folds and rule, written
  out so that every (C, fold) fit reports progress); multi-label: one binary SVM per class.
- Logistic regression (Kornblith et al. 2019): L-BFGS, the penalty ``lambda`` per sample
  (scikit-learn's ``C = 1 / (lambda * n_samples)``), chosen on the validation rows from the
  strongest penalty down (warm-started), then refitted on train+val.

Which rows, folds, classes and grids are used, and how the result is reported, is the
protocol's (:mod:`featstore.evaluate.probes.protocol`); this module only fits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from featstore.evaluate import metrics
from featstore.evaluate.probes.protocol import (
    LOGREG_MAX_ITER,
    SVM_MAX_ITER,
    ClassifierSpec,
    ClassJob,
    MultiLabelFit,
    Solver,
    Tick,
    choose_on_validation,
    lambda_grid,
    log_loss,
    n_folds,
)

__all__ = ["SOLVER", "fit_logreg", "fit_svm", "multi_label"]


def fit_svm(
    X: np.ndarray,
    y: np.ndarray,
    spec: ClassifierSpec,
    seed: int,
    scoring: str,
    names: Sequence[str],
    tick: Tick = lambda info=None: None,
) -> tuple[LinearSVC, dict[str, Any]]:
    """LinearSVC with C chosen by stratified k-fold CV (no CV when the grid has one value).

    The search is GridSearchCV's (same folds, mean fold score, first maximum = smallest C),
    written out so that every (C, fold) fit reports progress.
    """
    base = LinearSVC(
        C=float(spec.c_grid[0]),
        class_weight=spec.class_weight,
        random_state=seed,
        max_iter=SVM_MAX_ITER,
    )
    grid = sorted(float(c) for c in spec.c_grid)
    if len(grid) == 1:
        model = base.fit(X, y)
        tick({"C": grid[0]})
        return model, {"C": grid[0]}
    folds = n_folds(y, spec.cv, names)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    held = list(splitter.split(X, y))
    scores = []
    for c in grid:
        fold_scores = []
        for f, (fit, test) in enumerate(held):
            model = clone(base).set_params(C=c).fit(X[fit], y[fit])
            if scoring == "average_precision":
                fold_scores.append(
                    average_precision_score(y[test], model.decision_function(X[test]))
                )
            else:
                fold_scores.append(metrics.accuracy(y[test], model.predict(X[test])))
            tick({"C": c, "fold": f + 1})
        scores.append(float(np.mean(fold_scores)))
    best = int(np.argmax(scores))  # first maximum: the smallest C among ties
    model = clone(base).set_params(C=grid[best]).fit(X, y)
    tick({"C": grid[best], "refit": "all"})
    return model, {
        "C": grid[best],
        "cv_folds": folds,
        "cv_scores": {str(c): s for c, s in zip(grid, scores, strict=True)},
    }


def _binary_scores(scores: np.ndarray) -> np.ndarray:
    """A two-class decision function (N,) as the scores of both classes (N, 2)."""
    return np.stack([np.zeros_like(scores), scores], axis=1) if scores.ndim == 1 else scores


def _lbfgs_tol(X: np.ndarray, y: np.ndarray, spec: ClassifierSpec) -> float:
    """The L-BFGS ``tol`` (max-abs gradient) that is ``spec.tolerance`` of the gradient at 0.

    scikit-learn's objective is the mean log-loss plus the penalty; at ``W = 0`` its
    gradient is ``[X, 1]^T (w (1/K - onehot)) / sum(w)`` (w: the class weights of the rows).
    """
    classes = np.unique(y)
    onehot = (y[:, None] == classes[None, :]).astype(np.float64)
    w = np.ones(len(y))
    if spec.class_weight == "balanced":
        counts = onehot.sum(axis=0)
        w = (len(y) / (len(classes) * counts))[np.searchsorted(classes, y)]
    r = w[:, None] * (1.0 / len(classes) - onehot)
    g0 = max(float(np.abs(X.T.astype(np.float64) @ r).max()), float(np.abs(r.sum(axis=0)).max()))
    return spec.tolerance * g0 / float(w.sum())


def _logreg(C: float, spec: ClassifierSpec, seed: int, tol: float) -> LogisticRegression:
    return LogisticRegression(
        C=C,
        solver="lbfgs",
        tol=tol,
        max_iter=LOGREG_MAX_ITER,
        class_weight=spec.class_weight,
        random_state=seed,
        warm_start=True,
    )


def fit_logreg(
    X_tr: np.ndarray,
    y_tr: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    spec: ClassifierSpec,
    seed: int,
    tick: Tick,
) -> tuple[LogisticRegression, dict[str, Any]]:
    """Choose lambda on the validation rows (strongest first, warm-started), refit on train+val."""
    lambdas = sorted(lambda_grid(*spec.lambda_range), reverse=True)
    model = _logreg(1.0, spec, seed, _lbfgs_tol(X_tr, y_tr, spec))
    scores, losses = [], []
    for lam in lambdas:
        model.set_params(C=1.0 / (lam * len(y_tr)))
        model.fit(X_tr, y_tr)
        scores.append(metrics.accuracy(y_val, model.predict(X_val)))
        losses.append(
            log_loss(_binary_scores(model.decision_function(X_val)), y_val, model.classes_)
        )
        tick({"lambda": f"{lam:.3g}"})
    best = choose_on_validation(scores, losses)
    lam = float(lambdas[best])
    X_all, y_all = np.concatenate([X_tr, X_val]), np.concatenate([y_tr, y_val])
    final = _logreg(1.0 / (lam * len(y_all)), spec, seed, _lbfgs_tol(X_all, y_all, spec))
    final.fit(X_all, y_all)
    tick({"lambda": f"{lam:.3g}", "refit": "train+val"})
    return final, {
        "lambda": lam,
        "C": 1.0 / (lam * len(y_all)),
        "val_accuracy": float(scores[best]),
        "val_log_loss": float(losses[best]),
        "val_scores": {f"{v:.6g}": float(s) for v, s in zip(lambdas, scores, strict=True)},
    }


def multi_label(
    X: np.ndarray,
    jobs: dict[int, ClassJob],
    names: Sequence[str],
    test: np.ndarray,
    spec: ClassifierSpec,
    seed: int,
    tick: Tick,
) -> MultiLabelFit:
    """One binary SVM per scored class (C by average precision), scored on the test rows."""
    out = MultiLabelFit()
    for k, name in enumerate(names):
        tick({"class": name})
        job = jobs.get(k)
        if job is None:  # skipped by the protocol
            continue
        model, info = fit_svm(
            X[job.rows], job.target, spec, seed, "average_precision", ["absent", "present"]
        )
        p0 = time.perf_counter()
        out.scores[k] = model.decision_function(X[test])
        out.predict_s += time.perf_counter() - p0
        out.chosen_c[k] = float(info["C"])
        if "cv_scores" in info:
            out.cv_scores[name] = info["cv_scores"]
    return out


SOLVER = Solver("sklearn", fit_svm, fit_logreg, multi_label)
