"""Extraction: many layers of many networks from one pass over the images, into the store.

extract() plans (see plan.py), refuses when the disk lacks room, and computes only the
missing chunks: each image is decoded once for all networks, each network runs ONE
forward per batch for all its layers and for the plain and flip views together, and
whole chunks are handed to a background writer, so the network never waits for I/O.
A killed run leaves chunks that are either marked done or recomputed next time.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np
import torch

from featstore.errors import ExtractionError, ImageChangedError
from featstore.extract.capture import LayerCapture
from featstore.extract.device import configure_threads, default_batch_size, default_workers
from featstore.extract.loader import RowImages, batches
from featstore.extract.plan import (
    EntryPlan,
    ExtractPlan,
    ExtractPlanJson,
    ModelPlan,
    check_space,
    plan,
)
from featstore.extract.pooling import apply_pooling
from featstore.extract.request import ExtractionRequest
from featstore.models import LoadedModel, load_model
from featstore.progress import Progress
from featstore.specs import Pooling, Preprocess, View
from featstore.store.base import check_fits

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset
    from featstore.store.base import Store


def versions() -> dict[str, str]:
    import torchvision

    from featstore import __version__

    out = {
        "featstore": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        import efficientnet_lite_pytorch

        out["efficientnet_lite_pytorch"] = efficientnet_lite_pytorch.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


@dataclass
class _Target:
    """Where pooled rows of one entry go: a buffer per missing chunk until it is full."""

    plan: EntryPlan
    entry: Any
    missing: set[int]
    buffers: dict[int, np.ndarray] = field(default_factory=dict)
    filled: dict[int, int] = field(default_factory=dict)

    def add(
        self, rows: np.ndarray, values: np.ndarray, submit: Callable[[Any, int, np.ndarray], None]
    ) -> None:
        cr = self.entry.chunk_rows
        chunks = rows // cr
        for c in np.unique(chunks):
            c = int(c)
            if c not in self.missing:
                continue
            sel = np.flatnonzero(chunks == c)
            start, stop = self.entry.chunk_bounds(c)
            # before the float16 buffer would turn an overflow into inf (issue 11, item 9)
            check_fits(
                values[sel],
                self.plan.dtype,
                f"{self.plan.model} {self.plan.layer} ({self.plan.pooling}, {self.plan.view}), "
                f"chunk {c} (rows {start}-{stop}) of entry {self.plan.key}",
            )
            buf = self.buffers.get(c)
            if buf is None:
                buf = self.buffers[c] = np.empty(
                    (stop - start, *self.plan.row_shape), dtype=self.plan.dtype
                )
                self.filled[c] = 0
            buf[rows[sel] - start] = values[sel]
            self.filled[c] += len(sel)
            if self.filled[c] == stop - start:
                submit(self.entry, c, self.buffers.pop(c))
                self.missing.discard(c)
                del self.filled[c]


@dataclass
class _Runner:
    """One network's part of the run: its capture, its entries grouped by view."""

    mp: ModelPlan
    loaded: LoadedModel
    capture: LayerCapture
    geometry_key: str
    crops_keys: dict[View, str]  # view -> batch key of its patches
    targets: dict[View, list[_Target]]  # view -> targets
    masks: dict[View, np.ndarray]  # view -> bool mask of rows this view still needs
    mean: torch.Tensor
    std: torch.Tensor
    scale: float


def _normalise(x: torch.Tensor, r: _Runner, device: str, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True).float()
    x = (x * r.scale - r.mean) / r.std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class RunStats(TypedDict):
    """What the compute loop of one run reports (merged into :class:`ExtractionSummary`)."""

    computed_chunks: int
    dropped_chunks: NotRequired[int]  # chunks whose lease was lost before they were written
    forward_batches: int
    images: int
    images_per_s: float
    bytes_written: NotRequired[int]
    timings: NotRequired[dict[str, Any]]  # also stored in each completed entry's attrs


class ExtractionSummary(TypedDict):
    """What :func:`extract` returns (``featstore extract --json`` prints it), in this order."""

    dataset_id: str
    entries: int
    complete_before: int
    keys: list[str]
    skipped_chunks: int
    computed_chunks: int
    forward_batches: int  # network forward calls; 0 when everything was cached
    images: int
    images_per_s: float
    bytes_written: int
    device: str
    compute_dtype: str
    plan: ExtractPlanJson
    dropped_chunks: NotRequired[int]
    timings: NotRequired[dict[str, Any]]
    seconds: NotRequired[float]  # always set before it is returned


