"""Which result records belong to a sweep: the study table shows the study, nothing else.

A store collects records from every run: a sweep's cells, but also ``featstore evaluate``
runs with other classifiers, seeds or transforms on the same datasets. A study's table
(``featstore sweep SPEC``, ``featstore report --spec SPEC``) takes only the records whose
keys the spec's cells give, asked of each task's planner (see
:mod:`featstore.evaluate.tasks`); nothing here rebuilds a key by hand. Entries are found by
their factors (no network is loaded), so a report needs only the store.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from featstore.errors import DatasetError, EntryNotFoundError, FeatstoreError
from featstore.evaluate.results import records_by_key
from featstore.evaluate.tasks import get_task
from featstore.store.select import Catalog
from featstore.sweep.finetune import annotate_records
from featstore.sweep.plan import check_registered_source, factor_planner, make_plan
from featstore.sweep.run import ReadOnce, cell_job
from featstore.sweep.similarity import similarity_keys
from featstore.sweep.spec import SweepSpec

if TYPE_CHECKING:
    from featstore.evaluate.results import ResultRecord
    from featstore.store.base import Store

__all__ = ["study_records", "study_result_keys"]


def study_result_keys(store: Store, spec: SweepSpec) -> set[str]:
    """The result keys of the spec's cells (whether or not the store holds their records yet).

    Datasets of the spec that are not registered have no records; one registered from
    another source or subset than the spec says is refused (SpecError), as the sweep does.
    """
    registered = {}
    for d in spec.datasets:
        try:
            stored = store.get_dataset(d.name)
        except (EntryNotFoundError, DatasetError, LookupError):
            continue
        check_registered_source(d, stored)
        registered[d.name] = stored
    if not registered:
        return set()
    sub = dataclasses.replace(
        spec, datasets=tuple(d for d in spec.datasets if d.name in registered)
    )
    catalog = Catalog(store)  # one scan of the entries: the plan's and the cells'
    planner = functools.partial(factor_planner, catalog=catalog)
    plan = make_plan(store, sub, datasets=registered, planner=planner, count_results=False)
    keys: set[str] = set()
    # the cells of one entry read it once; a read-through view that answers as the store does
    reads = cast("Store", ReadOnce(store, catalog.entries()))
    for cell in plan.cells:
        if cell.task == "similarity":
            continue
        job = cell_job(sub, cell, store.spec, plan)
        try:  # the features and options the sweep's evaluate_job evaluates for this cell
            planned = get_task(job["task"]).plan(
                reads, registered[cell.dataset], job["features"], **job["options"]
            )
        except FeatstoreError:
            continue  # not extracted (or not evaluable): no record of this cell
        keys.add(planned.key)
    similar = [c for c in plan.cells if c.task == "similarity"]
    if similar:
        keys |= similarity_keys(store, sub, plan, similar)
    return keys


def study_records(
    store: Store, spec: SweepSpec, keys: Iterable[str] | None = None
) -> list[ResultRecord]:
    """The result records of the spec's settings only (``keys``: those a sweep just wrote).

    A record of a fine-tuned network carries a ``finetune`` field with its provenance
    (parent, freeze, epoch ...; see :func:`featstore.sweep.finetune.annotate_records`).
    """
    wanted = set(keys) if keys is not None else study_result_keys(store, spec)
    names = [d.name for d in spec.datasets]
    records = records_by_key(store, sorted(wanted), names)  # only the study's records are read
    return annotate_records(store, records) if spec.finetune else records
