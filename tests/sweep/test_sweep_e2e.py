"""A real sweep end to end: extraction (random-weight squeezenet, tiny images), evaluation, report.

The first run extracts both layers and both views in one pass; the second runs no network
(forward_batches == 0) and reports the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.store import open_store


def test_sweep_extracts_once_evaluates_and_reruns_from_the_cache(
    image_folder: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "name: tiny\n"
        f"datasets: [{{name: tiny, source: {image_folder}, tasks: [classify, transferability]}}]\n"
        "networks: [{name: squeezenet1_1, weights: random, layers: [fire7, last_conv]}]\n"
        "pooling: [avg]\nviews: [plain, flipavg]\ntransforms: [l2]\nestimators: [h_score]\n"
        "baseline: {layer: fire7, view: plain}\nextract: {batch_size: 8}\n"
    )
    store = str(tmp_path / "e2e.zarr")
    runner = CliRunner()
    res = runner.invoke(cli, ["sweep", str(spec), "--store", store, "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output)
    # 2 layers x 2 views (plain, flipavg) x 2 tasks; entries: 2 layers x (plain, flip) in one pass
    assert plan["n_cells"] == 8
    assert plan["n_entries_to_extract"] == 4
    assert plan["extraction_passes"] == 1

    res = runner.invoke(cli, ["sweep", str(spec), "--store", store, "--json"])
    assert res.exit_code == 0, res.output
    first = json.loads(res.output)
    assert first["failed"] == []
    assert first["evaluated"] == 8
    assert len(first["extractions"]) == 1
    # 18 images in batches of 8 = 3 batches; plain and flip views share each forward batch
    assert first["forward_batches"] == 3
    s = open_store(store, mode="r")
    assert len(s.entry_keys()) == 4
    assert len(s.result_keys()) == 8

    res = runner.invoke(cli, ["sweep", str(spec), "--store", store, "--json"])
    second = json.loads(res.output)
    assert second["forward_batches"] == 0
    assert second["extractions"] == []
    assert second["cached_results"] == 8
    assert second["evaluated"] == 0
    assert [r["metrics"] for r in second["results"]] == [r["metrics"] for r in first["results"]]

    res = runner.invoke(cli, ["report", "--store", store, "--spec", str(spec), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert [r["setting"]["view"] for r in rep["rows"]] == ["plain", "flipavg", "plain", "flipavg"]
    assert [r["baseline"] for r in rep["rows"]] == [True, False, False, False]
    assert rep["transferability"][0]["n_compared"] == 4
