"""The classifiers: one-vs-rest linear SVM and multinomial logistic regression on arrays.

Both are scikit-learn estimators; this module only chooses their hyper-parameters the way
the studies did and scores them:

- SVM (Azizpour et al.): ``LinearSVC`` (one-vs-rest), C chosen by stratified k-fold
  cross-validation on the training rows from a grid. Multi-label targets (+1 present,
  0 absent, -1 difficult) get one binary SVM per class, trained without that class's
  difficult samples, scored by VOC07 11-point and all-point AP with difficult ignored.
- Logistic regression (Kornblith et al. 2019): L-BFGS, L2 penalty ``lambda`` from 45
  log-spaced values in [1e-6, 1e5] chosen on a validation split (the dataset's, or a
  stratified, seeded share of the training rows), then refitted on train+val. The penalty
  is per sample: scikit-learn's ``C = 1 / (lambda * n_samples)``, so one lambda means the
  same strength before and after the refit on more rows.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.errors import EvaluationError, ProtocolLimitError
from featstore.evaluate import metrics
from featstore.evaluate.knn import KNN_K_GRID as KNN_DEFAULT_GRID
from featstore.evaluate.limits import DEFAULT_CV
from featstore.evaluate.selection import Splits
from featstore.progress import Progress

if TYPE_CHECKING:  # scikit-learn is imported where a classifier is fitted: a cached
    # lookup (the specs and keys of this module) never pays for it
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

__all__ = [
    "C_GRID",
    "LAMBDA_RANGE",
    "ClassifierSpec",
    "classify_arrays",
    "fit_steps",
    "lambda_grid",
]

C_GRID = (0.01, 0.1, 1.0, 10.0)
LAMBDA_RANGE = (1e-6, 1e5, 45)
Tick = Callable[..., None]  # tick(info=None): one fit step done, info says which (C, fold, ...)
CLASSIFIERS = ("svm", "logreg", "knn")
SOLVERS = ("torch", "sklearn")  # torch: featstore.evaluate.torch_linear (batched Newton-CG)
# Solver tolerances (part of the key): torch stops at ||grad|| <= tol * ||grad at W=0||.
# SVM 1e-6: liblinear's primal rule, 1e-4 * min(pos, neg) / n, for 100 balanced classes.
# Logreg 1e-4: Newton converges quadratically, so the test accuracy at 1e-4 equalled that at
# 1e-8 (float64) on every lambda measured; float32 round-off sits near 1e-6 for this loss.
SVM_TOL = 1e-6
LOGREG_TOL = 1e-4
SVM_MAX_ITER = 10000
LOGREG_MAX_ITER = 1000


def lambda_grid(
    low: float = LAMBDA_RANGE[0], high: float = LAMBDA_RANGE[1], n: int = LAMBDA_RANGE[2]
) -> np.ndarray:
    """``n`` log-spaced penalties from ``low`` to ``high`` (Kornblith et al.: 45 in [1e-6, 1e5])."""
    return np.logspace(np.log10(low), np.log10(high), int(n))


@dataclass(frozen=True)
class ClassifierSpec:
    """Everything about a classifier that changes its result (part of the result key)."""

    name: str = "svm"
    c_grid: tuple[float, ...] = C_GRID
    cv: int | None = None  # None: 5 folds, fewer when the smallest class has fewer images
    class_weight: str | None = None  # None or "balanced"
    lambda_range: tuple[float, float, int] = LAMBDA_RANGE
    val_fraction: float = 0.2
    solver: str = "torch"  # "torch" (batched, default) or "sklearn" (the reference loop)
    tol: float | None = None  # relative gradient tolerance; None: SVM_TOL / LOGREG_TOL
    dtype: str = "float32"  # torch solvers' compute dtype (float32 | float64)
    device: str = "auto"  # torch solvers' device (as extraction: auto = cuda when present)
    # kNN: k grid chosen on val (one value: fixed); None: 10, 20, 50, 100 as the data holds
    knn_k: tuple[int, ...] | None = None
    temperature: float = 0.07  # kNN: DINO vote weight exp(sim / T)

    @property
    def folds(self) -> int:
        """The CV folds asked for (the default when none were given)."""
        return DEFAULT_CV if self.cv is None else int(self.cv)

    @property
    def tolerance(self) -> float:
        """The solvers' relative gradient tolerance: ``tol``, or this classifier's default."""
        if self.tol is not None:
            return float(self.tol)
        return LOGREG_TOL if self.name == "logreg" else SVM_TOL

    def validate(self) -> ClassifierSpec:
        if self.name not in CLASSIFIERS:
            raise EvaluationError(
                f"unknown classifier {self.name!r}; choose one of {', '.join(CLASSIFIERS)}"
            )
        if self.solver not in SOLVERS:
            raise EvaluationError(
                f"unknown solver {self.solver!r}; choose one of {', '.join(SOLVERS)}"
            )
        if not (np.isfinite(self.tolerance) and 0 < self.tolerance < 1) or self.dtype not in (
            "float32",
            "float64",
        ):
            raise EvaluationError(
                f"solver tolerance must be in (0, 1) and dtype float32 or float64, got "
                f"tol={self.tol}, dtype={self.dtype!r}"
            )
        if self.name == "knn":
            bad_k = self.knn_k is not None and (
                not self.knn_k or any(int(k) < 1 for k in self.knn_k)
            )
            if bad_k or not self.temperature > 0:
                raise EvaluationError(
                    f"kNN needs k values >= 1 and a positive temperature, got k={self.knn_k}, "
                    f"T={self.temperature}"
                )
            return self
        if self.class_weight not in (None, "balanced"):
            raise EvaluationError(
                f"class_weight must be None or 'balanced', not {self.class_weight!r}"
            )
        if self.name == "svm":
            if not self.c_grid or any(not np.isfinite(c) or c <= 0 for c in self.c_grid):
                raise EvaluationError(
                    f"the SVM C grid needs positive numbers, got {list(self.c_grid)}"
                )
            if self.cv is not None and int(self.cv) < 2:
                raise EvaluationError(f"cross-validation needs at least 2 folds, got cv={self.cv}")
        else:
            low, high, n = self.lambda_range
            if not (0 < low <= high) or int(n) < 1:
                raise EvaluationError(
                    f"the lambda range must be 0 < low <= high with n >= 1, got {self.lambda_range}"
                )
            if not 0 < self.val_fraction < 1:
                raise EvaluationError(
                    f"val_fraction must be between 0 and 1, got {self.val_fraction}"
                )
        return self

    def key(self) -> dict[str, Any]:
        """The classifier part of a result key."""
        if self.name == "knn":
            return {
                "name": "knn",
                "estimator": "faiss.IndexFlatIP",
                "metric": "cosine",
                "vote": "exp(sim/T)",
                "temperature": float(self.temperature),
                "k_grid": sorted({int(k) for k in (self.knn_k or KNN_DEFAULT_GRID)}),
            }
        if self.solver == "torch":
            return {**self._sklearn_key(), **self._torch_key()}
        return self._sklearn_key()

    def _torch_key(self) -> dict[str, Any]:
        estimator = "featstore.torch_linear." + ("svm" if self.name == "svm" else "logreg")
        return {
            "estimator": estimator,
            "solver": "torch",
            "method": "newton-cg",
            "tol": self.tolerance,
            "tol_rule": "||grad|| <= tol*||grad(0)||",
            "dtype": self.dtype,
        }

    def _sklearn_key(self) -> dict[str, Any]:
        if self.name == "svm":
            return {
                "name": "svm",
                "estimator": "sklearn.svm.LinearSVC",
                "multiclass": "ovr",
                "loss": "squared_hinge",
                "C_grid": sorted(float(c) for c in self.c_grid),
                "class_weight": self.class_weight,
                "tol": 1e-4,  # liblinear's own rule (see SVM_TOL)
            }
        low, high, n = self.lambda_range
        return {
            "name": "logreg",
            "estimator": "sklearn.linear_model.LogisticRegression",
            "solver": "lbfgs",
            "multiclass": "multinomial",
            "penalty": "l2",
            "lambda_grid": {"low": float(low), "high": float(high), "n": int(n), "spacing": "log"},
            "lambda_to_C": "1/(lambda*n_samples)",
            "class_weight": self.class_weight,
            "tol": self.tolerance,
            "tol_rule": "max|grad| <= tol*max|grad(0)|",
        }

    def protocol(self, splits: Splits, multilabel: bool) -> dict[str, Any]:
        """How rows are used (part of the result key)."""
        base = {"train": splits.train_name, "test": "test"}
        if self.name == "svm" and len(self.c_grid) == 1:  # no search: no folds ran
            return {**base, "val": splits.val_name, "fit_on": "train+val", "selection": "none"}
        if self.name == "svm":
            return {
                **base,
                "val": splits.val_name,
                "fit_on": "train+val",
                "selection": "stratified-kfold",
                "cv_folds": self.folds,
                "selection_metric": "average_precision" if multilabel else "accuracy",
                **({"difficult": "excluded from training, ignored in AP"} if multilabel else {}),
            }
        val = splits.val_name or f"carved:{self.val_fraction}"
        return {
            **base,
            "val": val,
            "selection": "holdout",
            "selection_metric": "accuracy",
            **({"tie_break": "val log-loss"} if self.name == "logreg" else {}),
            "refit": "train+val",
            **({"database": "train+val"} if self.name == "knn" else {}),
        }


def _n_folds(y: np.ndarray, wanted: int | None, names: Sequence[str]) -> int:
    """Folds for stratified CV: as asked (None: 5, or fewer when the rarest class has fewer).

    More folds than the rarest class has members are refused (ProtocolLimitError), never
    clamped; a class with a single training sample cannot be stratified (EvaluationError).
    """
    values, counts = np.unique(y, return_counts=True)
    label = int(values[np.argmin(counts)])
    name = names[label] if label < len(names) else str(label)
    have = int(counts.min())
    if have < 2:
        raise EvaluationError(
            f"class {name!r} has a single training sample; choosing C by cross-validation needs at "
            "least 2 per class: give a single C (e.g. --svm-c 1) to skip the search"
        )
    if wanted is None:
        return min(DEFAULT_CV, have)
    if int(wanted) > have:
        raise ProtocolLimitError(
            f"--cv {wanted} is more than the data allows: class {name!r} has {have} training "
            f"images, and stratified {wanted}-fold cross-validation needs {wanted} of each; use "
            f"--cv {have} or fewer",
            option="cv",
            value=int(wanted),
            limit=have,
        )
    return int(wanted)


class _Caught(list):  # type: ignore[type-arg]
    """The warnings recorded inside :func:`_quiet`."""

    @property
    def n(self) -> int:
        from sklearn.exceptions import ConvergenceWarning

        return sum(issubclass(w.category, ConvergenceWarning) for w in self)


@contextmanager
def _quiet() -> Iterator[_Caught]:
    """Count scikit-learn's convergence warnings instead of letting them reach the user."""
    from sklearn.exceptions import ConvergenceWarning

    caught = _Caught()
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        try:
            yield caught
        finally:
            caught.extend(recorded or [])


