"""Several processes using a new store at once all succeed; a name is registered once."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from featstore.store import open_store
from tests.conftest import make_image


def _open(path: str, barrier: object) -> str:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        open_store(path).list_datasets()
        return "ok"
    except Exception as exc:  # the test reports whatever went wrong
        return f"{type(exc).__name__}: {exc}"


def _add(path: str, source: str, barrier: object) -> str:
    from featstore.datasets import add_dataset

    barrier.wait()  # type: ignore[attr-defined]
    try:
        return add_dataset(open_store(path), "same", source).id
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def test_first_open_by_several_processes_at_once(tmp_path: Path):
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager:
        for trial in range(4):
            barrier = manager.Barrier(5)
            path = str(tmp_path / f"t{trial}" / "s.zarr")
            with ctx.Pool(5) as pool:
                results = pool.starmap(_open, [(path, barrier)] * 5)
            assert results == ["ok"] * 5


def test_two_adds_of_one_name_leave_one_dataset(tmp_path: Path):
    sources = []
    for k in range(2):
        root = tmp_path / f"src{k}"
        for c in ("a", "b"):
            for i in range(2):
                make_image(root / c / f"{i}.jpg", seed=100 * k + 10 * (c == "b") + i)
        sources.append(str(root))
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager:
        for trial in range(3):
            path = str(tmp_path / f"s{trial}.zarr")
            open_store(path)
            barrier = manager.Barrier(2)
            with ctx.Pool(2) as pool:
                results = pool.starmap(_add, [(path, s, barrier) for s in sources])
            registered = [d["id"] for d in open_store(path, "r").list_datasets()]
            # the name is claimed before anything is written: exactly one of them registers
            assert len(registered) == 1, results
            winners = [r for r in results if not r.startswith("DatasetMismatchError")]
            assert winners == registered, results  # whoever was told it won is what is stored
