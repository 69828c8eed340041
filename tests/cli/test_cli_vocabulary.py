"""One CLI vocabulary (issue 21 item 5; issue 22 item 1 for the store commands).

extract, evaluate, ls, rm and export take the same choosing options, repeatable the same
way; a repeated option is used in full or refused, never silently replaced; the old
spellings are refused naming the new one; ls/rm/export select through the store's Catalog.
"""

from __future__ import annotations

import json

import h5py
import pytest
from click.testing import CliRunner
from eval_helpers import add_dataset, add_features, blobs, interleave_splits
from featstore.cli.main import cli

from featstore.store import open_store


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_error_line(output: str) -> str:
    """The `Error: ...` line of a usage error; the only line that says what went wrong."""
    (line,) = [ln for ln in output.splitlines() if ln.startswith("Error:")]
    return line


# --- old spellings: refused, naming the new one ------------------------------------------
@pytest.mark.parametrize(
    ("old", "message"),
    [
        (["--flip"], "Error: --flip is now --view: give --view plain,flip"),
        (["--crops", "1x1,2x2"], "Error: --crops is now --view: give --view plain,crops:1x1,2x2"),
        (["--workers", "4"], "Error: --workers is now --loader-workers (image loader processes)"),
    ],
)
def test_old_extract_spellings_are_refused_with_the_new_name(tmp_path, old, message) -> None:
    store = tmp_path / "s.zarr"
    result = invoke("extract", "--store", str(store), "-d", "x", "-m", "resnet18", *old)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert one_error_line(result.output) == message
    assert not store.exists()  # refused before any store is opened


