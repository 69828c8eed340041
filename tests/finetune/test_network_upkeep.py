"""Stored networks in the store commands: `ls` lists them, `verify` proves their weights
(and `--repair` says what it removes), `gc` frees only weights nothing needs, `models rm`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from featstore.cli.main import cli
from tiny_nets import NET, make_images

from featstore.datasets import dataset_from_source
from featstore.finetune import finetune
from featstore.store import open_store
from featstore.store import trained as nets

HERE = Path(__file__).resolve().parent
FAST = {"epochs": 2, "batch_size": 8}


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))
    monkeypatch.syspath_prepend(str(HERE))
    url = str(tmp_path / "s.zarr")
    open_store(url).put_dataset(dataset_from_source("tiny", str(make_images(tmp_path / "imgs"))))
    return url


def run(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def _blob_path(store_url: str, name: str) -> Path:
    rec = nets.get_network(open_store(store_url), name)
    return Path(store_url) / "trained" / "blobs" / f"{rec.blob}.safetensors"


def test_ls_lists_fine_tuned_networks(store_url: str) -> None:
    finetune(store_url, "tiny", NET, "tiny-ft", freeze="conv1", **FAST)
    text = run("ls", "--store", store_url).output
    line = next(ln for ln in text.splitlines() if ln.startswith("tiny-ft "))
    assert NET in line
    assert "tiny" in line
    assert "conv1" in line
    assert "sha256:" in line
    data = json.loads(run("ls", "--store", store_url, "--json").output)
    (row,) = data["networks"]
    assert row["name"] == "tiny-ft"
    assert row["parent"] == NET
    assert row["bytes"] > 0


def test_verify_finds_a_damaged_blob_and_repair_removes_what_needs_it(store_url: str) -> None:
    finetune(store_url, "tiny", NET, "tiny-ft", **FAST)
    clean = run("verify", "--store", store_url).output
    assert "1 fine-tuned networks, 1 runs, " in clean
    assert "0 damaged" in clean.splitlines()[-1]

    blob = _blob_path(store_url, "tiny-ft")
    payload = bytearray(blob.read_bytes())
    payload[-1] ^= 0xFF
    blob.write_bytes(bytes(payload))
    found = run("verify", "--store", store_url, code=1).output
    assert "network tiny-ft: DAMAGED: weights blob " in found
    assert "is damaged" in found
    assert "`featstore verify --repair` removes them" in found

    fixed = run("verify", "--repair", "--store", store_url).output
    assert f"repair: blob {blob.stem[:12]}: removed (its bytes do not hash" in fixed
    assert "repair: network tiny-ft: removed (its record or weights are damaged" in fixed
    assert "repair: run ft-" in fixed
    assert not blob.exists()
    assert nets.list_networks(open_store(store_url)) == []
    run("verify", "--store", store_url)
    again = finetune(store_url, "tiny", NET, "tiny-ft", **FAST)  # made anew, the same weights
    assert again["trained"] is True
    assert _blob_path(store_url, "tiny-ft") == blob


def test_a_damaged_name_is_repaired_from_its_run_without_training(store_url: str) -> None:
    finetune(store_url, "tiny", NET, "tiny-ft", **FAST)
    record = Path(store_url) / "trained" / "names" / "tiny-ft.json"
    record.write_text("{not json")
    assert "DAMAGED" in run("ls", "--store", store_url).output
    found = run("verify", "--store", store_url, code=1).output
    assert "network tiny-ft: DAMAGED: network 'tiny-ft' cannot be read" in found
    fixed = run("verify", "--repair", "--store", store_url).output
    assert "repair: network tiny-ft: removed" in fixed
    assert "repair: run" not in fixed
    assert finetune(store_url, "tiny", NET, "tiny-ft", **FAST)["trained"] is False


def test_gc_frees_only_weights_that_nothing_needs(store_url: str) -> None:
    store = open_store(store_url)
    finetune(store, "tiny", NET, "tiny-ft", keep_every=1, **FAST)
    orphan = nets.put_blob(store, b"weights nothing names")
    blobs = lambda: {p.stem for p in (Path(store_url) / "trained" / "blobs").glob("*.safetensors")}  # noqa: E731
    needed = blobs() - {orphan}
    out = run("gc", "--older-than", "0", "--store", store_url).output
    assert orphan[:12] in out
    assert blobs() == needed

    rm = run("models", "rm", "tiny-ft@epoch1", "--store", store_url).output
    assert "removed network tiny-ft@epoch1" in rm
    assert "still record them" in rm
    run("gc", "--older-than", "0", "--store", store_url)
    assert blobs() == needed  # the run still records epoch 1: asking again re-registers it
    for name in ("tiny-ft", "tiny-ft@epoch2"):
        nets.stored_network(store, name)  # whole, extractable

    rm = run("models", "rm", "tiny-ft", "--forget-run", "--store", store_url).output
    assert "removed network tiny-ft@epoch2" in rm
    assert "forgot fine-tuning run ft-" in rm
    run("gc", "--older-than", "0", "--store", store_url)
    assert blobs() == set()
    assert nets.list_networks(store) == []
    assert finetune(store, "tiny", NET, "tiny-ft", keep_every=1, **FAST)["trained"] is True


def test_models_rm_refuses_unknown_names_in_one_line(store_url: str) -> None:
    out = run("models", "rm", "nope", "--store", store_url, code=1).output
    assert out.strip().startswith("Error: store ")
    assert "has no network named 'nope'" in out
