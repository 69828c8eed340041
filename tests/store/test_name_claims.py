"""Dataset name claims (store/names.py): replace, rm, stale claims, gc, stores without claims."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import s3_fixtures

from featstore.datasets import Dataset, add_dataset, dataset_from_source
from featstore.errors import DatasetMismatchError, InvalidKeyError
from featstore.store import open_store
from featstore.store.names import CLAIM_SUFFIX, NAMES_DIR, STALE_CLAIM_S, read_claim
from tests.conftest import make_image

# moto-server fixtures, shared with the other object-storage tests
s3_env = s3_fixtures.s3_env
s3_server = s3_fixtures.s3_server
s3_store = s3_fixtures.s3_store


location = s3_fixtures.store_location


def _source(root: Path, seed: int) -> str:
    for c in ("a", "b"):
        for i in range(2):
            make_image(root / c / f"{i}.jpg", seed=100 * seed + 10 * (c == "b") + i)
    return str(root)


@pytest.fixture
def two(tmp_path) -> tuple[Dataset, Dataset]:
    """Two datasets of different content, both named "same"."""
    return tuple(  # type: ignore[return-value]
        dataset_from_source("same", _source(tmp_path / f"src{k}", k)) for k in range(2)
    )


def _write_claim(store, name: str, dataset_id: str, owner: str, since: float) -> None:
    """A claim object as a writer leaves it (killed before its dataset appeared)."""
    record = {"id": dataset_id, "owner": owner, "time": since}
    store._name_claims().put(f"{name}{CLAIM_SUFFIX}", json.dumps(record).encode())


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_replace_takes_the_name_and_the_old_content_is_refused(location, two):
    url, options = location
    store = open_store(url, storage_options=options)
    first, second = two
    store.put_dataset(first)
    assert read_claim(store._name_claims(), "same").dataset_id == first.id
    with pytest.raises(DatasetMismatchError, match=f"already registered as 'same' .id {first.id}"):
        store.put_dataset(second)
    store.put_dataset(second, replace=True)
    assert [d["id"] for d in store.list_datasets()] == [second.id]
    assert read_claim(store._name_claims(), "same").dataset_id == second.id
    with pytest.raises(DatasetMismatchError, match=second.id):
        store.put_dataset(first)
    store.put_dataset(second)  # the holder registering its own content again is a no-op
    assert [d["id"] for d in store.list_datasets()] == [second.id]


def test_rm_releases_the_name(location, two):
    url, options = location
    store = open_store(url, storage_options=options)
    first, second = two
    store.put_dataset(first)
    store.delete_dataset("same")
    assert read_claim(store._name_claims(), "same") is None
    store.put_dataset(second)  # the name is free again
    assert [d["id"] for d in store.list_datasets()] == [second.id]


def test_a_live_writers_claim_blocks_and_a_stale_one_is_taken_over(location, two):
    url, options = location
    store = open_store(url, storage_options=options)
    first, second = two
    elsewhere = f"other-{socket.gethostname()}:1:abcd1234"  # its liveness cannot be asked
    _write_claim(store, "same", first.id, elsewhere, time.time())  # being written right now
    with pytest.raises(DatasetMismatchError, match=f"taken by dataset {first.id}"):
        store.put_dataset(second)
    assert store.dataset_ids() == []
    # the same writer, STALE_CLAIM_S later and its dataset never written: killed
    _write_claim(store, "same", first.id, elsewhere, time.time() - 2 * STALE_CLAIM_S)
    store.put_dataset(second)
    assert read_claim(store._name_claims(), "same").dataset_id == second.id
    # a writer of this host that has exited frees its name at once
    store.delete_dataset("same")
    dead = f"{socket.gethostname()}:{_dead_pid()}:deadbeef"
    _write_claim(store, "same", second.id, dead, time.time())
    store.put_dataset(first)
    assert [d["id"] for d in store.list_datasets()] == [first.id]


def test_a_claim_taken_while_writing_withdraws_the_registration(location, two, monkeypatch):
    url, options = location
    store = open_store(url, storage_options=options)
    first, second = two
    write = store._put_dataset_arrays

    def replaced_meanwhile(dataset_id, attrs, arrays):
        write(dataset_id, attrs, arrays)
        _write_claim(store, "same", second.id, "a --replace elsewhere", time.time())

    monkeypatch.setattr(store, "_put_dataset_arrays", replaced_meanwhile)
    with pytest.raises(
        DatasetMismatchError, match=f"another process took the name 'same'.*{second.id}"
    ):
        store.put_dataset(first)
    assert store.dataset_ids() == []  # what it wrote was removed: never told success without it


def test_a_failed_write_leaves_the_name_free(location, two, monkeypatch):
    url, options = location
    store = open_store(url, storage_options=options)
    first, _ = two

    def full_disk(dataset_id, attrs, arrays):
        raise OSError("No space left on device")

    monkeypatch.setattr(store, "_put_dataset_arrays", full_disk)
    with pytest.raises(OSError, match="No space left"):
        store.put_dataset(first)
    assert read_claim(store._name_claims(), "same") is None
    monkeypatch.undo()
    store.put_dataset(first)
    assert store.dataset_ids() == [first.id]


def test_a_store_registered_before_claims_keeps_its_names(tmp_path, two):
    url = str(tmp_path / "s.zarr")
    store = open_store(url)
    first, second = two
    store.put_dataset(first)
    store._name_claims().delete(f"same{CLAIM_SUFFIX}")  # as a featstore without claims left it
    with pytest.raises(DatasetMismatchError, match="already registered as 'same'"):
        store.put_dataset(second)
    store.put_dataset(first)  # registering it again claims its name
    assert read_claim(store._name_claims(), "same").dataset_id == first.id


def test_gc_removes_stale_claims_only(tmp_path, two):
    url = str(tmp_path / "s.zarr")
    store = open_store(url)
    first, _second = two
    store.put_dataset(first)  # registered: its claim stays, however old
    _write_claim(store, "killed", "killed-0123456789ab", "elsewhere:1:x", time.time() - 7200)
    _write_claim(store, "running", "running-0123456789ab", "elsewhere:1:y", time.time())
    stale = str(Path(url, NAMES_DIR, f"killed{CLAIM_SUFFIX}"))
    assert store.gc(dry_run=True) == [stale]
    assert read_claim(store._name_claims(), "killed") is not None  # a dry run removes nothing
    assert store.gc() == [stale]
    folder = store._name_claims()
    assert read_claim(folder, "killed") is None
    assert read_claim(folder, "running") is not None
    assert read_claim(folder, "same") is not None


def test_a_dataset_half_removed_by_a_killed_remover_is_never_listed_and_gc_removes_it(
    tmp_path, two
):
    url = str(tmp_path / "s.zarr")
    store = open_store(url)
    first, _ = two
    store.put_dataset(first)
    folder = Path(url, "datasets", first.id)
    aside = folder.with_name(f"{first.id}.0badc0de.partial")  # renamed aside, rmtree never ran
    folder.rename(aside)
    old = time.time() - 7200
    os.utime(aside, (old, old))
    assert store.dataset_ids() == []
    assert store.list_datasets() == []
    assert store.gc(dry_run=True) == [str(aside)]
    assert aside.exists()
    assert store.gc() == [str(aside)]
    assert not aside.exists()


def test_a_claim_name_never_leaves_the_names_folder(tmp_path):
    folder = open_store(str(tmp_path / "s.zarr"))._name_claims()
    for bad in ("../datasets/x", "a/b", "", ".hidden", "x" * 129):
        with pytest.raises(InvalidKeyError):
            read_claim(folder, bad)


def test_hdf5_stores_keep_no_claims(tmp_path, two):
    first, second = two
    with open_store(str(tmp_path / "s.h5")) as store:
        store.put_dataset(first)
        store.put_dataset(second, replace=True)
        assert [d["id"] for d in store.list_datasets()] == [second.id]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5", "src0", "src1"]


def _add(path: str, source: str, replace: bool, barrier: object) -> str:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        return add_dataset(open_store(path), "same", source, replace=replace).id
    except DatasetMismatchError as exc:
        return f"DatasetMismatchError: {exc}"


def test_two_replacements_at_once_leave_one_dataset_its_writer_was_told_about(tmp_path):
    sources = [_source(tmp_path / f"src{k}", k) for k in range(3)]
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        for trial in range(3):
            path = str(tmp_path / f"s{trial}.zarr")
            add_dataset(open_store(path), "same", sources[2])  # the one both replace
            barrier = manager.Barrier(2)
            results = pool.starmap(_add, [(path, s, True, barrier) for s in sources[:2]])
            registered = [d["id"] for d in open_store(path, "r").list_datasets()]
            # one of them stays; a replacement that finished first may be replaced by the other
            assert len(registered) == 1, results
            assert registered[0] in results, results
            assert read_claim(open_store(path)._name_claims(), "same").dataset_id == registered[0]
