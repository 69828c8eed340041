"""The one task registry: every evaluation task (classify, retrieve, transferability, ...).

A task is defined once, here: the keyword options it takes, a ``plan`` function that
checks a setting without computing and carries the key its result will have, and a
``compute`` function that produces the record of a plan. :func:`run` is the skeleton all
tasks share (look the key up, else compute, then save unless the store is read-only).
The CLI (``featstore evaluate --task NAME``) and the sweep both ask this registry; neither
rebuilds a key or knows a task's options by hand.

Task modules are imported when a task is first used, so listing tasks imports no
scikit-learn, FAISS or torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from featstore.errors import EvaluationError, StoreError
from featstore.evaluate.results import (
    ResultRecord,
    bind_record,
    load_current_result,
    save_result,
)
from featstore.progress import Progress

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset
    from featstore.store.base import Store

__all__ = [
    "CLASSIFIER_OPTIONS",
    "TASKS",
    "Plan",
    "Task",
    "get_task",
    "reading_options",
    "register",
    "run",
]

# The classify options only one classifier reads (the task's others, such as shots and
# draws, are read by every classifier); the keys are the classifiers a caller may name.
CLASSIFIER_OPTIONS: dict[str, tuple[str, ...]] = {
    "svm": ("c_grid", "cv", "class_weight", "solver"),
    "logreg": ("class_weight", "solver"),
    "knn": ("knn_k",),
}


class Plan(Protocol):
    """What every task's plan carries: the key its result record is stored under."""

    @property
    def key(self) -> str: ...


def _load(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Task:
    """``plan(store, dataset, features, **options) -> Plan``; ``compute(store, plan, progress)
    -> record``; both given as ``module:function`` paths, imported on first use.

    A *matrix* task (similarity) plans all settings at once (``features`` is then the list
    of settings) and stores one record per pair: its ``run_path`` replaces the one-record
    skeleton of :func:`run`. ``default_transform`` is used when a caller gives none.
    """

    name: str
    plan_path: str
    compute_path: str | None
    options: tuple[str, ...]
    description: str = ""
    matrix: bool = False
    default_transform: str = "l2"
    run_path: str | None = None

    def select(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options this task takes, from a larger set (a CLI's, a sweep cell's)."""
        return {k: options[k] for k in self.options if k in options}

    def plan(self, store: Store, dataset: str | Dataset, features: Any, **options: Any) -> Plan:
        """Check a setting (raises what evaluation would, before anything is read or written)."""
        return _load(self.plan_path)(store, dataset, features, **self.select(options))  # type: ignore[no-any-return]

    def run(
        self, store: Store, plan: Any, *, force: bool = False, progress: Progress | None = None
    ) -> Mapping[str, Any]:
        """The record of ``plan`` (a matrix task: its study, one record per pair inside)."""
        if self.run_path is not None:
            return _load(self.run_path)(store, plan, force=force, progress=progress)  # type: ignore[no-any-return]
        assert self.compute_path is not None  # a task has a run_path or a compute_path
        return run(store, plan, _load(self.compute_path), force=force, progress=progress)

    def evaluate(
        self,
        store: Store,
        dataset: str | Dataset,
        features: Any,
        *,
        force: bool = False,
        progress: Progress | None = None,
        **options: Any,
    ) -> Mapping[str, Any]:
        """Plan and run one setting; returns the record (``cached`` says if it was looked up)."""
        plan = self.plan(store, dataset, features, **options)
        return self.run(store, plan, force=force, progress=progress)

    def cached(
        self, store: Store, dataset: str | Dataset, features: Any, **options: Any
    ) -> ResultRecord | None:
        """The stored record of this setting, or None (also when the entries it read have
        changed since); reads entry metadata and done markers, never features."""
        if self.matrix:
            return None  # many records per plan: the task's own run looks each one up
        key = self.plan(store, dataset, features, **options).key
        record, _ = load_current_result(store, key)
        return None if record is None else {**record, "cached": True}


def run(
    store: Store,
    plan: Plan,
    compute: Callable[[Any, Any, Progress | None], ResultRecord],
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> ResultRecord:
    """Look the plan's key up (unless ``force``), else compute the record and save it.

    A stored record whose feature entries no longer hold the bytes it was computed from is
    not served: it is recomputed, and the returned record says why (``recomputed_because``).
    A damaged chunk raises (DamagedChunkError) before anything is scored or saved. On a
    read-only store, or one whose write fails (full disk, permissions), the record is
    computed and returned, not saved; ``not_saved`` then says why.
    """
    stale = None
    if not force:
        cached, stale = load_current_result(store, plan.key)
        if cached is not None:
            return {**cached, "cached": True}
    record = bind_record(store, compute(store, plan, progress))
    out: ResultRecord = {**record, "cached": False}
    if stale:
        out["recomputed_because"] = stale
    if store.read_only:
        return {**out, "not_saved": "the store is read-only"}
    try:
        save_result(store, record)
    except (OSError, StoreError) as exc:  # the score is worth showing even if it cannot be kept
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return {**out, "not_saved": reason}
    return out


TASKS: dict[str, Task] = {}


def reading_options(task: str, classifier: str | None = None) -> tuple[str, ...]:
    """The options a cell of ``task`` (and ``classifier``, for classify) reads: the task's,
    less those that belong to another classifier."""
    options = get_task(task).options
    if task != "classify" or classifier is None:
        return options
    others = {o for c, opts in CLASSIFIER_OPTIONS.items() if c != classifier for o in opts}
    mine = set(CLASSIFIER_OPTIONS.get(classifier, ()))
    return tuple(o for o in options if o not in others or o in mine)


def register(task: Task) -> Task:
    """Add a task; a second task of the same name is refused."""
    if task.name in TASKS:
        raise EvaluationError(f"a task named {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise EvaluationError(
            f"unknown task {name!r}; tasks are {', '.join(sorted(TASKS))}"
        ) from None


register(
    Task(
        "classify",
        "featstore.evaluate.probes.task:plan_classification",
        "featstore.evaluate.probes.task:compute_classification",
        (
            "transform",
            "classifier",
            "cv",
            "seed",
            "c_grid",
            "class_weight",
            "solver",
            "knn_k",
            "shots",
            "draws",
        ),
        "linear SVM (C by k-fold CV), logistic regression (lambda on val) or kNN; few-shot draws",
    )
)
register(
    Task(
        "retrieve",
        "featstore.evaluate.retrieval.task:plan_retrieval",
        "featstore.evaluate.retrieval.task:compute_retrieval",
        (
            "transform",
            "seed",
            "method",
            "whiten",
            "whiten_dim",
            "index",
            "shortlist",
            "index_params",
            "ks",
        ),
        "instance retrieval: global or sub-patch descriptors, PCA-whitening, FAISS",
    )
)
register(
    Task(
        "transferability",
        "featstore.evaluate.transferability.task:plan_transferability",
        "featstore.evaluate.transferability.task:compute_transferability",
        ("transform", "seed", "estimators"),
        "transferability estimators (LogME, H-score, GBC) on the training split",
    )
)
register(
    Task(
        "similarity",
        "featstore.evaluate.similarity.task:plan_similarity",
        None,
        (
            "transform",
            "seed",
            "measure",
            "split",
            "debiased",
            "sigma",
            "distance",
            "compare",
            "labels",
        ),
        "representational similarity (CKA, RBF CKA, RSA) between every pair of settings",
        matrix=True,
        default_transform="none",
        run_path="featstore.evaluate.similarity.task:run_similarity",
    )
)
