"""Issue 20: hostile specs, names, URLs and option values are bounded; the tracebacks it
found are one-line errors; a mistyped --store creates nothing. Each case runs the real CLI
and checks the exit code, the one line, and that the store is unchanged or never made.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from featstore.cli.main import cli

from featstore.errors import clip, redact_url, shown
from featstore.sweep.spec import load_spec
from tests.conftest import make_image

BIG = "x" * 100_000


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _one_line(result: Result) -> str:
    assert "Traceback" not in result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("Error: ")]
    return line


def _snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def _classes(root: Path, names: tuple[str, ...] = ("cat", "dog")) -> Path:
    for c, name in enumerate(names):
        for i in range(3):
            make_image(root / name / f"{i}.jpg", seed=10 * c + i)
    return root


@pytest.fixture
def small_store(tmp_path: Path) -> Path:
    store = tmp_path / "s.zarr"
    added = _run("datasets", "add", "sm", str(_classes(tmp_path / "src")), "--store", str(store))
    assert added.exit_code == 0, added.output
    return store


# --- YAML alias bomb ---------------------------------------------------------------------------
BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
name: [*h,*h,*h,*h,*h,*h,*h,*h,*h]
datasets: [x]
"""


def test_yaml_alias_bomb_is_refused_before_expansion(tmp_path: Path) -> None:
    spec = tmp_path / "bomb.yaml"
    spec.write_text(BOMB)
    assert len(BOMB) < 500  # nine levels: 9**9 strings, 3.4 GB once expanded
    store = tmp_path / "s.zarr"
    result = _run("sweep", str(spec), "--store", str(store), "--dry-run")
    assert result.exit_code == 1
    assert _one_line(result) == (
        "Error: sweep spec: line 2 uses the YAML alias *a; aliases are refused (they can expand "
        "a small file into gigabytes): write the values out"
    )
    assert not store.exists()


def test_spec_name_must_be_a_short_string(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"name: [{', '.join(['lol'] * 5000)}]\ndatasets: [x]\nnetworks: [{{name: r, layers: [h]}}]\n"
    )
    result = _run("sweep", str(spec), "--store", str(tmp_path / "s.zarr"), "--dry-run")
    assert result.exit_code == 1
    assert _one_line(result) == (
        "Error: sweep spec: field 'name' must be a string of at most 200 characters, "
        "got a list of 5000 items"
    )


def test_spec_values_are_cut_in_messages(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"datasets: [x]\nnetworks: [{{name: resnet18, layers: [head]}}]\nviews: ['{BIG}']\n"
    )
    result = _run("sweep", str(spec), "--store", str(tmp_path / "s.zarr"), "--dry-run")
    assert result.exit_code == 1
    line = _one_line(result)
    assert line.startswith(f"Error: sweep spec: view '{'x' * 100}")
    assert "... (100002 characters) is unknown; use plain, flip" in line
    assert len(line) < 600


def test_deeply_nested_yaml_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: " + "[" * 20000 + "]" * 20000 + "\n")
    result = _run("sweep", str(spec), "--store", str(tmp_path / "s.zarr"), "--dry-run")
    assert result.exit_code == 1
    assert _one_line(result) == (
        f"Error: sweep spec {str(spec)!r} nests its values too deeply to be a spec"
    )


# --- names with control characters -------------------------------------------------------------
def test_class_folder_with_terminal_escapes_is_refused(tmp_path: Path) -> None:
    src = _classes(tmp_path / "src", ("cat", "dog\x1b[2J\x1b[31mred"))
    store = tmp_path / "s.zarr"
    result = _run("datasets", "add", "e", str(src), "--store", str(store))
    assert result.exit_code == 1
    assert "\x1b" not in result.output
    assert _one_line(result) == (
        "Error: class name 'dog\\x1b[2J\\x1b[31mred' holds control characters (terminal escapes "
        "or line breaks); rename that class (its folder or label) and register again"
    )
    assert not store.exists()


def test_dataset_name_with_a_line_break_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    result = _run("datasets", "add", "ok\n", str(_classes(tmp_path / "src")), "--store", str(store))
    assert result.exit_code == 1
    assert _one_line(result) == (
        "Error: dataset name 'ok\\n' is not valid: use letters, digits, '_', '-' and '.', "
        "starting with a letter or digit"
    )
    assert not store.exists()


# --- credentials in URLs -----------------------------------------------------------------------
def test_store_url_credentials_are_never_echoed(tmp_path: Path) -> None:
    for args in (
        ["ls", "--store", "memory://AKIAKEY:s3cr3t/x@host/missing.zarr"],
        ["verify", "--store", "memory://AKIAKEY:s3cr3t@host/missing.zarr"],
        ["ls", "--store", "memory://bucket/missing.zarr?token=s3cr3t&x=1"],
    ):
        result = _run(*args)
        assert result.exit_code == 1
        line = _one_line(result)
        assert "s3cr3t" not in result.output
        assert "AKIAKEY" not in result.output
        assert line.startswith("Error: no featstore store at memory://"), line
        assert "***" in line


def test_redact_url_forms() -> None:
    assert redact_url("s3://KEY:SECRET@bucket/x.zarr") == "s3://***@bucket/x.zarr"
    assert (
        redact_url("at s3://AK:se/cr+et@b/x and gs://u@b/y") == "at s3://***@b/x and gs://***@b/y"
    )
    assert (
        redact_url("https://h/x?X-Amz-Signature=abc&a=1") == "https://h/x?X-Amz-Signature=***&a=1"
    )
    assert redact_url("/data/plain/path.zarr") == "/data/plain/path.zarr"


