"""What the data allows a protocol: shot counts, kNN k values and cross-validation folds.

The rule (README, "Protocols are what ran"): a value the user gives is what runs, or it is
refused in words (:class:`~featstore.errors.ProtocolLimitError` naming the option, the
value, the limit the data sets and the fix); it is never clamped in silence. A default
(5 folds, the k grid 10/20/50/100) adapts to small data, and the result key and record
hold the value that ran. So ``--cv 9``, ``--cv 30`` and ``--cv 1000`` on 8 images per
class are refused instead of giving three keys for one 8-fold computation.

:func:`resolve_protocol` checks a classification setting from the dataset alone (labels
and splits, no features), so a sweep checks every cell before it extracts anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from featstore.errors import EvaluationError, ProtocolLimitError

__all__ = [
    "DEFAULT_CV",
    "KNN_K_GRID",
    "check_shots",
    "class_name",
    "knn_grid",
    "resolve_protocol",
    "smallest_class",
]

DEFAULT_CV = 5
KNN_K_GRID = (10, 20, 50, 100)  # the kNN probe's default k grid


def knn_grid(wanted: Sequence[int] | None, n_database: int, n_select: int) -> tuple[int, ...]:
    """The k values the probe runs: ``wanted`` when the data holds them, else refused.

    ``n_database``: the rows a test image searches (train+val); ``n_select``: the rows a
    validation image searches while k is chosen (several k only). The default grid
    (``None``) keeps its values up to ``n_select``; with fewer than two left, one k:
    ``min(10, n_database)``.
    """
    if wanted is None:
        kept = tuple(k for k in KNN_K_GRID if k <= n_select)
        return kept if len(kept) > 1 else (max(1, min(KNN_K_GRID[0], n_database)),)
    grid = tuple(sorted({int(k) for k in wanted}))
    if len(grid) == 1 and grid[0] > n_database:
        raise ProtocolLimitError(
            f"--knn-k {grid[0]} is more than the data allows: each test image searches "
            f"{n_database} labelled training images; use --knn-k {n_database} or fewer",
            option="knn_k",
            value=grid[0],
            limit=n_database,
        )
    if len(grid) > 1 and grid[-1] > n_select:
        raise ProtocolLimitError(
            f"--knn-k {grid[-1]} is more than the data allows: k is chosen by searching "
            f"{n_select} training images (the others are the validation rows); give values up "
            f"to {n_select}, or one k (e.g. --knn-k {min(grid[0], n_database)})",
            option="knn_k",
            value=grid[-1],
            limit=n_select,
        )
    return grid


def class_name(classes: Sequence[str], label: int) -> str:
    return str(classes[label]) if 0 <= label < len(classes) else str(label)


def smallest_class(y: np.ndarray, rows: np.ndarray) -> tuple[int, int]:
    """(label, count) of the class with the fewest labelled rows among ``rows``."""
    labels = y[rows]
    values, counts = np.unique(labels[labels >= 0], return_counts=True)
    if not len(values):
        return -1, 0
    at = int(np.argmin(counts))
    return int(values[at]), int(counts[at])


def check_shots(
    y: np.ndarray, train: np.ndarray, shots: Sequence[int], classes: Sequence[str], where: str
) -> None:
    """ProtocolLimitError when a shot count exceeds the training images of the smallest class."""
    label, have = smallest_class(y, train)
    wanted = max(int(k) for k in shots)
    if wanted > have:
        raise ProtocolLimitError(
            f"--shots {wanted} is more than the data allows: class "
            f"{class_name(classes, label)!r} has {have} images in {where}; use --shots {have} "
            "or fewer (a draw of K shots takes K images of every class)",
            option="shots",
            value=wanted,
            limit=have,
        )


def folds_limit_multilabel(
    Y: np.ndarray, fit_rows: np.ndarray, test: np.ndarray
) -> tuple[int, int]:
    """(class, folds) of the scored class that allows the fewest stratified folds.

    A class is scored when it has at least 2 positive and 2 negative training rows (its
    difficult rows left out) and a positive test row; the others are skipped and listed.
    """
    best: tuple[int, int] = (-1, 0)
    for k in range(Y.shape[1]):
        target = Y[fit_rows, k]
        pos, neg = int((target == 1).sum()), int((target == 0).sum())
        if min(pos, neg) < 2 or not np.any(Y[test, k] == 1):
            continue
        if best[0] < 0 or min(pos, neg) < best[1]:
            best = (k, min(pos, neg))
    return best


def _resolve_cv(spec: Any, ds: Any, splits: Any, shots: Sequence[int] | None) -> tuple[Any, Any]:
    """The SVM spec with the folds that run, and the few-shot folds per K (or None)."""
    given = spec.cv is not None
    if len(spec.c_grid) == 1:
        if given:
            raise EvaluationError(
                f"--cv {spec.cv} has no effect with a single C (--svm-c {spec.c_grid[0]:g}): no "
                "cross-validation runs; drop --cv, or give several C values"
            )
        return spec, None
    y = np.asarray(ds.labels)
    if shots is not None:  # each draw holds exactly K images of every class
        low = min(int(k) for k in shots)
        if low < 2:
            raise EvaluationError(
                f"--shots {low} leaves one image per class: the SVM cannot choose C by "
                "cross-validation; give a single C (e.g. --svm-c 1) or at least 2 shots"
            )
        if given and int(spec.cv) > low:
            raise ProtocolLimitError(
                f"--cv {spec.cv} is more than the data allows: the {low}-shot draws hold {low} "
                f"images per class; use --cv {low} or fewer",
                option="cv",
                value=int(spec.cv),
                limit=low,
            )
        folds = {str(k): int(spec.cv) if given else min(DEFAULT_CV, int(k)) for k in shots}
        return spec, folds
    fit_rows = np.concatenate([splits.train, splits.val])
    if y.ndim == 2:
        label, have = folds_limit_multilabel(y, fit_rows, splits.test)
        what = f"class {class_name(ds.classes, label)!r} has {have} positive (or negative) training images"
    else:
        label, have = smallest_class(y, fit_rows)
        what = f"class {class_name(ds.classes, label)!r} has {have} training images"
    if label < 0 or have < 2:
        return spec, None  # nothing to stratify: evaluation refuses it in its own words
    if given and int(spec.cv) > have:
        raise ProtocolLimitError(
            f"--cv {spec.cv} is more than the data allows: {what} in dataset {ds.name!r}, and "
            f"stratified {spec.cv}-fold cross-validation needs {spec.cv} of each; use --cv {have} "
            "or fewer",
            option="cv",
            value=int(spec.cv),
            limit=have,
        )
    return replace(spec, cv=int(spec.cv) if given else min(DEFAULT_CV, have)), None


def _resolve_knn(spec: Any, ds: Any, splits: Any, shots: Sequence[int] | None) -> Any:
    y = np.asarray(ds.labels)
    if shots is not None:  # a draw: K images of every training class, no val split
        n_classes = len(np.unique(y[splits.train][y[splits.train] >= 0]))
        n_train, n_val = min(int(k) for k in shots) * n_classes, 0
    else:
        n_train = int((y[splits.train] >= 0).sum())
        n_val = int((y[splits.val] >= 0).sum())
    n_select = n_train if n_val else n_train - math.ceil(spec.val_fraction * n_train)
    grid = knn_grid(spec.knn_k, n_train + n_val, n_select)
    return replace(spec, knn_k=grid)


def resolve_protocol(
    spec: Any, ds: Any, splits: Any, shots: Sequence[int] | None
) -> tuple[Any, dict[str, Any]]:
    """The classifier spec with what will run (folds, k grid) and protocol additions.

    Raises ProtocolLimitError for a given value beyond the data (shots, k, folds).
    """
    extra: dict[str, Any] = {}
    y = np.asarray(ds.labels)
    if shots is not None and y.ndim == 1:
        check_shots(
            y,
            splits.train,
            shots,
            ds.classes,
            f"the {splits.train_name} split of dataset {ds.name!r}",
        )
    if spec.name == "svm":
        spec, folds = _resolve_cv(spec, ds, splits, shots)
        if folds is not None:
            extra["cv_folds"] = folds
    elif spec.name == "knn" and y.ndim == 1:
        spec = _resolve_knn(spec, ds, splits, shots)
    return spec, extra
