"""The batched torch back end of the probe protocol (``ClassifierSpec(solver="torch")``).

The protocol (:mod:`featstore.evaluate.probes.protocol`) decides rows, folds, classes and
grids, as for the scikit-learn back end (so the two agree to solver tolerance); this module
fits them as few matrix problems as possible with :mod:`featstore.evaluate.probes.torch_linear`:

- SVM: every fold x every one-vs-rest class is one column of one problem; the C grid is
  walked from the smallest C up, each C warm-started from the previous one; the refit at
  the chosen C starts from the mean of the fold solutions at that C. LinearSVC's class
  weights are reproduced: one-vs-rest problems weight the positives by the class's weight
  and the rest by 1 (liblinear), a two-class problem weights both sides.
- Multi-label SVM: one binary problem per class, difficult rows of that class excluded,
  its own stratified folds and its own C by average precision, all classes batched.
- Logistic regression: the lambda path from the strongest penalty down, warm-started; the
  refit on train+val starts from the chosen lambda's solution.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from featstore.devices import resolve_device
from featstore.evaluate import metrics
from featstore.evaluate.probes.protocol import (
    ClassJob,
    MultiLabelFit,
    Solver,
    choose_on_validation,
    lambda_grid,
    log_loss,
    n_folds,
)
from featstore.evaluate.probes.torch_linear import (
    Design,
    LogregPath,
    SolveInfo,
    logreg_newton,
    svm_newton,
)

__all__ = ["SOLVER", "LinearModel", "fit_logreg", "fit_svm", "multi_label", "solver_device"]


def solver_device(device: str = "auto") -> str:
    """The device of the torch solvers, chosen as extraction chooses its device."""
    return resolve_device(device)


class LinearModel:
    """A fitted linear classifier: ``decision_function`` and ``predict`` like scikit-learn's."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray) -> None:
        self.coef_ = coef  # (K, D), or (1, D) for two classes
        self.intercept_ = intercept
        self.classes_ = classes

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        scores = np.asarray(X, dtype=np.float64) @ self.coef_.T.astype(np.float64)
        scores += self.intercept_.astype(np.float64)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, X: np.ndarray) -> np.ndarray:
        scores = self.decision_function(X)
        picks = (scores > 0).astype(np.int64) if scores.ndim == 1 else np.argmax(scores, axis=1)
        labels: np.ndarray = self.classes_[picks]
        return labels


def _model(W: torch.Tensor, classes: np.ndarray) -> LinearModel:
    w = W.detach().cpu().double().numpy()  # (D1, K)
    return LinearModel(w[:-1].T.copy(), w[-1].copy(), classes)


def _dtype(spec: Any) -> torch.dtype:
    return torch.float64 if getattr(spec, "dtype", "float32") == "float64" else torch.float32


