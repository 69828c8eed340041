"""Extraction in whole-chunk units: in this process under leases, and on a Dask LocalCluster."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import s3_fixtures
from e2e_worker import RUN, extraction_request

from featstore.datasets.sources import dataset_from_source
from featstore.errors import ExtractionError, StoreError
from featstore.extract import ExtractionRequest, extract, plan
from featstore.extract.distributed import connect, run_distributed, work_units
from featstore.store import open_store
from featstore.store.lease import claim, release

s3_env = s3_fixtures.s3_env
s3_server = s3_fixtures.s3_server
s3_store = s3_fixtures.s3_store


def digests(store) -> dict[str, str]:
    return {
        key: hashlib.sha256(store.get_entry(key).read().tobytes()).hexdigest()
        for key in sorted(store.entry_keys())
    }


@pytest.fixture
def reference(tmp_path, image_folder):
    """The request extracted by one plain process; returns (dataset, digests)."""
    store = open_store(str(tmp_path / "ref.zarr"))
    dataset = dataset_from_source("tiny", str(image_folder))
    store.put_dataset(dataset)
    extract(store, extraction_request(dataset), **RUN)
    return dataset, digests(store)


def test_units_cover_whole_chunks_of_every_entry(tmp_path, image_folder):
    store = open_store(str(tmp_path / "s.zarr"))
    dataset = dataset_from_source("tiny", str(image_folder))
    p = plan(store, extraction_request(dataset))
    assert [e.chunk_rows for e in p.entries] == [4, 4]
    assert work_units(p) == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 18)]
    first, second = p.entries  # plans are immutable: a changed plan is a new one
    p = dataclasses.replace(
        p,
        entries=(
            dataclasses.replace(first, missing_chunks=(3,)),
            dataclasses.replace(second, missing_chunks=(1, 3)),
        ),
    )
    assert work_units(p) == [(4, 8), (12, 16)]  # only units with work left
    p = dataclasses.replace(p, entries=(p.entries[0], dataclasses.replace(second, chunk_rows=3)))
    with pytest.raises(ExtractionError, match="do not nest"):
        work_units(p)


def test_leased_units_in_process_match_a_plain_run(tmp_path, reference):
    dataset, expected = reference
    store = open_store(str(tmp_path / "s.zarr"))
    store.put_dataset(dataset)
    # a teammate holds unit 2 (rows 8-12) of the penultimate entry: we leave it to them
    p = plan(store, extraction_request(dataset))
    penultimate = next(e for e in p.entries if e.layer == "avgpool")
    key = penultimate.key
    entry = store.create_entry(
        key, dict(penultimate.attrs), (18, *penultimate.row_shape), chunk_rows=4
    )
    theirs = claim(entry, 2, "teammate", ttl=60)
    summary = run_distributed(store, extraction_request("tiny"), owner="me", wait=False, **RUN)
    assert summary["incomplete"] == {key: [2]}
    assert summary["held"][key].startswith("owner teammate (chunks 2; lease age ")
    assert summary["computed_chunks"] == 9
    release(entry, theirs)  # the teammate gave up; a rerun picks the chunk up
    again = run_distributed(store, extraction_request("tiny"), owner="me", **RUN)
    assert again["computed_chunks"] == 1
    assert again["incomplete"] == {}
    assert digests(store) == expected
    assert all(store.get_entry(k).attrs["status"] == "complete" for k in expected)
    done = run_distributed(store, extraction_request("tiny"), owner="me", **RUN)
    assert done["forward_batches"] == 0
    assert done["units"] == []


@pytest.mark.slow  # worker processes import torch: 25-45 s on 2 busy cores
def test_dask_local_cluster_writes_byte_identical_features_to_s3(s3_store, reference):
    """Two worker processes open the S3 store themselves from URL + options and write to it."""
    dataset, expected = reference
    url, options = s3_store
    summary = run_distributed(
        url, extraction_request(dataset), client="local:2", storage_options=options, **RUN
    )
    assert summary["computed_chunks"] == 10
    assert summary["incomplete"] == {}
    owners = {u["owner"] for u in summary["units"]}
    assert len(summary["units"]) == 5
    assert len(owners) == 5
    shared = open_store(url, mode="r", storage_options=options)
    assert digests(shared) == expected  # byte-identical to the single-process run
    for key in expected:
        assert shared.get_entry(key).verify()["damaged"] == []


def test_connect_refuses_a_bad_local_spec():
    with pytest.raises(StoreError, match="needs a number of workers"):
        connect("local:two")


def test_cli_extract_share_and_dask_options(tmp_path, image_folder, reference):
    from click.testing import CliRunner
    from featstore.cli.main import cli

    _, expected = reference
    url = str(tmp_path / "cli.zarr")
    open_store(url).put_dataset(dataset_from_source("tiny", str(image_folder)))
    base = [
        "extract",
        "-d",
        "tiny",
        "-m",
        "resnet18",
        "-l",
        "layer3,avgpool",
        "--weights",
        "random",
        "--resize",
        "40",
        "--crop",
        "32",
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--store",
        url,
    ]
    # chunk_rows is not a CLI option: the CLI's default chunking must give the same bytes
    result = CliRunner().invoke(cli, [*base, "--share"])
    assert result.exit_code == 0, result.output
    assert "units of work" in result.output
    assert "0 forward batches" not in result.output
    assert digests(open_store(url, "r")) == expected
    result = CliRunner().invoke(cli, [*base, "--dask", "local:two"])
    assert result.exit_code == 0
    assert "nothing to compute" in result.output
    other = str(tmp_path / "other.zarr")
    open_store(other).put_dataset(dataset_from_source("tiny", str(image_folder)))
    result = CliRunner().invoke(cli, [*base[:-1], other, "--dask", "local:two"])
    assert result.exit_code == 1
    assert "Error: --dask local:N needs a number of workers, not 'local:two'" in result.output


def test_sweep_extractor_runs_a_group_on_a_dask_client(tmp_path, image_folder):
    """The sweep's extract_fn hook on Dask (threads in this process: no torch import per worker)."""
    from types import SimpleNamespace

    from dask.distributed import Client, LocalCluster

    from featstore.extract.distributed import DaskExtractor

    dataset = dataset_from_source("tiny", str(image_folder))
    plain = open_store(str(tmp_path / "plain.zarr"))
    request = ExtractionRequest.parse(
        dataset, ["resnet18"], ["avgpool"], "avg", ["plain"], weights="random", device="cpu"
    )
    extract(plain, request, batch_size=4, num_workers=0)
    store = open_store(str(tmp_path / "s.zarr"))
    store.put_dataset(dataset)
    wanted = [SimpleNamespace(layer="avgpool", pooling="avg", view="plain")]
    group = SimpleNamespace(network="resnet18", weights="random", missing=wanted)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        DaskExtractor(client) as on_dask,
    ):
        summary = on_dask(store, dataset, group, {"batch_size": 4, "device": "cpu"}, None)
    assert summary["forward_batches"] > 0
    assert summary["incomplete"] == {}
    assert digests(store) == digests(plain)


def test_leases_of_a_running_unit_are_renewed(tmp_path):
    import time

    from featstore.store.lease_keeper import LeaseKeeper

    entry = open_store(str(tmp_path / "s.zarr")).create_entry("feat-r", {}, (8, 2), chunk_rows=4)
    mine = [
        (entry, claim(entry, 0, "slow-unit", ttl=0.6)),
        (entry, claim(entry, 1, "slow-unit", ttl=0.6)),
    ]
    renewer = LeaseKeeper(mine, ttl=0.6)
    renewer.start()
    time.sleep(1.0)  # longer than the ttl: without renewal the leases would have expired
    assert claim(entry, 0, "other", ttl=60) is None
    assert claim(entry, 1, "other", ttl=60) is None
    held = renewer.leases
    assert all(lease.token != old.token for (_, lease), (_, old) in zip(held, mine, strict=True))
    renewer.stop()  # releases what it still holds
    assert claim(entry, 0, "other", ttl=60) is not None
