"""Run a sweep: extract what is missing (one pass per network and dataset), evaluate every cell.

Cells run in parallel processes (``concurrent.futures.ProcessPoolExecutor``); each one
opens the store itself and writes its own result record under its own content key, so
parallel cells never touch the same object. Everything is a lookup on a rerun: complete
entries are not extracted again (extraction resumes an interrupted entry chunk by chunk)
and a cell whose record exists is read back, so a rerun with everything cached makes no
forward pass at all (``forward_batches == 0``) and reports the same numbers.

Ctrl-C stops the sweep at once: queued cells are cancelled, the workers (which ignore
SIGINT themselves) see a shared stop flag before any write and are terminated, and
:class:`SweepInterrupted` says how many cells were done; a rerun continues from there.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from featstore.devices import available_cpus
from featstore.errors import ExtractionError, FeatstoreError, ProtocolLimitError
from featstore.evaluate.tasks import CLASSIFIER_OPTIONS, get_task
from featstore.progress import Progress
from featstore.store.spec import StoreSpec
from featstore.sweep.plan import ExtractionGroup, Planner, SweepPlan, make_plan
from featstore.sweep.spec import Cell, SweepSpec

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset
    from featstore.store.base import Store

__all__ = ["ReadOnce", "SweepInterrupted", "cell_job", "evaluate_job", "run_sweep"]


class ExtractionPass(TypedDict):
    """One extraction call of a sweep (a network on a dataset), as its summary lists it."""

    dataset: str
    network: str
    layers: list[str]
    poolings: list[str]
    views: list[str]
    entries: int  # the entries it was missing
    forward_batches: int


class SweepSummary(TypedDict):
    """What :func:`run_sweep` returns (``featstore sweep --json`` prints it), in this order."""

    sweep: str
    store: str
    n_cells: int
    evaluated: int
    cached_results: int
    failed: list[dict[str, Any]]  # the cell summaries (evaluate_job's) of the failed cells
    forward_batches: int  # 0 when every entry was cached
    finetune: list[dict[str, Any]]
    trained_runs: int
    extractions: list[ExtractionPass]
    workers: int
    cells_on: str  # "local" or "dask"
    notes: list[str]
    baseline: dict[str, str]
    timings: dict[str, float]
    results: list[dict[str, Any]]  # dataset, task, setting, metrics, key, cached, ok per cell


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the sweep: ``done`` of ``total`` cells have their records."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"interrupted; {done} of {total} cells done, rerun continues")
        self.done, self.total = done, total


def _transform_for(view: str, transform: str) -> str:
    """The evaluation transform of a sweep view: flipavg inserts the flip-average step."""
    steps = [] if transform in ("", "none") else transform.split(",")
    if view == "flipavg":
        at = 1 if steps and steps[0].startswith("pool=") else 0
        steps.insert(at, "flipavg")
    return ",".join(steps)


def cell_job(
    spec: SweepSpec, cell: Cell, store: StoreSpec, plan: SweepPlan | None = None
) -> dict[str, Any]:
    """A picklable description of one cell's evaluation.

    Features are named by their exact entry key when the plan knows it (no ambiguity when
    a teammate cached the same layer with other preprocessing), else by factors.
    """
    s = cell.setting
    view = "plain" if s.view == "flipavg" else s.view
    key = (
        plan.entry_key(cell.dataset, s.network, s.layer, s.pooling, view)
        if plan is not None
        else None
    )
    feature_keys = [key] if key else []
    if key and s.view == "flipavg":
        flip = plan.entry_key(cell.dataset, s.network, s.layer, s.pooling, "flip") if plan else None
        feature_keys = [key, flip] if flip else []
    features: Any = key or {
        "model": s.network,
        "layer": s.layer,
        "pooling": s.pooling,
        "view": view,
    }
    return {
        "store": store,
        "dataset": cell.dataset,
        "task": cell.task,
        "label": cell.label,
        "setting": s.as_dict(),
        "features": features,
        "feature_keys": feature_keys,
        # the sweep's vocabulary; the task registry keeps the options each task takes
        "options": {
            "transform": _transform_for(s.view, s.transform),
            "classifier": s.classifier,
            "estimators": list(spec.estimators),
            "seed": spec.seed,
            **spec.cell_options(cell.task, s.classifier),  # the spec's per-task options
        },
    }


_STORES: dict[str, Any] = {}
_STOP: Any = None  # a worker's view of the sweep's stop flag (multiprocessing Event)


class _StopAware:
    """A worker's store: every write first checks the sweep's stop flag, so a cell
    computed after Ctrl-C is never written."""

    def __init__(self, store: Store, stop: Any) -> None:
        self._store, self._stop = store, stop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def put_result(self, key: str, record: Any) -> Any:
        if self._stop is not None and self._stop.is_set():
            raise KeyboardInterrupt  # the sweep was interrupted: not written
        return self._store.put_result(key, record)


def _open(spec: StoreSpec) -> Any:
    """A worker's store, opened once per process from the sweep's StoreSpec (URL + options)."""
    from featstore.keys import canonical_json

    key = canonical_json([spec.url, spec.storage_options])
    if key not in _STORES:
        _STORES[key] = _StopAware(spec.open(mode="a"), _STOP)
    return _STORES[key]


def evaluate_job(job: Mapping[str, Any], store: Any = None) -> dict[str, Any]:
    """Evaluate one cell (in this process); returns a summary, never raises FeatstoreError."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "label": job["label"],
        "dataset": job["dataset"],
        "task": job["task"],
        "setting": job["setting"],
    }
    try:
        store = store if store is not None else _open(job["store"])
        rec = get_task(job["task"]).evaluate(
            store, job["dataset"], job["features"], **job["options"]
        )
        out.update(
            key=rec.get("key"), metrics=rec.get("metrics"), cached=bool(rec.get("cached")), ok=True
        )
    except FeatstoreError as exc:
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # one broken cell must not stop the sweep
        out.update(
            ok=False, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=5)
        )
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