def extract(
    store: Store,
    request: ExtractionRequest | ExtractPlan,
    *,
    batch_size: int | None = None,
    num_workers: int | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    work: Mapping[str, Collection[int]] | None = None,
    fence: Any = None,
) -> ExtractionSummary:
    """Fill the feature entries of the request (or of a plan of it); returns a summary dict.

    ``work`` restricts the run to these chunks (units) per entry key, e.g. the chunks a
    leased unit holds; by default every chunk an entry is missing when the run starts.
    ``fence`` (a LeaseKeeper holding those chunks' leases) is asked before each chunk is
    written; a chunk whose lease was lost is dropped (``dropped_chunks`` in the summary).

    Summary: entries, complete_before, computed_chunks, skipped_chunks, forward_batches
    (network forward calls; 0 when everything was cached), images, images_per_s,
    bytes_written, seconds, plan (as a dict).
    """
    t_start = time.perf_counter()
    p = request if isinstance(request, ExtractPlan) else plan(store, request)
    check_space(p)
    summary: ExtractionSummary = {
        "dataset_id": p.dataset.id,
        "entries": len(p.entries),
        "complete_before": len(p.entries) - len(p.todo),
        "keys": [e.key for e in p.entries],
        "skipped_chunks": sum(e.n_chunks - len(e.missing_chunks) for e in p.entries),
        "computed_chunks": 0,
        "forward_batches": 0,
        "images": 0,
        "images_per_s": 0.0,
        "bytes_written": 0,
        "device": p.compute.device,
        "compute_dtype": p.compute.compute_dtype,
        "plan": p.to_dict(),
    }
    if not p.todo:
        _mark_complete(store, p)
        summary["seconds"] = time.perf_counter() - t_start
        return summary
    stats = _run(store, p, work, batch_size, num_workers, threads, progress, fence)
    summary = {**summary, **stats}  # summary.update(stats), as mypy can check it
    _mark_complete(store, p)  # also entries another writer finished while this one ran
    summary["seconds"] = time.perf_counter() - t_start
    return summary


def _mark_complete(store: Store, p: ExtractPlan) -> None:
    """Every complete entry of the plan says so: a run killed after its last chunk but
    before its status update, or one whose last chunks another writer (or a resume that
    was given only some chunks) filled, left "writing"."""
    if getattr(store, "read_only", False):
        return
    for e in p.entries:
        if e.by_index or not store.has_entry(e.key):  # served by another entry, or not created
            continue
        entry = store.get_entry(e.key)
        if entry.attrs.get("status") != "complete" and entry.is_complete:
            entry.update_attrs(status="complete")


def open_entries(store: Store, p: ExtractPlan, entries: Sequence[EntryPlan]) -> dict[str, Any]:
    """Create (or reopen) the store entries of planned entries, with the planned geometry.

    The one place extraction creates entries: a new one starts with status "writing". The
    dataset's ordered image hashes are recorded first (once per store and images id), so
    any other dataset of the same images can map its rows to these entries.
    """
    ds = p.dataset
    if entries and ds.image_hashes is not None and not store.read_only:
        store.put_image_list(ds.require_images_id(), ds.image_hashes)
    run_versions = versions()
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    out = {}
    for e in entries:
        attrs = dict(e.attrs, status="writing", versions=run_versions, created=created)
        entry = store.create_entry(
            e.key,
            attrs,
            shape=(e.n_rows, *e.row_shape),
            dtype=e.dtype,
            chunk_rows=e.inner_chunk_rows or e.chunk_rows,
            shard_rows=e.shard_rows,
        )
        if entry.chunk_rows != e.chunk_rows:
            raise ExtractionError(
                f"entry {e.key} was created meanwhile with chunks of {entry.chunk_rows} rows, not "
                f"the {e.chunk_rows} planned; run the extraction again"
            )
        out[e.key] = entry
    return out


