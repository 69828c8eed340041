"""Issue 24 item 3: a listing reads entries and records in batches, and still proves each one.

The batched listing (store/listing.py) must give what reading object by object gives (the
same entries, done chunks, sizes, damaged entries and records) on every backend; on object
storage the result catalog saves the reads of unchanged records but never serves bytes the
store does not hold (a tampered catalog, a record rewritten or removed since).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
import pytest
import s3_fixtures

from featstore.errors import DamagedEntryError
from featstore.evaluate.results import find_results
from featstore.store import listing as listing_mod
from featstore.store import open_store
from featstore.store.proofs import seal_record

s3_env = s3_fixtures.s3_env
s3_server = s3_fixtures.s3_server
s3_store = s3_fixtures.s3_store
store_location = s3_fixtures.store_location


def _record(i: int) -> tuple[str, dict[str, Any]]:
    key = f"res-{i:020x}"
    return key, seal_record({"kind": "result", "key": key, "task": "classify", "seed": i})


def _fill(store: Any) -> None:
    """Three entries (one 2 of 3 chunks done), four sealed records."""
    for n, layer in enumerate(("a", "b", "c")):
        e = store.create_entry(
            f"feat-{n:020x}", {"kind": "features", "layer": layer}, (6, 2), chunk_rows=2
        )
        for i in range(3 if layer != "b" else 2):
            e.write_chunk(i, np.full((2, 2), n + i, dtype="float32"))
    for i in range(4):
        store.put_result(*_record(i))


def _one_by_one(store: Any) -> dict[str, Any]:
    """What the per-object path reads: key -> (done chunks, attrs) and key -> record."""
    entries = {}
    for key in store.entry_keys():
        try:
            e = store.get_entry(key)
        except DamagedEntryError:
            continue
        entries[key] = (e.done_chunks(), e.attrs)
    return {"entries": entries, "records": {k: store.get_result(k) for k in store.result_keys()}}


def test_a_batched_listing_reads_what_one_by_one_reads(store_location) -> None:
    url, options = store_location
    store = open_store(url, storage_options=options)
    _fill(store)
    listed = store.list_entries()
    want = _one_by_one(store)
    assert {e.key: (e.done_chunks(), e.attrs) for e in listed.entries} == want["entries"]
    assert listed.entries[1].done_chunks() == {0, 1}  # entry b: 2 of 3 chunks
    assert all(listed.nbytes[k] and listed.nbytes[k] > 0 for k in want["entries"])
    assert store.get_results() == want["records"]
    assert store.get_results(["res-" + "0" * 20, "res-" + "f" * 20]) == {
        "res-" + "0" * 20: want["records"]["res-" + "0" * 20]
    }
    infos = {i.key: (i.n_done, i.complete) for i in store.entries()}
    assert infos == {
        "feat-" + "0" * 20: (3, True),
        "feat-" + "0" * 19 + "1": (2, False),
        "feat-" + "0" * 19 + "2": (3, True),
    }


def test_a_listed_entry_follows_this_process_writes(tmp_path) -> None:
    store = open_store(str(tmp_path / "s.zarr"))
    _fill(store)
    entry = next(e for e in store.list_entries().entries if e.attrs["layer"] == "b")
    assert entry.missing_chunks() == [2]
    entry.write_chunk(2, np.zeros((2, 2), dtype="float32"))
    assert entry.is_complete
    entry.invalidate_chunk(0)
    assert entry.missing_chunks() == [0]


def test_a_listed_incomplete_entry_sees_chunks_written_since(tmp_path) -> None:
    store = open_store(str(tmp_path / "s.zarr"))
    _fill(store)
    listed = next(e for e in store.list_entries().entries if e.attrs["layer"] == "b")
    other = open_store(str(tmp_path / "s.zarr")).get_entry(listed.key)  # another writer
    other.write_chunk(2, np.zeros((2, 2), dtype="float32"))
    assert listed.is_complete
    assert listed.read().shape == (6, 2)


def test_the_batched_listing_still_proves_every_object(tmp_path) -> None:
    """An entry moved under another key, an entry with unreadable metadata and a record
    copied over another key or edited are reported damaged, as when read alone."""
    root = tmp_path / "s.zarr"
    store = open_store(str(root))
    _fill(store)
    a, b, c = sorted(store.entry_keys())
    moved = "feat-" + "9" * 20
    (root / "features" / a).rename(root / "features" / moved)  # records key a, read under moved
    (root / "features" / b / "zarr.json").write_text("{torn")
    res = root / "results"
    (res / ("res-" + "0" * 19 + "1.json")).write_bytes(
        (res / ("res-" + "0" * 20 + ".json")).read_bytes()
    )
    edited = json.loads((res / ("res-" + "0" * 19 + "2.json")).read_text())
    edited["seed"] = 99
    (res / ("res-" + "0" * 19 + "2.json")).write_text(json.dumps(edited))
    listed = store.list_entries()
    assert [e.key for e in listed.entries] == [c]
    assert set(listed.damaged) == {moved, b}
    assert "it was created as" in listed.damaged[moved]
    assert "cannot be read" in listed.damaged[b]
    assert {r["seed"] for r in find_results(store)} == {0, 3}  # the copy and the edit left out
    info = {i.key: i.damaged for i in store.entries()}
    assert info[moved]
    assert info[b]
    assert info[c] is None


def _catalog(url: str, options: dict[str, Any]) -> dict[str, Any]:
    store = open_store(url, mode="r", storage_options=options)
    raw = store.fs.cat_file(store._path(listing_mod.CATALOG))
    return json.loads(zlib.decompress(raw))


def test_the_s3_result_catalog_saves_reads_and_never_serves_stale_bytes(
    s3_store, monkeypatch
) -> None:
    url, options = s3_store
    store = open_store(url, storage_options=options)
    _fill(store)
    fetched: list[list[str]] = []
    real = listing_mod.read_many

    def counting(fs: Any, paths: list[str]) -> Any:
        fetched.append([p.rsplit("/", 1)[-1] for p in paths if "/results/" in p])
        return real(fs, paths)

    monkeypatch.setattr(listing_mod, "read_many", counting)
    want = {k: store.get_result(k) for k in store.result_keys()}
    assert store.get_results() == want  # first listing: reads all 4, writes the catalog
    assert len(fetched[-1]) == 4
    assert len(_catalog(url, options)["records"]) == 4
    reader = open_store(url, mode="r", storage_options=options)
    assert reader.get_results() == want
    assert fetched[-1] == []  # everything from the catalog: no per-record read

    # a record rewritten since: its new bytes are read, the catalog's copy is not served
    key0, rec0 = _record(0)
    store.put_result(key0, seal_record({**rec0, "seed": 100, "checksum": None}))
    assert reader.get_results()[key0]["seed"] == 100
    assert fetched[-1] == [f"{key0}.json"]
    # a record removed since: not listed, not served from the catalog
    store.delete_result(_record(1)[0])
    assert _record(1)[0] not in reader.get_results()

    # a tampered catalog (the body changed, the ETag kept) is caught by the body's MD5
    store.refresh_catalog()
    data = _catalog(url, options)
    key3 = _record(3)[0]
    tag, body = data["records"][key3]
    assert '"seed":3' in body  # the stored layout (proofs.record_bytes)
    data["records"][key3] = [tag, body.replace('"seed":3', '"seed":7')]
    store.fs.pipe_file(store._path(listing_mod.CATALOG), zlib.compress(json.dumps(data).encode()))
    assert reader.get_results()[key3]["seed"] == 3
    assert fetched[-1] == [f"{key3}.json"]
    # a catalog that is not one is ignored (and rebuilt by a writable listing)
    store.fs.pipe_file(store._path(listing_mod.CATALOG), b"not a catalog")
    assert reader.get_results()[key3]["seed"] == 3
    store.get_results()
    assert key3 in _catalog(url, options)["records"]


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_get_results_leaves_damaged_records_to_the_caller(tmp_path, backend: str) -> None:
    store = open_store(str(tmp_path / ("s.zarr" if backend == "zarr" else "s.h5")))
    for i in range(2):
        store.put_result(*_record(i))
    if backend == "zarr":
        (tmp_path / "s.zarr" / "results" / ("res-" + "0" * 19 + "1.json")).write_text("{torn")
        got = store.get_results()
        assert isinstance(got["res-" + "0" * 19 + "1"], DamagedEntryError)
    else:
        got = store.get_results()
        assert set(got) == {_record(0)[0], _record(1)[0]}
    assert got[_record(0)[0]]["seed"] == 0
    store.close()
