"""Which factor matters: factor effects, the best setting and the optimal factors per task.

Computed from a :class:`~featstore.report.tables.Report` (result records, one score per
setting and task column), the summary of a factor study (Azizpour et al., "Factors of
Transferability"):

- **factor effects**: for each task and factor, each level's score with the other factors
  at their best (the best score among the settings with that level) and the spread over
  the other factors (min / median / max of those settings' scores). A factor's *effect* is
  the range of its best-per-level scores; factors are ranked by it, largest first. A
  factor with one level in a task is *fixed* there and has no effect.
- **best setting per task**, with its relative error reduction against the baseline.
- **optimal factors per task**: rows = factors, columns = tasks, each cell the level of
  the task's best setting.
- **task order** (:func:`order_tasks`): tasks sorted by how far their optimal setting is
  from a reference setting, the baseline's levels (else the level most tasks choose): the
  number of factors whose optimal level differs, then the best score (higher first), then
  the name. Azizpour et al. order tasks by their distance from ImageNet; a study without
  that distance orders them by how much their optimum departs from the standard setting.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featstore.report.tables import LEARNING_FACTORS, Column, Report, Row
from featstore.settings import FACTORS

__all__ = [
    "BestSetting",
    "FactorEffect",
    "LevelEffect",
    "TaskEffects",
    "best_settings",
    "factor_effects",
    "optimal_factors",
    "order_tasks",
    "overall_ranking",
]


@dataclass(frozen=True)
class LevelEffect:
    """One level of a factor in one task: its best score and the spread over the others."""

    level: str
    best: float  # the other factors at their best
    min: float
    median: float
    max: float
    n: int  # settings with this level that have a score
    best_setting: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class FactorEffect:
    factor: str
    levels: tuple[LevelEffect, ...]  # in display order

    @property
    def effect(self) -> float:
        """Range of the best-per-level scores: how much choosing this factor moves the score."""
        bests = [lv.best for lv in self.levels]
        return max(bests) - min(bests)

    @property
    def best_level(self) -> str:
        return max(self.levels, key=lambda lv: lv.best).level

    def to_json(self) -> dict[str, Any]:
        return {
            "factor": self.factor,
            "effect": self.effect,
            "best_level": self.best_level,
            "levels": [lv.to_json() for lv in self.levels],
        }


@dataclass(frozen=True)
class TaskEffects:
    """The factor effects of one task column, ranked (largest effect first)."""

    column: Column
    ranked: tuple[FactorEffect, ...]
    fixed: dict[str, str]  # factors with a single level in this task

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.column.label,
            "ranked": [f.to_json() for f in self.ranked],
            "fixed": dict(self.fixed),
        }


@dataclass(frozen=True)
class BestSetting:
    """The best setting of a task column, and how it compares with the baseline."""

    column: Column
    setting: dict[str, str]
    label: str
    score: float
    baseline_score: float | None
    rer: float | None  # relative error reduction against the baseline
    n_settings: int

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "column": self.column.label}


def _scored(report: Report, col: Column) -> list[Row]:
    return [r for r in report.rows if col in r.scores]


def _level_order(rows: Sequence[Row], factor: str) -> list[str]:
    """Levels in the report's row order (the spec's factor order, layers in network order)."""
    return list(dict.fromkeys(r.setting[factor] for r in rows))


def factor_effects(
    report: Report,
    factors: Sequence[str] | None = None,
    columns: Sequence[Column] | None = None,
) -> list[TaskEffects]:
    """The factor effects of every task column (see the module docstring); ``factors``:
    the report's own (with how each network was trained, when one was fine-tuned)."""
    factors = report.factors if factors is None else factors
    out = []
    for col in columns if columns is not None else report.columns:
        rows = _scored(report, col)
        if not rows:
            continue
        effects = []
        fixed = {}
        for factor in factors:
            levels = _level_order(rows, factor)
            if len(levels) == 1:
                fixed[factor] = levels[0]
                continue
            per = []
            for level in levels:
                mine = [r for r in rows if r.setting[factor] == level]
                scores = [r.scores[col] for r in mine]
                top = max(mine, key=lambda r: r.scores[col])  # first in row order on ties
                per.append(
                    LevelEffect(
                        level=level,
                        best=max(scores),
                        min=min(scores),
                        median=float(statistics.median(scores)),
                        max=max(scores),
                        n=len(scores),
                        best_setting=dict(top.setting),
                    )
                )
            effects.append(FactorEffect(factor, tuple(per)))
        ranked = sorted(effects, key=lambda f: (-f.effect, list(factors).index(f.factor)))
        out.append(TaskEffects(col, tuple(ranked), fixed))
    return out


def overall_ranking(effects: Sequence[TaskEffects]) -> list[tuple[str, float, int]]:
    """(factor, mean effect over the tasks where it varies, number of such tasks), largest
    first: the "which factor matters" answer across tasks."""
    sums: dict[str, list[float]] = {}
    for te in effects:
        for f in te.ranked:
            sums.setdefault(f.factor, []).append(f.effect)
    ranked = [(name, sum(v) / len(v), len(v)) for name, v in sums.items()]
    order = [*FACTORS, *LEARNING_FACTORS]
    return sorted(ranked, key=lambda t: (-t[1], order.index(t[0]) if t[0] in order else 99))


def best_settings(report: Report) -> list[BestSetting]:
    """The best setting of each task column (the first in row order on ties)."""
    out = []
    for col in report.columns:
        rows = _scored(report, col)
        if not rows:
            continue
        top = max(rows, key=lambda r: r.scores[col])
        base = [r.scores[col] for r in rows if r.baseline]
        out.append(
            BestSetting(
                column=col,
                setting=dict(top.setting),
                label=top.label,
                score=top.scores[col],
                baseline_score=sum(base) / len(base) if base else None,
                rer=top.rer.get(col),
                n_settings=len(rows),
            )
        )
    return out


def _reference(best: Sequence[BestSetting], baseline: Mapping[str, str] | None) -> dict[str, str]:
    """The setting tasks are measured against: the baseline's levels, else the commonest optimum."""
    ref = {}
    factors = dict.fromkeys(f for b in best for f in b.setting)  # the report's factors
    for factor in factors:
        if baseline and factor in baseline:
            ref[factor] = str(baseline[factor])
        else:
            counts = Counter(b.setting[factor] for b in best)
            if counts:
                ref[factor] = max(counts, key=lambda v: (counts[v], -list(counts).index(v)))
    return ref


def order_tasks(
    best: Sequence[BestSetting], baseline: Mapping[str, str] | None = None
) -> list[tuple[BestSetting, int]]:
    """Tasks ordered by how far their optimal setting lies from the reference (module
    docstring): (best setting, number of factors that differ from the reference)."""
    ref = _reference(best, baseline)

    def distance(b: BestSetting) -> int:
        return sum(1 for k, v in ref.items() if b.setting.get(k) != v)

    scored = [(b, distance(b)) for b in best]
    return sorted(scored, key=lambda t: (t[1], -t[0].score, t[0].column.label))


def optimal_factors(
    ordered: Sequence[BestSetting], factors: Sequence[str] = FACTORS
) -> list[tuple[str, list[str]]]:
    """Azizpour's table: per factor, the level each task's best setting uses (tasks in the
    given order); factors that never vary across the tasks' optima are kept."""
    return [(f, [b.setting[f] for b in ordered]) for f in factors]
