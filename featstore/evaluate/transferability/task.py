"""`--task transferability`: score cached features with transferability estimators.

The estimators of :mod:`featstore.evaluate.transferability.estimators` (LogME, H-score, GBC) read the cached
features of the *training* split after the setting's transform (fitted on those rows), and
the target labels; no classifier is trained and no network runs. The scores are stored as
a result record with task "transferability", so a report can rank settings by each
estimator and compare with the ranking by a trained classifier (Kendall's tau).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.errors import EvaluationError
from featstore.evaluate.features.selection import merge_factors, resolve_dataset, resolve_parts
from featstore.evaluate.features.transform_spec import canonical_spec
from featstore.evaluate.probes.protocol import split_rows
from featstore.evaluate.results import ResultRecord, build_record, make_result_key
from featstore.evaluate.tasks import run
from featstore.evaluate.transferability.estimators import gbc, h_score, logme
from featstore.progress import Progress

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset
    from featstore.store.base import Store

__all__ = [
    "ESTIMATORS",
    "TASK",
    "TransferabilityPlan",
    "compute_transferability",
    "evaluate_transferability",
    "plan_transferability",
    "transferability_key",
    "transferability_scores",
]

TASK = "transferability"
# feature-based estimators: (features, labels) -> float, higher = more transferable
ESTIMATORS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "logme": logme,
    "h_score": h_score,
    "gbc": gbc,
}
DEFAULT_ESTIMATORS = ("logme", "h_score", "gbc")


def _check_estimators(estimators: str | Sequence[str]) -> list[str]:
    if isinstance(estimators, str):  # "logme,h_score"
        estimators = estimators.split(",")
    names = [str(e).strip() for e in estimators if str(e).strip()]
    if not names:
        raise EvaluationError("give at least one transferability estimator")
    unknown = [e for e in names if e not in ESTIMATORS]
    if unknown:
        raise EvaluationError(
            f"unknown transferability estimator(s) {unknown}; feature-based estimators are "
            f"{sorted(ESTIMATORS)} (nce and leep need the source network's predictions)"
        )
    return sorted(set(names))


def transferability_scores(
    features: np.ndarray, labels: np.ndarray, estimators: str | Sequence[str] = DEFAULT_ESTIMATORS
) -> dict[str, float]:
    """Each estimator's score of ``(features, labels)``; multi-label targets are refused."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise EvaluationError(
            "transferability estimators need one label per image; this dataset is multi-label"
        )
    keep = y >= 0  # -1 = no label
    if keep.sum() < 2:
        raise EvaluationError("transferability needs labelled training images; none have a label")
    x = np.asarray(features, dtype=np.float64)[keep]
    return {name: float(ESTIMATORS[name](x, y[keep])) for name in _check_estimators(estimators)}


def transferability_key(
    feature_keys: Sequence[str],
    transform: str,
    estimators: Sequence[str],
    train_split: str,
    seed: int,
    dataset: str | None = None,
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(result key, classifier part, protocol part) of a transferability evaluation;
    ``dataset``: the dataset's fingerprint (see :func:`make_result_key`)."""
    classifier = {"name": "estimators", "estimators": _check_estimators(estimators)}
    protocol = {"split": train_split, "labels": "target"}
    key = make_result_key(
        list(feature_keys), canonical_spec(transform), TASK, classifier, protocol, seed,
        dataset=dataset,
    )  # fmt: skip
    return key, classifier, protocol


@dataclass(frozen=True)
class TransferabilityPlan:
    """A checked transferability setting: what to read, under which result key."""

    dataset: Dataset
    parts: list[Any]
    estimators: list[str]
    transform: str
    train: np.ndarray
    key: str
    classifier: dict[str, Any]
    protocol: dict[str, Any]
    seed: int

    @property
    def feature_keys(self) -> list[str]:
        return [k for p in self.parts for k in p.keys]


def plan_transferability(
    store: Store,
    dataset: str | Dataset,
    features: Any,
    *,
    transform: str = "",
    estimators: str | Sequence[str] = DEFAULT_ESTIMATORS,
    seed: int = 0,
) -> TransferabilityPlan:
    """Check a setting without computing (estimators, splits, labels, complete entries).

    Raises what :func:`evaluate_transferability` would, before anything is read or written.
    """
    ds = resolve_dataset(store, dataset)
    names = _check_estimators(estimators)
    if np.asarray(ds.labels).ndim != 1:
        raise EvaluationError(
            f"transferability estimators need one label per image; dataset {ds.name!r} is multi-label"
        )
    spec = canonical_spec(transform)
    parts = resolve_parts(store, ds, features, spec)
    splits = split_rows(ds)
    keys = [k for p in parts for k in p.keys]
    key, classifier, protocol = transferability_key(
        keys, spec, names, splits.train_name, seed, ds.fingerprint
    )
    train = np.asarray(splits.train, dtype=np.int64)
    return TransferabilityPlan(ds, parts, names, spec, train, key, classifier, protocol, seed)


def evaluate_transferability(
    store: Store,
    dataset: str | Dataset,
    features: Any,
    *,
    transform: str = "",
    estimators: str | Sequence[str] = DEFAULT_ESTIMATORS,
    seed: int = 0,
    force: bool = False,
    progress: Progress | None = None,
) -> ResultRecord:
    """Score the features of the training split; returns the (stored) result record.

    ``features`` selects cached entries as in classification (an entry key, a dict of
    factors, or a list of those for a concatenation). A record already stored under the
    same key is returned as is unless ``force``.
    """
    plan = plan_transferability(
        store, dataset, features, transform=transform, estimators=estimators, seed=seed
    )
    return run(store, plan, compute_transferability, force=force, progress=progress)


def compute_transferability(
    store: Store, plan: TransferabilityPlan, progress: Progress | None = None
) -> ResultRecord:
    """The record of a checked setting (not saved: :func:`featstore.evaluate.tasks.run` does)."""
    ds, spec, train, seed = plan.dataset, plan.transform, plan.train, plan.seed
    t0 = time.perf_counter()
    from featstore.evaluate.features.transforms import (
        FeatureTransform,  # scikit-learn: computing only
    )

    tr = FeatureTransform("" if spec == "none" else spec, seed=seed)
    tr.fit(plan.parts, train, progress=progress)
    x = tr.transform(plan.parts, train)
    t1 = time.perf_counter()
    scores = transferability_scores(x, np.asarray(ds.labels)[train], plan.estimators)
    t2 = time.perf_counter()
    return build_record(
        key=plan.key,
        task=TASK,
        dataset_id=ds.id,
        dataset_name=ds.name,
        features=plan.feature_keys,
        factors=merge_factors(plan.parts),
        transform=spec,
        classifier=plan.classifier,
        protocol=plan.protocol,
        seed=seed,
        metrics=scores,
        chosen={"n_features": int(x.shape[1]), "n_train": len(train)},
        timings={**tr.timings_, "features_s": t1 - t0, "estimators_s": t2 - t1, "total_s": t2 - t0},
        sizes={"dim": int(x.shape[1]), "n_train": len(train)},
    )