def _balanced(y: np.ndarray, classes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """scikit-learn's 'balanced' weights n / (K n_c), from the labels of ``rows``."""
    counts = np.array([(y[rows] == c).sum() for c in classes], dtype=np.float64)
    return np.where(counts > 0, len(rows) / (len(classes) * np.maximum(counts, 1)), 0.0)


def _svm_targets(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """±1 targets (N, K); two classes give one column (classes[1] positive)."""
    if len(classes) == 2:
        return np.where(y == classes[1], 1.0, -1.0)[:, None]
    return np.where(y[:, None] == classes[None, :], 1.0, -1.0)


def _svm_costs(
    y: np.ndarray, classes: np.ndarray, rows: np.ndarray, class_weight: str | None
) -> np.ndarray:
    """Per-row cost factor (N, K) of a fit on ``rows`` (0 elsewhere), before multiplying by C."""
    n = len(y)
    K = 1 if len(classes) == 2 else len(classes)
    base = np.zeros((n, K))
    base[rows] = 1.0
    if class_weight == "balanced":
        w = _balanced(y, classes, rows)
        idx = np.searchsorted(classes, y)
        if len(classes) == 2:  # liblinear's binary problem weights both sides
            base[rows, 0] *= w[idx[rows]]
        else:  # one-vs-rest: the positives of each class get its weight, the rest 1
            onehot = y[:, None] == classes[None, :]
            base = np.where(onehot, base * w[None, :], base)
    return base


def _as(t: np.ndarray, design: Design) -> torch.Tensor:
    return torch.as_tensor(t, dtype=design.dtype, device=design.device)


def fit_svm(
    X: np.ndarray,
    y: np.ndarray,
    spec: Any,
    seed: int,
    scoring: str,
    names: Sequence[str],
    tick: Callable[..., None] = lambda info=None: None,
) -> tuple[LinearModel, dict[str, Any]]:
    """One-vs-rest LinearSVC-equivalent with C by stratified k-fold CV (folds, classes batched)."""
    device = solver_device(getattr(spec, "device", "auto"))
    design = Design(X, device=device, dtype=_dtype(spec))
    classes = np.unique(y)
    Y = _as(_svm_targets(y, classes), design)
    grid = sorted(float(c) for c in spec.c_grid)
    info = SolveInfo()
    all_rows = np.arange(len(y))
    if len(grid) == 1:
        cost = _as(_svm_costs(y, classes, all_rows, spec.class_weight), design)[None] * grid[0]
        W1, step = svm_newton(design, Y, cost, tol=spec.tolerance)
        info.add(step)
        tick({"C": grid[0]})
        return _model(W1[0], classes), {"C": grid[0], "unconverged": info.unconverged}
    folds = n_folds(y, spec.cv, names)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    held = [test for _, test in splitter.split(X, y)]
    base = np.stack(
        [_svm_costs(y, classes, np.setdiff1d(all_rows, h), spec.class_weight) for h in held]
    )
    base_t = _as(base, design)  # (F, N, K)
    W: torch.Tensor | None = None
    per_c: list[torch.Tensor] = []
    scores = []
    for c in grid:  # smallest C (strongest penalty) first, warm-started
        W, step = svm_newton(design, Y, base_t * c, W0=W, tol=spec.tolerance)
        info.add(step)
        per_c.append(W)
        fold_scores = []
        for f, h in enumerate(held):
            model = _model(W[f], classes)
            fold_scores.append(metrics.accuracy(y[h], model.predict(X[h])))
        scores.append(float(np.mean(fold_scores)))
        tick({"C": c, "folds": len(held)})
    best = int(np.argmax(scores))  # first maximum: the smallest C among ties (GridSearchCV)
    cost = _as(_svm_costs(y, classes, all_rows, spec.class_weight), design)[None] * grid[best]
    W0 = per_c[best].mean(dim=0, keepdim=True)
    W, step = svm_newton(design, Y, cost, W0=W0, tol=spec.tolerance)
    info.add(step)
    tick({"C": grid[best], "refit": "all"})
    chosen: dict[str, Any] = {
        "C": grid[best],
        "cv_folds": folds,
        "cv_scores": {str(c): s for c, s in zip(grid, scores, strict=True)},
        "unconverged": info.unconverged,
    }
    return _model(W[0], classes), chosen


def fit_logreg(
    X_tr: np.ndarray,
    y_tr: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    spec: Any,
    seed: int,
    tick: Callable[..., None],
) -> tuple[LinearModel, dict[str, Any]]:
    """Lambda chosen on the validation rows along a warm-started path, refit on train+val."""
    device = solver_device(getattr(spec, "device", "auto"))
    dtype = _dtype(spec)
    classes = np.unique(np.concatenate([y_tr, y_val]))
    K = len(classes)
    lambdas = sorted(lambda_grid(*spec.lambda_range), reverse=True)

    def weights(y: np.ndarray) -> torch.Tensor | None:
        if spec.class_weight != "balanced":
            return None
        present = np.unique(y)
        w = _balanced(y, present, np.arange(len(y)))
        return torch.as_tensor(w[np.searchsorted(present, y)], dtype=dtype, device=device)

    design = Design(X_tr, device=device, dtype=dtype, center=True)
    y_t = torch.as_tensor(np.searchsorted(classes, y_tr), device=device)
    s_tr = weights(y_tr)
    solver = LogregPath(design, y_t, K, s_tr, tol=spec.tolerance)
    path, scores, losses = [], [], []
    info = SolveInfo()
    for lam in lambdas:
        W, step = solver.solve(float(lam))
        info.add(step)
        raw = design.unshift(W)
        path.append(raw)
        val_scores = _model(raw, classes).decision_function(X_val)
        val_scores = val_scores[:, None] if val_scores.ndim == 1 else val_scores
        scores.append(metrics.accuracy(y_val, classes[np.argmax(val_scores, axis=1)]))
        losses.append(log_loss(val_scores, y_val, classes))
        tick({"lambda": f"{lam:.3g}"})
    best = choose_on_validation(scores, losses)
    lam = float(lambdas[best])
    X_all, y_all = np.concatenate([X_tr, X_val]), np.concatenate([y_tr, y_val])
    full = Design(X_all, device=device, dtype=dtype, center=True)
    y_all_t = torch.as_tensor(np.searchsorted(classes, y_all), device=device)
    W, step = logreg_newton(
        full, y_all_t, K, lam, weights(y_all), W0=full.shift_weights(path[best]), tol=spec.tolerance
    )
    info.add(step)
    tick({"lambda": f"{lam:.3g}", "refit": "train+val"})
    chosen: dict[str, Any] = {
        "lambda": lam,
        "C": 1.0 / (lam * len(y_all)),
        "val_accuracy": float(scores[best]),
        "val_log_loss": float(losses[best]),
        "val_scores": {f"{v:.6g}": float(s) for v, s in zip(lambdas, scores, strict=True)},
        "unconverged": info.unconverged,
    }
    return _model(full.unshift(W), classes), chosen


def multi_label(
    X: np.ndarray,
    jobs: dict[int, ClassJob],
    names: Sequence[str],
    test: np.ndarray,
    spec: Any,
    seed: int,
    tick: Callable[..., None],
) -> MultiLabelFit:
    """The scored classes as one batched problem: a column per class (and per fold)."""
    n = X.shape[0]
    live = sorted(jobs)
    grid = sorted(float(c) for c in spec.c_grid)
    folds_of: dict[int, list[np.ndarray]] = {}
    for k in live:
        job = jobs[k]
        if job.folds is not None:
            splitter = StratifiedKFold(job.folds, shuffle=True, random_state=seed)
            folds_of[k] = [job.rows[h] for _, h in splitter.split(job.rows, job.target)]
    device = solver_device(getattr(spec, "device", "auto"))
    design = Design(X, device=device, dtype=_dtype(spec))
    targets = np.where(Y_of(jobs, live, n), 1.0, -1.0)  # (N, L)
    Yt = _as(targets, design)

    def costs(rows_of: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((n, len(live)))
        for j, rows in enumerate(rows_of):
            out[rows, j] = 1.0
            if spec.class_weight == "balanced" and len(rows):
                pos = targets[rows, j] > 0
                n_pos, n_neg = pos.sum(), (~pos).sum()
                out[rows, j] = np.where(pos, len(rows) / (2 * n_pos), len(rows) / (2 * n_neg))
        return out

    info = SolveInfo()
    chosen_c = np.full(len(live), grid[0])
    warm = None
    fit = MultiLabelFit()
    if len(grid) > 1:
        F = max(len(folds_of[k]) for k in live)
        base = np.zeros((F, n, len(live)))
        for f in range(F):
            train_rows = []
            for k in live:
                fk = folds_of[k]
                train_rows.append(
                    np.setdiff1d(jobs[k].rows, fk[f])
                    if f < len(fk)
                    else np.zeros(0, dtype=np.int64)
                )
            base[f] = costs(train_rows)
        base_t = _as(base, design)
        W: torch.Tensor | None = None
        per_c, score_table = [], np.zeros((len(grid), len(live)))
        for ci, c in enumerate(grid):
            W, step = svm_newton(design, Yt, base_t * c, W0=W, tol=spec.tolerance)
            info.add(step)
            per_c.append(W)
            S = (design.Z @ design.to_coords(W)).detach().cpu().double().numpy()  # (F, N, L)
            for j, k in enumerate(live):
                aps = [
                    average_precision_score(targets[h, j] > 0, S[f, h, j])
                    for f, h in enumerate(folds_of[k])
                ]
                score_table[ci, j] = float(np.mean(aps))
            tick({"C": c, "classes": len(live)})
        best = np.argmax(score_table, axis=0)  # first maximum per class: smallest C
        chosen_c = np.array([grid[b] for b in best])
        warm = torch.stack([per_c[b][:, :, j].mean(dim=0) for j, b in enumerate(best)], dim=-1)
        for j, k in enumerate(live):
            fit.cv_scores[names[k]] = {
                str(c): float(score_table[ci, j]) for ci, c in enumerate(grid)
            }
    cost = _as(costs([jobs[k].rows for k in live]) * chosen_c[None, :], design)[None]
    W0 = None if warm is None else warm[None]
    W, step = svm_newton(design, Yt, cost, W0=W0, tol=spec.tolerance)
    info.add(step)
    tick({"refit": "all", "classes": len(live)})
    p0 = time.perf_counter()
    rows = torch.as_tensor(test, device=device)
    S = (design.Z[rows] @ design.to_coords(W[0])).detach().cpu().double().numpy()
    fit.predict_s = time.perf_counter() - p0
    for j, k in enumerate(live):
        fit.scores[k] = S[:, j]
        fit.chosen_c[k] = float(chosen_c[j])
    fit.unconverged = info.unconverged
    return fit


def Y_of(jobs: dict[int, ClassJob], live: Sequence[int], n: int) -> np.ndarray:
    """(N, L) booleans: row i is a positive of live class j (only its training rows matter)."""
    out = np.zeros((n, len(live)), dtype=bool)
    for j, k in enumerate(live):
        out[jobs[k].rows, j] = jobs[k].target == 1
    return out


SOLVER = Solver("torch", fit_svm, fit_logreg, multi_label)
