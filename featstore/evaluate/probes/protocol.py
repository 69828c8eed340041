"""The probe protocol, written once: which rows, folds, grids and classes a probe uses.

Every classifier of ``featstore evaluate`` follows this module, whichever back end fits it
(:mod:`~featstore.evaluate.probes.sklearn_solver`, the reference loop;
:mod:`~featstore.evaluate.probes.torch_solver`, batched; :mod:`~featstore.evaluate.probes.knn`):

- splits: train / val / test rows of a dataset (:func:`split_rows`), labelled rows only;
- grids: SVM ``C`` by stratified k-fold CV (:func:`n_folds`, refused beyond the data),
  logistic-regression ``lambda`` on the val rows or a carved, stratified share of the
  training rows (:func:`carve_validation`), ties to the lowest val log-loss;
- multi-label (VOC: +1 present, 0 absent, -1 difficult): one-vs-rest per class, difficult
  rows of a class left out of its training, a class without positives (or negatives) to
  train on or without a positive test row skipped and listed (:func:`eligible_classes`);
- a chosen C or lambda at an end of its grid is a warning in ``chosen.grid_edge``;
- the report: ``{"metrics", "per_class", "chosen", "sizes", "timings"}``.

Array-only: nothing here reads a store (import contract "pure" in pyproject.toml).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from featstore.errors import EvaluationError, ProtocolLimitError
from featstore.evaluate import metrics
from featstore.evaluate.probes.limits import DEFAULT_CV, KNN_K_GRID

__all__ = [
    "C_GRID",
    "LAMBDA_RANGE",
    "ClassJob",
    "ClassifierSpec",
    "MultiLabelFit",
    "Solver",
    "Splits",
    "carve_validation",
    "check_finite",
    "check_probe",
    "choose_on_validation",
    "edge_warning",
    "eligible_classes",
    "labelled_rows",
    "lambda_grid",
    "log_loss",
    "metric_labels",
    "multi_label",
    "n_folds",
    "single_label",
    "split_rows",
]

C_GRID = (0.01, 0.1, 1.0, 10.0)
LAMBDA_RANGE = (1e-6, 1e5, 45)
Tick = Callable[..., None]  # tick(info=None): one fit step done, info says which (C, fold, ...)
CLASSIFIERS = ("svm", "logreg", "knn")
SOLVERS = ("torch", "sklearn")  # torch: featstore.evaluate.probes.torch_solver, sklearn_solver
# Solver tolerances (part of the key): torch stops at ||grad|| <= tol * ||grad at W=0||.
# SVM 1e-6: liblinear's primal rule, 1e-4 * min(pos, neg) / n, for 100 balanced classes.
# Logreg 1e-4: Newton converges quadratically, so the test accuracy at 1e-4 equalled that at
# 1e-8 (float64) on every lambda measured; float32 round-off sits near 1e-6 for this loss.
SVM_TOL = 1e-6
LOGREG_TOL = 1e-4
SVM_MAX_ITER = 10000
LOGREG_MAX_ITER = 1000


log = logging.getLogger(__name__)


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
                "k_grid": sorted({int(k) for k in (self.knn_k or KNN_K_GRID)}),
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


@dataclass(frozen=True)
class Splits:
    """Row indices (store order) of the training, validation (may be empty) and test rows."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_name: str
    val_name: str | None


TRAIN_NAMES = ("train", "trainval")
VAL_NAMES = ("val", "valid", "validation")


class SplitDataset(Protocol):
    """What :func:`split_rows` reads of a dataset (a :class:`featstore.datasets.Dataset`
    is one); named here because this array-only module may not import the dataset layer."""

    @property
    def name(self) -> str: ...

    @property
    def split_names(self) -> list[str]: ...

    @property
    def splits(self) -> np.ndarray: ...

    def split_indices(self, split: str) -> np.ndarray: ...


def split_rows(ds: SplitDataset) -> Splits:
    """Find the train/val/test splits of ``ds``; EvaluationError with a fix if one is missing."""
    names = list(ds.split_names)
    counts = {n: int((np.asarray(ds.splits) == i).sum()) for i, n in enumerate(names)}
    if counts.get("test", 0) == 0:
        raise EvaluationError(
            f"dataset {ds.name!r} has no test split (its splits: {', '.join(names) or 'none'}); register "
            "it with one, e.g. a folder with train/ and test/ subfolders or a manifest with a split column"
        )
    train_name = next((n for n in TRAIN_NAMES if counts.get(n, 0) > 0), None)
    if train_name is None:
        raise EvaluationError(
            f"dataset {ds.name!r} has no training split (its splits: {', '.join(names)}); register it "
            "with a 'train' split"
        )
    val_name = (
        next((n for n in VAL_NAMES if counts.get(n, 0) > 0), None)
        if train_name == "train"
        else None
    )
    val = ds.split_indices(val_name) if val_name else np.zeros(0, dtype=np.int64)
    return Splits(
        train=ds.split_indices(train_name),
        val=val,
        test=ds.split_indices("test"),
        train_name=train_name,
        val_name=val_name,
    )


