"""Names do not hide results: the same images under a second name find the first name's
records (same result keys) and report them under the name asked for."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from featstore.cli.main import cli
from test_sweep_run import FakeExtractor, _dataset

from featstore.evaluate.results import collect_records, find_results
from featstore.store import open_store
from featstore.sweep import plan as plan_mod
from featstore.sweep import run as run_mod
from featstore.sweep.plan import factor_planner


def _spec(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}-sweep\ndatasets: [{{name: {name}, tasks: [classify]}}]\n"
        "networks: [{name: netA, layers: [l1, l3]}]\npooling: [avg]\ntransforms: [l2]\n"
        "baseline: {layer: l1}\n"
    )
    return path


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    store = open_store(str(tmp_path / "names.zarr"))
    first = _dataset()
    store.put_dataset(first)
    store.put_dataset(dataclasses.replace(first, name="toy2"))  # the same images, labels, splits
    monkeypatch.setattr(plan_mod, "extract_planner", factor_planner)  # netA: not in the registry
    monkeypatch.setattr(run_mod, "_call_extract", FakeExtractor())
    return store.url


def _table(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("| S")]


def test_a_second_name_shows_the_cached_numbers_under_its_own_name(
    tmp_path: Path, store_url: str
) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["sweep", str(_spec(tmp_path, "toy")), "--store", store_url])
    assert first.exit_code == 0, first.output
    assert "2 evaluated, 0 cached" in first.output
    second = runner.invoke(cli, ["sweep", str(_spec(tmp_path, "toy2")), "--store", store_url])
    assert second.exit_code == 0, second.output
    assert "0 evaluated, 2 cached" in second.output
    rows = _table(second.output)
    assert len(rows) == 2
    assert rows == _table(first.output)
    assert "toy2 classify (accuracy)" in second.output
    assert "| toy classify" not in second.output
    assert " toy classify" not in second.output

    rep = runner.invoke(
        cli, ["report", "--store", store_url, "--spec", str(_spec(tmp_path, "toy2")), "--json"]
    )
    assert rep.exit_code == 0, rep.output
    data = json.loads(rep.output)
    assert data["columns"] == ["toy2 classify (accuracy)"]
    assert len(data["rows"]) == 2
    assert all(r["scores"]["toy2 classify (accuracy)"] is not None for r in data["rows"])
    by_name = runner.invoke(cli, ["report", "--store", store_url, "-d", "toy2", "--json"])
    assert json.loads(by_name.output)["columns"] == ["toy2 classify (accuracy)"]

    store = open_store(store_url, mode="r")
    assert {r["dataset_name"] for r in collect_records(store, datasets=["toy2"])} == {"toy2"}
    assert len(find_results(store, dataset="toy2")) == 2
    assert {r["dataset_name"] for r in find_results(store, dataset="toy")} == {"toy"}