# --- one value where one is taken; several values all used ---------------------------------
@pytest.mark.parametrize("command", ["extract", "evaluate", "ls"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-d", "a", "-d", "b"],
            "Error: Invalid value for -d/--dataset: given 2 times (a, b); a command takes one "
            "dataset: run it once for each",
        ),
        (
            ["--compute-dtype", "float32", "--compute-dtype", "bfloat16"],
            "Error: Invalid value for --compute-dtype: given 2 times (float32, bfloat16); a "
            "command takes one compute dtype: run it once for each",
        ),
        (
            ["--weights", "random", "--weights", "pretrained"],
            "Error: Invalid value for --weights: two weights for every network (random, "
            "pretrained); give one, or NET=W per network",
        ),
        (
            ["--weights", "alexnet=random"],
            "Error: Invalid value for --weights: 'alexnet=random' names network 'alexnet', which "
            "is not chosen with -m (resnet18); add it with -m or fix the name",
        ),
        (
            ["-l", ","],
            "Error: Invalid value for -l/--layer: ',' names no layer; give comma-separated names",
        ),
    ],
)
def test_a_second_value_is_refused_never_silently_kept(tmp_path, command, args, message) -> None:
    base = ["-d", "a"] if args[0] != "-d" else []
    layer = ["-l", "fc"] if command == "evaluate" and args[0] != "-l" else []
    result = invoke(
        command, "--store", str(tmp_path / "s.zarr"), *base, "-m", "resnet18", *layer, *args
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert one_error_line(result.output) == message


@pytest.mark.parametrize("command", ["extract", "evaluate", "ls", "rm", "export"])
def test_every_choosing_command_shows_the_same_flags_and_an_example(command) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
    for flag in ("-d, --dataset", "-m, --model", "-l, --layer", "--pool", "--view", "--weights",
                 "--compute-dtype", "--dtype"):  # fmt: skip
        assert flag in result.output, (command, flag)
    for gone in ("--flip", "--crops", "--workers "):
        assert gone not in result.output


def test_extract_help_names_loader_workers_and_sweep_keeps_workers() -> None:
    assert "--loader-workers" in invoke("extract", "--help").output
    assert "--workers" in invoke("sweep", "--help").output


# --- evaluate: every combination of repeated options ----------------------------------------
@pytest.fixture
def blob_store(tmp_path):
    url = str(tmp_path / "s.zarr")
    store = open_store(url)
    X, y = blobs([12, 12, 12])
    ds = add_dataset(store, "blobs", y, interleave_splits(y))
    return url, store, ds, X


def _rows(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines()[3:] if line.strip()]


def test_evaluate_repeated_model_and_view_evaluate_every_combination(blob_store) -> None:
    url, store, ds, X = blob_store
    add_features(store, ds, X, model="toynet", layer="fc")
    add_features(store, ds, 2 * X, model="othernet", layer="fc")
    add_features(store, ds, 3 * X, model="toynet", layer="fc", view="flip")
    both = invoke("evaluate", "--store", url, "-d", "blobs", "-m", "toynet", "-m", "othernet",
                  "-l", "fc", "--svm-c", "1")  # fmt: skip
    assert both.exit_code == 0, both.output
    assert _rows(both.output) == ["toynet:fc", "othernet:fc"]  # before: only othernet
    comma = invoke("evaluate", "--store", url, "-d", "blobs", "-m", "toynet,othernet", "-l", "fc",
                   "--svm-c", "1", "--json")  # fmt: skip
    assert [r["factors"]["model"] for r in json.loads(comma.output)] == ["toynet", "othernet"]
    views = invoke("evaluate", "--store", url, "-d", "blobs", "-m", "toynet", "-l", "fc",
                   "--view", "plain", "--view", "flip", "--svm-c", "1", "--json")  # fmt: skip
    assert views.exit_code == 0, views.output
    records = json.loads(views.output)
    assert [(r["setting"], r["factors"]["view"]) for r in records] == [
        ("fc@plain", "plain"),
        ("fc@flip", "flip"),
    ]


def test_evaluate_dtype_selects_the_storage_dtype(blob_store) -> None:
    url, store, ds, X = blob_store
    add_features(store, ds, X, model="toynet", layer="fc")  # stored as float32
    found = invoke("evaluate", "--store", url, "-d", "blobs", "-m", "toynet", "-l", "fc",
                   "--dtype", "float32", "--svm-c", "1")  # fmt: skip
    assert found.exit_code == 0, found.output
    missing = invoke("evaluate", "--store", url, "-d", "blobs", "-m", "toynet", "-l", "fc",
                     "--dtype", "float16", "--svm-c", "1")  # fmt: skip
    assert missing.exit_code == 1
    assert "Traceback" not in missing.output
    assert "dtype=float16" in missing.output


# --- store commands: the same options choose entries ---------------------------------------
def _ls(url: str, *args: str) -> list[dict]:
    result = invoke("ls", "--store", url, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["entries"]


def test_ls_rm_export_choose_entries_by_what_they_hold(blob_store, tmp_path) -> None:
    url, store, ds, X = blob_store
    avg = add_features(store, ds, X, layer="stage5", pooling="avg", layer_target="blocks.5")
    mx = add_features(store, ds, X, layer="stage5", pooling="max", layer_target="blocks.5")
    fc = add_features(store, ds, X, layer="fc", compute_dtype="bfloat16")
    other = add_features(store, ds, X, model="othernet", layer="fc", weights_source="file",
                         weights_sha256="ab" * 32)  # fmt: skip
    assert {e["key"] for e in _ls(url)} == {avg.key, mx.key, fc.key, other.key}

    by_layer = _ls(url, "-m", "toynet", "-l", "stage5")
    assert {e["key"] for e in by_layer} == {avg.key, mx.key}
    factors = {e["key"]: e["factors"] for e in by_layer}
    assert factors[mx.key]["pooling"] == "max"
    assert factors[mx.key]["layer_target"] == "blocks.5"
    assert factors[avg.key]["network"] == "toynet"
    assert factors[avg.key]["dataset"] == "blobs"
    assert {e["key"] for e in _ls(url, "-l", "blocks.5", "--pool", "max")} == {mx.key}
    assert {e["key"] for e in _ls(url, "--pool", "stage5=max", "--pool", "fc=avg")} == {
        mx.key, fc.key, other.key,
    }  # fmt: skip
    assert {e["key"] for e in _ls(url, "--compute-dtype", "bf16")} == {fc.key}
    assert {e["key"] for e in _ls(url, "--weights", "sha256:ababab")} == {other.key}
    assert {e["key"] for e in _ls(url, "-m", "toynet", "-m", "othernet", "-l", "fc")} == {
        fc.key, other.key,
    }  # fmt: skip
    assert _ls(url, "-d", "blobs", "--view", "flip") == []
    text = invoke("ls", "--store", url, "--view", "flip")
    assert text.exit_code == 0
    assert text.output.strip().endswith("no feature entries match --view flip")

    out = tmp_path / "x.h5"
    exported = invoke("export", str(out), "--store", url, "-l", "stage5", "--pool", "max")
    assert exported.exit_code == 0, exported.output
    with h5py.File(out, "r") as f:
        held = set()
        f.visit(held.add)
    assert any(mx.key in name for name in held)
    assert not any(avg.key in name for name in held)

    dry = invoke("rm", "--store", url, "-l", "stage5", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert sorted(dry.output.splitlines()) == sorted(
        [f"would remove {avg.key}", f"would remove {mx.key}"]
    )
    assert len(_ls(url)) == 4
    removed = invoke("rm", "--store", url, "-d", "blobs", "-l", "stage5", "--pool", "avg")
    assert removed.exit_code == 0, removed.output
    assert removed.output == f"removed {avg.key}\n"
    assert {e["key"] for e in _ls(url)} == {mx.key, fc.key, other.key}

    none = invoke("rm", "--store", url, "-l", "stage9")
    assert none.exit_code == 1
    assert "Traceback" not in none.output
    assert none.output == (
        "Error: no feature entries match -l stage9; see `featstore ls` with the same options\n"
    )
    nothing = invoke("rm", "--store", url)
    assert nothing.exit_code == 2
    assert one_error_line(nothing.output).startswith("Error: name the KEYs to remove, or choose")
    both = invoke("rm", "--store", url, mx.key, "-l", "stage5")
    assert both.exit_code == 2
    assert one_error_line(both.output) == (
        "Error: give KEYs or the options that choose entries, not both"
    )
    assert {e["key"] for e in _ls(url)} == {mx.key, fc.key, other.key}


@pytest.mark.parametrize(
    ("values", "views"),
    [
        (("plain,flip",), ("plain", "flip")),
        (("plain", "flip", "plain"), ("plain", "flip")),
        (("plain,crops:1x1,2x2,3x3", "flip"), ("plain", "crops:1x1,2x2,3x3", "flip")),
        (("crops:1x1,2x2", "3x3"), ("crops:1x1,2x2", "3x3")),  # scales join only their own value
        (("crops,2x2",), ("crops:2x2",)),
    ],
)
def test_views_split_on_commas_keeping_the_scales_of_crops(values, views) -> None:
    from featstore.cli.choose import split_views

    assert split_views(values) == views


def test_extract_weights_pretrained_is_the_default_weights(image_folder, tmp_path) -> None:
    url = str(tmp_path / "s.zarr")
    assert invoke("datasets", "add", "tiny", str(image_folder), "--store", url).exit_code == 0
    base = ["extract", "--store", url, "-d", "tiny", "-m", "efficientnet_lite0", "-l", "stage5",
            "--device", "cpu", "--dry-run", "--json"]  # fmt: skip
    plain = invoke(*base)
    named = invoke(*base, "--weights", "pretrained")
    assert plain.exit_code == 0, plain.output
    assert named.exit_code == 0, named.output
    keys = [[e["key"] for e in json.loads(r.output)["entries"]] for r in (plain, named)]
    assert keys[0] == keys[1]
    assert len(keys[0]) == 1


def test_ls_choosing_entries_imports_no_torch(blob_store) -> None:
    """Selecting is reading: the options go through the store's Catalog, never a network."""
    import subprocess
    import sys

    url, store, ds, X = blob_store
    entry = add_features(store, ds, X, layer="stage5", pooling="avg", layer_target="blocks.5")
    code = (
        "import sys, json\n"
        "from click.testing import CliRunner\n"
        "from featstore.cli.main import cli\n"
        f"r = CliRunner().invoke(cli, ['ls', '--store', {url!r}, '-d', 'blobs', '-m', 'toynet',"
        " '-l', 'blocks.5', '--pool', 'avg', '--compute-dtype', 'float32', '--json'])\n"
        "keys = [e['key'] for e in json.loads(r.output)['entries']]\n"
        "print(json.dumps({'keys': keys, 'torch': 'torch' in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"keys": [entry.key], "torch": False}
