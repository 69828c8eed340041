"""Issue 24 items 1-2: `featstore extract --share` writers finish together, and survive faults.

Three teammates run the real CLI at once (tests/share_worker.py, one process each, several
trials per process so torch is imported once): all exit 0, the work is split, every chunk
is computed once, and the entries are byte-identical to a single-process run. A writer
killed with SIGKILL, or paused (SIGSTOP) past the lease TTL, has its chunks finished by the
others within TTL + one heartbeat; the paused one, resumed, changes no byte of the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import s3_fixtures
from click.testing import CliRunner
from conftest import make_image
from e2e_worker import REQUEST as E2E_REQUEST
from e2e_worker import RUN
from featstore.cli.main import cli

from featstore.datasets.sources import dataset_from_source
from featstore.devices import available_cpus
from featstore.extract import ExtractionRequest, extract, plan
from featstore.extract.distributed import ensure_entries, waiting_poll
from featstore.store import open_store
from featstore.store.lease import claim, release, renew
from featstore.store.lease_keeper import heartbeat_of

s3_env = s3_fixtures.s3_env
s3_server = s3_fixtures.s3_server
s3_store = s3_fixtures.s3_store

WORKER = str(Path(__file__).parents[1] / "share_worker.py")
REQUEST = [
    "extract", "-d", "tiny", "-m", "resnet18", "-l", "avgpool", "--weights", "random",
    "--resize", "40", "--crop", "32", "--device", "cpu", "--batch-size", "4",
]  # fmt: skip
N_CHUNKS = 5  # one entry of 18 rows in chunks of 4


def request(dataset: object) -> ExtractionRequest:
    """The tests' request (the CLI's REQUEST above): e2e_worker's, penultimate layer only."""
    r = {**E2E_REQUEST, "layers": ["avgpool"]}
    args = [r.pop("models"), r.pop("layers"), r.pop("pooling"), r.pop("views")]
    return ExtractionRequest.parse(dataset, *args, **r)


def digests(store) -> dict[str, str]:
    return {
        key: hashlib.sha256(store.get_entry(key).read().tobytes()).hexdigest()
        for key in sorted(store.entry_keys())
    }


def prepare(url: str, options, dataset) -> None:
    """The dataset, and the request's entries created in chunks of 4 rows (5 units of work)."""
    store = open_store(url, storage_options=options)
    store.put_dataset(dataset)
    ensure_entries(store, plan(store, request(dataset)))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """(dataset, store) of the request extracted by one plain process (the CLI's threads),
    once for the module: the conftest's image folder (3 classes, 4 train + 2 test each)."""
    root = tmp_path_factory.mktemp("share") / "imgs"
    seed = 0
    for split, count in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog", "fox"):
            for i in range(count):
                make_image(root / split / cls / f"{cls}_{split}_{i}.jpg", seed)
                seed += 1
    dataset = dataset_from_source("tiny", str(root))
    store = open_store(str(root.parent / "single.zarr"))
    store.put_dataset(dataset)
    extract(store, request(dataset), **{**RUN, "threads": available_cpus()})
    return dataset, store


@pytest.fixture
def single_run(single):
    """(dataset, digests of the single run)."""
    return single[0], digests(single[1])


