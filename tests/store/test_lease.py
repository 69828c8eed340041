"""Leases per unit of work: local, memory://, HDF5 and a real S3 API server (moto, loopback)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import s3_fixtures
from lease_worker import expected_rows

from featstore.errors import LeaseError
from featstore.store import open_store
from featstore.store.lease import (
    LEASE_DIR,
    claim,
    claim_missing,
    clear_expired,
    fill_with_leases,
    leases,
    read_lease,
    release,
    renew,
)

WORKER = Path(__file__).parents[1] / "lease_worker.py"

# moto-server fixtures, shared with the other object-storage tests
s3_env = s3_fixtures.s3_env
s3_server = s3_fixtures.s3_server
s3_store = s3_fixtures.s3_store


location = s3_fixtures.store_location


def test_claim_is_exclusive_renewable_and_released(location):
    url, options = location
    store = open_store(url, storage_options=options)
    entry = store.create_entry("feat-l", {}, (10, 2), chunk_rows=4)
    mine = claim(entry, 1, "alice", ttl=60)
    assert mine is not None
    assert mine.owner == "alice"
    assert mine.index == 1
    assert claim(entry, 1, "bob", ttl=60) is None  # held by a live owner
    assert read_lease(entry, 1).owner == "alice"
    again = renew(entry, mine, ttl=120)  # the holder renews: new token, later expiry
    assert again.token != mine.token
    assert again.expires > mine.expires
    assert not release(entry, mine)  # a stale handle cannot release the renewed lease
    assert claim(entry, 1, "bob", ttl=60) is None
    assert release(entry, again)
    assert read_lease(entry, 1) is None
    theirs = claim(entry, 1, "bob", ttl=60)
    assert theirs is not None
    assert read_lease(entry, 1).owner == "bob"
    with pytest.raises(LeaseError, match="now held by bob"):
        renew(entry, again)


def test_expired_lease_is_taken_over(location):
    url, options = location
    store = open_store(url, storage_options=options)
    entry = store.create_entry("feat-x", {}, (6, 2), chunk_rows=2)
    crashed = claim(entry, 0, "crashed-writer", ttl=0.2)
    assert crashed is not None
    assert claim(entry, 0, "bob", ttl=60) is None
    time.sleep(0.3)  # the crashed holder never renews
    taken = claim(entry, 0, "bob", ttl=60)
    assert taken is not None
    assert read_lease(entry, 0).owner == "bob"
    assert claim(entry, 0, "carol", ttl=60) is None  # bob's is live
    assert not release(entry, crashed)  # the late holder cannot drop bob's lease
    assert read_lease(entry, 0).owner == "bob"


def test_claims_interleave_and_done_chunks_are_skipped(location):
    url, options = location
    store = open_store(url, storage_options=options)
    entry = store.create_entry("feat-m", {}, (10, 3), dtype="float32", chunk_rows=2)
    entry.write_chunk(0, expected_rows(0, 2, (3,)))
    alice = claim_missing(entry, "alice", ttl=60)
    bob = claim_missing(entry, "bob", ttl=60)
    got_a = [next(alice).index]
    got_b = [next(bob).index]
    got_a.append(next(alice).index)
    assert got_a == [1, 3]
    assert got_b == [2]
    assert sorted(lease.index for lease in leases(entry)) == [1, 2, 3]


def test_fill_with_leases_leaves_others_chunks_and_clears_stale(location):
    url, options = location
    store = open_store(url, storage_options=options)
    entry = store.create_entry("feat-f", {}, (9, 2), dtype="float32", chunk_rows=3)
    held = claim(entry, 1, "other", ttl=60)
    stale = claim(entry, 2, "dead", ttl=0.1)
    time.sleep(0.2)
    written = fill_with_leases(entry, lambda a, b: expected_rows(a, b, (2,)), owner="me")
    assert written == [0, 2]  # chunk 1 is another live writer's; chunk 2's lease had expired
    assert entry.missing_chunks() == [1]
    assert [lease.index for lease in leases(entry)] == [1]  # ours were released
    assert held is not None
    assert stale is not None
    assert clear_expired(entry) == []
    release(entry, held)
    assert fill_with_leases(entry, lambda a, b: expected_rows(a, b, (2,)), owner="me") == [1]
    np.testing.assert_array_equal(entry.read(), expected_rows(0, 9, (2,)))


def test_hdf5_single_writer_claims_always_succeed(tmp_path):
    store = open_store(str(tmp_path / "s.h5"))
    entry = store.create_entry("feat-h", {}, (4, 2), chunk_rows=2)
    assert claim(entry, 0, "a") is not None
    assert claim(entry, 0, "b") is not None
    assert leases(entry) == []


def test_lease_objects_stay_out_of_the_hierarchy_and_metadata(tmp_path):
    store = open_store(str(tmp_path / "s.zarr"))
    entry = store.create_entry("feat-o", {}, (4, 2), chunk_rows=2)
    claim(entry, 0, "a", ttl=60)
    assert (tmp_path / "s.zarr" / "features" / "feat-o" / LEASE_DIR / "0").is_file()
    reopened = open_store(str(tmp_path / "s.zarr"), mode="r")
    assert reopened.entry_keys() == ["feat-o"]
    assert reopened.get_entry("feat-o").missing_chunks() == [0, 1]


def test_bad_arguments_are_refused(tmp_path):
    entry = open_store(str(tmp_path / "s.zarr")).create_entry("feat-b", {}, (4, 2), chunk_rows=2)
    with pytest.raises(LeaseError, match="positive ttl"):
        claim(entry, 0, "a", ttl=0)
    with pytest.raises(IndexError, match="out of range"):
        claim(entry, 5, "a")


def _run_two_writers(url: str, options: dict | None, key: str, delay: float) -> list[list[int]]:
    args = [json.dumps(options or {}), key]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, *args, owner, str(delay)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for owner in ("writer-a", "writer-b")
    ]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_two_processes_fill_one_entry_without_duplicates_or_losses(backend, tmp_path, request):
    if backend == "local":
        url, options = str(tmp_path / "s.zarr"), None
    else:
        url, options = request.getfixturevalue("s3_store")
    store = open_store(url, storage_options=options)
    entry = store.create_entry("feat-two", {}, (48, 5), dtype="float32", chunk_rows=4)
    a, b = _run_two_writers(url, options, "feat-two", delay=0.15)
    assert a, (a, b)  # both did work
    assert b, (a, b)  # both did work
    assert not set(a) & set(b), (a, b)  # and never the same chunk
    assert sorted(a + b) == list(range(entry.n_chunks))
    reread = open_store(url, mode="r", storage_options=options).get_entry("feat-two")
    assert reread.is_complete
    np.testing.assert_array_equal(reread.read(), expected_rows(0, 48, (5,)))
    assert reread.verify()["damaged"] == []
    assert leases(store.get_entry("feat-two")) == []