def n_folds(y: np.ndarray, wanted: int | None, names: Sequence[str]) -> int:
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


def labelled_rows(y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The ``rows`` whose single label ``y[row]`` is a class (-1: no label, not used)."""
    return np.asarray(rows[y[rows] >= 0])  # typed: a boolean index of an array


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


def check_finite(X: np.ndarray) -> None:
    """NaN or infinite features (an overflowed float16 entry) would stop scikit-learn."""
    bad = ~np.isfinite(X)
    if bad.any():
        rows = int(bad.any(axis=tuple(range(1, X.ndim))).sum()) if X.ndim > 1 else int(bad.sum())
        raise EvaluationError(
            f"the features hold {int(bad.sum())} NaN or infinite values in {rows} of {len(X)} rows "
            "(after the transform); a float16 entry may have overflowed: extract it again with "
            "--dtype float32, or add a transform that keeps values finite"
        )


def metric_labels(column: np.ndarray) -> np.ndarray:
    """Dataset multi-label codes (+1 present, 0 absent, -1 difficult) -> metrics' (+1, -1, 0 ignored)."""
    return np.where(column == 1, 1, np.where(column == 0, -1, 0)).astype(np.int8)


def edge_warning(what: str, value: float, grid: Sequence[float]) -> str | None:
    """A one-line warning when the chosen value is at an end of a grid of 3 or more values."""
    values = sorted(float(v) for v in grid)
    if len(values) < 3 or value not in (values[0], values[-1]):
        return None
    end = "smallest" if value == values[0] else "largest"
    return (
        f"the chosen {what}={value:.3g} is the {end} value of its grid "
        f"[{values[0]:.3g} .. {values[-1]:.3g}]; widen the grid to be sure the best is inside"
    )


def _warn_edge(chosen: dict[str, Any], warning: str | None) -> None:
    if warning:
        chosen["grid_edge"] = warning
        log.warning(warning)


@dataclass(frozen=True)
class ClassJob:
    """One scored class of a multi-label problem: its training rows and 0/1 targets."""

    name: str
    rows: np.ndarray  # training rows, this class's difficult rows left out
    target: np.ndarray  # 1 present, 0 absent, one per row of ``rows``
    folds: int | None  # stratified CV folds (None: a single C, no search)


@dataclass
class MultiLabelFit:
    """What a back end's multi-label fit gives the protocol, by class index."""

    scores: dict[int, np.ndarray] = field(default_factory=dict)  # decision values on test rows
    chosen_c: dict[int, float] = field(default_factory=dict)
    cv_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    unconverged: int = 0
    predict_s: float = 0.0


@dataclass(frozen=True)
class Solver:
    """A back end of the protocol: how it fits. The protocol decides what is fitted on what.

    ``fit_svm(X, y, spec, seed, scoring, names, tick)`` and ``fit_logreg(X_tr, y_tr, X_val,
    y_val, spec, seed, tick)`` return ``(model, chosen)`` (a model with ``predict``; ``chosen``
    may hold ``unconverged``); ``multi_label(X, jobs, names, test, spec, seed, tick)`` returns
    a :class:`MultiLabelFit`.
    """

    name: str
    fit_svm: Callable[..., tuple[Any, dict[str, Any]]]
    fit_logreg: Callable[..., tuple[Any, dict[str, Any]]]
    multi_label: Callable[..., MultiLabelFit]


def check_probe(spec: ClassifierSpec, multilabel: bool) -> None:
    """EvaluationError when the probe cannot read this kind of labels."""
    if multilabel and spec.name == "logreg":  # one check for every back end
        raise EvaluationError(
            "logistic regression here is multinomial (one label per image); this dataset is "
            "multi-label: use --classifier svm"
        )
    if multilabel and spec.name == "knn":
        raise EvaluationError(
            "the kNN probe votes for one class per image; this dataset is multi-label: use "
            "--classifier svm"
        )


def class_names(classes: Sequence[str], n: int) -> list[str]:
    return [classes[k] if k < len(classes) else str(k) for k in range(n)]


def eligible_classes(
    Y: np.ndarray,
    fit_rows: np.ndarray,
    test: np.ndarray,
    names: Sequence[str],
    spec: ClassifierSpec,
) -> tuple[dict[int, ClassJob], dict[str, str]]:
    """The classes a multi-label SVM scores (by index), and why each other one is skipped."""
    several = len(spec.c_grid) > 1
    jobs: dict[int, ClassJob] = {}
    skipped: dict[str, str] = {}
    for k, name in enumerate(names):
        keep = fit_rows[Y[fit_rows, k] != -1]  # difficult samples of this class are not trained on
        target = (Y[keep, k] == 1).astype(np.int64)
        if len(np.unique(target)) < 2:
            skipped[name] = "no positive or no negative training sample"
            continue
        if not np.any(metric_labels(Y[test, k]) == 1):
            skipped[name] = "no positive test sample"
            continue
        folds = None
        if several:
            try:
                folds = n_folds(target, spec.cv, ["absent", "present"])
            except EvaluationError as exc:  # one positive: no stratified CV for this class
                skipped[name] = str(exc)
                continue
        jobs[k] = ClassJob(name, keep, target, folds)
    return jobs, skipped


def single_label(
    X: np.ndarray,
    y: np.ndarray,
    splits: Splits,
    spec: ClassifierSpec,
    seed: int,
    classes: Sequence[str],
    tick: Tick,
    solver: Solver,
) -> dict[str, Any]:
    """A linear probe on one-label-per-image data (label -1: no label, not used)."""

    train, val, test = (labelled_rows(y, rows) for rows in (splits.train, splits.val, splits.test))
    t0 = time.perf_counter()
    with _quiet() as caught:
        if spec.name == "svm":
            fit_rows = np.concatenate([train, val])
            model, chosen = solver.fit_svm(
                X[fit_rows], y[fit_rows], spec, seed, "accuracy", classes, tick
            )
            sizes = {"n_train": len(fit_rows), "n_val": 0}
            edge = edge_warning("C", chosen["C"], spec.c_grid)
        else:
            if len(val) == 0:
                train, val = carve_validation(y, train, spec.val_fraction, seed)
            model, chosen = solver.fit_logreg(X[train], y[train], X[val], y[val], spec, seed, tick)
            sizes = {"n_train": len(train), "n_val": len(val)}
            edge = edge_warning(
                "lambda", chosen["lambda"], lambda_grid(*spec.lambda_range).tolist()
            )
    t1 = time.perf_counter()
    pred = model.predict(X[test])
    t2 = time.perf_counter()
    chosen["convergence_warnings"] = caught.n + int(chosen.pop("unconverged", 0))
    _warn_edge(chosen, edge)
    n_classes = max(len(classes), int(y.max()) + 1)
    scores, per_class = metrics.single_label_report(y[test], pred, classes, n_classes)
    return {
        "metrics": scores,
        "per_class": per_class,
        "chosen": chosen,
        "sizes": {**sizes, "n_test": len(test)},
        "timings": {"fit_s": t1 - t0, "predict_s": t2 - t1},
    }


def multi_label(
    X: np.ndarray,
    Y: np.ndarray,
    splits: Splits,
    spec: ClassifierSpec,
    seed: int,
    classes: Sequence[str],
    tick: Tick,
    solver: Solver,
) -> dict[str, Any]:
    """VOC-style multi-label SVM: one-vs-rest per class, scored by VOC07 11-point and all-point AP."""
    t0 = time.perf_counter()
    fit_rows, test = np.concatenate([splits.train, splits.val]), splits.test
    names = class_names(classes, Y.shape[1])
    jobs, skipped = eligible_classes(Y, fit_rows, test, names, spec)
    if not jobs:
        raise EvaluationError(
            "no class has positives in both the training and the test rows; cannot compute mAP"
        )
    with _quiet() as caught:
        fit = solver.multi_label(X, jobs, names, test, spec, seed, tick)
    ap07: dict[str, float | None] = dict.fromkeys(names)
    ap_all: dict[str, float | None] = dict.fromkeys(names)
    c_of: dict[str, float | None] = dict.fromkeys(names)
    for k, scores in fit.scores.items():
        labels = metric_labels(Y[test, k])
        ap07[names[k]] = metrics.voc07_ap(scores, labels)
        ap_all[names[k]] = metrics.average_precision(scores, labels)
        c_of[names[k]] = fit.chosen_c[k]
    chosen: dict[str, Any] = {
        "C": c_of,
        "skipped_classes": skipped,
        "convergence_warnings": caught.n + fit.unconverged,
    }
    grid = sorted(float(c) for c in spec.c_grid)
    at_edge = [c for c in fit.chosen_c.values() if c in (grid[0], grid[-1])]
    if len(grid) >= 3 and at_edge:
        _warn_edge(
            chosen,
            f"the chosen C of {len(at_edge)} of {len(jobs)} classes is at an end of the grid "
            f"[{grid[0]:.3g} .. {grid[-1]:.3g}]; widen the grid to be sure the best is inside",
        )
    if fit.cv_scores:
        chosen["cv_scores"] = fit.cv_scores
    scored = [v for v in ap07.values() if v is not None]
    return {
        "metrics": {
            "map_voc07": float(np.mean(scored)),
            "map": float(np.mean([v for v in ap_all.values() if v is not None])),
        },
        "per_class": {"ap_voc07": ap07, "ap": ap_all},
        "chosen": chosen,
        "sizes": {"n_train": len(fit_rows), "n_val": 0, "n_test": len(test)},
        "timings": {"fit_s": time.perf_counter() - t0 - fit.predict_s, "predict_s": fit.predict_s},
    }
