"""`featstore report`: the findings in --json and Markdown, ImageNet accuracies from the spec
and --imagenet-top1, bad values refused in words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.errors import SpecError
from featstore.evaluate.results import save_result
from featstore.report.synthetic import synthetic_records
from featstore.store import open_store
from featstore.sweep.spec import parse_spec


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    store = open_store(str(tmp_path / "f.zarr"))
    for r in synthetic_records(datasets=("flowers",), networks=("efficientnet_lite0", "mynet")):
        save_result(store, r)
    return store.url


def _report(*args: str):
    return CliRunner().invoke(cli, ["report", *args])


def test_json_carries_the_findings_with_the_given_accuracy(store_url: str) -> None:
    res = _report("--store", store_url, "--json", "--imagenet-top1", "mynet=80")
    assert res.exit_code == 0, res.output
    f = json.loads(res.output)["findings"]
    assert f["factor_ranking"][0]["factor"] == "layer"
    (best,) = f["best_per_task"]
    assert best["setting"]["network"] == "mynet"
    assert best["setting"]["layer"] == "stage6"
    (arch,) = f["architecture_vs_transfer"]
    assert {p["network"]: p["imagenet_top1"] for p in arch["points"]} == {
        "efficientnet_lite0": 75.1,
        "mynet": 80.0,
    }
    assert arch["n"] == 2
    assert arch["pearson_ci"] is None


def test_markdown_opens_with_the_findings(store_url: str) -> None:
    res = _report("--store", store_url)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("## Findings")
    assert res.output.index("Best setting per task") < res.output.index("| setting |")


@pytest.mark.parametrize("value", ["mynet", "mynet=abc", "mynet=120", "mynet=0.8", "=70"])
def test_a_bad_accuracy_is_refused_in_words(store_url: str, value: str) -> None:
    res = _report("--store", store_url, "--imagenet-top1", value)
    assert res.exit_code == 2
    assert "is not NETWORK=ACC with ACC the top-1 accuracy in %" in res.output
    assert "Traceback" not in res.output


def test_a_spec_gives_and_checks_imagenet_accuracy() -> None:
    raw = {
        "datasets": ["flowers"],
        "networks": [{"name": "mynet", "layers": ["fc"], "imagenet_top1": 71.5}],
        "baseline": {"layer": "fc"},
    }
    assert parse_spec(raw).imagenet_top1() == {"mynet": 71.5}
    for bad in (0.715, "high", True):  # a fraction is refused: the value is in %
        raw["networks"][0]["imagenet_top1"] = bad
        with pytest.raises(SpecError, match=r"networks\[0\].imagenet_top1 must be the ImageNet"):
            parse_spec(raw)