class _EntryOnce:
    """An entry whose completion and content checksum are read once (see :class:`ReadOnce`)."""

    def __init__(self, entry: Any) -> None:
        self._entry = entry
        self._missing: list[int] | None = None
        self._checksum: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._entry, name)

    def missing_chunks(self) -> list[int]:
        if self._missing is None:
            self._missing = self._entry.missing_chunks()
        return list(self._missing)

    @property
    def is_complete(self) -> bool:
        return not self.missing_chunks()

    def content_checksum(self) -> str:
        if self._checksum is None:
            self._checksum = self._entry.content_checksum()
        return self._checksum


class ReadOnce:
    """The store as a sweep's cached-cell lookups see it: each feature entry's metadata,
    done markers and content checksum are read once, not once per cell (the transforms and
    classifiers of one layer all read the same entry). Everything else passes through.

    Only for a phase in which nothing writes feature entries: a lookup that finds an
    entry changed later in the same run would have found it changed a moment earlier.
    ``known``: entries read moments before in that phase (the plan's scan of the store).
    """

    def __init__(self, store: Store, known: Iterable[Any] = ()) -> None:
        self._store = store
        self._entries: dict[str, _EntryOnce] = {e.key: _EntryOnce(e) for e in known}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def get_entry(self, key: str) -> Any:
        if key not in self._entries:
            self._entries[key] = _EntryOnce(self._store.get_entry(key))
        return self._entries[key]


def lookup_job(store: Any, job: Mapping[str, Any], dataset: Dataset) -> dict[str, Any] | None:
    """The cell's stored result, found by the key its task's planner gives; or None.

    Planning reads entry metadata only, never features. When the entry keys are not known
    yet, the cell is simply evaluated, and the evaluation does its own lookup.
    """
    keys = list(job.get("feature_keys") or [])
    if not keys:
        return None
    try:
        features = keys if len(keys) > 1 else keys[0]
        record = get_task(job["task"]).cached(store, dataset, features, **job["options"])
    except FeatstoreError:
        return None
    if record is None:
        return None
    return {
        "label": job["label"],
        "dataset": job["dataset"],
        "task": job["task"],
        "setting": job["setting"],
        "key": record.get("key"),
        "metrics": record.get("metrics"),
        "cached": True,
        "ok": True,
        "seconds": 0.0,
    }


def _solvers_on_cuda() -> bool:
    """Whether evaluations here run their solvers on CUDA (the default device is "auto")."""
    from featstore.devices import resolve_device

    return resolve_device("auto").startswith("cuda")


def _init_worker(threads: int, stop: Any = None) -> None:
    """Each worker process gets its share of the cores (no oversubscription).

    Workers ignore SIGINT (Ctrl-C reaches the whole process group): the parent decides,
    sets ``stop`` (checked before every write) and terminates them.

    The evaluations of the worker read ``FEATSTORE_EVAL_THREADS`` (see
    :func:`featstore.evaluate.threads.resolve_threads`), so their BLAS, torch and FAISS pools
    are this share too, not every free core of the machine.
    """
    from featstore.evaluate.threads import THREADS_ENV

    global _STOP
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STOP = stop
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ[THREADS_ENV] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
    except ImportError:
        pass


# --------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------


def _call_extract(
    store: Store,
    ds: Dataset,
    group: ExtractionGroup,
    options: Mapping[str, Any],
    progress: Progress | None,
) -> dict[str, Any]:
    """One extraction call for every missing layer/pooling/view of one network on one dataset."""
    try:
        from featstore.extract.pipeline import extract
        from featstore.extract.request import group_request
    except ImportError as exc:
        raise ExtractionError(f"featstore.extract is not available: {exc}") from exc
    result = extract(
        store,
        group_request(ds, group, options),
        batch_size=options.get("batch_size"),
        num_workers=options.get("workers"),
        progress=progress,
    )
    return _as_dict(result)


