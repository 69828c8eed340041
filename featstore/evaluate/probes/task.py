"""Classification from cached features: plan a setting, compute or look up its record.

:func:`evaluate_classification` ties the classifiers of
:mod:`featstore.evaluate.probes.protocol` (run by
:func:`~featstore.evaluate.probes.arrays.classify_arrays`) to the store: resolve complete entries, check the
dataset (two classes, a test split), transform (fitted on the training split only), fit,
score, and save the result record, or return the stored one when the setting was already
evaluated.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.errors import EvaluationError
from featstore.evaluate.features.parts import Part
from featstore.evaluate.features.selection import merge_factors, resolve_dataset, resolve_parts
from featstore.evaluate.features.transform_spec import canonical_spec
from featstore.evaluate.probes.arrays import classify_arrays, fit_steps
from featstore.evaluate.probes.limits import resolve_protocol
from featstore.evaluate.probes.protocol import ClassifierSpec, Splits, split_rows
from featstore.evaluate.results import ResultRecord, build_record, make_result_key
from featstore.evaluate.tasks import run
from featstore.progress import Progress

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset
    from featstore.store.base import Store

__all__ = [
    "ClassificationPlan",
    "check_classes",
    "compute_classification",
    "evaluate_classification",
    "plan_classification",
]


def check_classes(ds: Dataset, splits: Splits) -> None:
    """EvaluationError unless the dataset and its training rows have at least two classes."""
    labels = np.asarray(ds.labels)
    if labels.ndim == 2:
        if labels.shape[1] < 2:
            raise EvaluationError(
                f"dataset {ds.name!r} has only one class ({', '.join(map(repr, ds.classes))}); "
                "classification needs at least two"
            )
        return
    present = np.unique(labels[labels >= 0])
    if len(present) < 2:
        names = (
            ", ".join(repr(ds.classes[i]) if i < len(ds.classes) else str(i) for i in present)
            or "none"
        )
        raise EvaluationError(
            f"dataset {ds.name!r} has only one class ({names}); classification needs at least two"
        )
    train_present = np.unique(labels[splits.train][labels[splits.train] >= 0])
    if len(train_present) < 2:
        raise EvaluationError(
            f"the {splits.train_name} split of dataset {ds.name!r} has only one class; "
            "classification needs at least two classes to train on"
        )


@dataclass(frozen=True)
class ClassificationPlan:
    """A checked classification setting: what to read, how, and the key of its result."""

    dataset: Dataset
    splits: Splits
    parts: list[Part]
    spec: ClassifierSpec
    transform: str
    seed: int
    protocol: dict[str, Any]
    key: str
    shots: tuple[int, ...] | None = (
        None  # few-shot: K images per class (featstore.evaluate.probes.fewshot)
    )
    draws: int = 5

    @property
    def feature_keys(self) -> list[str]:
        return [k for p in self.parts for k in p.keys]


def plan_classification(
    store: Store,
    dataset: str | Dataset,
    features: Any,
    transform: str = "l2",
    classifier: str | ClassifierSpec = "svm",
    cv: int | None = None,
    seed: int = 0,
    *,
    c_grid: Sequence[float] | None = None,
    class_weight: str | None = None,
    solver: str | None = None,
    knn_k: Sequence[int] | None = None,
    shots: Sequence[int] | None = None,
    draws: int = 5,
) -> ClassificationPlan:
    """Check a setting without computing: spec, dataset (classes, splits), complete entries.

    Raises the same typed errors :func:`evaluate_classification` would, so a command can
    check every setting before it evaluates (and writes) any.
    """
    spec = ClassifierSpec(name=classifier) if isinstance(classifier, str) else classifier
    overrides: dict[str, Any] = {}
    if cv is not None:
        overrides["cv"] = int(cv)
    if c_grid is not None:
        overrides["c_grid"] = tuple(float(c) for c in c_grid)
    if class_weight is not None:  # "none" is how a command line says None
        overrides["class_weight"] = None if class_weight == "none" else class_weight
    if solver is not None:
        overrides["solver"] = solver
    if knn_k is not None:
        overrides["knn_k"] = tuple(int(k) for k in knn_k)
    spec = replace(spec, **overrides).validate()
    from featstore.evaluate.probes.fewshot import check_fewshot, fewshot_protocol

    check_fewshot(shots, draws)
    transform = canonical_spec(transform)
    ds = resolve_dataset(store, dataset)
    splits = split_rows(ds)
    check_classes(ds, splits)
    if shots is not None and np.asarray(ds.labels).ndim == 2:
        raise EvaluationError(
            f"few-shot draws K images per class; dataset {ds.name!r} is multi-label: "
            "evaluate it without --shots"
        )
    # what the data allows: given values beyond it are refused, defaults adapt (limits.py)
    spec, extra = resolve_protocol(spec, ds, splits, shots)
    parts = resolve_parts(store, ds, features, transform)
    protocol = spec.protocol(splits, np.asarray(ds.labels).ndim == 2)
    if shots is not None:
        drawn = fewshot_protocol(shots, draws, extra.get("cv_folds"))
        if "cv_folds" in drawn:  # the folds of each K, not one count for all
            protocol = {k: v for k, v in protocol.items() if k != "cv_folds"}
        protocol = {**protocol, "few_shot": drawn}
    keys = [k for p in parts for k in p.keys]
    key = make_result_key(
        keys, transform, "classify", spec.key(), protocol, seed, dataset=ds.fingerprint
    )
    few = tuple(sorted({int(k) for k in shots})) if shots is not None else None
    return ClassificationPlan(
        ds, splits, parts, spec, transform, seed, protocol, key, few, int(draws)
    )


def evaluate_classification(
    store: Store,
    dataset: str | Dataset,
    features: Any,
    transform: str = "l2",
    classifier: str | ClassifierSpec = "svm",
    cv: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: Progress | None = None,
    *,
    c_grid: Sequence[float] | None = None,
    class_weight: str | None = None,
    solver: str | None = None,
    knn_k: Sequence[int] | None = None,
    shots: Sequence[int] | None = None,
    draws: int = 5,
) -> ResultRecord:
    """Classify a dataset from cached features; the result record is stored under its key.

    ``features`` is an entry key, a dict of factors (``{"model": ..., "layer": ...,
    "pooling": ..., "view": ...}``), a :class:`~featstore.evaluate.features.selection.FeatureSelector`,
    or a list of them (their concatenation). A second call with the same setting returns
    the stored record (``record["cached"]`` is True) unless ``force``. Bad input (incomplete
    entry, one class, no test split, a transform that does not fit) raises before anything
    is written. On a read-only store the record is computed and returned, not saved.
    """
    plan = plan_classification(
        store,
        dataset,
        features,
        transform,
        classifier,
        cv,
        seed,
        c_grid=c_grid,
        class_weight=class_weight,
        solver=solver,
        knn_k=knn_k,
        shots=shots,
        draws=draws,
    )
    return run(store, plan, compute_classification, force=force, progress=progress)


def compute_classification(
    store: Store, plan: ClassificationPlan, progress: Progress | None = None
) -> ResultRecord:
    """The record of a planned setting (not saved: :func:`featstore.evaluate.tasks.run` does)."""
    ds, splits, parts, spec, seed = plan.dataset, plan.splits, plan.parts, plan.spec, plan.seed
    transform, key, protocol = plan.transform, plan.key, plan.protocol
    feature_keys = plan.feature_keys

    # one monotonic progress count over reading (chunks, per pass) and fitting (classes or lambdas)
    from featstore.evaluate.features.transforms import (
        FeatureTransform,  # scikit-learn: computing only
    )

    fitted = FeatureTransform(transform, seed=seed)
    n_read = fitted.n_reads(parts)
    n_fits = 1 if plan.shots is None else len(plan.shots) * plan.draws
    total = n_read + fit_steps(spec, np.asarray(ds.labels)) * n_fits
    read_cb = fit_cb = None
    if progress is not None:
        read_cb = lambda d, _t, info: progress(d, total, info)  # noqa: E731
        fit_cb = lambda d, _t, info: progress(n_read + d, total, info)  # noqa: E731

    t0 = time.perf_counter()
    X = fitted.fit_transform(parts, splits.train, progress=read_cb)
    if plan.shots is None:
        out = classify_arrays(X, ds.labels, splits, spec, seed, ds.classes, fit_cb)
    else:  # K shots per class from the training rows, repeated draws (fewshot.py)
        from featstore.evaluate.probes.fewshot import few_shot

        steps = [0]

        def draw_cb(_d: int, _t: int, info: dict[str, Any]) -> None:
            steps[0] += 1
            if fit_cb is not None:
                fit_cb(steps[0], 0, info)

        out = few_shot(
            classify_arrays,
            X,
            ds.labels,
            splits,
            plan.shots,
            plan.draws,
            seed,
            spec=spec,
            classes=ds.classes,
            progress=draw_cb,
        )
    return build_record(
        key=key,
        task="classify",
        dataset_id=ds.id,
        dataset_name=ds.name,
        features=feature_keys,
        factors=merge_factors(parts),
        transform=transform,
        classifier=spec.key(),
        protocol=protocol,
        seed=seed,
        metrics=out["metrics"],
        per_class=out["per_class"],
        chosen=out["chosen"],
        timings={**fitted.timings_, **out["timings"], "total_s": time.perf_counter() - t0},
        sizes={**out["sizes"], "dim": int(X.shape[1])},
        warnings=ds.split_warnings(),
    )
