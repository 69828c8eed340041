"""`featstore evaluate --task retrieve` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import make_image
from eval_helpers import HOLIDAY_FEATURES, put_features
from featstore.cli.main import cli

from featstore.datasets.retrieval import load_holidays
from featstore.store import open_store


def _store(tmp_path: Path) -> str:
    folder = tmp_path / "hol"
    for i, number in enumerate([100000, 100001, 100002, 100100, 100101, 100200]):
        make_image(folder / f"{number}.jpg", seed=60 + i)
    url = str(tmp_path / "s.zarr")
    store = open_store(url)
    ds = load_holidays("hol", str(folder))
    store.put_dataset(ds)
    put_features(store, ds, HOLIDAY_FEATURES)
    patches = np.stack([HOLIDAY_FEATURES, HOLIDAY_FEATURES[[0, 0, 0, 3, 3, 5]]], axis=1)
    put_features(store, ds, patches, view="crops:1x1,2x2")
    return url


def test_evaluate_retrieve_prints_a_table(tmp_path: Path) -> None:
    url = _store(tmp_path)
    args = ["evaluate", "--task", "retrieve", "-d", "hol", "-m", "toy", "-l", "fc", "--store", url]
    result = CliRunner().invoke(cli, [*args, "--whiten", "none"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        lines[0] == f"hol: task retrieve, global, transform l2, then l2 (no whitening); store {url}"
    )
    assert lines[1].split()[:4] == ["setting", "dim", "mAP", "P@1"]
    assert lines[3].split()[:3] == [
        "fc",
        "3",
        "0.8542",
    ]  # (0.70833 + 1) / 2, worked out in test_retrieval_eval
    result = CliRunner().invoke(cli, [*args, "--method", "subpatch", "--whiten", "none", "--json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.output)
    assert record["classifier"]["name"] == "subpatch"
    assert record["metrics"]["mAP"] == 1.0
    assert record["factors"]["view"] == "crops:1x1,2x2"


def test_the_retrieval_header_shows_the_whitening_that_ran(tmp_path: Path) -> None:
    url = _store(tmp_path)
    args = ["evaluate", "--task", "retrieve", "-d", "hol", "-m", "toy", "-l", "fc", "--store", url]
    result = CliRunner().invoke(cli, [*args, "--whiten-dim", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "hol: task retrieve, global, transform l2, then l2,pca=2:whiten,l2 "
        f"(whitening learned on the 6 database vectors); store {url}"
    )
    assert lines[3].split()[:2] == ["fc", "2"]  # the dim column agrees


def test_evaluate_retrieve_errors_are_clean(tmp_path: Path) -> None:
    url = _store(tmp_path)
    args = ["evaluate", "--task", "retrieve", "-d", "hol", "-m", "toy", "-l", "fc", "--store", url]
    result = CliRunner().invoke(cli, [*args, "--method", "subpatch", "--index", "ivfpq"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: sub-patch matching compares all patches exhaustively; use index='flat'\n"
    )
    result = CliRunner().invoke(cli, [*args, "--whiten", "nosuchset"])
    assert result.exit_code == 1
    assert "nosuchset" in result.output
    assert open_store(url).result_keys() == []