def test_value_helpers_bound_what_they_show() -> None:
    assert shown("a\x1bb") == "'a\\x1bb'"
    assert shown([[1, 2]] * 7) == "a list of 7 items"
    assert shown({"a": 1}) == "a mapping of 1 items"
    assert shown(10**5000) == "an integer of about 5001 digits"
    assert clip("y" * 1000) == "y" * 200 + "... (1000 characters)"


# --- 100 KB option values ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "--task", BIG, "-d", "sm", "-m", "resnet18", "-l", "penultimate"],
        ["evaluate", "-d", BIG, "-m", "resnet18", "-l", "penultimate"],
        ["datasets", "show", BIG],
        ["extract", "-d", "sm", "-m", "resnet18", "-l", BIG, "--weights", "random"],
    ],
    ids=["click-choice", "dataset", "show", "layer"],
)
def test_huge_option_values_are_cut(small_store: Path, args: list[str]) -> None:
    before = _snapshot(small_store)
    result = _run(*args, "--store", str(small_store))
    assert result.exit_code in (1, 2)
    line = _one_line(result)
    assert len(line) < 700
    assert "x" * 1000 not in line
    assert _snapshot(small_store) == before


# --- tracebacks that are now one line ----------------------------------------------------------
def test_negative_seed_is_an_option_error(small_store: Path) -> None:
    result = _run("evaluate", "--seed", "-1", "-d", "sm", "-m", "resnet18", "-l", "penultimate",
                  "--store", str(small_store))  # fmt: skip
    assert result.exit_code == 2
    assert _one_line(result) == (
        "Error: Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295."
    )


def test_negative_seed_in_a_spec_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("datasets: [x]\nnetworks: [{name: r, layers: [h]}]\nseed: -1\n")
    with pytest.raises(ValueError, match=r"field 'seed' must be an integer from 0 to 2\*\*32-1"):
        load_spec(spec)


def test_pca_with_5000_digits_is_one_line(small_store: Path) -> None:
    before = _snapshot(small_store)
    result = _run("evaluate", "--transform", "pca=" + "9" * 5000, "-d", "sm", "-m", "resnet18",
                  "-l", "penultimate", "--store", str(small_store))  # fmt: skip
    assert result.exit_code == 1
    line = _one_line(result)
    assert line.startswith("Error: transform step 'pca=999")
    assert line.endswith("... (5006 characters): pca needs a positive number of dimensions")
    assert _snapshot(small_store) == before


def test_report_to_a_missing_folder_is_refused_first(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "dir" / "x.html"
    result = _run("report", "--out", str(out), "--store", str(tmp_path / "none.zarr"))
    assert result.exit_code == 2
    assert _one_line(result) == (
        f"Error: Invalid value for --out: the folder {str(out.parent)!r} does not exist; create "
        "it or choose another file"
    )
    assert not out.parent.exists()
    assert not (tmp_path / "none.zarr").exists()


class NotATensor:
    """Anything a state dict never holds: torch's safe loader refuses it."""


def test_unsafe_weights_file_is_one_line_without_unsafe_advice(
    small_store: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "bad.pt"
    torch.save({"w": torch.zeros(2), "c": collections.Counter(a=1), "o": NotATensor()}, weights)
    before = _snapshot(small_store)
    result = _run("extract", "-d", "sm", "-m", "resnet18", "-l", "penultimate",
                  "--weights", str(weights), "--store", str(small_store))  # fmt: skip
    assert result.exit_code == 1
    assert "weights_only" not in result.output
    assert _one_line(result) == (
        f"Error: weights file {weights} is refused: it needs code beyond tensors to load, and "
        "featstore never runs code from a file; provide the weights as a .safetensors file, or "
        "as a state dict of tensors only saved with torch.save(model.state_dict(), PATH)"
    )
    assert _snapshot(small_store) == before


def test_damaged_weights_file_is_one_line(small_store: Path, tmp_path: Path) -> None:
    weights = tmp_path / "junk.pt"
    weights.write_bytes(b"garbage" * 10)
    result = _run("extract", "-d", "sm", "-m", "resnet18", "-l", "penultimate",
                  "--weights", str(weights), "--store", str(small_store))  # fmt: skip
    assert result.exit_code == 1
    assert "weights_only" not in result.output
    assert _one_line(result).startswith(f"Error: cannot read weights from {weights} (")


# --- a mistyped --store creates nothing --------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["verify"],
        ["verify", "--repair"],
        ["upgrade"],
        ["repair", "feat-0123456789abcdef0123"],
    ],
    ids=["verify", "verify-repair", "upgrade", "repair"],
)
def test_maintenance_on_a_missing_store_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    typo = tmp_path / "typo.zarr"
    result = _run(*args, "--store", str(typo))
    assert result.exit_code == 1
    assert _one_line(result) == (
        f"Error: no featstore store at {typo}; check --store (or FEATSTORE_STORE), or create one "
        "with a command that registers data (featstore datasets add NAME SOURCE, or featstore "
        "sweep SPEC); in Python open_store(url, mode='a')"
    )
    assert not typo.exists()
