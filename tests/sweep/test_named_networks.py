"""Networks named in the store (issue 22, item 4): ``models add`` / ``-m NAME`` / ``sha256:``.

A network added under a name is computed from its recorded file, read without it, and
selected the same way by name, by ``weights: sha256:PREFIX`` and by evaluate; unknown
names, a second file under a taken name and a file that is not the named weights are
refused in words.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torchvision
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.store import open_store
from featstore.store.networks import get_network


def _weights(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    return path


def _spec(path: Path, network: str) -> Path:
    path.write_text(
        "name: named\ndatasets: [{name: tiny, tasks: [classify]}]\n"
        f"networks: [{network}]\n"
        "pooling: [avg]\nviews: [plain]\ntransforms: [l2]\nbaseline: {layer: fire7}\n"
        "extract: {batch_size: 8}\n"
    )
    return path


def test_models_add_then_name_prefix_and_evaluate_select_one_entry(
    image_folder: Path, tmp_path: Path
) -> None:
    store = str(tmp_path / "s.zarr")
    runner = CliRunner()

    def cli_run(*args: str) -> object:
        return runner.invoke(cli, [*args, "--store", store])

    assert cli_run("datasets", "add", "tiny", str(image_folder)).exit_code == 0
    team = _weights(tmp_path / "team" / "sq.pth", 0)
    res = cli_run("models", "add", "sq-team", "squeezenet1_1", "--weights", str(team))
    assert res.exit_code == 0, res.output
    net = get_network(open_store(store, mode="r"), "sq-team")
    assert net is not None
    assert net.arch == "squeezenet1_1"
    assert res.output.startswith(
        f"network sq-team: squeezenet1_1 with weights sha256:{net.weights_sha256[:16]}"
    )

    by_name = _spec(tmp_path / "a.yaml", "{name: sq-team, layers: [fire7]}")
    res = cli_run("sweep", str(by_name), "--json", "--no-report")
    assert res.exit_code == 0, res.output
    first = json.loads(res.output)
    assert first["forward_batches"] > 0
    assert first["failed"] == []

    os.remove(team)  # teammates have the name, not the file
    res = cli_run("sweep", str(by_name), "--json", "--no-report")
    again = json.loads(res.output)
    assert again["forward_batches"] == 0
    assert again["cached_results"] == 1

    prefix = f"sha256:{net.weights_sha256[:10]}"
    by_prefix = _spec(
        tmp_path / "b.yaml", f"{{name: squeezenet1_1, weights: '{prefix}', layers: [fire7]}}"
    )
    res = cli_run("sweep", str(by_prefix), "--json", "--no-report")
    assert res.exit_code == 0, res.output
    third = json.loads(res.output)
    assert third["forward_batches"] == 0
    assert third["results"][0]["metrics"] == first["results"][0]["metrics"]

    res = cli_run("evaluate", "-d", "tiny", "-m", "sq-team", "-l", "fire7", "--json")
    assert res.exit_code == 0, res.output
    (record,) = json.loads(res.output)
    assert record["factors"]["model"] == "squeezenet1_1"
    assert record["factors"]["weights_sha256"] == net.weights_sha256
    assert record["metrics"] == first["results"][0]["metrics"]

    unknown = cli_run("evaluate", "-d", "tiny", "-m", "sq-nobody", "-l", "fire7")
    assert unknown.exit_code == 1
    assert "Traceback" not in unknown.output
    assert unknown.output.startswith("Error: no cached features with model=sq-nobody")

    other = _weights(tmp_path / "other.pth", 1)
    taken = cli_run("models", "add", "sq-team", "squeezenet1_1", "--weights", str(other))
    assert taken.exit_code == 1
    assert "a network named 'sq-team' is already in the store" in taken.output
    wrong = cli_run(
        "evaluate", "-d", "tiny", "-m", "sq-team", "-l", "fire7", "--weights", str(other)
    )
    assert wrong.exit_code == 1
    assert "Traceback" not in wrong.output
    assert (
        f"are not the weights of network sq-team (sha256 {net.weights_sha256[:16]})" in wrong.output
    )
    listed = cli_run("models", "named")
    assert listed.exit_code == 0
    assert "sq-team" in listed.output
    assert "squeezenet1_1" in listed.output