def _as_dict(result: Any) -> dict[str, Any]:
    if isinstance(result, Mapping):
        return dict(result)
    if hasattr(result, "to_json"):
        return dict(result.to_json())
    if hasattr(result, "__dict__"):
        return dict(vars(result))
    return {"result": result}


# --------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------


def check_protocols(spec: SweepSpec, plan: SweepPlan) -> None:
    """ProtocolLimitError naming the first cell whose shots, k or folds the data cannot hold.

    Reads labels and splits only, so an impossible spec is refused before any extraction.
    """
    from featstore.evaluate.probes.limits import resolve_protocol
    from featstore.evaluate.probes.protocol import ClassifierSpec, split_rows

    seen: set[tuple[str, str]] = set()
    for cell in plan.cells:
        classifier = cell.setting.classifier
        pair = (cell.dataset, classifier)
        if cell.task != "classify" or pair in seen or cell.dataset not in plan.datasets:
            continue
        seen.add(pair)
        opts = spec.cell_options("classify", classifier)
        knn_k = opts.get("knn_k")
        if knn_k is not None:
            knn_k = tuple(knn_k) if isinstance(knn_k, (list, tuple)) else (knn_k,)
        try:
            clf = ClassifierSpec(name=classifier, cv=opts.get("cv"), knn_k=knn_k)
            ds = plan.datasets[cell.dataset]
            resolve_protocol(clf.validate(), ds, split_rows(ds), opts.get("shots"))
        except ProtocolLimitError as exc:
            flag = "--" + exc.option.replace("_", "-") + " "
            mine = exc.option in CLASSIFIER_OPTIONS.get(classifier, ())
            words = str(exc).replace(
                flag, f"options.{classifier if mine else 'classify'}.{exc.option}="
            )
            raise ProtocolLimitError(
                f"sweep spec: cell {cell.label}: {words}",
                option=exc.option,
                value=exc.value,
                limit=exc.limit,
            ) from None
        except FeatstoreError:
            continue  # the cell reports its own error when it is evaluated


def _stop_pool(pool: cf.ProcessPoolExecutor, stop: Any) -> None:
    """Ctrl-C: no write after this point, queued cells cancelled, workers ended now."""
    stop.set()
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=2)


