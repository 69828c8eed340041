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
    request = ExtractionRequest.parse("flowers", ["resnet50"], ["layer4"])
    run_distributed("s3://team/feats.zarr", request, client="local:4",
                    storage_options={"profile": "team"})

The :class:`~featstore.extract.request.ExtractionRequest` itself travels to the workers
(frozen, picklable; its dataset as the registered id), and each plans it against its store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from featstore.errors import ExtractionError, StoreError
from featstore.extract.request import ExtractionRequest, group_request
from featstore.progress import Progress
from featstore.store.base import Store
from featstore.store.lease import (
    DEFAULT_TTL,
    Lease,
    claim,
    describe_holders,
    live_leases,
    release,
)
from featstore.store.lease_keeper import LeaseKeeper, heartbeat_of
from featstore.store.objects import default_owner
from featstore.store.spec import StoreSpec

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset

RUN_OPTIONS = ("batch_size", "num_workers", "threads")  # how a unit runs, not what it fills


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
    """Lease the missing chunks of ``rows`` in every entry, extract them, release the leases;
    ``chunks`` in the result: those this unit wrote.

    The leases are renewed every heartbeat and every write is fenced while the unit runs
    (:class:`~featstore.store.lease_keeper.LeaseKeeper`): a chunk whose lease was taken over
    meanwhile is dropped (``dropped_chunks``), never written over the new holder's.
    """
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
        "dropped_chunks": 0,
    }
    if not allowed:
        return out
    with LeaseKeeper(leases, ttl) as keeper:
        summary = extract(store, p, work=allowed, fence=keeper, **dict(run_options or {}))
    out["forward_batches"] = int(summary.get("forward_batches", 0))
    out["computed_chunks"] = int(summary.get("computed_chunks", 0))
    out["dropped_chunks"] = int(summary.get("dropped_chunks", 0))
    written: dict[str, list[int]] = {}  # not those another writer took over or finished
    for key, index in sorted(keeper.written):
        written.setdefault(key, []).append(index)
    out["chunks"] = written
    return out


