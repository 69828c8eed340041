"""Reports from result records: table shape, best marks, relative error reduction, tau, CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.evaluate.results import build_record, make_result_key, save_result
from featstore.report import build_report, collect_records, parse_baseline, to_csv, to_markdown
from featstore.store import open_store


def _put(
    store,
    dataset: str,
    task: str,
    layer: str,
    pooling: str,
    metrics: dict,
    transform: str = "l2",
    classifier: str = "svm",
    view: str = "plain",
) -> None:
    features = [f"feat-{dataset}-{layer}-{pooling}-{view}"]
    clf = {"name": classifier} if task == "classify" else {"name": "estimators"}
    key = make_result_key(features, transform, task, clf, {}, 0)
    save_result(
        store,
        build_record(
            key=key,
            task=task,
            dataset_id=f"{dataset}-0123",
            dataset_name=dataset,
            features=features,
            factors={"model": "toy", "layer": layer, "pooling": pooling, "view": view},
            transform=transform,
            classifier=clf,
            protocol={},
            seed=0,
            metrics=metrics,
        ),
    )


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(str(tmp_path / "r.zarr"))
    # accuracies by hand: baseline (l1, avg) = 0.80 on A and 0.60 on B
    _put(s, "A", "classify", "l1", "avg", {"accuracy": 0.80, "mean_class_accuracy": 0.7})
    _put(s, "A", "classify", "l2", "avg", {"accuracy": 0.90, "mean_class_accuracy": 0.8})
    _put(s, "A", "classify", "l3", "avg", {"accuracy": 0.70, "mean_class_accuracy": 0.6})
    _put(s, "B", "classify", "l1", "avg", {"accuracy": 0.60})
    _put(s, "B", "classify", "l2", "avg", {"accuracy": 0.50})
    _put(s, "B", "classify", "l3", "avg", {"accuracy": 0.80})
    # estimators on A: logme orders like the SVM (l2 > l1 > l3), h_score reverses it
    _put(s, "A", "transferability", "l1", "avg", {"logme": 2.0, "h_score": 2.0})
    _put(s, "A", "transferability", "l2", "avg", {"logme": 3.0, "h_score": 1.0})
    _put(s, "A", "transferability", "l3", "avg", {"logme": 1.0, "h_score": 3.0})
    return s


def test_table_shape_best_and_relative_error_reduction(store) -> None:
    rep = build_report(collect_records(store), baseline={"layer": "l1"})
    assert [r.setting["layer"] for r in rep.rows] == ["l1", "l2", "l3"]
    assert [c.label for c in rep.columns] == ["A classify (accuracy)", "B classify (accuracy)"]
    a, b = rep.columns
    assert [a in r.best for r in rep.rows] == [False, True, False]
    assert [b in r.best for r in rep.rows] == [False, False, True]
    assert [r.baseline for r in rep.rows] == [True, False, False]
    # A: err_base 0.2; l2 err 0.1 -> +50%; l3 err 0.3 -> -50%.  B: err_base 0.4; l3 err 0.2 -> +50%
    assert rep.rows[1].rer[a] == pytest.approx(0.5)
    assert rep.rows[2].rer[a] == pytest.approx(-0.5)
    assert rep.rows[2].rer[b] == pytest.approx(0.5)
    assert rep.rows[1].rer[b] == pytest.approx(-0.25)
    md = to_markdown(rep)
    assert "**0.9000** (+50.0%)" in md
    assert "S1 (baseline)" in md
    assert (
        "| S3 | toy | l3 | avg | plain | l2 | svm | 0.7000 (-50.0%) | **0.8000** (+50.0%) |" in md
    )


def test_estimator_rankings_beside_svm_with_kendall_tau(store) -> None:
    rep = build_report(collect_records(store))
    (t,) = rep.transfer
    assert t["dataset"] == "A"
    assert t["estimators"] == ["h_score", "logme"]
    assert t["kendall_tau"]["logme"] == pytest.approx(1.0)
    assert t["kendall_tau"]["h_score"] == pytest.approx(-1.0)
    ranks = {row["setting"]["layer"]: row["ranks"] for row in t["rows"]}
    assert ranks["l2"] == {"svm": 1, "logme": 1, "h_score": 3}
    assert ranks["l3"] == {"svm": 3, "logme": 3, "h_score": 1}
    assert (
        "Kendall's tau against the SVM ranking (3 settings): h_score: -1.000, logme: +1.000"
        in to_markdown(rep)
    )


def test_csv_has_one_line_per_cell(store) -> None:
    rows = list(
        csv.DictReader(
            io.StringIO(to_csv(build_report(collect_records(store), baseline={"layer": "l1"})))
        )
    )
    cls = [r for r in rows if r["task"] == "classify"]
    assert len(cls) == 6
    assert len([r for r in rows if r["task"] == "transferability"]) == 6
    l2a = next(r for r in cls if r["layer"] == "l2" and r["dataset"] == "A")
    assert (l2a["score"], l2a["best"], l2a["relative_error_reduction"]) == (
        "0.900000",
        "1",
        "0.500000",
    )


def test_parse_baseline_keeps_commas_inside_a_transform() -> None:
    assert parse_baseline("layer=head,transform=pca=64,l2,pooling=avg") == {
        "layer": "head",
        "transform": "pca=64,l2",
        "pooling": "avg",
    }
    with pytest.raises(ValueError, match="unknown factor"):
        parse_baseline("depth=3")


def test_cli_report_json_md_and_filters(store) -> None:
    runner = CliRunner()
    res = runner.invoke(
        cli, ["report", "--store", store.url, "--json", "--baseline", "layer=l1", "-d", "B"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["columns"] == ["B classify (accuracy)"]
    assert [
        r["relative_error_reduction"]["B classify (accuracy)"] for r in data["rows"]
    ] == pytest.approx([0.0, -0.25, 0.5])
    res = runner.invoke(
        cli, ["report", "--store", store.url, "--format", "csv", "--task", "classify"]
    )
    assert res.exit_code == 0
    assert res.output.count("\n") == 7
    res = runner.invoke(cli, ["report", "--store", store.url, "--baseline", "depth=1"])
    assert res.exit_code == 1
    assert "Error: baseline names unknown factor(s) ['depth']" in res.output


def test_cli_markdown_with_plots_writes_png_files(store, tmp_path: Path) -> None:
    out = tmp_path / "rep.md"
    res = CliRunner().invoke(
        cli, ["report", "--store", store.url, "--format", "md", "--plot", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "![layers](rep_layers.png)" in text
    assert "![heatmap](rep_heatmap.png)" in text
    for name in ("rep_layers.png", "rep_heatmap.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_retrieval_variants_are_separate_settings():
    """Two retrieval records that differ only in method/whitening must not share a cell."""
    from featstore.settings import record_setting

    base = {
        "task": "retrieve",
        "transform": "l2",
        "factors": {"model": "net", "layer": "fc7", "pooling": "avg", "view": "plain"},
    }
    glob = {**base, "classifier": {"name": "global", "index": "flat", "whiten": {"on": "database"}}}
    sub = {**base, "classifier": {"name": "subpatch", "index": "flat", "whiten": {"on": "none"}}}
    assert record_setting(glob)["classifier"] == "global flat whiten:database"
    assert record_setting(sub)["classifier"] == "subpatch flat whiten:none"
    assert record_setting(glob) != record_setting(sub)
