"""Result records as a table: one row per record, the report's factors and numbers as columns.

The records are chosen exactly as ``featstore report`` chooses them (:func:`select_records`:
a sweep spec's settings only, or every record of the store, optionally of some datasets
and tasks), and each row's setting is the report's (:func:`featstore.settings.record_setting`),
so averaging the rows of one setting gives the number ``featstore report`` prints.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from featstore.errors import SpecError
from featstore.settings import FACTORS, record_setting

if TYPE_CHECKING:
    import pandas as pd

    from featstore.evaluate.results import ResultRecord
    from featstore.store.base import Store
    from featstore.sweep.spec import SweepSpec

__all__ = ["FACTOR_COLUMNS", "load_sweep_spec", "records_frame", "select_records"]

# the factor columns of the table, in order (the report's setting, with dataset, task, weights)
FACTOR_COLUMNS = (
    "dataset",
    "task",
    "network",
    "weights",
    "layer",
    "pooling",
    "view",
    "transform",
    "classifier",
)


def load_sweep_spec(sweep: SweepSpec | str | os.PathLike[str]) -> SweepSpec:
    """A loaded sweep spec from a spec or the path of its YAML file."""
    from featstore.sweep.spec import SweepSpec, load_spec

    if isinstance(sweep, SweepSpec):
        return sweep
    path = os.fspath(sweep)
    if not os.path.isfile(path):
        raise SpecError(
            f"sweep {path!r}: give the path of the sweep's YAML spec (e.g. "
            "examples/quick_sweep.yaml); result records are found by its settings, not its name"
        )
    return load_spec(path)


def select_records(
    store: Store,
    *,
    sweep: SweepSpec | str | os.PathLike[str] | None = None,
    datasets: Iterable[str] | None = None,
    tasks: Iterable[str] | None = None,
) -> list[ResultRecord]:
    """The records ``featstore report`` tabulates: with ``sweep`` (a spec or its path) only
    its settings' records, else every record of the store; optionally of some datasets
    (by content: any name of the same data) and tasks."""
    from featstore.evaluate.results import collect_records

    wanted_ds = list(datasets) if datasets is not None else None
    wanted_tasks = list(tasks) if tasks is not None else None
    if sweep is None:
        return collect_records(store, datasets=wanted_ds or None, tasks=wanted_tasks or None)
    from featstore.sweep.study import study_records

    records = study_records(store, load_sweep_spec(sweep))
    if wanted_ds:
        records = [
            r for r in records if {r.get("dataset_name"), r.get("dataset_id")} & set(wanted_ds)
        ]
    if wanted_tasks:
        records = [r for r in records if r.get("task") in wanted_tasks]
    return records


def _weights(factors: Mapping[str, Any]) -> str:
    source = factors.get("model_source")
    return "-" if source is None else str(source)


def _row(record: Mapping[str, Any]) -> dict[str, Any]:
    from featstore.report.tables import _main_metric  # the report's choice of main metric

    setting = record_setting(record)
    factors = record.get("factors") or {}
    task = str(record.get("task"))
    metrics = {
        str(k): float(v)
        for k, v in (record.get("metrics") or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    metric = _main_metric(task, metrics)
    row: dict[str, Any] = {
        "dataset": str(record.get("dataset_name") or record.get("dataset_id")),
        "task": task,
        "weights": _weights(factors),
        **{name: setting[name] for name in FACTORS},
        "metric": metric,
        "score": metrics.get(metric) if metric is not None else None,
    }
    row.update(metrics)
    chosen = record.get("chosen") or {}
    if isinstance(chosen, Mapping):
        for name, value in chosen.items():
            if value is None or isinstance(value, (int, float, str, bool)):
                row[f"chosen.{name}"] = value
    row.update(
        {
            "seed": record.get("seed"),
            "weights_sha256": factors.get("weights_sha256"),
            "dataset_id": record.get("dataset_id"),
            "features": "+".join(str(k) for k in record.get("features") or []),
            "created": record.get("created"),
            "key": record.get("key"),
        }
    )
    return row


def records_frame(
    records: Sequence[Mapping[str, Any]], filters: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """The table of ``records``: factor columns (:data:`FACTOR_COLUMNS`), ``metric`` and
    ``score`` (the task's main metric, as the report picks it), every numeric metric by
    name, ``chosen.*`` hyper-parameters, seed, weights sha256, feature keys and the key.
    ``filters`` keep rows whose factor column equals the value (or is in a list of values).
    """
    import pandas as pd

    unknown = sorted(set(filters or {}) - set(FACTOR_COLUMNS))
    if unknown:
        raise SpecError(
            f"results cannot be filtered by {', '.join(unknown)}; filter by "
            f"{', '.join(FACTOR_COLUMNS)} (or the DataFrame itself)"
        )
    rows = [_row(r) for r in records]
    for name, wanted in (filters or {}).items():
        if wanted is None:
            continue
        allowed = {str(v) for v in wanted} if isinstance(wanted, (list, tuple, set)) else {wanted}
        rows = [r for r in rows if str(r[name]) in {str(v) for v in allowed}]
    head = [*FACTOR_COLUMNS, "metric", "score"]
    tail = ["seed", "weights_sha256", "dataset_id", "features", "created", "key"]
    middle: list[str] = []
    for r in rows:
        middle.extend(c for c in r if c not in head and c not in tail and c not in middle)
    metrics = sorted(c for c in middle if not c.startswith("chosen."))
    chosen = sorted(c for c in middle if c.startswith("chosen."))
    return pd.DataFrame(rows, columns=[*head, *metrics, *chosen, *tail])
