"""Issue 12, the rest: team networks, scikit-learn's limits, missing stores, a spec's
dataset that changed, and study tables that show only the study.

Like tests/cli/test_cli_errors.py, each case runs the real command through click's
CliRunner and checks the exit code, the exact message, that no traceback reached the
output, and that the store is unchanged (still absent, or byte-for-byte the same files).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from eval_helpers import add_dataset, add_features
from featstore.cli.main import cli

from featstore.store import open_store
from tests.conftest import make_image

TEAM = "a team network is 'package.module:function' where function() returns a torch.nn.Module"
SHAPE = "it must return a torch.nn.Module, or a (module, preprocess dict) pair"
MISSING = (
    "; check --store (or FEATSTORE_STORE), or create one with a command that registers data "
    "(featstore datasets add NAME SOURCE, or featstore sweep SPEC); in Python "
    "open_store(url, mode='a')"
)


def _snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def _folder(root: Path, n: int = 3, names: tuple[str, ...] = ("cat", "dog")) -> Path:
    for c, name in enumerate(names):
        for i in range(n):
            make_image(root / name / f"{i}.jpg", seed=100 * c + i + len(str(root)))
    return root


def _tiny_store(tmp: Path) -> Path:
    store = tmp / "s.zarr"
    res = CliRunner().invoke(cli, ["datasets", "add", "tiny", str(_folder(tmp / "tiny")),
                                   "--store", str(store)])  # fmt: skip
    assert res.exit_code == 0, res.output
    return store


def _features_store(tmp: Path, name: str, y: np.ndarray, splits: list[str], x: np.ndarray) -> Path:
    store = tmp / "s.zarr"
    s = open_store(str(store))
    add_features(s, add_dataset(s, name, y, splits), x, layer="l1")
    return store


def _few_rows(tmp: Path) -> Path:  # 5 classes, 2 training rows each: logreg cannot carve a val
    y = np.repeat(np.arange(5), 4)
    x = np.random.default_rng(0).normal(size=(20, 8))
    return _features_store(tmp, "few", y, ["train", "train", "test", "test"] * 5, x)


def _overflowed(tmp: Path) -> Path:  # an entry holding inf, as a float16 overflow leaves it
    y = np.repeat(np.arange(2), 6)
    x = np.random.default_rng(0).normal(size=(12, 8))
    x[3, 1] = np.inf
    return _features_store(tmp, "hot", y, (["train"] * 4 + ["test"] * 2) * 2, x)


@dataclass
class Case:
    name: str
    make_store: Callable[[Path], Path | None]  # builds the store (or not); returns its path
    args: Callable[[Path], list[str]]
    exit_code: int
    message: Callable[[Path], str]


def _extract(model: str) -> Callable[[Path], list[str]]:
    return lambda t: ["extract", "-d", "tiny", "-m", model, "-l", "x", "--store", str(t / "s.zarr")]


def _missing(*command: str) -> Callable[[Path], list[str]]:
    return lambda t: [*command, "--store", str(t / "s.zarr")]


def _no_store(t: Path) -> None:
    return None


CASES = [
    Case("team-net-raises", _tiny_store, _extract("bad_team_nets:fails"), 1, lambda t: "network function bad_team_nets:fails() raised RuntimeError: checkpoint shard 3 is missing; fix it so that, called with no arguments, it builds and returns the network"),
    Case("team-net-returns-none", _tiny_store, _extract("bad_team_nets:returns_none"), 1, lambda t: f"network function bad_team_nets:returns_none() returned None, not a torch.nn.Module; {SHAPE}"),
    Case("team-net-returns-str", _tiny_store, _extract("bad_team_nets:returns_name"), 1, lambda t: f"network function bad_team_nets:returns_name() returned str 'resnet18', not a torch.nn.Module; {SHAPE}"),
    Case("team-net-bad-pair", _tiny_store, _extract("bad_team_nets:returns_bad_pair"), 1, lambda t: f"network function bad_team_nets:returns_bad_pair() returned a tuple (Conv2d, str); {SHAPE}"),
    Case("team-net-bad-preprocess", _tiny_store, _extract("bad_team_nets:returns_bad_preprocess"), 1, lambda t: "the preprocess dict returned by bad_team_nets:returns_bad_preprocess() is invalid: unknown preprocess fields ['rezise']; known: ['crop', 'interpolation', 'mean', 'orientation', 'resize', 'scale', 'std']"),
    Case("team-net-not-callable", _tiny_store, _extract("bad_team_nets:NOT_A_FUNCTION"), 1, lambda t: f"network 'bad_team_nets:NOT_A_FUNCTION': bad_team_nets.NOT_A_FUNCTION is int 5, not a function; {TEAM}"),
    Case("team-net-no-such-function", _tiny_store, _extract("bad_team_nets:nothing"), 1, lambda t: f"cannot import network 'bad_team_nets:nothing': module 'bad_team_nets' has no attribute 'nothing'; {TEAM}"),
    Case("team-module-fails-on-import", _tiny_store, _extract("broken_team_module:net"), 1, lambda t: "importing module 'broken_team_module' for network 'broken_team_module:net' failed: RuntimeError: CUDA_VISIBLE_DEVICES is not set; fix the module (python -c 'import broken_team_module' shows the traceback)"),
    Case("logreg-val-carve", _few_rows, lambda t: ["evaluate", "-d", "few", "-m", "toynet", "-l", "l1", "--classifier", "logreg", "--store", str(t / "s.zarr")], 1, lambda t: "logistic regression chooses lambda on a validation split carved from the training rows (0.2 of 10 = 2 rows), but a stratified split needs at least one row of each of the 5 classes on each side; register a val split, use at least 21 training rows, or use --classifier svm"),
    Case("non-finite-features", _overflowed, lambda t: ["evaluate", "-d", "hot", "-m", "toynet", "-l", "l1", "--store", str(t / "s.zarr")], 1, lambda t: "entry {key} holds NaN or infinite values in 1 of 12 rows (a float16 entry overflows above 65504); remove it (featstore rm {key}) and extract it again with --dtype float32"),
    Case("info-missing-store", _no_store, _missing("info", "feat-0"), 1, lambda t: f"no featstore store at {t}/s.zarr{MISSING}"),
    Case("verify-missing-store", _no_store, _missing("verify"), 1, lambda t: f"no featstore store at {t}/s.zarr{MISSING}"),
    Case("report-missing-store", _no_store, _missing("report"), 1, lambda t: f"no featstore store at {t}/s.zarr{MISSING}"),
    Case("evaluate-missing-store", _no_store, _missing("evaluate", "-d", "x", "-m", "resnet18", "-l", "fc"), 1, lambda t: f"no featstore store at {t}/s.zarr{MISSING}"),
    Case("extract-missing-store", _no_store, _missing("extract", "-d", "x", "-m", "resnet18", "--weights", "random"), 1, lambda t: f"no featstore store at {t}/s.zarr{MISSING}"),
    Case("gc-missing-store", _no_store, _missing("gc"), 1, lambda t: f"no featstore store at {t}/s.zarr{MISSING}"),
    Case("rm-missing-store", _no_store, _missing("rm", "feat-0"), 1, lambda t: f"no featstore store at {t}/s.zarr{MISSING}"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_mistake_gets_one_line_and_changes_nothing(case: Case, tmp_path: Path) -> None:
    tmp = tmp_path.resolve()
    store = tmp / "s.zarr"
    case.make_store(tmp)
    keys = open_store(str(store), mode="r").entry_keys() if store.exists() else []
    before = _snapshot(store)
    result = CliRunner().invoke(cli, case.args(tmp))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == case.exit_code, result.output
    message = case.message(tmp).replace("{key}", keys[0] if keys else "?")
    assert result.output.strip().splitlines()[-1] == "Error: " + message
    assert _snapshot(store) == before


def test_a_dry_run_sweep_on_a_missing_store_says_so_and_creates_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"name: t\ndatasets: [{{name: tiny, source: {_folder(tmp_path / 'img')}, tasks: [classify]}}]\n"
        "networks: [{name: squeezenet1_1, weights: random, layers: [last_conv]}]\n"
        "pooling: [avg]\nviews: [plain]\ntransforms: [l2]\nbaseline: {layer: last_conv}\n"
    )
    store = tmp_path.resolve() / "new.zarr"
    result = CliRunner().invoke(cli, ["sweep", str(spec), "--dry-run", "--store", str(store)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        f"sweep t: 1 cells (0 already have results); store {store} (does not exist: nothing cached)"
    )
    assert lines[-1] == (
        f"note: store {store} does not exist: nothing is cached, and this dry run did not create "
        "it (the sweep will)"
    )
    assert not store.exists()


def test_commands_that_compute_name_their_store_but_not_in_json(tmp_path: Path) -> None:
    store = tmp_path.resolve() / "s.zarr"
    src = str(_folder(tmp_path / "img"))
    added = CliRunner().invoke(cli, ["datasets", "add", "a", src, "--store", str(store)])
    assert added.exit_code == 0, added.output
    assert added.output.splitlines()[-1] == f"store {store} (new: created by this command)"
    again = CliRunner().invoke(cli, ["datasets", "add", "b", src, "--store", str(store)])
    assert again.output.splitlines()[-1] == f"store {store}"
    quiet = CliRunner().invoke(cli, ["datasets", "add", "c", src, "--store", str(store), "--json"])
    assert str(store) not in quiet.output.replace(src, "")
    assert json.loads(quiet.output)["n"] == 6


SPEC = (
    "name: study\n"
    "datasets: [{{name: tiny, source: {source}{subset}, tasks: [classify]}}]\n"
    "networks: [{{name: squeezenet1_1, weights: random, layers: [last_conv]}}]\n"
    "pooling: [avg]\nviews: [plain]\ntransforms: [l2]\nclassifiers: [svm]\n"
    "baseline: {{layer: last_conv}}\nextract: {{batch_size: 8}}\n"
)


@pytest.mark.parametrize("change", ["source", "subset"])
def test_a_spec_that_changes_a_registered_dataset_is_refused(change: str, tmp_path: Path) -> None:
    tmp = tmp_path.resolve()
    store = _tiny_store(tmp)  # 'tiny' registered from tmp/tiny, 6 images
    other = _folder(tmp / "other")
    source = other if change == "source" else tmp / "tiny"
    spec = tmp / "s.yaml"
    spec.write_text(SPEC.format(source=source, subset=", subset: 4" if change == "subset" else ""))
    asked = f"source {other}, no subset" if change == "source" else f"source {tmp}/tiny, subset 4"
    before = _snapshot(store)
    for extra in (["--dry-run"], []):
        result = CliRunner().invoke(cli, ["sweep", str(spec), "--store", str(store), *extra])
        assert "Traceback" not in result.output
        assert result.exit_code == 1, result.output
        assert result.output.strip().splitlines()[-1] == (
            f"Error: sweep spec: dataset 'tiny' is registered from {tmp}/tiny (6 images), but the "
            f"spec gives {asked}; that is another dataset: give it a new name in the spec, or "
            "remove the registered one first (featstore datasets rm tiny)"
        )
        assert _snapshot(store) == before


def _rows(report: dict) -> list[tuple[str, str]]:
    return [(r["setting"]["layer"], r["setting"]["classifier"]) for r in report["rows"]]


def test_a_study_table_shows_only_the_study(tmp_path: Path) -> None:
    """A logreg run of the sweep's layer and an SVM run of another layer join `report`, never
    the study's table (`sweep SPEC`, `report --spec SPEC`)."""
    tmp = tmp_path.resolve()
    store = str(tmp / "s.zarr")
    spec = tmp / "s.yaml"
    spec.write_text(SPEC.format(source=_folder(tmp / "tiny", n=5), subset=""))
    run = CliRunner().invoke(cli, ["sweep", str(spec), "--store", store])
    assert run.exit_code == 0, run.output
    for extra in (["-l", "last_conv", "--classifier", "logreg"], ["-l", "fire7"]):
        args = ["extract", "-d", "tiny", "-m", "squeezenet1_1", "--weights", "random",
                "--pool", "avg", "--store", store, *extra[:2]]  # fmt: skip
        assert CliRunner().invoke(cli, args).exit_code == 0
        ev = CliRunner().invoke(cli, ["evaluate", "-d", "tiny", "-m", "squeezenet1_1",
                                      "--pool", "avg", "--store", store, *extra])  # fmt: skip
        assert ev.exit_code == 0, ev.output
    everything = json.loads(CliRunner().invoke(cli, ["report", "--store", store, "--json"]).output)
    assert sorted(_rows(everything)) == [
        ("fire7", "svm"), ("last_conv", "logreg"), ("last_conv", "svm")
    ]  # fmt: skip
    assert everything["scope"] == (
        f"Every result record of store {store} (3), whichever run made it; --spec SPEC shows "
        "one study's settings only."
    )
    study = CliRunner().invoke(cli, ["report", "--store", store, "--spec", str(spec), "--json"])
    assert _rows(json.loads(study.output)) == [("last_conv", "svm")]
    again = CliRunner().invoke(cli, ["sweep", str(spec), "--store", store])
    assert again.exit_code == 0, again.output
    table = [line for line in again.output.splitlines() if line.startswith("| S")]
    assert len(table) == 1
    assert "| last_conv |" in table[0]
    assert "| svm |" in table[0]
    assert "Only the settings of sweep study: 1 result records." in again.output
