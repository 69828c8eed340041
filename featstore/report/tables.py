"""The study's results table, built from the result records in a store.

Rows are *settings* (network, layer, pooling, view, transform, classifier), columns are
*tasks* (a dataset evaluated by a task, scored by its main metric). Each column marks its
best setting, and, when a baseline setting is named, every cell carries the relative
error reduction against it: ``(err_base - err) / err_base`` with ``err = 1 - score``.

Records come from the store, not from a sweep's memory, so a teammate's results for the
same datasets appear as well. Transferability records (task "transferability") are set
beside the SVM results of the same features: each estimator ranks the settings, and
Kendall's tau measures how well that ranking agrees with the SVM's.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featstore.evaluate.transferability.estimators import kendall_tau
from featstore.report.similarity import similarity_markdown, similarity_matrices
from featstore.settings import (
    FACTORS,
    FEATURE_FACTORS,
    record_setting,
    setting_label,
)

if TYPE_CHECKING:
    from featstore.evaluate.results import ResultRecord

__all__ = [
    "LEARNING_FACTORS",
    "Column",
    "Report",
    "Row",
    "build_report",
    "learning_factors",
    "to_csv",
    "to_markdown",
]

# main metric per task, first one present wins
MAIN_METRICS = {
    "classify": ("accuracy", "mean_ap", "map", "mean_class_accuracy"),
    "retrieve": ("map", "mAP", "map_medium", "ukbench_score", "score"),
}


@dataclass(frozen=True)
class Column:
    dataset: str
    task: str
    metric: str

    @property
    def label(self) -> str:
        return f"{self.dataset} {self.task} ({self.metric})"


@dataclass
class Row:
    setting: dict[str, str]
    label: str
    scores: dict[Column, float] = field(default_factory=dict)
    rer: dict[Column, float | None] = field(default_factory=dict)
    best: set[Column] = field(default_factory=set)
    baseline: bool = False


@dataclass
class Report:
    columns: list[Column]
    rows: list[Row]
    baseline: dict[str, str] | None
    transfer: list[dict[str, Any]]
    n_records: int
    similarity: list[dict[str, Any]] = field(default_factory=list)  # CKA / RSA matrices
    scope: str | None = None  # which records the table holds (one study, or all of a store)
    factors: tuple[str, ...] = FACTORS  # with LEARNING_FACTORS when a network was fine-tuned

    def to_json(self) -> dict[str, Any]:
        cols = [c.label for c in self.columns]
        return {
            "columns": cols,
            "baseline": self.baseline,
            "n_records": self.n_records,
            "scope": self.scope,
            "factors": list(self.factors),
            "rows": [
                {
                    "setting": r.setting,
                    "label": r.label,
                    "baseline": r.baseline,
                    "scores": {c.label: r.scores.get(c) for c in self.columns},
                    "relative_error_reduction": {c.label: r.rer.get(c) for c in self.columns},
                    "best": sorted(c.label for c in r.best),
                }
                for r in self.rows
            ],
            "transferability": self.transfer,
            "similarity": self.similarity,
        }


def _main_metric(task: str, metrics: Mapping[str, Any]) -> str | None:
    for name in MAIN_METRICS.get(task, ()):
        if isinstance(metrics.get(name), (int, float)):
            return name
    numeric = [
        k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return sorted(numeric)[0] if numeric else None


def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _sort_key(setting: Mapping[str, str], orders: Mapping[str, Sequence[str]]) -> tuple[Any, ...]:
    key: list[Any] = []
    for name in FACTORS:
        value = setting[name]
        order = list(orders.get(name, ()))
        key.append((order.index(value), []) if value in order else (len(order), _natural(value)))
    return tuple(key)


def _matches(setting: Mapping[str, str], partial: Mapping[str, str]) -> bool:
    return all(setting.get(k) == v for k, v in partial.items())


# --------------------------------------------------------------------------------------
# building the report
# --------------------------------------------------------------------------------------


def build_report(
    records: Sequence[ResultRecord],
    *,
    baseline: Mapping[str, str] | None = None,
    orders: Mapping[str, Sequence[str]] | None = None,
    scope: str | None = None,
) -> Report:
    """Arrange result records as the study's table (see the module docstring).

    ``orders`` gives the display order of factor values (e.g. layers in network order);
    unlisted values follow in natural order. Several records for one cell (seeds,
    teammates) are averaged. ``scope`` says which records these are (shown with the table).
    """
    orders = orders or {}
    learning = any(rec.get("finetune") for rec in records)
    cells: dict[tuple[str, Column], list[float]] = {}
    settings: dict[str, dict[str, str]] = {}
    transfer_records = []
    similarity_records = []
    for rec in records:
        task = str(rec.get("task"))
        if task == "transferability":
            transfer_records.append(rec)
            continue
        if task == "similarity":  # pairs of settings, not a score of one: own matrices
            similarity_records.append(rec)
            continue
        metrics = rec.get("metrics") or {}
        metric = _main_metric(task, metrics)
        if metric is None:
            continue
        setting = record_setting(rec)
        label = setting_label(setting)
        if learning:
            setting.update(learning_factors(rec))
        settings[label] = setting
        col = Column(str(rec.get("dataset_name") or rec.get("dataset_id")), task, metric)
        cells.setdefault((label, col), []).append(float(metrics[metric]))
    columns = sorted({c for _, c in cells}, key=lambda c: (_natural(c.dataset), c.task, c.metric))
    labels = sorted(settings, key=lambda lb: _sort_key(settings[lb], orders))
    rows = []
    for label in labels:
        row = Row(setting=settings[label], label=label)
        for col in columns:
            values = cells.get((label, col))
            if values:
                row.scores[col] = sum(values) / len(values)
        row.baseline = baseline is not None and _matches(row.setting, baseline)
        rows.append(row)
    for col in columns:
        have = [r for r in rows if col in r.scores]
        if have:
            top = max(r.scores[col] for r in have)
            for r in have:
                if r.scores[col] == top:
                    r.best.add(col)
    if baseline is not None:
        _relative_error_reduction(rows, columns)
    transfer = _transfer_tables(transfer_records, cells, settings, orders)
    return Report(
        columns=columns,
        rows=rows,
        baseline=dict(baseline) if baseline else None,
        transfer=transfer,
        n_records=len(records),
        similarity=similarity_matrices(similarity_records, orders),
        scope=scope,
        factors=FACTORS + LEARNING_FACTORS if learning else FACTORS,
    )


# how each network was trained, from a record's ``finetune`` provenance (a sweep's study)
LEARNING_FACTORS = ("training", "freeze", "epoch")


def learning_factors(record: Mapping[str, Any]) -> dict[str, str]:
    """training (frozen, linear head, fine-tuned), the layer frozen up to (``all`` for the
    network used as is, ``none`` when every layer trained) and the epoch of its weights."""
    prov = record.get("finetune")
    if not prov:
        return {"training": "frozen", "freeze": "all", "epoch": "-"}
    if prov.get("train") == "head":
        return {"training": "linear head", "freeze": "all", "epoch": str(prov.get("epoch"))}
    freeze = prov.get("freeze")
    return {
        "training": "fine-tuned",
        "freeze": str(freeze) if freeze and freeze != "-" else "none",
        "epoch": str(prov.get("epoch")),
    }


def _relative_error_reduction(rows: list[Row], columns: list[Column]) -> None:
    """(err_base - err) / err_base per cell, against the baseline row(s) of that column."""
    for col in columns:
        base = [r.scores[col] for r in rows if r.baseline and col in r.scores]
        if not base:
            continue
        err_base = 1.0 - sum(base) / len(base)
        for r in rows:
            if col in r.scores:
                r.rer[col] = (err_base - (1.0 - r.scores[col])) / err_base if err_base > 0 else None


def _transfer_tables(
    records: Sequence[ResultRecord],
    cells: Mapping[tuple[str, Column], list[float]],
    settings: Mapping[str, dict[str, str]],
    orders: Mapping[str, Sequence[str]],
) -> list[dict[str, Any]]:
    """Per dataset: estimator scores and ranks beside the SVM's, and Kendall's tau."""
    by_ds: dict[str, dict[str, dict[str, list[float]]]] = {}
    feature_settings: dict[str, dict[str, str]] = {}
    for r in records:
        setting = record_setting(r)
        fkey = "/".join(setting[k] for k in FEATURE_FACTORS)
        feature_settings[fkey] = {k: setting[k] for k in FEATURE_FACTORS}
        ds = str(r.get("dataset_name") or r.get("dataset_id"))
        for name, value in (r.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                by_ds.setdefault(ds, {}).setdefault(fkey, {}).setdefault(name, []).append(
                    float(value)
                )
    out = []
    for ds in sorted(by_ds, key=_natural):
        svm: dict[str, float] = {}
        metric_name = None
        for (label, col), values in cells.items():
            s = settings[label]
            if col.dataset == ds and col.task == "classify" and s["classifier"] == "svm":
                fkey = "/".join(s[k] for k in FEATURE_FACTORS)
                svm[fkey] = sum(values) / len(values)
                metric_name = col.metric
        per = by_ds[ds]
        estimators = sorted({e for m in per.values() for e in m})
        fkeys = sorted(
            per, key=lambda k: _sort_key({**feature_settings[k], "classifier": "-"}, orders)
        )
        rows: list[dict[str, Any]] = []
        for k in fkeys:
            scores = {e: sum(v) / len(v) for e, v in per[k].items()}
            rows.append(
                {"setting": feature_settings[k], "label": k, "svm": svm.get(k), "scores": scores}
            )
        _add_ranks(rows, "svm", lambda row: row["svm"])
        for e in estimators:
            _add_ranks(rows, e, lambda row, e=e: row["scores"].get(e))
        taus: dict[str, float | None] = {}
        for e in estimators:
            both = [
                row for row in rows if row["svm"] is not None and row["scores"].get(e) is not None
            ]
            tau = None
            if len(both) >= 2:
                t = kendall_tau([row["svm"] for row in both], [row["scores"][e] for row in both])
                tau = None if math.isnan(t) else t
            taus[e] = tau
        out.append(
            {
                "dataset": ds,
                "svm_metric": metric_name,
                "estimators": estimators,
                "rows": rows,
                "kendall_tau": taus,
                "n_compared": sum(1 for row in rows if row["svm"] is not None),
            }
        )
    return out


def _add_ranks(rows: list[dict[str, Any]], name: str, get: Any) -> None:
    """Rank 1 = highest value; ties share the best rank; missing values get no rank."""
    values = [(get(row), i) for i, row in enumerate(rows) if get(row) is not None]
    for row in rows:
        row.setdefault("ranks", {})[name] = None
    for value, i in values:
        rows[i]["ranks"][name] = 1 + sum(1 for v, _ in values if v > value)


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------


SCORE_UNIT = "Scores are fractions (1.0000 = every answer right), as in evaluate and --json"


def fmt_score(value: float | None) -> str:
    """A score as featstore shows it everywhere (evaluate, sweep, report): a fraction, 4 decimals."""
    return "" if value is None else f"{value:.4f}"


def fmt_rer(value: float | None) -> str:
    return "" if value is None else f"{100.0 * value:+.1f}%"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: Report) -> str:
    """The table as GitHub Markdown: scores as fractions, best per column in bold, RER (%) in
    brackets."""
    if not report.rows:
        return (
            "_No classification or retrieval results in the store yet._\n"
            + (f"\n{report.scope}\n" if report.scope else "")
            + _transfer_markdown(report)
            + similarity_markdown(report.similarity)
        )
    factors = report.factors
    head = ["setting", *factors, *[c.label for c in report.columns]]
    lines = [
        "| " + " | ".join(_md_escape(h) for h in head) + " |",
        "|" + "|".join(["---"] * (1 + len(factors)) + ["---:"] * len(report.columns)) + "|",
    ]
    for i, r in enumerate(report.rows, 1):
        cells = []
        for c in report.columns:
            score = r.scores.get(c)
            text = fmt_score(score)
            if c in r.best:
                text = f"**{text}**"
            if r.rer.get(c) is not None and not r.baseline:
                text += f" ({fmt_rer(r.rer[c])})"
            cells.append(text)
        name = f"S{i}" + (" (baseline)" if r.baseline else "")
        lines.append(
            "| " + " | ".join([name, *[_md_escape(r.setting[k]) for k in factors], *cells]) + " |"
        )
    notes = ["", f"{SCORE_UNIT}; **bold** = best setting of the column."]
    if report.scope:
        notes.append(report.scope)
    if report.baseline:
        base = ", ".join(f"{k}={v}" for k, v in report.baseline.items())
        notes.append(
            f"(±x%) = relative error reduction (err_base - err) / err_base against the baseline ({base})."
        )
    return (
        "\n".join(lines + notes)
        + "\n"
        + _transfer_markdown(report)
        + similarity_markdown(report.similarity)
    )


def _transfer_markdown(report: Report) -> str:
    out = []
    for t in report.transfer:
        out.append(f"\n### Transferability estimates vs SVM: {t['dataset']}\n")
        head = ["features", f"SVM {t['svm_metric'] or ''}".strip(), "rank"]
        for e in t["estimators"]:
            head += [e, "rank"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for row in t["rows"]:
            cells = [_md_escape(row["label"]), fmt_score(row["svm"]), _rank(row["ranks"]["svm"])]
            for e in t["estimators"]:
                v = row["scores"].get(e)
                cells += ["" if v is None else f"{v:.4g}", _rank(row["ranks"].get(e))]
            out.append("| " + " | ".join(cells) + " |")
        taus = ", ".join(
            f"{e}: {'n/a' if v is None else f'{v:+.3f}'}" for e, v in t["kendall_tau"].items()
        )
        out.append(f"\nKendall's tau against the SVM ranking ({t['n_compared']} settings): {taus}")
    return "\n".join(out) + ("\n" if out else "")


def _rank(value: int | None) -> str:
    return "" if value is None else str(value)


def to_csv(report: Report) -> str:
    """One line per (setting, column): factors, score, best, relative error reduction."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            *report.factors,
            "baseline",
            "dataset",
            "task",
            "metric",
            "score",
            "best",
            "relative_error_reduction",
        ]
    )
    for r in report.rows:
        for c in report.columns:
            if c not in r.scores:
                continue
            rer = r.rer.get(c)
            w.writerow(
                [
                    *[r.setting[k] for k in report.factors],
                    int(r.baseline),
                    c.dataset,
                    c.task,
                    c.metric,
                    f"{r.scores[c]:.6f}",
                    int(c in r.best),
                    "" if rer is None else f"{rer:.6f}",
                ]
            )
    for t in report.transfer:
        for row in t["rows"]:
            for e, v in row["scores"].items():
                w.writerow(
                    [
                        *[row["setting"][k] for k in FEATURE_FACTORS],
                        "-",
                        0,
                        t["dataset"],
                        "transferability",
                        e,
                        f"{v:.6f}",
                        0,
                        "",
                    ]
                )
    return buf.getvalue()