def _prepare_runners(
    store: Store, p: ExtractPlan, work: Mapping[str, Collection[int]] | None
) -> tuple[list[_Runner], list[Preprocess], list[tuple[Preprocess, View]], list[_Target]]:
    compute = p.compute
    todo_all = [e for e in p.todo if work is None or work.get(e.key)]
    entries = open_entries(store, p, todo_all)
    geometries: list[Preprocess] = []
    crops: list[tuple[Preprocess, View]] = []
    runners: list[_Runner] = []
    all_targets: list[_Target] = []
    for mp in p.models:
        todo = [e for e in todo_all if e.model == mp.spec.name]
        if not todo:
            continue
        loaded = load_model(mp.spec, mp.weights, device=compute.device)
        if loaded.identity != mp.identity:
            raise ExtractionError(f"weights of {mp.spec.name} changed while planning; run again")
        if compute.channels_last:
            loaded.module = loaded.module.to(memory_format=torch.channels_last)
        infos = list({e.target.name: e.target for e in todo}.values())
        capture = LayerCapture(loaded.module, infos)
        pre = mp.spec.preprocess
        geo = next((i for i, g in enumerate(geometries) if g.geometry == pre.geometry), None)
        if geo is None:
            geometries.append(pre)
            geo = len(geometries) - 1
        targets: dict[View, list[_Target]] = {}
        masks: dict[View, np.ndarray] = {}
        crops_keys: dict[View, str] = {}
        for e in todo:
            entry = entries[e.key]
            missing = set(entry.missing_chunks())  # another writer may have filled some
            if work is not None:
                missing &= set(work[e.key])
            t = _Target(plan=e, entry=entry, missing=missing)
            targets.setdefault(e.view, []).append(t)
            all_targets.append(t)
            mask = masks.setdefault(e.view, np.zeros(e.n_rows, dtype=bool))
            mask[e.rows_of(missing)] = True
            if e.view.kind == "crops" and e.view not in crops_keys:
                crops.append((pre, e.view))
                crops_keys[e.view] = f"c{len(crops) - 1}"
        dev = compute.device
        runners.append(
            _Runner(
                mp=mp,
                loaded=loaded,
                capture=capture,
                geometry_key=f"g{geo}",
                crops_keys=crops_keys,
                targets=targets,
                masks=masks,
                scale=float(pre.scale),
                mean=torch.tensor(pre.mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1),
                std=torch.tensor(pre.std, dtype=torch.float32, device=dev).view(1, 3, 1, 1),
            )
        )
    return runners, geometries, crops, all_targets


def _forward(r: _Runner, x: torch.Tensor, compute: Any) -> dict[str, torch.Tensor]:
    with torch.inference_mode(), compute.autocast():
        return r.capture(x)


def _deliver(
    r: _Runner,
    view: View,
    rows: np.ndarray,
    out: dict[str, torch.Tensor],
    lo: int,
    hi: int,
    submit: Callable[[Any, int, np.ndarray], None],
    n_patches: int = 1,
) -> None:
    """Pool the rows [lo, hi) of captured outputs and route them to this view's entries."""
    pooled_cache: dict[tuple[str, Pooling], np.ndarray] = {}
    for t in r.targets.get(view, []):
        if not t.missing:
            continue
        key = (t.plan.target.name, t.plan.pooling)
        values = pooled_cache.get(key)
        if values is None:
            act = out[t.plan.target.name][lo * n_patches : hi * n_patches]
            pooled = apply_pooling(t.plan.pooling, act, t.plan.target.tokens)
            if n_patches > 1 or view.kind == "crops":
                pooled = pooled.reshape(hi - lo, n_patches, -1)
            values = pooled_cache[key] = pooled.float().cpu().numpy()
        t.add(rows, values, submit)


