"""Factor effects, best setting per task, optimal factors and task order, against a small
table computed by hand."""

from __future__ import annotations

import pytest

from featstore.report import build_report
from featstore.report.effects import (
    best_settings,
    factor_effects,
    optimal_factors,
    order_tasks,
    overall_ranking,
)
from featstore.report.findings import findings_markdown, study_findings

# (network, layer, pooling) -> accuracy on task T and on task U
T = {
    ("a", "l1", "avg"): 0.60,
    ("a", "l1", "max"): 0.50,
    ("a", "l2", "avg"): 0.80,
    ("a", "l2", "max"): 0.70,
    ("b", "l1", "avg"): 0.65,
    ("b", "l1", "max"): 0.55,
    ("b", "l2", "avg"): 0.90,
    ("b", "l2", "max"): 0.75,
}
U = {
    ("a", "l1", "avg"): 0.70,
    ("a", "l1", "max"): 0.72,
    ("a", "l2", "avg"): 0.60,
    ("a", "l2", "max"): 0.58,
    ("b", "l1", "avg"): 0.66,
    ("b", "l1", "max"): 0.64,
    ("b", "l2", "avg"): 0.50,
    ("b", "l2", "max"): 0.52,
}
BASELINE = {"network": "a", "layer": "l2", "pooling": "avg"}


def _record(dataset: str, net: str, layer: str, pool: str, acc: float) -> dict:
    return {
        "key": f"res-{dataset}-{net}-{layer}-{pool}",
        "kind": "result",
        "task": "classify",
        "dataset_id": f"{dataset}-0",
        "dataset_name": dataset,
        "features": [f"f-{net}-{layer}-{pool}"],
        "factors": {"model": net, "layer": layer, "pooling": pool, "view": "plain"},
        "transform": "l2",
        "classifier": {"name": "svm"},
        "metrics": {"accuracy": acc},
    }


def _records() -> list[dict]:
    out = [_record("T", *k, v) for k, v in T.items()]
    out += [_record("U", *k, v) for k, v in U.items()]
    return out


@pytest.fixture
def report():
    return build_report(_records(), baseline=BASELINE)


def _by_task(report):
    return {te.column.dataset: te for te in factor_effects(report)}


def test_factor_effects_match_the_hand_computed_table(report) -> None:
    t = _by_task(report)["T"]
    assert [f.factor for f in t.ranked] == ["layer", "pooling", "network"]
    assert [round(f.effect, 6) for f in t.ranked] == [0.25, 0.15, 0.10]
    assert t.fixed == {"view": "plain", "transform": "l2", "classifier": "svm"}
    layer = {lv.level: lv for lv in t.ranked[0].levels}
    assert list(layer) == ["l1", "l2"]  # display order
    l1, l2 = layer["l1"], layer["l2"]
    assert (l1.best, l1.min, l1.max, l1.n) == (0.65, 0.50, 0.65, 4)
    assert l1.median == pytest.approx((0.55 + 0.60) / 2)
    assert (l2.best, l2.min, l2.max) == (0.90, 0.70, 0.90)
    assert l2.median == pytest.approx((0.75 + 0.80) / 2)
    assert l2.best_setting["network"] == "b"
    assert l2.best_setting["pooling"] == "avg"
    net = {lv.level: lv for lv in t.ranked[2].levels}
    assert net["a"].best == 0.80
    assert net["a"].median == pytest.approx(0.65)
    assert net["b"].best == 0.90
    assert net["b"].median == pytest.approx(0.70)

    u = _by_task(report)["U"]
    assert [(f.factor, round(f.effect, 6), f.best_level) for f in u.ranked] == [
        ("layer", 0.12, "l1"),
        ("network", 0.06, "a"),
        ("pooling", 0.02, "max"),
    ]


def test_overall_ranking_is_the_mean_effect_over_tasks(report) -> None:
    ranking = overall_ranking(factor_effects(report))
    assert [name for name, _, _ in ranking] == ["layer", "pooling", "network"]
    assert [round(e, 6) for _, e, _ in ranking] == [0.185, 0.085, 0.08]
    assert all(n == 2 for _, _, n in ranking)


def test_best_setting_per_task_with_relative_error_reduction(report) -> None:
    best = {b.column.dataset: b for b in best_settings(report)}
    assert best["T"].label == "b/l2/avg/plain/l2/svm"
    assert best["T"].score == 0.90
    assert best["T"].baseline_score == 0.80
    assert best["T"].rer == pytest.approx((0.2 - 0.1) / 0.2)
    assert best["U"].label == "a/l1/max/plain/l2/svm"
    assert best["U"].score == 0.72
    assert best["U"].rer == pytest.approx((0.40 - 0.28) / 0.40)
    assert best["T"].n_settings == 8


def test_optimal_factors_table_and_task_order(report) -> None:
    ordered = order_tasks(best_settings(report), report.baseline)
    # T's optimum differs from the baseline in the network only, U's in layer and pooling
    assert [(b.column.dataset, d) for b, d in ordered] == [("T", 1), ("U", 2)]
    table = dict(optimal_factors([b for b, _ in ordered]))
    assert table["network"] == ["b", "a"]
    assert table["layer"] == ["l2", "l1"]
    assert table["pooling"] == ["avg", "max"]
    assert table["classifier"] == ["svm", "svm"]


def test_task_order_without_baseline_uses_the_commonest_optimum() -> None:
    records = _records()
    # a third task whose optimum equals T's: reference = T's optimum, U is the odd one out
    records += [_record("V", *k, v - 0.05) for k, v in T.items()]
    rep = build_report(records)
    ordered = order_tasks(best_settings(rep), None)
    assert [(b.column.dataset, d) for b, d in ordered] == [("T", 0), ("V", 0), ("U", 3)]


def test_findings_render_as_markdown_and_json(report) -> None:
    f = study_findings(report)
    md = findings_markdown(f)
    assert md.index("Which factor matters") < md.index("Best setting per task")
    assert "| 1 | layer | 0.1850 | 2 |" in md
    assert "| T classify (accuracy) | b/l2/avg/plain/l2/svm | 0.9000 | 0.8000 | +50.0% |" in md
    j = f.to_json()
    assert j["optimal_factors"]["tasks"] == ["T classify (accuracy)", "U classify (accuracy)"]
    assert j["factor_ranking"][0]["factor"] == "layer"
    assert j["architecture_vs_transfer"] == []  # networks a, b have no ImageNet accuracy
