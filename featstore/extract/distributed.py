"""Extraction split into whole-chunk units, run on Dask workers or shared with teammates via leases.

A *unit* is a range of rows that covers whole chunks of every entry of a request: its
size is the largest chunk (or shard) of those entries, and extraction's chunk sizes are
powers of two, so smaller chunks nest inside. Each unit runs the ordinary extraction
pipeline restricted to its rows, after leasing the unit's missing chunks (see
featstore.store.lease): two processes (two teammates, or Dask workers and a teammate)
never compute the same chunk, and a unit whose holder died is picked up once its lease
expires. Units write straight into the store; the markers stay the truth.

Dask workers open the store themselves from its URL and storage options (a StoreSpec,
whose repr hides secrets). Zarr settings are passed per array by the store code, since
zarr config set in the client process does not reach workers (DESIGN.md).

    from featstore.extract.distributed import run_distributed
    run_distributed("s3://team/feats.zarr", "flowers", ["resnet50"], ["layer4"],
                    client="local:4", storage_options={"profile": "team"})
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featstore.errors import ExtractionError, LeaseError, StoreError
from featstore.progress import Progress
from featstore.store.base import Store
from featstore.store.lease import DEFAULT_TTL, Lease, claim, default_owner, release, renew
from featstore.store.spec import StoreSpec

# plan() arguments a unit forwards to the workers' own plan (the request, not its result)
PLAN_OPTIONS = (
    "weights",
    "preprocess",
    "device",
    "amp",
    "compute_dtype",
    "dtype",
    "chunk_rows",
)
RUN_OPTIONS = ("batch_size", "num_workers", "threads")


@dataclass(frozen=True)
class Request:
    """One extraction request, as plain data that travels to Dask workers."""

    dataset_id: str
    models: tuple[str, ...]
    layers: Any = None
    pooling: Any = "avg"
    views: Any = ("plain",)
    plan_options: tuple[tuple[str, Any], ...] = ()
    run_options: tuple[tuple[str, Any], ...] = ()

    def plan(self, store: Store) -> Any:
        from featstore.extract import plan

        dataset = store.get_dataset(self.dataset_id)
        return plan(
            store,
            dataset,
            list(self.models),
            self.layers,
            self.pooling,
            self.views,
            **dict(self.plan_options),
        )


# --- units -----------------------------------------------------------------------------
def unit_rows(p: Any) -> int:
    """Rows per unit: the largest write unit among the entries still to fill."""
    sizes = [int(e.chunk_rows) for e in p.todo]
    largest = max(sizes) if sizes else 1
    for size in sizes:
        if largest % size:
            raise ExtractionError(
                f"entries of one request have chunks of {size} and {largest} rows, which do not "
                "nest; extract them in separate requests"
            )
    return largest


def work_units(p: Any) -> list[tuple[int, int]]:
    """Row ranges [start, stop) covering whole chunks of every entry, each with work to do."""
    size = unit_rows(p)
    n_rows = int(p.dataset.n)
    units = []
    for u in range(math.ceil(n_rows / size) if n_rows else 0):
        start, stop = u * size, min((u + 1) * size, n_rows)
        for e in p.todo:
            cr = int(e.chunk_rows)
            if any(start // cr <= c < math.ceil(stop / cr) for c in e.missing_chunks):
                units.append((start, stop))
                break
    return units


def ensure_entries(store: Store, p: Any) -> None:
    """Create the request's entries up front, so every unit sees the same chunk geometry."""
    from featstore.extract.pipeline import open_entries

    open_entries(store, p, [e for e in p.todo if not e.exists])