def start(tmp_path: Path, name: str, trials: list[dict], **spec) -> subprocess.Popen:
    path = tmp_path / f"spec-{name}.json"
    barrier = tmp_path / "barrier"
    barrier.mkdir(exist_ok=True)
    path.write_text(json.dumps({"name": name, "barrier": str(barrier), "trials": trials, **spec}))
    return subprocess.Popen(
        [sys.executable, WORKER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen) -> list[dict]:
    stdout, stderr = proc.communicate(timeout=1500)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def computed(summary: dict) -> list[tuple[str, int]]:
    return [(k, c) for u in summary["units"] for k, cs in u["chunks"].items() for c in cs]


@pytest.mark.slow  # three processes that import torch, ten trials
def test_three_share_writers_finish_together_locally_and_on_s3(tmp_path, single_run, s3_store):
    dataset, expected = single_run
    s3_url, options = s3_store
    endpoint = options["client_kwargs"]["endpoint_url"]
    locations = [(str(tmp_path / f"local{i}.zarr"), None, []) for i in range(5)]
    locations += [
        (s3_url.replace("team.zarr", f"t{i}.zarr"), options, ["--storage-option", f"endpoint_url={endpoint}"])
        for i in range(5)
    ]  # fmt: skip
    trials = []
    for url, opts, extra in locations:
        prepare(url, opts, dataset)
        trials.append(
            {"writers": 3, "args": [*REQUEST, "--share", "--json", "--store", url, *extra]}
        )
    writers = [start(tmp_path, name, trials, unit_pause=0.3) for name in ("ann", "bob", "cy")]
    results = [finish(w) for w in writers]
    for n, (url, opts, _) in enumerate(locations):
        runs = [r[n] for r in results]
        assert [r["exit"] for r in runs] == [0, 0, 0], [r["output"] for r in runs]
        summaries = [json.loads(r["stdout"]) for r in runs]
        assert all(s["incomplete"] == {} for s in summaries)  # each one waited for the rest
        done = [c for s in summaries for c in computed(s)]
        assert len(done) == len(set(done)) == N_CHUNKS, (url, done)  # each chunk once
        assert sum(1 for s in summaries if computed(s)) >= 2, (url, done)  # the work was split
        store = open_store(url, "r", storage_options=opts)
        assert digests(store) == expected, url  # byte-identical to the single run
        assert all(store.get_entry(k).attrs["status"] == "complete" for k in expected)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the store's entries but the leases: the bytes a writer could change."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in (root / "features").rglob("*")
        if p.is_file() and "_lease" not in p.parts
    }


@pytest.mark.slow  # four processes that import torch
def test_a_killed_and_a_paused_writer_are_taken_over(tmp_path, single):
    dataset, reference = single
    expected = digests(reference)
    ttl = 4.0
    urls = [str(tmp_path / "killed.zarr"), str(tmp_path / "paused.zarr")]
    for url in urls:
        prepare(url, None, dataset)
    # the paused writer's store holds every chunk but unit 0's: the others only wait for it
    paused_store = open_store(urls[1])
    for key in expected:
        entry = paused_store.get_entry(key)
        for c in range(1, entry.n_chunks):
            entry.write_chunk(c, reference.get_entry(key).read_chunk(c))
    args = [[*REQUEST, "--share", "--json", "--lease-ttl", str(ttl), "--store", u] for u in urls]
    # the victims take the first unit; the others start once it is held
    both = [
        {"writers": 3, "args": a, "after": f"holding.{v}"}
        for a, v in zip(args, ("killed", "paused"), strict=True)
    ]
    steady = [start(tmp_path, name, both, unit_pause=0.2) for name in ("ann", "bob")]
    victims = {
        name: start(tmp_path, name, [{"writers": 3, "args": a}], first=n, hold=2)
        for n, (name, a) in enumerate(zip(("killed", "paused"), args, strict=True))
    }
    barrier = tmp_path / "barrier"

    def holding(name: str) -> dict:
        deadline = time.monotonic() + 400
        while not (barrier / f"holding.{name}").exists():
            assert time.monotonic() < deadline, f"writer {name} never held a unit"
            time.sleep(0.05)
        time.sleep(0.1)  # the file is written whole before the writer sleeps
        return json.loads((barrier / f"holding.{name}").read_text())

    # trial 1: SIGKILL while it holds its first unit's leases
    assert holding("killed")
    killed_at = time.monotonic()
    victims["killed"].send_signal(signal.SIGKILL)
    victims["killed"].wait(timeout=30)
    # trial 2 starts when ann and bob finish trial 1; its victim is paused holding a unit
    held = holding("paused")
    paused_at = time.monotonic()
    os.kill(victims["paused"].pid, signal.SIGSTOP)
    try:
        results = [finish(w) for w in steady]
        root = Path(urls[1])
        before = snapshot(root)
        while time.monotonic() - paused_at < ttl + 1:  # resumed only past the TTL
            time.sleep(0.1)
    finally:
        os.kill(victims["paused"].pid, signal.SIGCONT)
    resumed = finish(victims["paused"])[0]
    # the others finished the killed writer's chunks; every run exited 0
    assert [r[0]["exit"] for r in results] == [0, 0], [r[0]["output"] for r in results]
    assert digests(open_store(urls[0], "r")) == expected
    # ... and the paused one's: they waited for its lease to expire (at most the TTL after
    # the pause) plus at most one heartbeat, then took its unit over
    assert [r[1]["exit"] for r in results] == [0, 0], [r[1]["output"] for r in results]
    summaries = [json.loads(r[1]["stdout"]) for r in results]
    taken = [c for s in summaries for c in computed(s)]
    assert sorted(taken) == sorted((k, c) for k, cs in held.items() for c in cs)
    takers = [s for s in summaries if computed(s)]  # the other one then waits on the taker
    assert len(takers) == 1, summaries
    assert takers[0]["waited_s"] <= ttl + heartbeat_of(ttl), summaries
    # resumed past the TTL, it wrote nothing of the unit it had lost: not one byte changed
    assert resumed["exit"] == 0, resumed["output"]
    summary = json.loads(resumed["stdout"])  # it found the chunk done, or its fence refused
    assert summary["computed_chunks"] == 0
    assert computed(summary) == []
    assert summary["incomplete"] == {}
    assert snapshot(root) == before
    store = open_store(urls[1], "r")
    assert digests(store) == expected
    assert all(store.get_entry(k).verify()["damaged"] == [] for k in expected)
    assert killed_at < paused_at


