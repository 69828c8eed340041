"""Issue 11, item 6: keys are never paths. The exact cases of the issue, through the real
CLI on Zarr and HDF5: each is refused with InvalidKeyError before storage is touched, and
nothing in or beside the store changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore import open_store
from featstore.errors import InvalidKeyError
from featstore.keys import check_dataset_id, check_key

KEY = "feat-0123456789abcdef0123"


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(params=["zarr", "hdf5"])
def world(request, tmp_path: Path) -> tuple[Path, str]:
    """tmp/outer/inner/<store> with one entry and one result; JSON files beside and above it."""
    inner = tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    url = str(inner / ("s.zarr" if request.param == "zarr" else "s.h5"))
    with open_store(url) as store:
        entry = store.create_entry(KEY, {"kind": "features"}, (4, 2), chunk_rows=2)
        for i in range(2):
            entry.write_chunk(i, np.ones((2, 2)))
        store.put_result("res-00000000000000000000", {"kind": "result", "metrics": {}})
    (inner / "x.json").write_text('{"secret": 1}')
    (tmp_path / "outer" / "x.json").write_text('{"secret": 2}')
    (tmp_path / "x.json").write_text('{"secret": 3}')
    return tmp_path, url


@pytest.mark.parametrize(
    "args",
    [["rm", ""], ["rm", ".."], ["rm", "../.."], ["rm", KEY + "/.."], ["info", "../../x"]],
)
def test_bad_keys_are_refused_before_storage(world, args):
    root, url = world
    before = _snapshot(root)
    result = CliRunner().invoke(cli, [*args, "--store", url])
    assert result.exit_code == 1, result.output
    assert "is not a well-formed featstore key" in result.output
    assert "secret" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert _snapshot(root) == before
    with open_store(url, mode="r") as store:  # the store is whole
        assert store.entry_keys() == [KEY]


def test_copy_to_a_bad_key_writes_nothing(world):
    root, url = world
    before = _snapshot(root)
    for dst in (root / "dst.zarr", root / "dst.h5"):
        result = CliRunner().invoke(cli, ["copy", url, str(dst), "../../x"])
        assert result.exit_code == 1
        assert "is not a well-formed featstore key" in result.output
        assert not dst.exists()
    assert _snapshot(root) == before


@pytest.mark.parametrize("bad", ["", ".", "..", "../..", "a/b", "feat-../x", "feat-", "FEAT-1", 7])
def test_store_methods_refuse_bad_keys(world, bad):
    _, url = world
    with open_store(url) as store:
        for call in (
            lambda: store.has_entry(bad),
            lambda: store.get_entry(bad),
            lambda: store.delete_entry(bad),
            lambda: store.create_entry(bad, {}, (2, 2)),
            lambda: store.has_result(bad),
            lambda: store.get_result(bad),
            lambda: store.put_result(bad, {}),
            lambda: store.delete_result(bad),
        ):
            with pytest.raises(InvalidKeyError):
                call()
        assert store.entry_keys() == [KEY]


def test_dataset_ids_are_checked():
    assert check_dataset_id("flowers.v2-0123456789ab") == "flowers.v2-0123456789ab"
    assert check_key("res-00000000000000000000")
    for bad in ("", "..", "../x-0123456789ab", "x/y-0123456789ab", ".hidden-0123456789ab", "x-zz"):
        with pytest.raises(InvalidKeyError, match="featstore datasets list"):
            check_dataset_id(bad)


def test_dataset_paths_refuse_bad_ids(world):
    _, url = world
    with open_store(url) as store:
        for bad in ("..", "../..", "../../x-0123456789ab"):
            with pytest.raises(InvalidKeyError):
                store._get_dataset_arrays(bad)
            with pytest.raises(InvalidKeyError):
                store._delete_dataset(bad)
            with pytest.raises(InvalidKeyError):
                store._put_dataset_arrays(bad, {"name": "x"}, {})