def _fit_svm(
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
    from sklearn.base import clone
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

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
    folds = _n_folds(y, spec.cv, names)
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


def log_loss(scores: np.ndarray, y: np.ndarray, classes: np.ndarray) -> float:
    """Mean cross-entropy of softmax(``scores``) (N, K) at the labels ``y`` (values of ``classes``)."""
    scores = np.asarray(scores, dtype=np.float64)
    top = scores.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(scores - top).sum(axis=1))
    true = scores[np.arange(len(y)), np.searchsorted(classes, y)]
    return float(np.mean(log_norm - true))


def choose_on_validation(accuracies: Sequence[float], losses: Sequence[float]) -> int:
    """The grid index with the best validation accuracy; ties go to the lowest log-loss.

    Accuracy is flat over long runs of the lambda path (every lambda that classifies the
    few validation images equally), so "first maximum" would depend on round-off; the
    log-loss breaks the tie by how confidently the validation labels are predicted.
    """
    acc = np.asarray(accuracies, dtype=np.float64)
    tied = np.flatnonzero(acc == acc.max())
    return int(tied[np.argmin(np.asarray(losses, dtype=np.float64)[tied])])


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
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=C,
        solver="lbfgs",
        tol=tol,
        max_iter=LOGREG_MAX_ITER,
        class_weight=spec.class_weight,
        random_state=seed,
        warm_start=True,
    )


