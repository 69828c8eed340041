"""Issue 24 item 4: sweeps scale out; the evaluation cells run on a Dask cluster too.

A LocalCluster in this process (one worker thread: no interpreter start per worker) runs
the cells of a tiny sweep; the records equal those of a local run, progress ticks once per
cell, and a cell that fails on the cluster comes back with its setting and error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from featstore.store import open_store
from featstore.sweep import distributed as dist_mod
from featstore.sweep.distributed import dask_cells
from featstore.sweep.plan import factor_planner
from featstore.sweep.run import run_sweep
from tests.sweep.test_sweep_run import FakeExtractor, _dataset, _metrics, _spec


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _store(path: Path) -> Any:
    s = open_store(str(path))
    s.put_dataset(_dataset())
    return s


SPEC = {
    "networks": [{"name": "netA", "layers": ["l1", "l3"]}],
    "pooling": ["avg"],
    "baseline": {"layer": "l1"},
}


def test_cells_on_dask_equal_a_local_run_with_progress_per_cell(client, tmp_path: Path) -> None:
    spec = _spec(**SPEC)
    ticks: list[tuple[int, int, str]] = []
    on_dask = run_sweep(
        _store(tmp_path / "dask.zarr"), spec, extract_fn=FakeExtractor(), planner=factor_planner,
        cell_runner=dask_cells(lambda: client),
        progress=lambda done, total, info: ticks.append((done, total, info["cell"])),
    )  # fmt: skip
    assert on_dask["cells_on"] == "dask"
    assert on_dask["failed"] == []
    assert on_dask["evaluated"] == 8
    assert [(d, t) for d, t, _ in ticks] == [(i, 8) for i in range(1, 9)]
    assert len({label for _, _, label in ticks}) == 8  # each cell once
    local = run_sweep(
        _store(tmp_path / "local.zarr"), spec, extract_fn=FakeExtractor(), planner=factor_planner
    )
    assert local["cells_on"] == "local"
    assert _metrics(on_dask) == _metrics(local)
    dask_store, local_store = (
        open_store(str(tmp_path / "dask.zarr")),
        open_store(str(tmp_path / "local.zarr")),
    )
    assert sorted(dask_store.result_keys()) == sorted(local_store.result_keys())
    # a rerun is all lookups: nothing is sent to the cluster
    sent: list[int] = []
    again = run_sweep(
        dask_store, spec, extract_fn=FakeExtractor(), planner=factor_planner,
        cell_runner=lambda jobs: sent.append(len(jobs)) or iter(()),
    )  # fmt: skip
    assert again["cached_results"] == 8
    assert sent == []


def test_a_cell_failing_on_the_cluster_is_reported_with_its_setting(
    client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = dist_mod.evaluate_job

    def flaky(job: dict[str, Any], store: Any = None) -> dict[str, Any]:
        if job["setting"]["layer"] == "l3" and job["task"] == "classify":
            raise RuntimeError("worker lost its disk")
        return real(job, store)

    monkeypatch.setattr(dist_mod, "evaluate_job", flaky)  # the worker runs in this process
    spec = _spec(**SPEC)
    summary = run_sweep(
        _store(tmp_path / "s.zarr"), spec, extract_fn=FakeExtractor(), planner=factor_planner,
        cell_runner=dask_cells(lambda: client),
    )  # fmt: skip
    failed = summary["failed"]
    assert len(failed) == 2
    assert summary["n_cells"] == 8
    for cell in failed:
        assert cell["setting"]["layer"] == "l3"
        assert cell["task"] == "classify"
        assert "RuntimeError on the Dask cluster: worker lost its disk" in cell["error"]
    assert summary["evaluated"] == 6


def test_a_store_the_cluster_cannot_open_is_evaluated_here(client) -> None:
    store = open_store("memory://sweep-dask-test/s.zarr")
    store.put_dataset(_dataset())
    summary = run_sweep(
        store, _spec(**SPEC), extract_fn=FakeExtractor(), planner=factor_planner,
        cell_runner=dask_cells(lambda: client),
    )  # fmt: skip
    assert summary["cells_on"] == "local"
    assert summary["failed"] == []
    assert any("not on the cluster" in n for n in summary["notes"])
