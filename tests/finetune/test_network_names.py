"""One name, one network: ``models add`` and ``finetune`` share the store's network names,
and ``models named`` lists both kinds (a fine-tuned one with its parent and epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from featstore.cli.main import cli
from tiny_nets import NET, cnn, make_images

from featstore.datasets import dataset_from_source
from featstore.errors import SpecError
from featstore.finetune import finetune
from featstore.store import open_store
from featstore.store import trained as nets

HERE = Path(__file__).resolve().parent


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))
    monkeypatch.syspath_prepend(str(HERE))
    url = str(tmp_path / "s.zarr")
    store = open_store(url)
    store.put_dataset(dataset_from_source("tiny", str(make_images(tmp_path / "imgs"))))
    finetune(store, "tiny", NET, "ft", epochs=1, batch_size=8, freeze="bn1")
    return url


def _weights(tmp_path: Path) -> str:
    path = tmp_path / "team.pth"
    torch.save(cnn()[0].state_dict(), path)
    return str(path)


def test_models_add_and_finetune_refuse_each_others_names(store_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    weights = _weights(tmp_path)
    taken = runner.invoke(
        cli, ["models", "add", "ft", NET, "--weights", weights, "--store", store_url]
    )
    assert taken.exit_code == 1, taken.output
    assert "Error: 'ft' is the name of a fine-tuned network in store" in taken.output
    replace = runner.invoke(
        cli, ["models", "add", "ft", NET, "--weights", weights, "--replace", "--store", store_url]
    )
    assert replace.exit_code == 1
    assert "fine-tuned network" in replace.output

    added = runner.invoke(
        cli, ["models", "add", "team", NET, "--weights", weights, "--store", store_url]
    )
    assert added.exit_code == 0, added.output
    args = ["finetune", "--store", store_url, "-d", "tiny", "-m", NET, "--name", "team",
            "--epochs", "1", "--batch-size", "8"]  # fmt: skip
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 1, refused.output
    assert "Error: 'team' is the name of a network added to store" in refused.output
    assert "Traceback" not in refused.output
    store = open_store(store_url, mode="r")
    assert "team" not in nets.list_networks(store)
    # the check sits where names are written, whichever caller writes them
    record = nets.get_network(store, "ft")
    with pytest.raises(SpecError, match="added to store"):
        nets.put_network(
            open_store(store_url), nets.NetworkRecord(**{**record.__dict__, "name": "team"})
        )
    with pytest.raises(SpecError, match="added to store"):
        nets.put_network(
            open_store(store_url), nets.NetworkRecord(**{**record.__dict__, "name": "team@epoch1"})
        )


def test_models_named_lists_added_and_fine_tuned_networks(store_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    assert (
        runner.invoke(
            cli,
            ["models", "add", "team", NET, "--weights", _weights(tmp_path), "--store", store_url],
        ).exit_code
        == 0
    )
    res = runner.invoke(cli, ["models", "named", "--store", store_url, "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert rows["team"]["kind"] == "added"
    assert rows["team"]["arch"] == NET
    ft = rows["ft"]
    assert ft["kind"] == "fine-tuned"
    assert ft["arch"] == NET
    assert ft["epoch"] == 1
    assert ft["dataset"] == "tiny"
    assert ft["recipe"]["freeze"] == "bn1"
    assert ft["parent"]["weights_sha256"] == rows["team"]["weights_sha256"]  # same weights
    text = runner.invoke(cli, ["models", "named", "--store", store_url])
    assert text.exit_code == 0, text.output
    line = next(ln for ln in text.output.splitlines() if ln.startswith("ft "))
    assert "fine-tuned" in line
    assert "fine-tuned on tiny, epoch 1 (best), freeze bn1" in line
    assert any(ln.startswith("team ") and " added " in ln for ln in text.output.splitlines())