def _run(
    store: Store,
    p: ExtractPlan,
    work: Mapping[str, Collection[int]] | None,
    batch_size: int | None,
    num_workers: int | None,
    threads: int | None,
    progress: Progress | None,
    fence: Any = None,
) -> RunStats:
    from featstore.extract.writer import ChunkWriter

    compute = p.compute
    if compute.device_type == "cpu":
        configure_threads(threads)
    t_load = time.perf_counter()
    runners, geometries, crops, all_targets = _prepare_runners(store, p, work)
    load_s = time.perf_counter() - t_load
    if not runners:  # every chunk given to this run was filled by another writer meanwhile
        return {"computed_chunks": 0, "forward_batches": 0, "images": 0, "images_per_s": 0.0}
    rows = np.flatnonzero(np.logical_or.reduce([m for r in runners for m in r.masks.values()]))
    bs = batch_size or default_batch_size(compute)
    workers = default_workers(compute) if num_workers is None else int(num_workers)
    data = RowImages(p.dataset, rows, geometries, crops)
    loader = batches(data, bs, workers, pin_memory=compute.device_type == "cuda")
    writer = ChunkWriter(max_pending=max(4, 2 * len(all_targets)), fence=fence)
    forward_s = wait_s = 0.0
    done = 0
    t0 = time.perf_counter()
    try:
        t_wait = time.perf_counter()
        for batch in loader:
            wait_s += time.perf_counter() - t_wait
            batch_rows = batch["row"].numpy()
            changed = batch["changed"].numpy()
            if changed.any():  # before any forward: nothing is delivered for these rows
                raise changed_images_error(p.dataset, batch_rows[changed], rows)
            tf = time.perf_counter()
            for r in runners:
                _run_batch(r, batch, batch_rows, bs, compute, writer.submit)
            forward_s += time.perf_counter() - tf
            done += len(batch_rows)
            if progress is not None:
                elapsed = time.perf_counter() - t0
                progress(
                    done, len(rows), {"img/s": round(done / elapsed, 1) if elapsed > 0 else 0.0}
                )
            t_wait = time.perf_counter()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        for r in runners:
            r.capture.close()
    elapsed = time.perf_counter() - t0
    forward_batches = sum(r.capture.forward_calls for r in runners)
    leftovers = [t.plan.key for t in all_targets if t.missing]
    if leftovers:
        raise ExtractionError(
            f"chunks of {len(leftovers)} entries were not filled (first: {leftovers[0]}); run again"
        )
    timings: dict[str, Any] = {
        "seconds": round(elapsed, 3),
        "images": len(rows),
        "images_per_s": round(len(rows) / elapsed, 2) if elapsed > 0 else None,
        "compute_s": round(forward_s, 3),
        "decode_wait_s": round(wait_s, 3),
        "write_s": round(writer.write_seconds, 3),
        "write_wait_s": round(writer.wait_seconds, 3),
        "model_load_s": round(load_s, 3),
        "batch_size": bs,
        "workers": workers,
        "threads": torch.get_num_threads(),
        "device": compute.device,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    for t in all_targets:  # entries this run wrote to (a fenced writer may have written none)
        if t.entry.key in writer.keys_written and t.entry.is_complete:
            t.entry.update_attrs(status="complete", timings=timings)
    return {
        "computed_chunks": writer.chunks_written,
        "dropped_chunks": writer.chunks_dropped,
        "forward_batches": forward_batches,
        "images": len(rows),
        "images_per_s": timings["images_per_s"] or 0.0,
        "bytes_written": writer.bytes_written,
        "timings": timings,
    }


def changed_images_error(
    dataset: Dataset, changed: np.ndarray, rows: np.ndarray, shown: int = 5
) -> ImageChangedError:
    """The error for images whose bytes changed since registration, naming every changed
    file among the run's rows (the rest are hashed only, never decoded), and the fix."""
    from featstore.datasets.images import hash_image

    found = {int(r) for r in changed}
    later = [int(r) for r in rows if int(r) > int(changed.max())]
    for row in later:
        try:
            hashes = dataset.image_hashes  # None: registered without hashes (format 1)
            same = hashes is not None and hash_image(dataset.refs[row]) == hashes[row]
        except Exception:  # missing or unreadable counts as changed
            same = False
        if not same:
            found.add(row)
    names = [dataset.refs[r] for r in sorted(found)]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    source = dataset.source.get("root") or dataset.source.get("path") or "SOURCE"
    return ImageChangedError(
        f"{len(names)} images of dataset {dataset.name!r} changed since it was registered: "
        f"{', '.join(names[:shown])}{more}; nothing was extracted for them; register the "
        f"current files with `featstore datasets add {dataset.name} {source} --replace` "
        "(or restore the originals) and extract again"
    )


def _rows_of(t: torch.Tensor, sel: np.ndarray) -> torch.Tensor:
    """The selected rows; the (pinned) batch itself when every row is selected."""
    return t if sel.size == t.shape[0] else t[torch.from_numpy(sel)]


def _run_batch(
    r: _Runner,
    batch: dict[str, Any],
    batch_rows: np.ndarray,
    bs: int,
    compute: Any,
    submit: Callable[[Any, int, np.ndarray], None],
) -> None:
    """All of one network's work on a batch: one forward for plain+flip, sub-batches for crops."""
    dev, cl = compute.device, compute.channels_last
    segments: list[tuple[View, np.ndarray, torch.Tensor]] = []
    for view, mask in r.masks.items():
        sel = np.flatnonzero(mask[batch_rows])
        if sel.size == 0:
            continue
        if view in r.crops_keys:
            patches = _rows_of(batch[r.crops_keys[view]], sel)  # (B, P, 3, H, W)
            n_p = patches.shape[1]
            step = max(1, bs // n_p)
            for lo in range(0, sel.size, step):
                hi = min(lo + step, sel.size)
                x = _normalise(patches[lo:hi].flatten(0, 1), r, dev, cl)
                out = _forward(r, x, compute)
                _deliver(r, view, batch_rows[sel[lo:hi]], out, 0, hi - lo, submit, n_patches=n_p)
            continue
        x = _rows_of(batch[r.geometry_key], sel)
        segments.append((view, batch_rows[sel], x))
    if not segments:
        return
    parts = []
    for view, _, x in segments:
        xn = _normalise(x, r, dev, cl)
        parts.append(torch.flip(xn, dims=[3]) if view.kind == "flip" else xn)
    out = _forward(r, torch.cat(parts) if len(parts) > 1 else parts[0], compute)
    lo = 0
    for view, rows, _ in segments:
        hi = lo + len(rows)
        _deliver(r, view, rows, out, lo, hi, submit)
        lo = hi
