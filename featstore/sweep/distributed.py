"""Sweep cells on a Dask cluster (``featstore sweep SPEC --dask ADDRESS``).

Each cell's evaluation is one Dask task running :func:`featstore.sweep.run.evaluate_job`
on a worker, which opens the store from the job's StoreSpec and writes the cell's own
record under its content key (cells never touch a shared object), exactly as a local
worker process does; so the records equal a local run's. Results come back as each cell
finishes (the sweep's progress ticks per cell). A cell whose task raised on the worker, or
whose worker died, comes back as a failed cell with its setting and the error: never lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from featstore.sweep.run import evaluate_job

__all__ = ["CellRunner", "dask_cells", "failed_cell"]

# jobs -> (position in jobs, cell summary) as each cell finishes
CellRunner = Callable[[Sequence[Mapping[str, Any]]], Iterator[tuple[int, dict[str, Any]]]]


def failed_cell(job: Mapping[str, Any], exc: BaseException) -> dict[str, Any]:
    """The summary of a cell that did not come back from the cluster (its setting kept)."""
    return {
        "label": job["label"],
        "dataset": job["dataset"],
        "task": job["task"],
        "setting": job["setting"],
        "ok": False,
        "error": f"{type(exc).__name__} on the Dask cluster: {exc}",
        "seconds": 0.0,
    }


def dask_cells(client: Callable[[], Any]) -> CellRunner:
    """A cell runner submitting each cell to the Dask client ``client()`` gives (connected
    when the first cell is submitted: a sweep with every cell cached connects for nothing)."""

    def run(jobs: Sequence[Mapping[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
        from dask.distributed import as_completed

        dask_client = client()
        futures = {
            dask_client.submit(
                evaluate_job, dict(job), pure=False, key=f"cell-{i}-{job['label']}"
            ): i
            for i, job in enumerate(jobs)
        }
        try:
            for future in as_completed(futures):  # type: ignore[no-untyped-call]  # dask: untyped
                i = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # a worker died or the task raised
                    result = failed_cell(jobs[i], exc)
                yield i, result
        finally:  # interrupted (Ctrl-C) or done: nothing left running for this sweep
            dask_client.cancel([f for f in futures if not f.done()])

    return run
