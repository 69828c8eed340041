"""The dataset and store commands through click's CliRunner: exit codes and exact messages."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore import open_store


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_every_command_has_help_with_an_example():
    for command in (
        ["datasets", "add"],
        ["datasets", "list"],
        ["datasets", "show"],
        ["ls"],
        ["info"],
        ["verify"],
        ["rm"],
        ["gc"],
    ):
        result = run(*command, "--help")
        assert result.exit_code == 0, command
        assert "Example:" in result.output, command


def test_datasets_add_list_show(image_folder, tmp_path):
    store = str(tmp_path / "s.zarr")
    result = run("datasets", "add", "tiny", str(image_folder), "--store", store)
    assert result.exit_code == 0
    assert result.output.startswith("dataset tiny: 18 images, 3 classes (test 6, train 12)\n")
    listed = json.loads(run("datasets", "list", "--store", store, "--json").output)
    assert [(d["name"], d["n"]) for d in listed] == [("tiny", 18)]
    shown = json.loads(run("datasets", "show", "tiny", "--store", store, "--json").output)
    assert shown["classes"] == ["cat", "dog", "fox"]


def test_env_var_selects_the_store(image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("FEATSTORE_STORE", str(tmp_path / "env.zarr"))
    assert run("datasets", "add", "tiny", str(image_folder)).exit_code == 0
    assert open_store(str(tmp_path / "env.zarr"), mode="r").list_datasets()[0]["name"] == "tiny"


def test_bad_image_exact_error_and_store_unchanged(image_folder, tmp_path):
    store = str(tmp_path / "s.zarr")
    bad = image_folder / "test/fox/fox_test_1.jpg"
    bad.write_bytes(b"GIF89a broken")
    result = CliRunner().invoke(
        cli, ["datasets", "add", "tiny", str(image_folder), "--store", store]
    )
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {bad} is not a readable image (")
    assert result.output.rstrip().endswith(
        "fix or remove the file; or pass --skip-bad to register the other images"
    )
    assert not (tmp_path / "s.zarr").exists()  # a refused source creates no store
    ok = run("datasets", "add", "tiny", str(image_folder), "--store", store, "--skip-bad", "--json")
    assert json.loads(ok.output)["skipped"][0]["path"] == str(bad)


def test_unknown_dataset_and_missing_store(tmp_path):
    store = str(tmp_path / "s.zarr")
    result = CliRunner().invoke(cli, ["datasets", "show", "nope", "--store", store])
    assert result.exit_code == 1
    assert (
        result.output
        == f"Error: no featstore store at {store}; check --store (or FEATSTORE_STORE), or create "
        "one with a command that registers data (featstore datasets add NAME SOURCE, or featstore "
        "sweep SPEC); in Python open_store(url, mode='a')\n"
    )
    open_store(store)
    result = CliRunner().invoke(cli, ["datasets", "show", "nope", "--store", store])
    assert result.output == (
        f"Error: no dataset 'nope' in store {store} (registered: none yet); "
        "register it with `featstore datasets add NAME SOURCE`\n"
    )


def test_ls_info_verify_rm_gc(tmp_path):
    url = str(tmp_path / "s.zarr")
    store = open_store(url)
    entry = store.create_entry(
        "feat-one",
        {
            "kind": "features",
            "model_name": "net",
            "layer": "fc7",
            "pooling": "avg",
            "view": "plain",
        },
        (6, 4),
        chunk_rows=2,
    )
    for i in range(3):
        entry.write_chunk(i, np.full((2, 4), i))
    half = store.create_entry("feat-two", {"kind": "features"}, (6, 4), chunk_rows=2)
    half.write_chunk(0, np.ones((2, 4)))

    listing = json.loads(run("ls", "--store", url, "--json").output)
    status = {e["key"]: (e["complete"], e["chunks_done"]) for e in listing["entries"]}
    assert status == {"feat-one": (True, 3), "feat-two": (False, 1)}
    text = run("ls", "--store", url).output
    assert "feat-one" in text
    assert "complete" in text
    assert "1/3 chunks" in text

    info = json.loads(run("info", "feat-one", "--store", url, "--json").output)
    assert info["layer"] == "fc7"
    assert info["missing_chunks"] == []

    assert run("verify", "--store", url).exit_code == 0
    entry._write_rows(2, 4, np.zeros((2, 4), dtype="float16"))  # tamper behind the marker
    damaged = CliRunner().invoke(cli, ["verify", "--store", url])
    assert damaged.exit_code == 1
    assert "feat-one: DAMAGED chunks [1] (checksum mismatch or unreadable)" in damaged.output

    missing = CliRunner().invoke(cli, ["rm", "feat-nope", "--store", url])
    assert missing.exit_code == 1
    assert "no feature entry 'feat-nope'" in missing.output
    assert run("rm", "feat-one", "--store", url).output == "removed feat-one\n"
    store.create_entry("feat-empty", {}, (4, 2), chunk_rows=2)
    gc = json.loads(run("gc", "--store", url, "--older-than", "-1", "--json").output)
    assert any(p.endswith("feat-empty") for p in gc["removed"])
    assert not any(p.endswith("feat-two") for p in gc["removed"])


def test_datasets_add_takes_retrieval_sources(tmp_path):
    """`scheme:PATH` sources go through the retrieval loaders (Holidays naming here)."""
    from conftest import make_image

    folder = tmp_path / "holidays"
    for number in (100000, 100001, 100002, 100100, 100101):
        make_image(folder / f"{number}.jpg", seed=number)
    store = str(tmp_path / "s.zarr")
    result = run("datasets", "add", "hol", f"holidays:{folder}", "--store", store, "--json")
    summary = json.loads(result.output)
    assert summary["n"] == 5
    dataset = open_store(store, mode="r").get_dataset("hol")
    retrieval = dataset.extra["retrieval"]
    assert len(retrieval["queries"]) == 2  # 100000 and 100100 lead their groups
    first = retrieval["queries"][0]
    assert sorted(dataset.ids[i] for i in retrieval["gnd"][0]["positives"]) == ["100001", "100002"]
    assert dataset.ids[first] == "100000"
