"""Stores on a real S3 API (moto's server on 127.0.0.1): opening, sharding, verify, secrets."""

from __future__ import annotations

import json
import logging
import uuid

import numpy as np
import pytest
import s3_fixtures
import s3fs
import zarr
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.errors import ReadOnlyError, StoreNotFoundError
from featstore.store import open_store
from featstore.store.copy import copy_store, export_hdf5
from featstore.store.geometry import entry_geometry
from featstore.store.lease import claim, fill_with_leases
from featstore.store.spec import StoreSpec, redact, secret_values

# moto-server fixtures, shared with the other object-storage tests
s3_env = s3_fixtures.s3_env
s3_server = s3_fixtures.s3_server
s3_store = s3_fixtures.s3_store
make_bucket = s3_fixtures.make_bucket


def rows(start: int, stop: int, row_shape: tuple[int, ...]) -> np.ndarray:
    width = int(np.prod(row_shape))
    return (
        (np.arange(start * width, stop * width) % 251)
        .reshape(stop - start, *row_shape)
        .astype("float16")
    )


def fill(entry) -> np.ndarray:
    for i in range(entry.n_chunks):
        start, stop = entry.chunk_bounds(i)
        entry.write_chunk(i, rows(start, stop, entry.row_shape))
    return rows(0, entry.n_rows, entry.row_shape)


@pytest.fixture
def s3_calls(monkeypatch):
    """Counts the S3 API calls s3fs makes (every request to the server goes through _call_s3)."""
    calls: list[str] = []
    original = s3fs.S3FileSystem._call_s3

    async def counting(self, method, *args, **kwargs):
        calls.append(method if isinstance(method, str) else getattr(method, "__name__", "?"))
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counting)
    return calls


def test_store_roundtrip_opens_in_one_request(s3_store, s3_calls):
    url, options = s3_store
    store = open_store(url, storage_options=options)
    entry = store.create_entry("feat-s", {"kind": "features", "layer": "x"}, (10, 3), chunk_rows=4)
    data = fill(entry)
    entry.update_attrs(status="complete")
    s3_calls.clear()
    shared = open_store(url, mode="r", storage_options=options)
    assert len(s3_calls) == 1  # the root zarr.json, which holds every node's metadata
    again = shared.get_entry("feat-s")
    assert len(s3_calls) == 1  # the entry comes from the consolidated metadata
    assert again.attrs["status"] == "complete"
    assert again.shape == (10, 3)
    np.testing.assert_array_equal(again.read(), data)
    assert shared.entry_keys() == ["feat-s"]


def test_consolidated_metadata_stays_valid_while_chunks_are_written(s3_store):
    url, options = s3_store
    store = open_store(url, storage_options=options)
    entry = store.create_entry("feat-c", {"layer": "y"}, (12, 2), chunk_rows=4)
    fs = store.fs
    before = json.loads(fs.cat_file(f"{store.root}/zarr.json"))["consolidated_metadata"]
    assert set(before["metadata"]) == {"features", "features/feat-c", "features/feat-c/data"}
    claim(entry, 1, "someone", ttl=60)
    fill(entry)  # chunks, done markers, a lease: none of it is zarr metadata
    after = json.loads(fs.cat_file(f"{store.root}/zarr.json"))["consolidated_metadata"]
    assert after == before
    store.consolidate()  # a fresh consolidation of the hierarchy finds the same nodes
    assert json.loads(fs.cat_file(f"{store.root}/zarr.json"))["consolidated_metadata"] == before
    # plain zarr reads the entry through the consolidated metadata
    group = zarr.open_group(store.zarr_store, mode="r", use_consolidated=True)
    np.testing.assert_array_equal(group["features/feat-c/data"][...], rows(0, 12, (2,)))


def test_entry_created_by_another_writer_is_found(s3_store):
    url, options = s3_store
    reader = open_store(url, storage_options=options)
    writer = open_store(url, storage_options=options)
    fill(writer.create_entry("feat-late", {}, (4, 2), chunk_rows=2))
    assert reader.has_entry("feat-late")
    assert reader.entry_keys() == ["feat-late"]
    np.testing.assert_array_equal(reader.get_entry("feat-late").read(), rows(0, 4, (2,)))
    writer.delete_entry("feat-late")
    assert open_store(url, "r", storage_options=options).entry_keys() == []


def test_read_only_store_refuses_writes(s3_store, s3_server):
    url, options = s3_store
    fill(open_store(url, storage_options=options).create_entry("feat-r", {}, (4, 2), chunk_rows=2))
    shared = open_store(url, mode="r", storage_options=options)
    with pytest.raises(ReadOnlyError, match="read-only"):
        shared.create_entry("feat-new", {}, (4, 2))
    with pytest.raises(ReadOnlyError, match="read-only"):
        shared.get_entry("feat-r").write_chunk(0, np.zeros((2, 2)))
    bucket = make_bucket(s3_server)
    with pytest.raises(StoreNotFoundError, match="no featstore store at"):
        open_store(f"s3://{bucket}/none.zarr", mode="r", storage_options=options)