def test_share_waits_for_the_chunk_a_teammate_holds(tmp_path, single):
    """In-process: the teammate renews its lease while the CLI works, then writes its chunk;
    the CLI says what it waits on (entry, chunks, holder, lease age) and exits 0 after."""
    dataset, reference = single
    expected = digests(reference)
    url = str(tmp_path / "s.zarr")
    prepare(url, None, dataset)
    store = open_store(url)
    key = sorted(expected)[0]
    entry = store.get_entry(key)
    lease = claim(entry, 2, "teammate", ttl=1.0)
    stop = threading.Event()

    def teammate() -> None:
        nonlocal lease
        others = [k for k in expected if k != key]
        while not stop.is_set():  # renews until every other chunk is done, then 1.5 s more
            lease = renew(entry, lease, ttl=1.0)
            done = all(store.get_entry(k).is_complete for k in others)
            if done and entry.missing_chunks() == [2]:
                time.sleep(1.5)  # heartbeats in between: a live holder, never taken over
                break
            time.sleep(0.25)
        lease = renew(entry, lease, ttl=1.0)
        entry.write_chunk(2, reference.get_entry(key).read_chunk(2))
        release(entry, lease)

    helper = threading.Thread(target=teammate)
    helper.start()
    try:
        result = CliRunner().invoke(cli, [*REQUEST, "--share", "--store", url])
    finally:
        stop.set()
        helper.join()
    assert result.exit_code == 0, result.output
    note = f"waiting for other writers: {key}: owner teammate (chunks 2; lease age "
    assert note in result.stderr, result.output
    assert "4 chunks in" in result.stdout, result.stdout  # the teammate wrote the fifth
    assert "waited" in result.stdout
    assert "left to other writers" not in result.stdout
    assert digests(open_store(url, "r")) == expected


def test_share_no_wait_returns_after_its_share_and_names_the_holder(tmp_path, single_run):
    dataset, expected = single_run
    url = str(tmp_path / "s.zarr")
    prepare(url, None, dataset)
    store = open_store(url)
    key = sorted(expected)[0]
    lease = claim(store.get_entry(key), 4, "teammate", ttl=600)
    result = CliRunner().invoke(cli, [*REQUEST, "--share", "--no-wait", "--store", url])
    assert result.exit_code == 0, result.output
    assert "left to other writers (--no-wait" in result.stdout
    assert f"  {key}: chunks 4 held by owner teammate (chunks 4; lease age " in result.stdout
    assert store.get_entry(key).missing_chunks() == [4]
    release(store.get_entry(key), lease)  # the teammate gives up: a rerun finishes the entry
    result = CliRunner().invoke(cli, [*REQUEST, "--share", "--json", "--store", url])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["computed_chunks"] == 1
    assert digests(open_store(url, "r")) == expected


def test_lease_ttl_is_checked_and_sets_the_waiting_pace(tmp_path):
    result = CliRunner().invoke(cli, [*REQUEST, "--share", "--lease-ttl", "0", "--store", "x"])
    assert result.exit_code == 2
    assert "--lease-ttl" in result.output
    assert heartbeat_of(3.0) == 1.0
    assert waiting_poll(3.0) == 1.0
    assert waiting_poll(600) == 2.0
