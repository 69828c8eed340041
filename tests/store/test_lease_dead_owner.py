"""A lease of a process that died on this host is taken over at once; gc removes stale leases."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.store import open_store
from featstore.store.lease import claim, gc_leases, leases, owner_is_dead, read_lease


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_owner_is_dead_only_for_exited_processes_of_this_host():
    host = socket.gethostname()
    assert owner_is_dead(f"{host}:{_dead_pid()}:abcd1234")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not owner_is_dead(f"{host}:{live.pid}:abcd1234")
    finally:
        live.kill()
        live.wait()
    assert not owner_is_dead(f"other-host-{host}:{_dead_pid()}:abcd1234")  # cannot be asked
    assert not owner_is_dead("alice")


def test_a_dead_owners_lease_is_taken_over_before_it_expires(tmp_path: Path):
    store = open_store(str(tmp_path / "s.zarr"))
    entry = store.create_entry("feat-d", {}, (6, 2), chunk_rows=2)
    dead = f"{socket.gethostname()}:{_dead_pid()}:deadbeef"
    assert claim(entry, 0, dead, ttl=600) is not None
    live = f"{socket.gethostname()}:{subprocess.os.getpid()}:cafecafe"
    assert claim(entry, 1, live, ttl=600) is not None
    taken = claim(entry, 0, "bob", ttl=60)  # the ttl has 10 minutes left; the owner is gone
    assert taken is not None
    assert read_lease(entry, 0).owner == "bob"
    assert claim(entry, 1, "bob", ttl=60) is None  # a live owner keeps its lease


def test_gc_removes_stale_leases_and_keeps_live_ones(tmp_path: Path):
    url = str(tmp_path / "s.zarr")
    store = open_store(url)
    entry = store.create_entry("feat-g", {}, (6, 2), chunk_rows=2)
    claim(entry, 0, f"{socket.gethostname()}:{_dead_pid()}:deadbeef", ttl=600)
    claim(entry, 1, "alice", ttl=600)
    assert gc_leases(store, dry_run=True) == ["feat-g/_lease/0"]
    assert len(leases(entry)) == 2  # a dry run removes nothing
    result = CliRunner().invoke(cli, ["gc", "--store", url])
    assert result.exit_code == 0, result.output
    assert "removed feat-g/_lease/0" in result.output.splitlines()
    assert [lease.owner for lease in leases(entry)] == ["alice"]
