"""store.results(): one row per record, and `featstore report --format csv` agrees cell by cell."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

import featstore

SPEC = """\
name: api-table
datasets:
  - name: digits40
    source: builtin:digits
    subset: 40
    tasks: [classify, transferability]
networks:
  - name: efficientnet_lite0
    layers: [stage3, stage4]
pooling: [avg]
views: [plain]
transforms: ["l2", "pca=4,l2"]
classifiers: [svm]
estimators: [logme, h_score]
baseline: {layer: stage4, pooling: avg, transform: l2}
seed: 0
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("table")
    spec = root / "sweep.yaml"
    spec.write_text(SPEC)
    url = str(root / "s.zarr")
    with featstore.open(url, create=True) as store:
        summary = featstore.run_sweep(store, spec, workers=1)
        assert not summary["failed"]
        # a record of another run on the same dataset: in the store's table, not the sweep's
        featstore.evaluate_features(
            store, "digits40", "efficientnet_lite0", "stage3", transform="power=0.5,l2", cv=2
        )
    return url, spec


def _report_csv(url: str, *args: str) -> list[dict[str, str]]:
    out = CliRunner().invoke(cli, ["report", "--format", "csv", "--store", url, *args])
    assert out.exit_code == 0, out.output
    return list(csv.DictReader(io.StringIO(out.stdout)))


@pytest.mark.parametrize("scoped", [True, False], ids=["sweep", "store"])
def test_the_table_equals_the_report_csv_cell_by_cell(
    swept: tuple[str, Path], scoped: bool
) -> None:
    url, spec = swept
    store = featstore.open(url, mode="r")
    table = store.results(sweep=spec) if scoped else store.results()
    lines = _report_csv(url, *(["--spec", str(spec)] if scoped else []))
    assert lines
    assert len(table) > 0
    factors = ["network", "layer", "pooling", "view", "transform"]
    checked = 0
    for line in lines:
        rows = table[(table["dataset"] == line["dataset"]) & (table["task"] == line["task"])]
        for name in factors:
            rows = rows[rows[name] == line[name]]
        if line["task"] == "transferability":  # one CSV line per estimator of a setting
            values = rows[line["metric"]]
        else:
            rows = rows[(rows["classifier"] == line["classifier"])]
            assert set(rows["metric"]) == {line["metric"]}
            values = rows["score"]
        assert len(values) >= 1, line
        assert f"{values.mean():.6f}" == line["score"], line
        checked += 1
    # every record's cell is a line of the report
    assert checked == len(lines)
    cells = {
        (r.dataset, r.task, r.network, r.layer, r.pooling, r.view, r.transform, r.classifier)
        for r in table.itertuples()
        if r.task != "transferability"
    }
    reported = {
        (x["dataset"], x["task"], *(x[k] for k in factors), x["classifier"])
        for x in lines
        if x["task"] != "transferability"
    }
    assert cells == reported
    if scoped:  # the other run's record belongs to the store, not to the sweep
        assert "power=0.5,l2" not in set(table["transform"])
        assert len(table) == 2 * 2 * 2  # 2 layers x 2 transforms x (classify, transferability)
    else:
        assert "power=0.5,l2" in set(table["transform"])
    store.close()


def test_columns_hold_factors_metrics_choices_and_the_key(swept: tuple[str, Path]) -> None:
    url, spec = swept
    store = featstore.open(url, mode="r")
    table = store.results(sweep=spec, task="classify", layer="stage4")
    assert list(table.columns[:11]) == [
        "dataset",
        "task",
        "network",
        "weights",
        "layer",
        "pooling",
        "view",
        "transform",
        "classifier",
        "metric",
        "score",
    ]
    assert set(table["layer"]) == {"stage4"}
    assert set(table["task"]) == {"classify"}
    assert len(table) == 2
    assert {"accuracy", "mean_class_accuracy", "chosen.C", "key", "seed"} <= set(table.columns)
    assert all(k.startswith("res-") for k in table["key"])
    assert (table["score"] == table["accuracy"]).all()
    with pytest.raises(featstore.FeatstoreError, match="cannot be filtered by colour"):
        store.results(colour="red")
    with pytest.raises(featstore.FeatstoreError, match="path of the sweep's YAML spec"):
        store.results(sweep="api-table")
    store.close()


def test_a_second_sweep_is_all_lookups(swept: tuple[str, Path]) -> None:
    url, spec = swept
    with featstore.open(url) as store:
        again = store.sweep(spec)
    assert again["forward_batches"] == 0
    assert not again["failed"]
