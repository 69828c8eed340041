"""Every probe in a sweep: classifiers, few-shot, C grids and retrieval options come from the
task registry; a spec option a cell does not read is refused with the cell named."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_image
from test_sweep_run import FakeExtractor, _dataset

from featstore.datasets.retrieval import load_holidays
from featstore.errors import SpecError
from featstore.evaluate.probes.protocol import CLASSIFIERS as CLASSIFIER_NAMES
from featstore.evaluate.tasks import CLASSIFIER_OPTIONS, TASKS, reading_options
from featstore.report import build_report
from featstore.report.findings import study_findings
from featstore.store import open_store
from featstore.sweep import spec as spec_mod
from featstore.sweep.plan import factor_planner
from featstore.sweep.run import run_sweep
from featstore.sweep.spec import parse_spec
from featstore.sweep.study import study_records


def _raw(**over):
    raw = {
        "name": "probes",
        "datasets": [
            {"name": "toy", "tasks": ["classify"]},
            {"name": "hol", "tasks": ["retrieve"]},
        ],
        "networks": [{"name": "netA", "layers": ["l2", "l3"]}, {"name": "netB", "layers": ["l3"]}],
        "pooling": ["avg"],
        "transforms": ["l2"],
        "classifiers": ["svm", "logreg", "knn"],
        "baseline": {"network": "netA", "layer": "l2"},
        "options": {
            "classify": {"shots": [5, 10], "draws": 2},
            "svm": {"c_grid": [0.01, 0.1, 1, 10], "cv": 3},
            "knn": {"knn_k": [1, 3]},
            "retrieve": {"whiten": "none", "ks": [1, 5]},
        },
    }
    raw.update(over)
    return raw


def test_the_vocabulary_is_the_registry_s() -> None:
    assert tuple(TASKS) == spec_mod.TASKS
    assert spec_mod.CLASSIFIERS == tuple(CLASSIFIER_OPTIONS) == tuple(CLASSIFIER_NAMES)
    assert "c_grid" not in reading_options("classify", "knn")
    assert {"knn_k", "shots", "draws"} <= set(reading_options("classify", "knn"))
    spec = parse_spec(_raw())
    assert spec.cell_options("classify", "svm") == {
        "shots": [5, 10],
        "draws": 2,
        "c_grid": [0.01, 0.1, 1, 10],
        "cv": 3,
    }
    assert spec.cell_options("classify", "knn") == {"shots": [5, 10], "draws": 2, "knn_k": [1, 3]}
    assert spec.cell_options("retrieve", "-") == {"whiten": "none", "ks": [1, 5]}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"classify": {"c_grid": [1, 10]}},
            "options.classify.c_grid does not apply to cell toy:classify with classifier logreg",
        ),
        ({"classify": {"measure": "cka"}}, "task 'classify' takes no option 'measure'"),
        ({"classify": {"classifier": "svm"}}, "takes no option 'classifier'"),
        (
            {"svm": {"knn_k": [3]}},
            "options.svm.knn_k does not apply to cell toy:classify with classifier svm",
        ),
        ({"rbf": {"c_grid": [1]}}, "'rbf' is neither a task"),
        ({"transferability": {"estimators": ["logme"]}}, "no dataset of the sweep has task"),
    ],
)
def test_an_option_no_cell_reads_is_refused_with_the_cell_named(options, message) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        parse_spec(_raw(options=options))


def test_a_classifier_outside_the_grid_is_refused() -> None:
    with pytest.raises(SpecError, match="no cell uses classifier 'knn'"):
        parse_spec(_raw(classifiers=["svm"], options={"knn": {"knn_k": [1]}}))


def test_knn_few_shot_and_retrieval_run_end_to_end(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.zarr"))
    store.put_dataset(_dataset())
    for i, number in enumerate([100000, 100001, 100002, 100100, 100101, 100200]):
        make_image(tmp_path / "hol" / f"{number}.jpg", seed=60 + i)
    store.put_dataset(load_holidays("hol", str(tmp_path / "hol")))  # retrieval ground truth
    spec = parse_spec(_raw())
    summary = run_sweep(store, spec, extract_fn=FakeExtractor(), planner=factor_planner)
    assert summary["failed"] == [], summary["failed"]
    # 3 settings x (3 classifiers + retrieval)
    assert summary["evaluated"] == 12
    records = study_records(store, spec)
    assert len(records) == 12
    knn = [r for r in records if (r.get("classifier") or {}).get("name") == "knn"]
    assert len(knn) == 3
    assert all(r["classifier"]["k_grid"] == [1, 3] for r in knn)
    classify = [r for r in records if r["task"] == "classify"]
    assert all(r["protocol"]["few_shot"]["shots"] == [5, 10] for r in classify)
    svm = [r for r in classify if r["classifier"]["name"] == "svm"]
    assert all(r["classifier"]["C_grid"] == [0.01, 0.1, 1.0, 10.0] for r in svm)
    retrieve = [r for r in records if r["task"] == "retrieve"]
    assert len(retrieve) == 3
    assert all(r["classifier"]["whiten"]["on"] == "none" for r in retrieve)
    assert retrieve[0]["protocol"]["ks"] == [1, 5]
    findings = study_findings(build_report(records))
    factors = {f.factor for te in findings.effects for f in te.ranked}
    assert "classifier" in factors
    assert "network" in factors