def test_sharded_entry_uses_whole_shards_as_units(s3_store, tmp_path):
    url, options = s3_store
    store = open_store(url, storage_options=options)
    entry = store.create_entry("feat-sh", {}, (30, 4), chunk_rows=4, shard_rows=12)
    assert entry.chunk_rows == 12
    assert entry.n_chunks == 3
    written = fill_with_leases(entry, lambda a, b: rows(a, b, (4,)), owner="me")
    assert written == [0, 1, 2]
    objects = list(store.fs.find(f"{store.root}/features/feat-sh/data/c"))
    assert len(objects) == 3  # one object per shard, not one per chunk
    reread = open_store(url, "r", storage_options=options).get_entry("feat-sh")
    np.testing.assert_array_equal(reread.read(rows=[29, 0, 13]), rows(0, 30, (4,))[[29, 0, 13]])
    assert reread.verify()["damaged"] == []
    summary = export_hdf5(open_store(url, "r", storage_options=options), tmp_path / "x.h5")
    assert summary["ok"]
    with open_store(str(tmp_path / "x.h5"), "r") as h5:  # HDF5 has no shards: one chunk per unit
        np.testing.assert_array_equal(h5.get_entry("feat-sh").read(), rows(0, 30, (4,)))


def test_entry_geometry_shards_only_large_remote_entries():
    assert entry_geometry((1000, 512), "float16", shards=True) == (4096, None)
    chunk, shard = entry_geometry((200_000, 2048), "float16", shards=True)
    assert chunk == 1024
    assert shard == 1024 * 32
    assert entry_geometry((200_000, 2048), "float16", shards=False) == (1024, None)


def test_verify_finds_tampered_and_deleted_chunks(s3_store):
    url, options = s3_store
    store = open_store(url, storage_options=options)
    entry = store.create_entry("feat-v", {}, (12, 3), chunk_rows=4)
    fill(entry)
    chunk = f"{store.root}/features/feat-v/data/c"
    store.fs.pipe_file(f"{chunk}/1/0", store.fs.cat_file(f"{chunk}/0/0"))  # other valid bytes
    store.fs.rm(f"{chunk}/2/0")  # reads back as fill value zeros
    shared = open_store(url, mode="r", storage_options=options)
    assert shared.get_entry("feat-v").verify() == {
        "missing": [],
        "damaged": [1, 2],
        "ok": 1,
        "unbound": [],
    }
    result = CliRunner().invoke(
        cli,
        [
            "verify",
            "--store",
            url,
            "--storage-option",
            f"endpoint_url={options['client_kwargs']['endpoint_url']}",
        ],
    )
    assert result.exit_code == 1
    assert "feat-v: DAMAGED chunks [1, 2] (checksum mismatch or unreadable)" in result.output


def test_credentials_never_reach_the_store_records_or_logs(
    s3_server, s3_env, monkeypatch, tmp_path, caplog
):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    key_id, secret = f"AKIDSECRET{uuid.uuid4().hex[:8]}", f"s3cr3t-{uuid.uuid4().hex}"
    bucket = make_bucket(s3_server, key=key_id, secret=secret)
    options = {"key": key_id, "secret": secret, "client_kwargs": {"endpoint_url": s3_server}}
    url = f"s3://{bucket}/team.zarr"
    caplog.set_level(logging.DEBUG, logger="featstore")
    store = open_store(url, storage_options=options)
    fill(store.create_entry("feat-k", {"kind": "features"}, (6, 2), chunk_rows=2))
    store.put_result("res-k", {"key": "res-k", "metrics": {"acc": 1.0}})
    local = open_store(str(tmp_path / "copy.zarr"))
    summary = copy_store(store, local)
    back = copy_store(local, open_store(f"s3://{bucket}/second.zarr", storage_options=options))
    assert summary["ok"]
    assert back["ok"]
    cli_out = CliRunner().invoke(
        cli,
        [
            "copy",
            url,
            str(tmp_path / "c2.zarr"),
            "--all",
            "--json",
            "--storage-option",
            f"key={key_id}",
            "--storage-option",
            f"secret={secret}",
            "--storage-option",
            f"endpoint_url={s3_server}",
        ],
    )
    assert cli_out.exit_code == 0, cli_out.output
    spec = StoreSpec.of(store)
    assert secret_values(spec.storage_options) == [key_id, secret]
    texts = {"log": caplog.text, "cli": cli_out.output, "repr": repr(spec) + str(redact(options))}
    texts["summary"] = json.dumps([summary, back])
    fs = s3fs.S3FileSystem(
        key=key_id,
        secret=secret,
        client_kwargs={"endpoint_url": s3_server},
        skip_instance_cache=True,
    )
    objects = fs.find(bucket)
    assert len(objects) > 10
    for path in objects:
        texts[path] = fs.cat_file(path).decode("latin-1")
    for path in (tmp_path / "copy.zarr").rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
    for where, text in texts.items():
        assert key_id not in text, f"credential found in {where}"
        assert secret not in text, f"credential found in {where}"


def test_markers_written_elsewhere_after_a_listing_are_seen(s3_store):
    """s3fs caches listings by default; a stale one would hide a teammate's new marker."""
    url, options = s3_store
    mine = open_store(url, storage_options=options).create_entry("feat-m", {}, (8, 2), chunk_rows=4)
    assert mine.done_chunks() == set()  # lists _done/ (empty)
    mine.write_chunk(0, rows(0, 4, (2,)))
    assert mine.done_chunks() == {0}  # lists _done/ again: now cached with one marker
    theirs = open_store(url, storage_options={**options, "skip_instance_cache": True})
    theirs.get_entry("feat-m").write_chunk(1, rows(4, 8, (2,)))  # another process's client
    assert mine.marker(1) is not None
    assert mine.done_chunks() == {0, 1}
    assert mine.is_complete