def _fit_logreg(
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


def carve_validation(
    y: np.ndarray,
    train: np.ndarray,
    fraction: float,
    seed: int,
    chooses: str = "logistic regression chooses lambda",
    single: str = "",
    remedy: str = "use --classifier svm",
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded validation share of the ``train`` rows: (train, val).

    Refuses, in words, a split scikit-learn could not make: a class with one training row,
    or too few rows for one row of every class on each side (``train_test_split`` takes
    ``ceil(fraction * n)`` rows and would say "test_size = 2 should be greater or equal to
    the number of classes = 5"). ``chooses`` / ``single`` / ``remedy`` word the refusal for
    the probe that needs the split.
    """
    counts = np.bincount(y[train])
    if counts[counts > 0].min() < 2:
        raise EvaluationError(
            f"cannot carve a stratified validation split{single}: a class has a single training "
            f"sample; register a val split or {remedy}"
        )
    n_classes, n_rows = int(np.count_nonzero(counts)), len(train)
    n_val = math.ceil(fraction * n_rows)
    if min(n_val, n_rows - n_val) < n_classes:
        need = n_rows + 1  # the fewest training rows that leave every class on both sides
        while min(math.ceil(fraction * need), need - math.ceil(fraction * need)) < n_classes:
            need += 1
        raise EvaluationError(
            f"{chooses} on a validation split carved from the training "
            f"rows ({fraction:g} of {n_rows} = {n_val} rows), but a stratified split needs at "
            f"least one row of each of the {n_classes} classes on each side; register a val "
            f"split, use at least {need} training rows, or {remedy}"
        )
    from sklearn.model_selection import train_test_split

    fit, val = train_test_split(train, test_size=fraction, stratify=y[train], random_state=seed)
    return fit, val


def _check_finite(X: np.ndarray) -> None:
    """NaN or infinite features (an overflowed float16 entry) would stop scikit-learn."""
    bad = ~np.isfinite(X)
    if bad.any():
        rows = int(bad.any(axis=tuple(range(1, X.ndim))).sum()) if X.ndim > 1 else int(bad.sum())
        raise EvaluationError(
            f"the features hold {int(bad.sum())} NaN or infinite values in {rows} of {len(X)} rows "
            "(after the transform); a float16 entry may have overflowed: extract it again with "
            "--dtype float32, or add a transform that keeps values finite"
        )


def _metric_labels(column: np.ndarray) -> np.ndarray:
    """Dataset multi-label codes (+1 present, 0 absent, -1 difficult) -> metrics' (+1, -1, 0 ignored)."""
    return np.where(column == 1, 1, np.where(column == 0, -1, 0)).astype(np.int8)


def _single_label(
    X: np.ndarray,
    y: np.ndarray,
    splits: Splits,
    spec: ClassifierSpec,
    seed: int,
    classes: Sequence[str],
    tick: Tick,
) -> dict[str, Any]:
    labelled = lambda rows: rows[y[rows] >= 0]  # noqa: E731 - rows with a label (-1 = none)
    train, val, test = labelled(splits.train), labelled(splits.val), labelled(splits.test)
    t0 = time.perf_counter()
    if (
        spec.solver == "torch"
    ):  # the batched solvers, same protocol (featstore.evaluate.torch_classify)
        from featstore.evaluate import torch_classify

        fit_svm, fit_logreg = torch_classify.fit_svm, torch_classify.fit_logreg
    else:
        fit_svm, fit_logreg = _fit_svm, _fit_logreg  # type: ignore[assignment]
    with _quiet() as caught:
        if spec.name == "svm":
            fit_rows = np.concatenate([train, val])
            model, chosen = fit_svm(X[fit_rows], y[fit_rows], spec, seed, "accuracy", classes, tick)
            sizes = {"n_train": len(fit_rows), "n_val": 0}
        else:
            if len(val) == 0:
                train, val = carve_validation(y, train, spec.val_fraction, seed)
            model, chosen = fit_logreg(X[train], y[train], X[val], y[val], spec, seed, tick)
            sizes = {"n_train": len(train), "n_val": len(val)}
    t1 = time.perf_counter()
    pred = model.predict(X[test])
    t2 = time.perf_counter()
    chosen["convergence_warnings"] = caught.n + int(chosen.pop("unconverged", 0))
    n_classes = max(len(classes), int(y.max()) + 1)
    scores, per_class = metrics.single_label_report(y[test], pred, classes, n_classes)
    return {
        "metrics": scores,
        "per_class": per_class,
        "chosen": chosen,
        "sizes": {**sizes, "n_test": len(test)},
        "timings": {"fit_s": t1 - t0, "predict_s": t2 - t1},
    }


def _multi_label(
    X: np.ndarray,
    Y: np.ndarray,
    splits: Splits,
    spec: ClassifierSpec,
    seed: int,
    classes: Sequence[str],
    tick: Tick,
) -> dict[str, Any]:
    fit_rows, test = np.concatenate([splits.train, splits.val]), splits.test
    names = [classes[k] if k < len(classes) else str(k) for k in range(Y.shape[1])]
    ap07: dict[str, float | None] = {}
    ap_all: dict[str, float | None] = {}
    chosen_c: dict[str, float | None] = {}
    t0, predict_s = time.perf_counter(), 0.0
    skipped: dict[str, str] = {}
    with _quiet() as caught:
        for k, name in enumerate(names):
            # difficult samples of this class are not trained on
            keep = fit_rows[Y[fit_rows, k] != -1]
            target = (Y[keep, k] == 1).astype(np.int64)
            test_labels = _metric_labels(Y[test, k])
            ap07[name] = ap_all[name] = chosen_c[name] = None
            tick({"class": name})
            if len(np.unique(target)) < 2:
                skipped[name] = "no positive or no negative training sample"
                continue
            if not np.any(test_labels == 1):
                skipped[name] = "no positive test sample"
                continue
            try:
                model, info = _fit_svm(
                    X[keep], target, spec, seed, "average_precision", ["absent", "present"]
                )
            except EvaluationError as exc:  # one positive: no stratified CV for this class
                skipped[name] = str(exc)
                continue
            p0 = time.perf_counter()
            scores = model.decision_function(X[test])
            predict_s += time.perf_counter() - p0
            ap07[name] = metrics.voc07_ap(scores, test_labels)
            ap_all[name] = metrics.average_precision(scores, test_labels)
            chosen_c[name] = info["C"]
    scored = [v for v in ap07.values() if v is not None]
    if not scored:
        raise EvaluationError(
            "no class has positives in both the training and the test rows; cannot compute mAP"
        )
    return {
        "metrics": {
            "map_voc07": float(np.mean(scored)),
            "map": float(np.mean([v for v in ap_all.values() if v is not None])),
        },
        "per_class": {"ap_voc07": ap07, "ap": ap_all},
        "chosen": {"C": chosen_c, "skipped_classes": skipped, "convergence_warnings": caught.n},
        "sizes": {"n_train": len(fit_rows), "n_val": 0, "n_test": len(test)},
        "timings": {"fit_s": time.perf_counter() - t0 - predict_s, "predict_s": predict_s},
    }


def fit_steps(spec: ClassifierSpec, labels: np.ndarray) -> int:
    """Progress steps of fitting, one per solve the user waits for.

    Logistic regression: each lambda + the refit. SVM with a C grid: each (C, fold) fit +
    the refit with scikit-learn (per class when multi-label); each C (all folds and
    classes at once) + the refit with torch. kNN, or a single C: one.
    """
    if spec.name == "logreg":
        return int(spec.lambda_range[2]) + 1
    if spec.name == "knn":
        return 1
    grid = len(spec.c_grid)
    if spec.solver == "torch":
        return grid + 1 if grid > 1 else 1
    if labels.ndim == 2:
        return int(labels.shape[1])
    return grid * spec.folds + 1 if grid > 1 else 1


def classify_arrays(
    X: np.ndarray,
    labels: np.ndarray,
    splits: Splits,
    spec: ClassifierSpec | str = "svm",
    seed: int = 0,
    classes: Sequence[str] = (),
    progress: Progress | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Fit and score a classifier on in-memory features (rows in the same order as ``labels``).

    ``threads`` (default: the CPUs this process may use) bounds BLAS, torch and FAISS
    threads for the fit; the numbers do not depend on it.

    Returns ``{"metrics", "per_class", "chosen", "sizes", "timings"}``. Used by
    :func:`evaluate_classification`; also handy on features that never touched a store.
    """
    spec = (ClassifierSpec(name=spec) if isinstance(spec, str) else spec).validate()
    labels = np.asarray(labels)
    multilabel = labels.ndim == 2
    total = fit_steps(spec, labels)
    done = [0]

    def tick(info: dict[str, Any] | None = None) -> None:
        done[0] = min(done[0] + 1, total)  # fewer folds than asked (a rare class): fewer ticks
        if progress:
            progress(done[0], total, {"stage": "fit", "classifier": spec.name, **(info or {})})

    run = _multi_label if multilabel else _single_label
    if multilabel and spec.name == "logreg":  # one check for both solvers' multi-label paths
        raise EvaluationError(
            "logistic regression here is multinomial (one label per image); this dataset is "
            "multi-label: use --classifier svm"
        )
    if spec.name == "knn":
        if multilabel:
            raise EvaluationError(
                "the kNN probe votes for one class per image; this dataset is multi-label: use "
                "--classifier svm"
            )
        from featstore.evaluate.knn import single_label as run
    elif multilabel and spec.solver == "torch":
        from featstore.evaluate.torch_classify import multi_label as run
    from featstore.evaluate.threads import evaluation_threads

    X = np.asarray(X, dtype=np.float32)
    _check_finite(X)
    with evaluation_threads(threads):  # BLAS, torch and FAISS threads set together
        out = run(X, labels, splits, spec, seed, list(classes), tick)
    if progress and done[0] < total:
        progress(total, total, {"stage": "fit", "classifier": spec.name})
    return out