def run_sweep(
    store: Store,
    spec: SweepSpec,
    *,
    workers: int = 1,
    extract_progress: Progress | None = None,
    progress: Progress | None = None,
    extract_fn: Callable[..., Any] | None = None,
    planner: Planner | None = None,
    finetune_progress: Progress | None = None,
    cell_runner: Callable[[list[dict[str, Any]]], Iterable[tuple[int, dict[str, Any]]]]
    | None = None,
) -> SweepSummary:
    """Fine-tune what is missing, extract what is missing, evaluate every cell, and return
    the JSON summary.

    ``finetune`` lists the spec's fine-tuning runs (``trained``: False for a lookup), each
    checked before the first is trained; ``finetune_progress(epoch, epochs, info)`` follows
    their epochs.

    ``forward_batches`` sums the network forward calls of every extraction call (0 when
    everything was cached). ``results`` holds each cell's metrics in cell order; failed
    cells are listed under ``failed`` and do not stop the others. ``extract_fn(store,
    dataset, group, options, progress)`` replaces the extraction call and ``planner`` the
    entry lookup (see :func:`featstore.sweep.plan.make_plan`), for networks outside the
    registry and tests. ``cell_runner(jobs)`` evaluates the cells that are not cached
    elsewhere (a Dask cluster: :func:`featstore.sweep.distributed.dask_cells`), yielding
    ``(position in jobs, cell summary)`` as each finishes.
    """
    t0 = time.perf_counter()
    tuned: list[dict[str, Any]] = []
    if spec.finetune:  # protocols checked, then every run checked, before any is trained
        from featstore.sweep.finetune import run_finetunes
        from featstore.sweep.plan import resolve_datasets

        datasets, _ = resolve_datasets(store, spec, register=True)
        check_protocols(spec, SweepPlan(spec, spec.cells(), [], datasets))
        tuned = run_finetunes(store, spec, datasets, progress=finetune_progress)
    t_tuned = time.perf_counter()
    plan: SweepPlan = make_plan(store, spec, register=True, planner=planner, count_results=False)
    check_protocols(spec, plan)  # before anything is extracted or evaluated
    extract_call = extract_fn or _call_extract
    options = dict(spec.extract)
    extractions: list[ExtractionPass] = []
    forward_batches = 0
    for group in plan.to_extract:
        info = _as_dict(
            extract_call(store, plan.datasets[group.dataset], group, options, extract_progress)
        )
        fb = int(info.get("forward_batches", 0) or 0)
        forward_batches += fb
        extractions.append(
            {
                "dataset": group.dataset,
                "network": group.network,
                "layers": group.layers,
                "poolings": group.poolings,
                "views": group.views,
                "entries": len(group.missing),
                "forward_batches": fb,
            }
        )
    if extractions:  # the new entries' keys
        plan = make_plan(store, spec, register=False, planner=planner, count_results=False)
    t1 = time.perf_counter()

    jobs = [
        cell_job(spec, cell, store.spec, plan) for cell in plan.cells if cell.task != "similarity"
    ]
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    done = 0

    def finished(i: int, result: dict[str, Any]) -> None:
        nonlocal done
        results[i] = result
        done += 1
        if progress:
            progress(done, len(jobs), {"cell": jobs[i]["label"]})

    todo = []
    known = plan.catalog.entries() if plan.catalog is not None else ()  # read by the plan
    lookups = ReadOnce(store, known)  # each entry read once for all the cells reading it
    for i, job in enumerate(jobs):  # cached cells are lookups here: no worker process needed
        hit = lookup_job(lookups, job, plan.datasets[job["dataset"]])
        if hit is not None:
            finished(i, hit)
        else:
            todo.append(i)
    n_workers = max(1, min(int(workers), len(todo)))
    notes = []
    if n_workers > 1 and _solvers_on_cuda():
        n_workers = 1
        notes.append(
            f"--workers {workers}: cells were evaluated one after another on the CUDA device "
            "(each worker process would hold its own CUDA context and they would contend for "
            "the one GPU; a batched solve already fills it)"
        )
    parallel = n_workers > 1 and store.reopenable  # workers open the store from its spec
    if cell_runner is not None and todo and not store.reopenable:
        cell_runner = None
        notes.append(
            f"cells were evaluated here, not on the cluster: the cluster's workers cannot "
            f"open store {store.url} (it lives in this process)"
        )
    remote = cell_runner is not None and bool(todo)
    if cell_runner is not None and remote:
        try:
            for pos, result in cell_runner([jobs[i] for i in todo]):
                finished(todo[pos], result)
        except KeyboardInterrupt:  # the runner cancels what is still queued
            raise SweepInterrupted(done, len(jobs)) from None
    elif parallel:
        threads = max(1, available_cpus() // n_workers)  # the cores this process may use
        ctx = multiprocessing.get_context("spawn")  # no fork after torch/BLAS threads started
        stop = ctx.Event()
        pool = cf.ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(threads, stop),
        )
        try:
            futures = {pool.submit(evaluate_job, jobs[i]): i for i in todo}
            for fut in cf.as_completed(futures):
                finished(futures[fut], fut.result())
        except KeyboardInterrupt:
            _stop_pool(pool, stop)
            raise SweepInterrupted(done, len(jobs)) from None
        pool.shutdown(wait=True)
    else:
        try:
            for i in todo:
                finished(i, evaluate_job(jobs[i], store=store))
        except KeyboardInterrupt:  # the cell being computed is not written
            raise SweepInterrupted(done, len(jobs)) from None
    from featstore.sweep.similarity import run_similarity_cells  # one study per group of cells

    similar = run_similarity_cells(
        store, spec, plan, [c for c in plan.cells if c.task == "similarity"]
    )
    final = [r for r in results if r is not None] + similar
    if any(r.get("ok") and not r.get("cached") for r in final):
        store.refresh_catalog()  # object stores: the next listing reads the new records at once
    t2 = time.perf_counter()
    failed = [r for r in final if not r.get("ok")]
    return {
        "sweep": spec.name,
        "store": store.url,
        "n_cells": len(final),
        "evaluated": sum(1 for r in final if r.get("ok") and not r.get("cached")),
        "cached_results": sum(1 for r in final if r.get("ok") and r.get("cached")),
        "failed": failed,
        "forward_batches": forward_batches,
        "finetune": tuned,
        "trained_runs": sum(1 for t in tuned if t["trained"]),
        "extractions": extractions,
        "workers": n_workers if parallel else 1,
        "cells_on": "dask" if remote else "local",
        "notes": notes,
        "baseline": spec.baseline,
        "timings": {
            "finetune_s": round(t_tuned - t0, 2),  # training, or looking the runs up
            "extract_s": round(t1 - t_tuned, 2),
            "evaluate_s": round(t2 - t1, 2),
            "total_s": round(t2 - t0, 2),
        },
        "results": [
            {k: r.get(k) for k in ("dataset", "task", "setting", "metrics", "key", "cached", "ok")}
            for r in final
        ],
    }
