"""Classification on arrays that never touched a store: the probe protocol on one back end.

:func:`classify_arrays` checks the spec and the features, chooses the back end
(``spec.solver``: torch or sklearn; ``spec.name == "knn"``: the kNN probe) and runs the
protocol of :mod:`featstore.evaluate.probes.protocol` with it. Array-only: no store import
(import contract "pure" in pyproject.toml); torch is imported only when its back end runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from featstore.evaluate.probes.protocol import (
    ClassifierSpec,
    Solver,
    Splits,
    check_finite,
    check_probe,
    multi_label,
    single_label,
)
from featstore.progress import Progress

__all__ = ["classify_arrays", "fit_steps", "solver"]


def solver(name: str) -> Solver:
    """The back end called ``name`` (``ClassifierSpec.solver``), imported on first use."""
    if name == "torch":
        from featstore.evaluate.probes.torch_solver import SOLVER
    else:
        from featstore.evaluate.probes.sklearn_solver import SOLVER
    return SOLVER


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
    :func:`~featstore.evaluate.probes.task.evaluate_classification`.
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

    check_probe(spec, multilabel)
    from featstore.evaluate.threads import evaluation_threads

    X = np.asarray(X, dtype=np.float32)
    check_finite(X)
    with evaluation_threads(threads):  # BLAS, torch and FAISS threads set together
        if spec.name == "knn":
            from featstore.evaluate.probes import knn

            out = knn.single_label(X, labels, splits, spec, seed, list(classes), tick)
        else:
            run = multi_label if multilabel else single_label
            out = run(X, labels, splits, spec, seed, list(classes), tick, solver(spec.solver))
    if progress and done[0] < total:
        progress(total, total, {"stage": "fit", "classifier": spec.name})
    return out
