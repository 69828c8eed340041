"""Similarity cells of a sweep: one CKA / RSA study per (dataset, pooling, view, transform).

A sweep's grid gives one cell per setting; similarity compares settings, so the cells of a
dataset that share pooling, view and transform form one study over every (network, layer)
of the grid, run through :func:`~featstore.evaluate.similarity.task.evaluate_similarity`.
Its pair records are looked up when stored, so a rerun computes nothing; the report shows
the matrices beside the accuracies of the same layers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from featstore.errors import FeatstoreError
from featstore.sweep.spec import Cell, SweepSpec

if TYPE_CHECKING:
    from featstore.store.base import Store

__all__ = ["run_similarity_cells", "similarity_keys", "similarity_studies"]


def similarity_studies(
    store: Store, spec: SweepSpec, plan: Any, cells: Sequence[Cell]
) -> list[dict[str, Any]]:
    """The sweep's similarity cells grouped into studies: one per (dataset, pooling, view,
    transform), each with its jobs, row labels, setting and transform."""
    from featstore.sweep.run import cell_job

    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        job = cell_job(spec, cell, store.spec, plan)
        s = cell.setting
        transform = job["options"]["transform"]
        groups.setdefault((cell.dataset, s.pooling, s.view, transform), []).append(job)
    studies = []
    for (dataset, pooling, view, transform), jobs in groups.items():
        several = len({j["setting"]["network"] for j in jobs}) > 1
        labels = [
            f"{j['setting']['network']}:{j['setting']['layer']}"
            if several
            else j["setting"]["layer"]
            for j in jobs
        ]
        setting = {
            "network": "+".join(dict.fromkeys(j["setting"]["network"] for j in jobs)),
            "layer": ",".join(labels),
            "pooling": pooling,
            "view": view,
            "transform": jobs[0]["setting"]["transform"],
            "classifier": "-",
        }
        studies.append(
            {"dataset": dataset, "transform": transform, "jobs": jobs, "labels": labels}
            | {"pooling": pooling, "view": view, "setting": setting}
        )
    return studies


def similarity_keys(store: Store, spec: SweepSpec, plan: Any, cells: Sequence[Cell]) -> set[str]:
    """The result keys of every pair the sweep's similarity studies store (nothing is read)."""
    from featstore.evaluate.tasks import get_task

    keys: set[str] = set()
    for study in similarity_studies(store, spec, plan, cells):
        try:
            planned = get_task("similarity").plan(
                store,
                study["dataset"],
                [j["features"] for j in study["jobs"]],
                labels=study["labels"],
                transform=study["transform"],
                seed=spec.seed,
                **spec.similarity,
            )
        except FeatstoreError:
            continue  # entries not extracted yet: no records either
        keys.update(getattr(planned, "keys", ()))  # a SimilarityPlan: one key per pair
    return keys


def run_similarity_cells(
    store: Store, spec: SweepSpec, plan: Any, cells: Sequence[Cell]
) -> list[dict[str, Any]]:
    """One summary per study (as the sweep's other cells give one per cell); never raises."""
    from featstore.evaluate.tasks import get_task

    out = []
    for study in similarity_studies(store, spec, plan, cells):
        dataset, pooling, view = study["dataset"], study["pooling"], study["view"]
        transform, jobs, labels, setting = (
            study["transform"],
            study["jobs"],
            study["labels"],
            study["setting"],
        )
        summary: dict[str, Any] = {
            "label": f"{dataset}:similarity:{setting['network']}/{pooling}/{view}/{transform or 'none'}",
            "dataset": dataset,
            "task": "similarity",
            "setting": setting,
        }
        t0 = time.perf_counter()
        try:
            result = get_task("similarity").evaluate(
                store,
                dataset,
                [j["features"] for j in jobs],
                labels=labels,
                transform=transform,
                seed=spec.seed,
                **spec.similarity,
            )
            summary.update(
                key=[r["key"] for r in result["records"]],
                metrics={"labels": result["labels"], "matrix": result["matrix"]},
                cached=result["computed"] == 0,
                ok=True,
            )
        except FeatstoreError as exc:
            summary.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        out.append(summary)
    return out