def run_unit(
    store: Store,
    p: Any,
    rows: tuple[int, int],
    *,
    owner: str,
    ttl: float = DEFAULT_TTL,
    run_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Lease the missing chunks of ``rows`` in every entry, extract them, release the leases."""
    from featstore.extract import extract

    start, stop = rows
    allowed: dict[str, set[int]] = {}
    held_elsewhere: dict[str, list[int]] = {}
    leases: list[tuple[Any, Lease]] = []
    for e in p.todo:
        entry = store.get_entry(e.key)
        cr = entry.chunk_rows
        wanted = set(range(start // cr, math.ceil(stop / cr)))
        for c in sorted(wanted & set(entry.missing_chunks())):
            lease = claim(entry, c, owner, ttl)
            if lease is None:
                held_elsewhere.setdefault(e.key, []).append(c)
            elif entry.marker(c) is not None:  # finished elsewhere since we listed
                release(entry, lease)
            else:
                leases.append((entry, lease))
                allowed.setdefault(e.key, set()).add(c)
    out: dict[str, Any] = {
        "rows": [start, stop],
        "owner": owner,
        "chunks": {k: sorted(v) for k, v in allowed.items()},
        "held_elsewhere": held_elsewhere,
        "forward_batches": 0,
        "computed_chunks": 0,
    }
    if not allowed:
        return out
    renewer = _Renewer(leases, ttl)
    renewer.start()
    try:
        summary = extract(store, p.dataset, plan_=p, work=allowed, **dict(run_options or {}))
    finally:
        renewer.stop()
        for entry, lease in renewer.leases:
            release(entry, lease)
    out["forward_batches"] = int(summary.get("forward_batches", 0))
    out["computed_chunks"] = int(summary.get("computed_chunks", 0))
    return out


class _Renewer(threading.Thread):
    """Renews a unit's leases every ttl/3 while it computes, so a slow unit keeps them."""

    def __init__(self, leases: list[tuple[Any, Lease]], ttl: float) -> None:
        super().__init__(name="featstore-lease-renewer", daemon=True)
        self.leases = list(leases)
        self.ttl = ttl
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._stop_event.wait(self.ttl / 3):
            with self._lock:
                renewed = []
                for entry, lease in self.leases:
                    try:
                        renewed.append((entry, renew(entry, lease, self.ttl)))
                    except (LeaseError, OSError):
                        renewed.append(
                            (entry, lease)
                        )  # taken over: the work is duplicated, not lost
                self.leases = renewed

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _unit_task(
    spec: StoreSpec, request: Request, rows: tuple[int, int], owner: str, ttl: float
) -> dict[str, Any]:
    """What a Dask worker runs: open the store itself, plan, and fill one unit."""
    store = spec.open("a")
    p = request.plan(store)
    options = dict(request.run_options)
    options["num_workers"] = 0  # Dask worker processes are daemonic: no loader children
    return run_unit(store, p, rows, owner=owner, ttl=ttl, run_options=options)


# --- clients ---------------------------------------------------------------------------
def connect(address: Any) -> tuple[Any, Any]:
    """(client, cluster we started or None) for an address, "local:N" or an existing Client."""
    from dask.distributed import Client, LocalCluster

    if isinstance(address, Client):
        return address, None
    text = str(address)
    if text == "local" or text.startswith("local:"):
        n = text.partition(":")[2]
        if n and not n.isdigit():
            raise StoreError(f"--dask local:N needs a number of workers, not {text!r}")
        cluster = LocalCluster(
            n_workers=int(n) if n else None,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        return Client(cluster), cluster
    return Client(text), None


def _request(
    dataset_id: str,
    models: str | Sequence[str],
    layers: Any,
    pooling: Any,
    views: Any,
    options: Mapping[str, Any],
) -> Request:
    unknown = set(options) - set(PLAN_OPTIONS) - set(RUN_OPTIONS)
    if unknown:
        raise ExtractionError(
            f"unknown extraction options for a distributed run: {sorted(unknown)}"
        )
    model_list = (models,) if isinstance(models, str) else tuple(models)
    return Request(
        dataset_id=dataset_id,
        models=model_list,
        layers=layers,
        pooling=pooling,
        views=views,
        plan_options=tuple((k, options[k]) for k in PLAN_OPTIONS if k in options),
        run_options=tuple((k, options[k]) for k in RUN_OPTIONS if k in options),
    )


def run_distributed(
    store: Store | str,
    dataset: Any,
    models: str | Sequence[str],
    layers: Any = None,
    pooling: Any = "avg",
    views: Any = ("plain",),
    *,
    client: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    owner: str | None = None,
    ttl: float = DEFAULT_TTL,
    progress: Progress | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Extract the request unit by unit: on Dask (``client``: address, "local:N", Client) or here.

    With ``client=None`` the units run in this process, leased one at a time: that is how
    two teammates extracting into one shared store split the work. ``options`` are
    extract()'s (weights, preprocess, device, compute_dtype, dtype, chunk_rows,
    batch_size, num_workers, threads). Returns a summary like extract()'s, plus the units.
    """
    from featstore.store import open_store

    t0 = time.perf_counter()
    if not isinstance(store, Store):
        store = open_store(store, mode="a", storage_options=dict(storage_options or {}) or None)
    if isinstance(dataset, str):
        dataset = store.get_dataset(dataset)
    if dataset.id not in store.dataset_ids():
        store.put_dataset(dataset)  # workers load it from the store
    request = _request(dataset.id, models, layers, pooling, views, options)
    p = request.plan(store)
    summary: dict[str, Any] = {
        "dataset_id": dataset.id,
        "keys": [e.key for e in p.entries],
        "entries": len(p.entries),
        "complete_before": len(p.entries) - len(p.todo),
        "units": [],
        "forward_batches": 0,
        "computed_chunks": 0,
    }
    if p.todo:
        ensure_entries(store, p)
        units = work_units(p)
        owner = owner or default_owner()
        results = _run_units(store, request, p, units, client, owner, ttl, progress)
        summary["units"] = results
        summary["forward_batches"] = sum(r["forward_batches"] for r in results)
        summary["computed_chunks"] = sum(r["computed_chunks"] for r in results)
    missing = {}
    for key in summary["keys"]:
        entry = store.get_entry(key)
        if entry.missing_chunks():
            missing[key] = entry.missing_chunks()
        elif entry.attrs.get("status") != "complete":
            entry.update_attrs(status="complete")
    summary["incomplete"] = missing  # chunks other live writers still hold
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def _run_units(
    store: Store,
    request: Request,
    p: Any,
    units: list[tuple[int, int]],
    client: Any,
    owner: str,
    ttl: float,
    progress: Progress | None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    if client is None:
        for n, rows in enumerate(units):
            results.append(
                run_unit(  # asks the entries what is missing when it leases, not the plan
                    store,
                    p,
                    rows,
                    owner=owner,
                    ttl=ttl,
                    run_options=dict(request.run_options),
                )
            )
            if progress is not None:
                progress(n + 1, len(units), {"rows": f"{rows[0]}-{rows[1]}"})
        return results
    from dask.distributed import as_completed

    dask_client, cluster = connect(client)
    spec = StoreSpec.of(store)
    try:
        futures = [
            dask_client.submit(
                _unit_task, spec, request, rows, f"{owner}/unit{rows[0]}", ttl, pure=False
            )
            for rows in units
        ]
        for n, future in enumerate(as_completed(futures)):
            results.append(future.result())
            if progress is not None:
                progress(n + 1, len(units), {})
    finally:
        if cluster is not None:
            dask_client.close()
            cluster.close()
    results.sort(key=lambda r: r["rows"][0])
    return results


class DaskExtractor:
    """An ``extract_fn`` for ``featstore.sweep.run.run_sweep``: each network pass runs on Dask.

    One client (and, for "local:N", one LocalCluster) serves every extraction group of the
    sweep; call ``close()`` at the end (or use it as a context manager).
    """

    def __init__(self, address: Any, ttl: float = DEFAULT_TTL) -> None:
        self.address = address
        self.ttl = ttl
        self._client: Any = None
        self._cluster: Any = None

    def __call__(
        self,
        store: Store,
        dataset: Any,
        group: Any,
        options: Mapping[str, Any],
        progress: Progress | None,
    ) -> dict[str, Any]:
        client = self.client()
        missing = group.missing
        run = {
            k: v
            for k, v in options.items()
            if k in ("batch_size", "device", "compute_dtype", "dtype")
        }
        if "workers" in options:
            run["num_workers"] = options["workers"]
        return run_distributed(
            store,
            dataset,
            [getattr(group, "extraction_network", group.network)],
            list(dict.fromkeys(e.layer for e in missing)),
            list(dict.fromkeys(e.pooling for e in missing)),
            list(dict.fromkeys(e.view for e in missing)),
            client=client,
            ttl=self.ttl,
            progress=progress,
            weights=group.weights,
            **run,
        )

    def client(self) -> Any:
        """The Dask client, connected on first use (the sweep's cells share it)."""
        if self._client is None:
            self._client, self._cluster = connect(self.address)
        return self._client

    def close(self) -> None:
        if self._client is not None and self._cluster is not None:
            self._client.close()
            self._cluster.close()
        self._client = self._cluster = None

    def __enter__(self) -> DaskExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
