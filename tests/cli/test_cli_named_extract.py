"""`featstore extract -m NAME` of a network added with `models add` (issue 22 item 4), and
the same selection through extract, evaluate and ls (issue 22 item 1).

A tiny random-init squeezenet saved to a file is added under a name; extract computes from
it through the plan's ``_stored_network`` hook (the one used for fine-tuned names), giving
the keys of ``-m ARCH --weights FILE``; evaluate and ls find those entries by the name.
Unknown names, a file whose hash differs and a missing file are refused in one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.store import open_store
from featstore.store.networks import get_network
from tests.conftest import make_image

NAME = "sq-team"


def _weights(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    return path


def _run(url: str, *args: str):
    return CliRunner().invoke(cli, [*args, "--store", url])


def _ok(url: str, *args: str):
    result = _run(url, *args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A store with dataset tiny and network sq-team; fire7 and penultimate extracted in
    float32, fire7 again in bfloat16 (two entries differing only in compute dtype)."""
    tmp = tmp_path_factory.mktemp("named")
    for i in range(12):
        make_image(tmp / "imgs" / ("train" if i < 8 else "test") / f"c{i % 2}" / f"{i}.jpg", i)
    url = str(tmp / "s.zarr")
    _ok(url, "datasets", "add", "tiny", str(tmp / "imgs"))
    weights = _weights(tmp / "w" / "sq.pth", 0)
    _ok(url, "models", "add", NAME, "squeezenet1_1", "--weights", str(weights))
    common = ("extract", "-d", "tiny", "-m", NAME, "--device", "cpu", "--batch-size", "6")
    first = _ok(url, *common, "-l", "fire7,penultimate", "--compute-dtype", "float32", "--json")
    assert json.loads(first.output)["forward_batches"] > 0
    _ok(url, *common, "-l", "fire7", "--compute-dtype", "bfloat16")
    store = open_store(url, mode="r")
    net = get_network(store, NAME)
    assert net is not None
    keys = {}
    for info in store.entries():
        a = info.attrs
        keys[(a["layer"], a["compute_dtype"])] = info.key
    assert len(keys) == 3
    return {"url": url, "weights": weights, "net": net, "keys": keys, "tmp": tmp}


def _plan_keys(url: str, *args: str) -> dict[str, bool]:
    """Entry key -> complete, as `extract --dry-run --json` plans it."""
    result = _ok(url, "extract", "-d", "tiny", "--device", "cpu", "--dry-run", "--json", *args)
    return {e["key"]: e["complete"] for e in json.loads(result.output)["entries"]}


def test_extract_by_added_name_keys_as_arch_with_its_file(team: dict) -> None:
    url, weights, net, keys = team["url"], team["weights"], team["net"], team["keys"]
    again = _ok(url, "extract", "-d", "tiny", "-m", NAME, "-l", "fire7,penultimate",
                "--device", "cpu", "--compute-dtype", "float32", "--json")  # fmt: skip
    assert json.loads(again.output)["forward_batches"] == 0
    by_file = _plan_keys(url, "-m", "squeezenet1_1", "--weights", str(weights), "-l", "fire7",
                         "--compute-dtype", "float32")  # fmt: skip
    assert by_file == {keys[("fire7", "float32")]: True}  # one identity: the name is its file
    attrs = open_store(url, mode="r").get_entry(keys[("fire7", "float32")]).attrs
    assert attrs["model"]["name"] == "squeezenet1_1"
    assert attrs["model"]["weights_sha256"] == net.weights_sha256

    evaluated = _ok(url, "evaluate", "-d", "tiny", "-m", NAME, "-l", "fire7",
                    "--compute-dtype", "float32", "--svm-c", "1", "--json")  # fmt: skip
    (record,) = json.loads(evaluated.output)
    assert record["features"] == [keys[("fire7", "float32")]]
    assert record["factors"]["weights_sha256"] == net.weights_sha256


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown", "store {url} names sq-team (featstore models named; add one with featstore "
                    "models add NAME ARCH --weights FILE)"),
        ("other-file", "is not the weights of network sq-team (sha256 {sha})"),
        ("changed-file", "is not the weights of network sq-team (sha256 {sha})"),
        ("missing-file", "Error: computing 1 entry of network sq-team needs its weights file "
                         "(squeezenet1_1, sha256 {sha}), which is not at {path}; put the file "
                         "there or give --weights FILE (the same weights) for sq-team"),
        ("random", "Error: sq-team is a network of the store with its own weights "
                   "(squeezenet1_1, sha256 {sha}); drop --weights random for it, or name "
                   "squeezenet1_1"),
    ],
)  # fmt: skip
def test_extract_by_name_refuses_in_one_line(team: dict, case: str, message: str) -> None:
    """Each refusal when something must be computed (features.6 is not cached)."""
    url, weights, net = team["url"], Path(team["weights"]), team["net"]
    args = ["extract", "-d", "tiny", "-m", NAME, "-l", "features.6", "--device", "cpu", "--dry-run"]
    saved = team["tmp"] / "saved.pth"
    shutil.copy2(weights, saved)
    try:
        if case == "unknown":
            args[4] = "sq-nobody"
        elif case == "other-file":
            args += ["--weights", str(_weights(team["tmp"] / "other.pth", 1))]
        elif case == "changed-file":
            _weights(weights, 2)  # the file where it was added now holds other weights
        elif case == "missing-file":
            weights.unlink()
        else:
            args += ["--weights", "random"]
        result = _run(url, *args)
    finally:
        shutil.copy2(saved, weights)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith("Error: ")
    expected = message.format(sha=net.weights_sha256[:16], path=str(weights), url=url)
    assert expected in result.output, result.output


