"""`featstore finetune`: per-epoch progress, the named result, a lookup the second time,
and one-line errors for bad requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from featstore.cli.main import cli
from tiny_nets import NET, make_images

from featstore.datasets import dataset_from_source
from featstore.store import open_store

HERE = Path(__file__).resolve().parent


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))
    monkeypatch.syspath_prepend(str(HERE))
    url = str(tmp_path / "s.zarr")
    open_store(url).put_dataset(dataset_from_source("tiny", str(make_images(tmp_path / "imgs"))))
    return url


def test_finetune_cli_trains_then_finds_the_run(store_url: str) -> None:
    args = ["finetune", "--store", store_url, "-d", "tiny", "-m", NET, "--name", "ft",
            "--epochs", "2", "--batch-size", "8", "--freeze", "conv1"]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "epoch 1/2: train loss " in first.output
    assert "epoch 2/2: " in first.output
    assert "ft: trained; run ft-" in first.output
    assert "networks: ft (extract with -m ft)" in first.output
    again = CliRunner().invoke(cli, [*args, "--json"])
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["trained"] is False
    assert data["recipe"]["freeze"] == "conv1"
    extracted = CliRunner().invoke(
        cli, ["extract", "--store", store_url, "-d", "tiny", "-m", "ft", "-l", "flat"]
    )
    assert extracted.exit_code == 0, extracted.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--freeze", "conv9"], "Error: tiny_nets:cnn has no layer 'conv9'."),
        (["--schedule", "linear"], "Error: unknown learning-rate schedule 'linear'"),
        (
            ["--name", "resnet18"],
            "Error: 'resnet18' is a registered network; give the fine-tuned one another name",
        ),
        (["--name", "a/b"], "Error: network name 'a/b' is not valid in a store"),
        (
            ["--train", "head", "--freeze", "conv1"],
            "Error: fine-tuning recipe: train 'head' freezes every layer already",
        ),
    ],
)
def test_finetune_cli_refuses_in_one_line(store_url: str, extra: list[str], message: str) -> None:
    args = [
        "finetune",
        "--store",
        store_url,
        "-d",
        "tiny",
        "-m",
        NET,
        "--name",
        "ft",
        "--epochs",
        "1",
    ]
    result = CliRunner().invoke(cli, [*args, *extra])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
