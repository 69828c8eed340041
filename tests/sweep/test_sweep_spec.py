"""Sweep specs: the grid, the baseline, and SpecErrors that name the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from featstore.errors import SpecError
from featstore.sweep.spec import load_spec, parse_spec


def _raw(**over):
    raw = {
        "name": "t",
        "datasets": [{"name": "A", "tasks": ["classify", "transferability"]}, "B"],
        "networks": [{"name": "net", "layers": ["l1", "l2", "l3"]}],
        "pooling": ["avg", "max"],
        "views": ["plain"],
        "transforms": ["l2", "pca=4,l2"],
        "classifiers": ["svm"],
        "baseline": {"layer": "l1", "pooling": "avg", "transform": "l2"},
    }
    raw.update(over)
    return raw


def test_grid_counts_and_settings() -> None:
    spec = parse_spec(_raw())
    # A: classify 3x2x1x2x1 = 12 + transferability 12; B: classify (the default task) 12
    assert len(spec.cells()) == 36
    assert [d.tasks for d in spec.datasets] == [("classify", "transferability"), ("classify",)]
    assert spec.transforms == ("l2", "pca=4,l2")
    t = spec.settings("transferability")[0]
    assert (t.network, t.layer, t.pooling, t.view, t.transform, t.classifier) == (
        "net",
        "l1",
        "avg",
        "plain",
        "l2",
        "-",
    )
    assert spec.baseline_matches(
        {"layer": "l1", "pooling": "avg", "transform": "l2", "view": "plain"}
    )
    assert not spec.baseline_matches({"layer": "l2", "pooling": "avg", "transform": "l2"})
    assert spec.estimators == ("logme", "h_score", "gbc")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"datasets": []}, "field 'datasets' must be a non-empty list"),
        (
            {"datasets": [{"name": "A", "tasks": ["segment"]}]},
            r"datasets\[0\].tasks: unknown task 'segment'",
        ),
        ({"datasets": [{"tasks": ["classify"]}]}, r"datasets\[0\].name is required"),
        ({"networks": [{"name": "net"}]}, r"networks\[0\] \(net\) has no layers"),
        ({"pooling": ["avg", "sum"]}, "pooling 'sum' is not a stored pooling"),
        ({"views": ["mirror"]}, "view 'mirror' is unknown"),
        ({"transforms": ["l2", "pca=x"]}, r"transforms\[1\] 'pca=x'"),
        (
            {"classifiers": ["rbf"]},
            r"unknown classifier 'rbf'; choose from \['svm', 'logreg', 'knn'\]",
        ),
        ({"estimators": ["leep"]}, "estimators: 'leep' is not a feature-based estimator"),
        ({"baseline": None}, "field 'baseline' is required"),
        (
            {"baseline": {"layer": "l9"}},
            r"baseline.layer = 'l9' is not one of the sweep's values \['l1', 'l2', 'l3'\]",
        ),
        ({"baseline": {"depth": 3}}, r"unknown field\(s\) \['depth'\] in baseline"),
        ({"layer": ["l1"]}, r"unknown field\(s\) \['layer'\] in the top level"),
        ({"pooling": ["avg", "avg"]}, r"field 'pooling' lists \['avg'\] more than once"),
        ({"seed": "zero"}, "field 'seed' must be an integer"),
    ],
)
def test_bad_fields_are_named(override, message) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(_raw(**override))


def test_load_spec_from_yaml_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: y\ndatasets: [{name: D, source: imgs}]\nnetworks: [n]\nlayers: [a, b]\n"
        "transforms: [none, l2]\nbaseline: {layer: a, transform: none}\n"
    )
    (tmp_path / "imgs").mkdir()
    spec = load_spec(path)
    assert spec.name == "y"
    assert spec.networks[0].layers == ("a", "b")
    assert spec.datasets[0].source == str(
        (tmp_path / "imgs").resolve()
    )  # relative to the spec file
    assert spec.transforms == ("none", "l2")
    assert len(spec.cells()) == 4
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="is not valid YAML"):
        load_spec(path)
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