def _unit_task(
    spec: StoreSpec,
    request: ExtractionRequest,
    run_options: Mapping[str, Any],
    rows: tuple[int, int],
    owner: str,
    ttl: float,
) -> dict[str, Any]:
    """What a Dask worker runs: open the store itself, plan, and fill one unit."""
    from featstore.extract.plan import plan

    store = spec.open("a")
    p = plan(store, request)
    options = dict(run_options)
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
        cluster = LocalCluster(  # type: ignore[no-untyped-call]  # dask.distributed: untyped
            n_workers=int(n) if n else None,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        return Client(cluster), cluster  # type: ignore[no-untyped-call]  # dask: untyped
    return Client(text), None  # type: ignore[no-untyped-call]  # dask.distributed: untyped


def run_distributed(
    store: Store | str,
    request: ExtractionRequest,
    *,
    client: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    owner: str | None = None,
    ttl: float = DEFAULT_TTL,
    wait: bool = True,
    progress: Progress | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Extract the request unit by unit: on Dask (``client``: address, "local:N", Client) or here.

    With ``client=None`` the units run in this process, leased one at a time: that is how
    teammates extracting into one shared store split the work. When nothing is left to
    take, ``wait`` (the default) waits for the chunks other live writers hold, taking over
    any whose lease expires (``ttl``), until every entry is complete; ``wait=False`` returns
    after this process's share, with ``incomplete`` (key -> chunks) and ``held`` (key -> who
    holds them). ``batch_size``, ``num_workers`` and ``threads`` say how each unit runs.
    Returns a summary like
    extract()'s, plus the units.
    """
    from featstore.extract.plan import plan
    from featstore.store import open_store

    if not ttl > 0:
        raise ExtractionError(f"the lease TTL must be a positive number of seconds, not {ttl}")
    t0 = time.perf_counter()
    if not isinstance(store, Store):
        store = open_store(store, mode="a", storage_options=dict(storage_options or {}) or None)
    dataset = request.dataset
    if isinstance(dataset, str):
        dataset = store.get_dataset(dataset)
    if dataset.id not in store.dataset_ids():
        store.put_dataset(dataset)  # workers load it from the store
    request = request.with_dataset(dataset.id)  # what travels: the id, not the images
    run_options = {
        k: v
        for k, v in zip(RUN_OPTIONS, (batch_size, num_workers, threads), strict=True)
        if v is not None
    }
    p = plan(store, request)
    summary: dict[str, Any] = {
        "dataset_id": dataset.id,
        "keys": [e.key for e in p.entries],
        "entries": len(p.entries),
        "complete_before": len(p.entries) - len(p.todo),
        "units": [],
        "forward_batches": 0,
        "computed_chunks": 0,
        "dropped_chunks": 0,
        "incomplete": {},
        "held": {},
        "waited_s": 0.0,
    }
    if p.todo:
        ensure_entries(store, p)
        units = work_units(p)
        owner = owner or default_owner()
        dask_client: Any = None
        cluster: Any = None
        if client is not None:
            dask_client, cluster = connect(client)
        try:
            run = _Units(store, request, run_options, p, dask_client, owner, ttl, progress)
            results = run.units(units)
            results += run.finish_together(wait)
        finally:
            if cluster is not None:
                dask_client.close()
                cluster.close()
        summary["units"] = results
        summary["incomplete"], summary["held"] = run.left, run.held
        summary["waited_s"] = round(run.waited_s, 3)
        for name in ("forward_batches", "computed_chunks", "dropped_chunks"):
            summary[name] = sum(r.get(name, 0) for r in results)
    for key in summary["keys"]:
        entry = store.get_entry(key)
        if (
            key not in summary["incomplete"]
            and entry.attrs.get("status") != "complete"
            and entry.is_complete
        ):
            entry.update_attrs(status="complete")
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def waiting_poll(ttl: float) -> float:
    """Seconds between two looks of a waiting writer at the leases it waits on: one heartbeat
    (``ttl / 3``), at most 2 s, so a dead holder's chunks are taken over within TTL + this."""
    return min(heartbeat_of(ttl), 2.0)


class _Units:
    """Runs units here or on Dask, then waits with the other writers until all is done."""

    def __init__(
        self,
        store: Store,
        request: ExtractionRequest,
        run_options: Mapping[str, Any],
        p: Any,
        client: Any,
        owner: str,
        ttl: float,
        progress: Progress | None,
    ) -> None:
        self.store, self.request, self.p = store, request, p
        self.run_options = dict(run_options)
        self.client, self.owner, self.ttl, self.progress = client, owner, ttl, progress
        self.left: dict[str, list[int]] = {}
        self.held: dict[str, str] = {}
        self.waited_s = 0.0
        self.done = 0
        self.total = 0

    def _tick(self, info: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress(self.done, max(self.total, self.done), info)

    def units(self, units: list[tuple[int, int]]) -> list[dict[str, Any]]:
        self.total += len(units)
        if self.client is None:
            results = []
            for rows in units:
                # asks the entries what is missing when it leases, not the plan
                results.append(self._local(rows))
                self.done += 1
                self._tick({"rows": f"{rows[0]}-{rows[1]}"})
            return results
        from dask.distributed import as_completed

        spec = StoreSpec.of(self.store)
        futures = [
            self.client.submit(
                _unit_task,
                spec,
                self.request,
                self.run_options,
                rows,
                f"{self.owner}/unit{rows[0]}",
                self.ttl,
                pure=False,
            )
            for rows in units
        ]  # fmt: skip
        results = []
        for future in as_completed(futures):  # type: ignore[no-untyped-call]  # dask: untyped
            results.append(future.result())
            self.done += 1
            self._tick({})
        results.sort(key=lambda r: r["rows"][0])
        return results

    def _local(self, rows: tuple[int, int]) -> dict[str, Any]:
        options = dict(self.run_options)
        return run_unit(
            self.store, self.p, rows, owner=self.owner, ttl=self.ttl, run_options=options
        )

    def look(self) -> list[tuple[int, int]]:
        """Note what is left and who holds it; returns the units with chunks nobody holds."""
        size, n_rows = unit_rows(self.p), int(self.p.dataset.n)
        self.left, free = {}, set()
        held: dict[str, list[Lease]] = {}
        for e in self.p.todo:
            entry = self.store.get_entry(e.key)
            missing = entry.missing_chunks()
            if not missing:
                continue
            self.left[e.key] = missing
            live = {lease.index: lease for lease in live_leases(entry)}
            if any(c in live for c in missing):
                held[e.key] = [live[c] for c in missing if c in live]
            free |= {c * entry.chunk_rows // size for c in missing if c not in live}
        self.held = {key: describe_holders(leases) for key, leases in held.items()}
        return [(u * size, min((u + 1) * size, n_rows)) for u in sorted(free)]

    def finish_together(self, wait: bool) -> list[dict[str, Any]]:
        """Take over what nobody holds; with ``wait``, wait for the rest until all is done."""
        results: list[dict[str, Any]] = []
        poll = waiting_poll(self.ttl)
        while True:
            free = self.look()
            if not self.left:
                return results
            if free:
                taken = self.units(free)
                results += taken
                if any(r["chunks"] for r in taken):
                    continue  # something was done: look again at once
            if not wait:
                return results
            note = "; ".join(f"{key}: {who}" for key, who in self.held.items())
            self._tick({"waiting": note or "chunks being released"})
            t = time.perf_counter()
            time.sleep(poll)
            self.waited_s += time.perf_counter() - t


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
        dataset: Dataset,
        group: Any,
        options: Mapping[str, Any],
        progress: Progress | None,
    ) -> dict[str, Any]:
        client = self.client()
        return run_distributed(
            store,
            group_request(dataset, group, options),
            client=client,
            ttl=self.ttl,
            progress=progress,
            batch_size=options.get("batch_size"),
            num_workers=options.get("workers"),
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
