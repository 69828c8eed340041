"""How a network was trained (frozen, fine-tuned, frozen up to a layer, epoch) is a factor of
the study table and of the factor effects once a study holds a fine-tuned network."""

from __future__ import annotations

from typing import Any

from featstore.report import build_report, render
from featstore.report.effects import factor_effects


def _record(net: str, acc: float, finetune: dict[str, Any] | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "task": "classify",
        "dataset_name": "flowers12",
        "metrics": {"accuracy": acc},
        "factors": {"model": net, "layer": "penultimate", "pooling": "avg", "view": "plain"},
        "transform": "l2",
        "classifier": {"name": "svm"},
    }
    if finetune is not None:
        rec["finetune"] = finetune
    return rec


RECORDS = [
    _record("lite0", 0.80),
    _record("lite0-ft", 0.90, {"train": "all", "freeze": "-", "epoch": 3}),
    _record("lite0-freeze5", 0.85, {"train": "all", "freeze": "stage5", "epoch": 2}),
    _record("lite0-probe", 0.82, {"train": "head", "freeze": "-", "epoch": 3}),
]


def test_learning_factors_are_columns_of_the_table_and_the_csv() -> None:
    rep = build_report(RECORDS, baseline={"network": "lite0"})
    assert rep.factors[-3:] == ("training", "freeze", "epoch")
    got = {r.setting["network"]: (r.setting["training"], r.setting["freeze"], r.setting["epoch"])
           for r in rep.rows}  # fmt: skip
    assert got == {
        "lite0": ("frozen", "all", "-"),
        "lite0-ft": ("fine-tuned", "none", "3"),
        "lite0-freeze5": ("fine-tuned", "stage5", "2"),
        "lite0-probe": ("linear head", "all", "3"),
    }
    md = render(rep, "md")
    assert "| classifier | training | freeze | epoch | flowers12 classify (accuracy) |" in md
    assert (
        "| lite0-freeze5 | penultimate | avg | plain | l2 | svm | fine-tuned | stage5 | 2 |" in md
    )
    csv = render(rep, "csv").splitlines()
    assert csv[0].startswith(
        "network,layer,pooling,view,transform,classifier,training,freeze,epoch"
    )
    assert "<th>training</th>" in render(rep, "html", plots=False).replace(' class="sort"', "")


def test_training_is_a_factor_of_the_effects() -> None:
    (task,) = factor_effects(build_report(RECORDS))
    effects = {f.factor: f for f in task.ranked}
    assert {lv.level: lv.best for lv in effects["training"].levels} == {
        "frozen": 0.80,
        "fine-tuned": 0.90,
        "linear head": 0.82,
    }
    assert abs(effects["training"].effect - 0.10) < 1e-9
    assert {lv.level for lv in effects["freeze"].levels} == {"all", "none", "stage5"}


def test_a_study_without_fine_tuning_keeps_its_columns() -> None:
    rep = build_report([_record("lite0", 0.8), _record("resnet18", 0.7)])
    assert "training" not in rep.factors
    assert "training" not in render(rep, "md")
