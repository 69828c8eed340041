"""The study's findings, computed once from a report: what the page shows above the tables.

:func:`study_findings` gathers the factor effects and their ranking, the best setting per
task, the tasks in order (see :func:`featstore.report.effects.order_tasks`) with the optimal
factors table, and the architecture-vs-transfer comparison. Markdown, HTML and ``--json``
all render this one object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from featstore.report.effects import (
    BestSetting,
    TaskEffects,
    best_settings,
    factor_effects,
    optimal_factors,
    order_tasks,
    overall_ranking,
)
from featstore.report.kornblith import architecture_transfer
from featstore.report.tables import Report, fmt_rer, fmt_score

__all__ = ["ORDER_RULE", "Findings", "findings_markdown", "study_findings"]

ORDER_RULE = (
    "Tasks are ordered by how far their best setting lies from the reference setting (the "
    "baseline's levels, else the level most tasks choose): the number of factors whose "
    "optimal level differs, then the best score (higher first), then the name."
)


@dataclass
class Findings:
    effects: list[TaskEffects]
    ranking: list[tuple[str, float, int]]  # (factor, mean effect, tasks where it varies)
    ordered: list[tuple[BestSetting, int]]  # best setting per task, in task order, distance
    optimal: list[tuple[str, list[str]]]  # factor -> optimal level per task (task order)
    architecture: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.ordered

    def to_json(self) -> dict[str, Any]:
        return {
            "factor_ranking": [
                {"factor": f, "mean_effect": e, "tasks": n} for f, e, n in self.ranking
            ],
            "factor_effects": [te.to_json() for te in self.effects],
            "best_per_task": [{**b.to_json(), "distance": d} for b, d in self.ordered],
            "task_order_rule": ORDER_RULE,
            "optimal_factors": {
                "tasks": [b.column.label for b, _ in self.ordered],
                "rows": [{"factor": f, "levels": lv} for f, lv in self.optimal],
            },
            "architecture_vs_transfer": [
                {k: v for k, v in a.items() if k != "column"} for a in self.architecture
            ],
        }


def study_findings(report: Report, imagenet_top1: Mapping[str, float] | None = None) -> Findings:
    """The findings of ``report`` (``imagenet_top1``: a spec's network accuracies, in %)."""
    effects = factor_effects(report)
    ordered = order_tasks(best_settings(report), report.baseline)
    return Findings(
        effects=effects,
        ranking=overall_ranking(effects),
        ordered=ordered,
        optimal=optimal_factors([b for b, _ in ordered], report.factors),
        architecture=architecture_transfer(report, imagenet_top1),
    )


def fmt_r(a: Mapping[str, Any]) -> str:
    """``r = +0.981 [95% CI +0.93, +1.00], Spearman rho = +1.00, n = 3`` (log-odds)."""
    r = a.get("pearson_r")
    text = "r = n/a" if r is None else f"r = {r:+.3f}"
    ci = a.get("pearson_ci")
    if ci is not None:
        text += f" [95% bootstrap CI {ci[0]:+.2f}, {ci[1]:+.2f}]"
    rho = a.get("spearman_rho")
    text += ", Spearman rho = " + ("n/a" if rho is None else f"{rho:+.2f}")
    text += f", n = {a['n']} networks"
    if a["n"] == 2:
        text += " (with two networks r is +-1 by construction: add a third for a real test)"
    return text


def findings_markdown(f: Findings) -> str:
    """The findings as Markdown (what the HTML page shows first)."""
    if f.empty:
        return ""
    out = ["## Findings", "", "### Which factor matters (mean effect over tasks)", ""]
    out.append("| rank | factor | effect (score range of its best levels) | tasks |")
    out.append("|---:|---|---:|---:|")
    for i, (name, eff, n) in enumerate(f.ranking, 1):
        out.append(f"| {i} | {name} | {eff:.4f} | {n} |")
    out += ["", "### Best setting per task", ""]
    out.append("| task | best setting | score | baseline | RER |")
    out.append("|---|---|---:|---:|---:|")
    for b, _ in f.ordered:
        out.append(
            f"| {_md(b.column.label)} | {_md(b.label)} | {fmt_score(b.score)} | "
            f"{fmt_score(b.baseline_score)} | {fmt_rer(b.rer)} |"
        )
    out += ["", "### Optimal factors per task", "", ORDER_RULE, ""]
    tasks = [b.column.label for b, _ in f.ordered]
    out.append("| factor | " + " | ".join(_md(t) for t in tasks) + " |")
    out.append("|---|" + "|".join(["---"] * len(tasks)) + "|")
    for name, levels in f.optimal:
        out.append(f"| {name} | " + " | ".join(_md(v) for v in levels) + " |")
    for a in f.architecture:
        out += ["", f"### Architecture vs transfer: {_md(a['task'])}", "", fmt_r(a) + " (log-odds)"]
    return "\n".join(out) + "\n\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")
