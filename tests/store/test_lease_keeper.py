"""The fence of a leased writer (store/lease_keeper.py): a writer whose lease was taken over
writes no marker for that chunk, never re-creates a released lease, and forgets a chunk
whose rows it overwrote after the new holder marked it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from featstore.errors import LeaseError
from featstore.store import open_store
from featstore.store.lease import claim, read_lease, release
from featstore.store.lease_keeper import LeaseKeeper


def test_a_writer_paused_past_its_ttl_is_fenced_off(tmp_path):
    entry = open_store(str(tmp_path / "s.zarr")).create_entry(
        "feat-k", {}, (8, 2), dtype="float32", chunk_rows=4
    )
    late = LeaseKeeper([(entry, claim(entry, 0, "paused", ttl=0.3))], ttl=0.3)  # never beats
    time.sleep(0.4)  # paused past its ttl
    taker = claim(entry, 0, "taker", ttl=60)
    assert taker is not None
    assert not late.admit(entry, 0)  # the renewal that admits a write proves the loss
    entry.write_chunk(0, np.ones((4, 2), dtype="float32"))
    release(entry, taker)
    assert not late.admit(entry, 0)
    assert read_lease(entry, 0) is None
    np.testing.assert_array_equal(entry.read_chunk(0), np.ones((4, 2)))


def test_a_lease_lost_during_the_row_write_leaves_no_marker_of_the_late_writer(tmp_path):
    entry = open_store(str(tmp_path / "s.zarr")).create_entry(
        "feat-k", {}, (8, 2), dtype="float32", chunk_rows=4
    )
    slow = LeaseKeeper([(entry, claim(entry, 1, "slow", ttl=60))], ttl=60)
    assert slow.admit(entry, 1)
    release(entry, slow.leases[0][1])  # meanwhile another writer takes chunk 1 and marks it
    thief = claim(entry, 1, "thief", ttl=60)
    entry.write_chunk(1, np.full((4, 2), 3.0, dtype="float32"))
    release(entry, thief)
    with pytest.raises(LeaseError, match="taken over while it was written"):
        entry.write_chunk(
            1, np.full((4, 2), 2.0, dtype="float32"), before_marker=lambda: slow.confirm(entry, 1)
        )
    slow.after_lost(entry, 1)  # its rows no longer match the thief's marker: forgotten
    assert entry.marker(1) is None
    assert entry.missing_chunks() == [0, 1]
    assert slow.dropped == [(entry.key, 1)]