def test_extract_by_name_all_cached_needs_no_weights_file(
    team: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planning keys a named network by the identity the store recorded: with every entry
    cached, extract neither reads the file nor loads the network; a layer to compute needs
    the file, in one line naming it and the network."""
    url, weights, net = team["url"], Path(team["weights"]), team["net"]
    saved = team["tmp"] / "saved-cached.pth"
    shutil.copy2(weights, saved)

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was loaded")

    monkeypatch.setattr("featstore.extract.pipeline.load_model", no_load)
    args = ["extract", "-d", "tiny", "-m", NAME, "--device", "cpu", "--compute-dtype", "float32"]
    try:
        weights.unlink()  # a teammate's machine: the name, not the file
        cached = _run(url, *args, "-l", "fire7,penultimate", "--json")
        assert cached.exit_code == 0, cached.output
        summary = json.loads(cached.output)
        assert summary["forward_batches"] == 0
        assert summary["entries"] == 2
        assert summary["computed_chunks"] == 0
        new_layer = _run(url, *args, "-l", "fire7,features.6")
    finally:
        shutil.copy2(saved, weights)
    assert new_layer.exit_code == 1, new_layer.output
    assert new_layer.output.strip() == (
        f"Error: computing 1 entry of network {NAME} needs its weights file (squeezenet1_1, "
        f"sha256 {net.weights_sha256[:16]}), which is not at {weights}; put the file there or "
        f"give --weights FILE (the same weights) for {NAME}"
    )
    assert "Traceback" not in new_layer.output


# --- the same selection through extract, evaluate and ls ------------------------------------
AMBIGUOUS = "ambiguous"
CASES = [
    # (id, choosing args, extract finds, evaluate finds, ls lists)
    ("alias", ["-l", "penultimate"], ("penultimate", "float32"), ("penultimate", "float32"),
     {("penultimate", "float32")}),
    ("module-name", ["-l", "features"], None, ("penultimate", "float32"),
     {("penultimate", "float32")}),
    ("default-pooling", ["-l", "penultimate", "--pool", "avg"], ("penultimate", "float32"),
     ("penultimate", "float32"), {("penultimate", "float32")}),
    ("pinned-float32", ["-l", "fire7", "--compute-dtype", "float32"], ("fire7", "float32"),
     ("fire7", "float32"), {("fire7", "float32")}),
    ("pinned-bfloat16", ["-l", "fire7", "--compute-dtype", "bf16"], ("fire7", "bfloat16"),
     ("fire7", "bfloat16"), {("fire7", "bfloat16")}),
    # unpinned, two entries match: extract computes with this machine's default (CPU:
    # float32) and finds that one; evaluate refuses, listing both; ls lists both
    ("unpinned-two-match", ["-l", "fire7"], ("fire7", "float32"), AMBIGUOUS,
     {("fire7", "float32"), ("fire7", "bfloat16")}),
]  # fmt: skip


@pytest.mark.parametrize(("args", "extract", "evaluate", "listed"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_one_selection_through_extract_evaluate_and_ls(
    team: dict, args: list[str], extract, evaluate, listed
) -> None:
    url, keys = team["url"], team["keys"]
    choose = ["-d", "tiny", "-m", NAME, *args]
    if extract is not None:
        assert _plan_keys(url, *choose[2:]) == {keys[extract]: True}  # cached: nothing to compute
    result = _run(url, "evaluate", *choose, "--svm-c", "1", "--json")
    if evaluate == AMBIGUOUS:
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        line = result.output.strip()
        assert line.startswith("Error: 2 cached entries match")
        assert keys[("fire7", "float32")] in line
        assert keys[("fire7", "bfloat16")] in line
        assert "compute_dtype=bfloat16" in line
        assert "choose one with --compute-dtype" in line
    else:
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)[0]["features"] == [keys[evaluate]]
    shown = json.loads(_ok(url, "ls", "--json", *choose).output)["entries"]
    assert {e["key"] for e in shown} == {keys[k] for k in listed}
