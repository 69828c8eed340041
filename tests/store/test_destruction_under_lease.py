"""No false success under concurrent destruction: `rm` and `gc` leave an entry a live writer
leases (naming the holder; --force overrides), and an extraction whose entry is removed
under it fails naming the entry instead of reporting it complete."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.datasets import dataset_from_source
from featstore.errors import ExtractionError, LeaseError
from featstore.store import open_store
from featstore.store.lease import check_not_held, claim, release
from tests.conftest import make_image

KEY = "feat-0123456789abcdef0123"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(autouse=True)
def _weights_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))


def _store_with_entry(tmp_path: Path, done: bool = False):
    url = str(tmp_path / "s.zarr")
    store = open_store(url)
    entry = store.create_entry(KEY, {"status": "writing"}, (8, 2), "float32", chunk_rows=4)
    if done:
        entry.write_chunk(1, np.ones((4, 2), dtype=np.float32))
    return url, store, entry


def _holder() -> str:
    return f"host {socket.gethostname()} pid {os.getpid()} (chunks 0; lease age "


def test_rm_refuses_an_entry_under_a_live_lease_and_force_removes_it(tmp_path):
    url, store, entry = _store_with_entry(tmp_path, done=True)
    lease = claim(entry, 0)  # this process: alive, so the lease is live
    assert lease is not None
    result = run("rm", KEY, "--store", url)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: entry {KEY} is being written: leased by {_holder()}")
    assert "pass --force to remove the entry anyway" in result.output
    assert "Traceback" not in result.output
    assert store.has_entry(KEY)
    with pytest.raises(LeaseError, match="leased by host"):
        check_not_held(store, KEY)
    forced = run("rm", KEY, "--force", "--store", url)
    assert forced.exit_code == 0, forced.output
    assert forced.output == f"removed {KEY}\n"
    assert not store.has_entry(KEY)


def test_rm_removes_an_entry_whose_lease_is_released_or_expired(tmp_path):
    url, store, entry = _store_with_entry(tmp_path, done=True)
    release(entry, claim(entry, 0))
    claim(entry, 1, owner="elsewhere:1:x", ttl=1e-6)  # expired at once
    result = run("rm", KEY, "--store", url)
    assert result.exit_code == 0, result.output
    assert not store.has_entry(KEY)


def test_gc_keeps_an_entry_under_a_live_lease_and_force_removes_it(tmp_path):
    url, store, entry = _store_with_entry(tmp_path)  # no chunk done yet: a gc candidate
    claim(entry, 0)
    result = run("gc", "--older-than", "0", "--store", url)
    assert result.exit_code == 0, result.output
    assert f"kept {KEY}: a live writer holds it, leased by {_holder()}" in result.output
    assert "`featstore gc --force` removes it" in result.output
    assert store.has_entry(KEY)
    forced = run("gc", "--older-than", "0", "--force", "--store", url)
    assert forced.exit_code == 0, forced.output
    assert f"removed {store.root}/features/{KEY}" in forced.output
    assert not store.has_entry(KEY)


def test_gc_removes_the_same_entry_without_a_lease(tmp_path):
    """The control: what gc keeps above it does remove when nobody leases it."""
    url, store, _ = _store_with_entry(tmp_path)
    result = run("gc", "--older-than", "0", "--store", url)
    assert result.exit_code == 0
    assert f"removed {store.root}/features/{KEY}" in result.output
    assert not store.has_entry(KEY)


# --- an extraction whose entry is removed under it ------------------------------------------
EXTRACT = ["-m", "resnet18", "-l", "penultimate", "--weights", "random", "--resize", "40"]
EXTRACT += ["--crop", "32", "--batch-size", "4", "--device", "cpu"]


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[str, str]:
    root = tmp_path / "imgs"
    for i in range(12):
        make_image(root / ("test" if i % 4 == 3 else "train") / "ab"[i % 2] / f"{i}.jpg", seed=i)
    url = str(tmp_path / "store.zarr")
    open_store(url).put_dataset(dataset_from_source("tiny", str(root)))
    return url, str(root)


def _remove_on_first_write(monkeypatch: pytest.MonkeyPatch, url: str) -> list[str]:
    """`featstore rm` of the entry, run the moment the extraction hands it its first chunk."""
    from featstore.extract.writer import ChunkWriter

    real = ChunkWriter.submit
    removed: list[str] = []

    def submit(self, entry, index, data):
        if not removed:
            result = run("rm", entry.key, "--store", url)
            assert result.exit_code == 0, result.output
            removed.append(entry.key)
        return real(self, entry, index, data)

    monkeypatch.setattr(ChunkWriter, "submit", submit)
    return removed


def test_extract_fails_naming_an_entry_removed_under_it(tiny, monkeypatch):
    url, _ = tiny
    removed = _remove_on_first_write(monkeypatch, url)
    result = run("extract", "--store", url, "-d", "tiny", *EXTRACT)
    assert removed, "the extraction never wrote a chunk"
    assert result.exit_code == 1, result.output
    assert "entries complete" not in result.output
    assert f"Error: entry {removed[0]} was removed while this extraction wrote it" in result.output
    assert "Traceback" not in result.output
    monkeypatch.undo()  # the next run is left alone: it extracts the entry whole
    again = run("extract", "--store", url, "-d", "tiny", *EXTRACT)
    assert again.exit_code == 0, again.output
    assert "done: 1 entries complete" in again.output
    entry = open_store(url).get_entry(removed[0])
    check = entry.verify()
    assert not check["missing"]
    assert not check["damaged"]
    assert check["ok"] == entry.n_chunks > 1


def test_extraction_library_call_reports_a_vanished_entry(tiny, monkeypatch):
    from featstore.extract.request import ExtractionRequest
    from featstore.extract.run import run_extraction

    url, _ = tiny
    removed = _remove_on_first_write(monkeypatch, url)
    store = open_store(url)
    with pytest.raises(ExtractionError, match="was removed while this extraction wrote it"):
        run_extraction(
            store,
            ExtractionRequest.parse(
                store.get_dataset("tiny"),
                "resnet18",
                ["penultimate"],
                weights="random",
                preprocess={"resize": 40, "crop": 32},
                device="cpu",
            ),
            batch_size=4,
        )
    assert removed
