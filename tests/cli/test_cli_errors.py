"""Issue 12: every mistake gets a one-line answer through the real CLI.

Each case builds its inputs in a fresh folder, runs the command through click's CliRunner,
and checks the exit code, the exact message, that no traceback reached the output, and
that the store is unchanged (still absent, or byte-for-byte the same files).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from featstore.cli.main import cli
from PIL import Image

from featstore.datasets.images import MAX_PIXELS
from tests.conftest import make_image

SKIP_HINT = "; or pass --skip-bad to register the other images"


def _classes(root: Path, names: tuple[str, ...] = ("cat", "dog"), n: int = 3) -> Path:
    for c, name in enumerate(names):
        for i in range(n):
            make_image(root / name / f"{i}.jpg", seed=10 * c + i)
    return root


def _snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@dataclass
class Case:
    name: str
    setup: Callable[[Path], list[str]]  # builds inputs under tmp; returns the CLI args
    exit_code: int
    message: Callable[[Path], str]  # the exact one line, given tmp
    store_exists: bool = False  # register a small dataset in the store first


def _add(tmp: Path, source: Path | str, *extra: str) -> list[str]:
    return ["datasets", "add", "x", str(source), "--store", str(tmp / "s.zarr"), *extra]


def _not_image(tmp: Path) -> list[str]:
    (_classes(tmp / "src") / "cat" / "notes.jpg").write_text("hello")
    return _add(tmp, tmp / "src")


def _fifo(tmp: Path) -> list[str]:
    os.mkfifo(_classes(tmp / "src") / "cat" / "pipe.jpg")
    return _add(tmp, tmp / "src")


def _loop(tmp: Path) -> list[str]:
    link = _classes(tmp / "src") / "cat" / "loop.jpg"
    os.symlink(link, link)
    return _add(tmp, tmp / "src")


def _bomb(tmp: Path) -> list[str]:
    side = int(MAX_PIXELS**0.5) + 100
    Image.new("1", (side, side)).save(_classes(tmp / "src") / "cat" / "bomb.png")
    return _add(tmp, tmp / "src")


def _sliver(tmp: Path) -> list[str]:
    Image.new("L", (10000, 1)).save(_classes(tmp / "src") / "cat" / "sliver.png")
    return _add(tmp, tmp / "src")


def _manifest(tmp: Path, text: str, suffix: str = ".csv") -> Path:
    _classes(tmp / "img")
    path = tmp / f"m{suffix}"
    path.write_text(text, encoding="utf-8")
    return path


def _mixed_labels(tmp: Path) -> list[str]:
    return _add(tmp, _manifest(tmp, "path,label\nimg/cat/0.jpg,cat\nimg/dog/0.jpg,cat;dog\n"))


def _json_path_number(tmp: Path) -> list[str]:
    rows = [{"path": "img/cat/0.jpg", "label": "cat"}, {"path": 5, "label": "dog"}]
    return _add(tmp, _manifest(tmp, json.dumps(rows), ".json"))


def _json_label_dict(tmp: Path) -> list[str]:
    rows = [{"path": "img/cat/0.jpg", "label": {"daisy": 1}}]
    return _add(tmp, _manifest(tmp, json.dumps(rows), ".json"))


def _split_typo(tmp: Path) -> list[str]:
    text = "path,label,split\nimg/cat/0.jpg,cat,train\nimg/dog/0.jpg,dog,tarin\n"
    return _add(tmp, _manifest(tmp, text))


def _split_beside_classes(tmp: Path) -> list[str]:
    _classes(tmp / "src" / "train")
    _classes(tmp / "src" / "test")
    _classes(tmp / "src", ("daisy",))
    return _add(tmp, tmp / "src")


def _unknown_protocol(tmp: Path) -> list[str]:
    return ["ls", "--store", "foo://bucket/s.zarr"]


def _missing_backend(tmp: Path) -> list[str]:
    return ["ls", "--store", "gs://bucket/s.zarr"]


def _under_a_file(tmp: Path) -> list[str]:
    (tmp / "afile").write_text("x")
    return ["datasets", "add", "x", "builtin:digits", "--store", str(tmp / "afile" / "s.zarr")]


def _ls_missing(tmp: Path) -> list[str]:
    return ["ls", "--store", str(tmp / "s.zarr")]


def _extract(tmp: Path, *extra: str) -> list[str]:
    return ["extract", "-d", "tiny", "-m", "resnet18", "--weights", "random", "--store",
            str(tmp / "s.zarr"), *extra]  # fmt: skip


CASES = [
    Case("not-an-image", _not_image, 1, lambda t: f"{t}/src/cat/notes.jpg is not a readable image (not a format Pillow can identify); fix or remove the file" + SKIP_HINT),
    Case("fifo", _fifo, 1, lambda t: f"{t}/src/cat/pipe.jpg is a FIFO, not an image file; remove or rename it" + SKIP_HINT),
    Case("symlink-loop", _loop, 1, lambda t: f"image file {t}/src/cat/loop.jpg is a symlink loop; point the link at a file or remove it" + SKIP_HINT),
    Case("bomb", _bomb, 1, lambda t: f"{t}/src/cat/bomb.png is 8100x8100 = 66 megapixels, over the 64 MP limit (a decompression bomb?); downscale or remove it" + SKIP_HINT),
    Case("sliver", _sliver, 1, lambda t: f"{t}/src/cat/sliver.png is 10000x1, more than 20:1; resizing its shorter side would exhaust memory: crop it or remove it" + SKIP_HINT),
    Case("mixed-labels", _mixed_labels, 1, lambda t: f"the manifest mixes single-label rows ({t}/m.csv row 2: 'cat') and multi-label rows ({t}/m.csv row 3: 'cat;dog'); use a 'labels' column for multi-label data, or one class per row in 'label'"),
    Case("json-path-number", _json_path_number, 1, lambda t: f"{t}/m.json item 1: 'path' must be a file path string, not int 5"),
    Case("json-label-dict", _json_label_dict, 1, lambda t: f"{t}/m.json item 0: a label must be a class name or a list of class names, not dict {{'daisy': 1}}"),
    Case("split-typo", _split_typo, 1, lambda t: f"{t}/m.csv row 3: unknown split 'tarin'; use one of train, val, valid, validation, test, trainval, or declare your split names (datasets add --splits NAME,NAME)"),
    Case("split-beside-classes", _split_beside_classes, 1, lambda t: f"{t}/src mixes split folders (test, train) with other folders (daisy); put every class folder inside a split folder, or rename the split folders if they are classes"),
    Case("unknown-protocol", _unknown_protocol, 1, lambda t: "unknown protocol in store URL foo://bucket/s.zarr; use a local path, file://, memory://, s3:// (pip install 'featstore[s3]') or gs:// (pip install 'featstore[gcs]')"),
    Case("missing-backend", _missing_backend, 1, lambda t: "store gs://bucket/s.zarr needs the gcsfs package; install it with pip install 'featstore[gcs]'"),
    Case("store-under-a-file", _under_a_file, 1, lambda t: f"cannot open store {t}/afile/s.zarr: part of its path is a file, not a folder; choose another --store"),
    Case("ls-missing-store", _ls_missing, 1, lambda t: f"no featstore store at {t}/s.zarr; check --store (or FEATSTORE_STORE), or create one with a command that registers data (featstore datasets add NAME SOURCE, or featstore sweep SPEC); in Python open_store(url, mode='a')"),
    Case("batch-size-0", lambda t: _extract(t, "--batch-size", "0"), 2, lambda t: "Invalid value for '--batch-size': 0 is not in the range x>=1."),
    Case("resize-0", lambda t: _extract(t, "--resize", "0"), 2, lambda t: "Invalid value for '--resize': 0 is not in the range x>=1."),
    Case("crop-0", lambda t: _extract(t, "--crop", "0"), 2, lambda t: "Invalid value for '--crop': 0 is not in the range x>=1."),
    Case("dtype-int8", lambda t: _extract(t, "--dtype", "int8"), 2, lambda t: "Invalid value for '--dtype': 'int8' is not one of 'float16', 'float32', 'float64'."),
    Case("layers-only-commas", lambda t: _extract(t, "-l", ","), 2, lambda t: "Invalid value for -l/--layer: ',' names no layer; give comma-separated names"),
    Case("pool-unknown-layer", lambda t: _extract(t, "-l", "layer4", "--pool", "LAYR=max", "--crop", "56"), 1, lambda t: "--pool names layer 'LAYR', which is not requested; requested layers: layer4 (add it with -l or fix the name)", store_exists=True),
    Case("grid-larger-than-map", lambda t: _extract(t, "-l", "layer4", "--pool", "grid:max:100"), 1, lambda t: "pooling grid:max:100 asks for a 100x100 grid but resnet18 layer4 has a 7x7 map; use a size of at most 7", store_exists=True),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_mistake_gets_one_line_and_changes_nothing(case: Case, tmp_path: Path):
    tmp = tmp_path.resolve()
    store = tmp / "s.zarr"
    if case.store_exists:
        _classes(tmp / "tiny", n=2)
        setup = CliRunner().invoke(
            cli, ["datasets", "add", "tiny", str(tmp / "tiny"), "--store", str(store)]
        )
        assert setup.exit_code == 0, setup.output
    args = case.setup(tmp)
    before = _snapshot(store)
    result = CliRunner().invoke(cli, args)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == case.exit_code, result.output
    assert result.output.strip().splitlines()[-1] == "Error: " + case.message(tmp)
    assert _snapshot(store) == before


def test_skip_bad_skips_every_kind_of_bad_file_and_says_why(tmp_path: Path):
    src = _classes(tmp_path / "src")
    (src / "cat" / "notes.jpg").write_text("hello")
    os.mkfifo(src / "cat" / "pipe.jpg")
    os.symlink(src / "dog" / "loop.jpg", src / "dog" / "loop.jpg")
    Image.new("L", (10000, 1)).save(src / "dog" / "sliver.png")
    store = str(tmp_path / "s.zarr")
    result = CliRunner().invoke(
        cli, ["datasets", "add", "x", str(src), "--skip-bad", "--store", store, "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["n"] == 6
    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert sorted(reasons) == ["loop.jpg", "notes.jpg", "pipe.jpg", "sliver.png"]
    assert "FIFO" in reasons["pipe.jpg"]
    assert "symlink loop" in reasons["loop.jpg"]


def test_excel_bom_csv_and_a_lone_difficult_label_register(tmp_path: Path):
    _classes(tmp_path / "img")
    manifest = tmp_path / "m.csv"
    rows = "path,labels\nimg/cat/0.jpg,cat;dog\nimg/cat/1.jpg,?dog\nimg/dog/0.jpg,dog\n"
    manifest.write_bytes(b"\xef\xbb\xbf" + rows.encode())
    store = str(tmp_path / "s.zarr")
    result = CliRunner().invoke(
        cli, ["datasets", "add", "x", str(manifest), "--store", store, "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["classes"] == ["cat", "dog"]  # not '?dog', and the BOM did not hide 'path'
    assert summary["warnings"] == [
        "1 classes have a single image (cat); classifiers cannot be trained and tested on them: "
        "add images or drop those classes"
    ]


def test_declared_splits_are_accepted(tmp_path: Path):
    text = "path,label,split\nimg/cat/0.jpg,cat,fold1\nimg/dog/0.jpg,dog,fold2\n"
    args = _add(tmp_path, _manifest(tmp_path, text), "--splits", "fold1,fold2", "--json")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["split_counts"] == {"fold1": 1, "fold2": 1}


def test_an_unreadable_subfolder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src = _classes(tmp_path / "src")
    locked = str(src / "dog")
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:
        if os.fspath(path) == locked:  # root ignores chmod: answer as the OS would
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = CliRunner().invoke(cli, _add(tmp_path, src))
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: cannot read folder {locked} (Permission denied); make it readable (chmod +rx) "
        "or move it out of the dataset"
    )
    assert not (tmp_path / "s.zarr").exists()
