"""Issue 7's done-when, on a real S3 API (moto on 127.0.0.1), with separate processes.

Features extracted into the shared store by two concurrent processes are complete and
correct, evaluated by a third, copied to a local store, exported to HDF5 and read back, imported again:
byte-identical to a plain single-process extraction everywhere.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import s3_fixtures
from e2e_worker import RUN, extraction_request

from featstore.datasets.sources import dataset_from_source
from featstore.extract import extract
from featstore.store import open_store
from featstore.store.copy import copy_store, export_hdf5, import_hdf5

s3_env = s3_fixtures.s3_env
s3_server = s3_fixtures.s3_server
s3_store = s3_fixtures.s3_store

WORKER = str(Path(__file__).parents[1] / "e2e_worker.py")


def digests(store) -> dict[str, str]:
    return {
        key: hashlib.sha256(store.get_entry(key).read().tobytes()).hexdigest()
        for key in sorted(store.entry_keys())
    }


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, WORKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow  # four processes that each import torch: 30-60 s on 2 busy cores
def test_extract_share_evaluate_copy_export(s3_store, image_folder, tmp_path):
    url, options = s3_store
    dataset = dataset_from_source("tiny", str(image_folder))
    open_store(url, storage_options=options).put_dataset(dataset)
    opts = json.dumps(options)
    # two teammates extract the same entries into the shared store at the same time
    writers = [start("extract", url, opts, owner, "0.3") for owner in ("alice", "bob")]
    # meanwhile, the reference: one plain process, local store
    reference = open_store(str(tmp_path / "ref.zarr"))
    reference.put_dataset(dataset)
    extract(reference, extraction_request(dataset), **RUN)
    expected = digests(reference)
    assert len(expected) == 2
    alice, bob = (finish(w) for w in writers)
    pairs_a = {tuple(p) for p in alice["chunks"]}
    pairs_b = {tuple(p) for p in bob["chunks"]}
    assert not pairs_a & pairs_b  # no chunk computed twice
    n_chunks = sum(reference.get_entry(k).n_chunks for k in expected)
    assert len(pairs_a | pairs_b) == n_chunks == 10  # 5 chunks of 4 rows, two entries
    assert alice["incomplete"] == {} or bob["incomplete"] == {}
    # another process evaluates from the shared store (and stores its result there)
    evaluated = finish(start("evaluate", url, opts))
    assert evaluated["digests"] == expected
    assert 0.0 <= evaluated["metrics"]["accuracy"] <= 1.0
    shared = open_store(url, mode="r", storage_options=options)
    assert digests(shared) == expected
    assert all(shared.get_entry(k).attrs["status"] == "complete" for k in expected)
    assert shared.result_keys() == [evaluated["key"]]
    # copied to a local store
    local = open_store(str(tmp_path / "local.zarr"))
    summary = copy_store(shared, local)
    assert summary["ok"]
    assert summary["n_chunks_copied"] == 10
    assert digests(local) == expected
    assert local.result_keys() == [evaluated["key"]]
    # exported to one HDF5 file, read back in another process, imported into a new S3 store
    assert export_hdf5(local, tmp_path / "team.h5")["ok"]
    with open_store(str(tmp_path / "team.h5"), mode="r") as h5:
        assert digests(h5) == expected
        assert h5.result_keys() == [evaluated["key"]]
    imported_url = url.replace("team.zarr", "imported.zarr")
    imported = open_store(imported_url, storage_options=options)
    assert import_hdf5(tmp_path / "team.h5", imported)["ok"]
    assert digests(open_store(imported_url, "r", storage_options=options)) == expected
