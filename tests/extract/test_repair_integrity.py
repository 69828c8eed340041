"""Issue 11, items 2, 3 and 9 with a real (tiny, random) network through the CLI: repair
recomputes exactly the damaged chunks, byte-identical to an undamaged run; results are
bound to the bytes they read; a resumed entry is marked complete; float16 overflow is
refused at extraction."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.datasets import dataset_from_source
from featstore.errors import DamagedChunkError, DtypeOverflowError
from featstore.evaluate.tasks import get_task
from featstore.extract import ExtractionRequest, extract
from featstore.store import open_store
from tests.extract.test_extract import SMALL, make_images

EXTRACT = [
    "-m",
    "resnet18",
    "-l",
    "layer4",
    "--weights",
    "random",
    "--resize",
    "72",
    "--crop",
    "64",
]


@pytest.fixture(autouse=True)
def _weights_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture
def extracted(tmp_path: Path) -> tuple[str, str, Path]:
    """A local Zarr store with 'tiny' (24 images) extracted once; and a pristine copy."""
    url = str(tmp_path / "s.zarr")
    images = make_images(tmp_path / "imgs", 24)
    assert _cli("datasets", "add", "tiny", str(images), "--store", url)[0] == 0
    code, out = _cli("extract", "-d", "tiny", *EXTRACT, "--store", url)
    assert code == 0, out
    with open_store(url, mode="r") as store:
        (key,) = store.entry_keys()
        assert store.get_entry(key).n_chunks == 2
    clean = tmp_path / "clean.zarr"
    shutil.copytree(url, clean)
    return url, key, clean


def _chunk_files(root: Path, key: str) -> dict[str, bytes]:
    base = root / "features" / key / "data"
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }


def test_repair_recomputes_only_damaged_chunks_byte_identical(extracted):
    url, key, clean = extracted
    entry_dir = Path(url) / "features" / key
    (entry_dir / "data" / "c" / "1" / "0").unlink()  # a deleted chunk read as zeros before
    code, out = _cli(
        "evaluate",
        "-d",
        "tiny",
        "-m",
        "resnet18",
        "-l",
        "layer4",
        "--task",
        "classify",
        "--force",
        "--store",
        url,
    )
    assert code == 1
    assert f"chunk 1 (rows 16-24) of entry {key} is damaged" in out
    with open_store(url, mode="r") as store:
        assert store.result_keys() == []  # nothing scored, nothing stored
    marker0 = (entry_dir / "_done" / "0").read_bytes()
    code, out = _cli("repair", key, "--store", url, "--json")
    assert code == 0, out
    assert '"recomputed": [\n    1\n  ]' in out
    assert '"forward_batches": 1' in out
    assert (entry_dir / "_done" / "0").read_bytes() == marker0  # chunk 0 untouched
    assert _chunk_files(Path(url), key) == _chunk_files(clean, key)
    code, out = _cli("verify", "--store", url)
    assert code == 0
    assert f"{key}: ok (2 chunks verified)" in out


def test_verify_repair_fixes_flipped_bytes_and_empty_markers(extracted):
    url, key, clean = extracted
    entry_dir = Path(url) / "features" / key
    with open_store(url) as store:
        entry = store.get_entry(key)
        rows = entry._read_rows(slice(0, 16))
        rows[3, 5] += 1  # a flipped value, plausible numbers
        entry._write_rows(0, 16, rows)
    (entry_dir / "_done" / "1").write_bytes(b"")
    code, out = _cli("verify", "--store", url)
    assert code == 1
    assert "DAMAGED chunks [0, 1]" in out
    code, out = _cli("verify", "--repair", "--store", url)
    assert code == 0, out
    assert "recomputed chunks [0, 1]" in out
    assert "verified ok" in out
    assert _chunk_files(Path(url), key) == _chunk_files(clean, key)


def test_results_are_bound_to_entry_bytes(extracted):
    url, key, _ = extracted
    args = ["evaluate", "-d", "tiny", "-m", "resnet18", "-l", "layer4", "--task", "classify"]
    assert _cli(*args, "--store", url)[0] == 0
    with open_store(url) as store:
        (res,) = store.result_keys()
        record = store.get_result(res)
        entry = store.get_entry(key)
        assert record["content"] == {key: entry.content_checksum()}
        task = get_task("classify")
        assert task.cached(store, "tiny", {"layer": "layer4"}) is not None
        # the entry is rebuilt with other bytes (another device, a changed network ...)
        start, stop = entry.chunk_bounds(0)
        changed = entry.read(slice(start, stop)) * 0.5
        entry.invalidate_chunk(0)
        entry.write_chunk(0, changed)
        assert task.cached(store, "tiny", {"layer": "layer4"}) is None
        again = task.evaluate(store, "tiny", {"layer": "layer4"})
        assert again["cached"] is False
        assert f"entry {key} changed since it was computed" in again["recomputed_because"]
        assert store.get_result(res)["content"] == {key: entry.content_checksum()}
        assert task.evaluate(store, "tiny", {"layer": "layer4"})["cached"] is True
        # a record made before results were bound is not served either
        legacy = dict(store.get_result(res))
        del legacy["content"], legacy["checksum"]  # neither existed then
        store.put_result(res, legacy)
        old = task.evaluate(store, "tiny", {"layer": "layer4"})
        assert old["cached"] is False
        assert "older featstore" in old["recomputed_because"]


def test_resumed_entry_is_marked_complete(extracted):
    url, key, clean = extracted
    with open_store(url) as store:
        entry = store.get_entry(key)
        entry.invalidate_chunk(1)
        entry.update_attrs(status="writing")  # as a run killed mid-way leaves it
    code, out = _cli("extract", "-d", "tiny", *EXTRACT, "--store", url)
    assert code == 0, out
    with open_store(url, mode="r") as store:
        assert store.get_entry(key).attrs["status"] == "complete"
    assert _chunk_files(Path(url), key) == _chunk_files(clean, key)


def test_float16_overflow_is_refused_at_extraction(tmp_path):
    url = str(tmp_path / "o.zarr")
    ds = dataset_from_source("tiny", str(make_images(tmp_path / "imgs", 8)))
    with open_store(url) as store:
        store.put_dataset(ds)
        huge = {**SMALL, "std": [1e-6] * 3}  # inputs of ~1e6: activations beyond 65504
        with pytest.raises(DtypeOverflowError, match=r"beyond float16.*--dtype float32"):
            extract(
                store,
                ExtractionRequest.parse(
                    ds, "resnet18", ["layer4"], weights="random", preprocess=huge
                ),
            )
        (key,) = store.entry_keys()
        entry = store.get_entry(key)
        assert entry.done_chunks() == set()
        assert entry.attrs["status"] == "writing"
        summary = extract(
            store,
            ExtractionRequest.parse(
                ds, "resnet18", ["layer4"], weights="random", preprocess=huge, dtype="float32"
            ),
        )
        (key32,) = summary["keys"]
        values = store.get_entry(key32).read()
        assert np.isfinite(values).all()
        assert np.abs(values).max() > 65504
        e32 = store.get_entry(key32)  # and a damaged float32 entry is caught too
        e32._write_rows(0, e32.chunk_rows, np.zeros((e32.chunk_rows, *e32.row_shape)))
        with pytest.raises(DamagedChunkError):
            e32.read()
