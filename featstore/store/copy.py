"""Moving features between stores: copy, export to one HDF5 file, import from one.

Copying works chunk by chunk and never trusts a byte it did not check: a source chunk is
copied only if its done marker exists and its data still match the marker's checksum (the
verified read of :meth:`Entry.read`, each source chunk read once); the
target writes its own marker after the data (so an interrupted copy resumes like an
interrupted extraction) and each chunk written is read back and verified.

The copy is incremental: what the target already has (datasets, result records, chunks
whose done marker holds the source's checksum) is skipped after reading the markers of
both sides only, never their data; a target chunk whose checksum differs from the
source's is forgotten and copied again. A second copy of the same stores transfers 0
bytes. Target chunks are leased while copied, so a copy into a shared store does not race
a teammate extracting the same entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featstore.errors import (
    DamagedChunkError,
    DamagedEntryError,
    EntryNotFoundError,
    IncompleteEntryError,
    StoreError,
)
from featstore.keys import check_key
from featstore.progress import Progress
from featstore.store.base import Entry, Store
from featstore.store.checksum import marker_checksum
from featstore.store.lease import DEFAULT_TTL, claim, claim_missing, release
from featstore.store.objects import default_owner

_GEOMETRY_ATTRS = ("shape", "dtype", "chunk_rows")


def copy_entry(
    src: Store,
    dst: Store,
    key: str,
    *,
    owner: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Copy entry ``key`` from ``src`` to ``dst``: only the chunks the target is missing, and
    those whose checksum differs from the source's; returns what was copied and skipped."""
    source = src.get_entry(key)
    attrs = {k: v for k, v in source.attrs.items() if k not in _GEOMETRY_ATTRS}
    chunk_rows, shard_rows = source.geometry
    if not dst.supports_shards:  # e.g. HDF5: one unit = the source's unit
        chunk_rows, shard_rows = source.chunk_rows, None
    # the target says "writing" until its chunks are copied and verified: a copy killed
    # meanwhile leaves an entry that resumes, never one whose attributes say complete
    writing = {**attrs, "status": "writing"} if "status" in attrs else attrs
    target = dst.create_entry(key, writing, source.shape, source.dtype, chunk_rows, shard_rows)
    held = target.attrs.get("status")
    changed_attrs = {n: v for n, v in writing.items() if target.attrs.get(n) != v}
    if held == "complete" and target.is_complete:
        changed_attrs.pop("status", None)
    if changed_attrs:
        target.update_attrs(**changed_attrs)
    missing_before = target.missing_chunks()
    changed = _changed_chunks(source, target)
    report: dict[str, Any] = {
        "key": key,
        "copied": [],
        "changed": changed,
        "skipped": target.n_chunks - len(missing_before) - len(changed),
        "bytes_copied": 0,
        "unavailable": [],
    }
    total = len(missing_before) + len(changed)
    owner = owner or default_owner()
    for index in changed:  # forgotten first: a copy killed meanwhile leaves it missing
        lease = claim(target, index, owner)
        if lease is None:
            continue  # a teammate is rewriting it; it is theirs
        try:
            target.invalidate_chunk(index)
        finally:
            release(target, lease)
    for lease in claim_missing(target, owner, DEFAULT_TTL, sorted(missing_before + changed)):
        start, stop = target.chunk_bounds(lease.index)
        try:
            try:
                rows = source.read(slice(start, stop))  # checked against the source's markers
            except (IncompleteEntryError, DamagedChunkError):
                report["unavailable"].append(lease.index)
                continue
            target.write_chunk(lease.index, rows)
        finally:
            release(target, lease)
        report["copied"].append(lease.index)
        report["bytes_copied"] += int(np.asarray(rows, dtype=target.dtype).nbytes)
        if progress is not None:
            progress(len(report["copied"]), total, {"entry": key})
    damaged = []
    for index in report["copied"]:  # read back what was written here, nothing else
        try:
            target.read_chunk(index)
        except (DamagedChunkError, IncompleteEntryError):
            damaged.append(index)
    report["damaged_after_copy"] = damaged
    report["complete"] = target.is_complete
    final = {name: value for name, value in attrs.items() if target.attrs.get(name) != value}
    if report["complete"] and not damaged and final:
        target.update_attrs(**final)  # e.g. status and timings: one write, after the data
    return report


def _changed_chunks(source: Entry, target: Entry) -> list[int]:
    """Chunks done in both whose checksums differ (markers only, no data is read): the
    target's copy is not the source's. Comparable only with the same chunk geometry and
    checksum algorithm; other chunks count as unchanged."""
    if target.chunk_rows != source.chunk_rows:
        return []
    common = sorted(target.done_chunks() & source.done_chunks())
    mine, theirs = target.markers(common), source.markers(common)
    out = []
    for index in common:
        a, b = marker_checksum(mine.get(index)), marker_checksum(theirs.get(index))
        if a and b and a.partition(":")[0] == b.partition(":")[0] and a != b:
            out.append(index)
    return out


def copy_store(
    src: Store,
    dst: Store,
    keys: Sequence[str] | None = None,
    *,
    datasets: bool = True,
    results: bool = True,
    owner: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Copy entries (all, or ``keys``), their datasets and result records from ``src`` to ``dst``.

    A key may name a feature entry or a result record. With ``keys=None`` every dataset,
    entry and result is copied. Returns a summary; nothing the target has is rewritten. An
    entry, dataset or record of the source whose metadata cannot be read is named in the
    summary (``damaged``) and the copy goes on with the rest.
    """
    dst._check_writable()
    for key in keys or ():
        check_key(key)  # before anything is read or written
    if keys is None:
        entry_keys, result_keys = src.entry_keys(), src.result_keys() if results else []
        dataset_ids = src.dataset_ids() if datasets else []
    else:
        entry_keys, result_keys, dataset_ids = [], [], []
        for key in keys:
            if src.has_entry(key):
                entry_keys.append(key)
            elif src.has_result(key):
                result_keys.append(key)
            else:
                raise EntryNotFoundError(
                    f"no feature entry or result {key!r} in store {src.url}; `featstore ls --all` lists them"
                )
    summary: dict[str, Any] = {
        "source": src.url,
        "target": dst.url,
        "datasets": {"copied": [], "skipped": [], "damaged": {}},
        "entries": [],
        "results": {"copied": [], "skipped": [], "damaged": {}},
    }
    if datasets:
        wanted = set(dataset_ids)
        source_ids = set(src.dataset_ids())
        for key in entry_keys:
            try:
                dataset_id = src.get_entry(key).attrs.get("dataset_id")
            except DamagedEntryError:
                continue  # named with the entries below
            if dataset_id and dataset_id in source_ids:
                wanted.add(dataset_id)
        for key in result_keys:
            try:
                dataset_id = src.get_result(key).get("dataset_id")
            except DamagedEntryError:
                continue
            if dataset_id and dataset_id in source_ids:
                wanted.add(dataset_id)
        dataset_ids = sorted(wanted)
        if keys is None:
            summary["datasets"]["damaged"].update(src.damaged_datasets())
    have = set(dst.dataset_ids())
    for dataset_id in dataset_ids:
        if dataset_id in have:
            summary["datasets"]["skipped"].append(dataset_id)
            continue
        try:
            dataset = src.get_dataset(dataset_id)
        except DamagedEntryError as exc:
            summary["datasets"]["damaged"][dataset_id] = str(exc)
            continue
        dst.put_dataset(dataset)
        summary["datasets"]["copied"].append(dataset_id)
    for n, key in enumerate(entry_keys):
        try:
            summary["entries"].append(copy_entry(src, dst, key, owner=owner))
        except DamagedEntryError as exc:
            summary["entries"].append(_damaged_report(key, str(exc)))
        if progress is not None:
            progress(n + 1, len(entry_keys), {"entry": key})
    if keys is None:
        for key, why in src.damaged_entries().items():
            summary["entries"].append(_damaged_report(key, why))
    for key in result_keys:
        if dst.has_result(key):
            summary["results"]["skipped"].append(key)
            continue
        try:
            record = src.get_result(key)
        except DamagedEntryError as exc:
            summary["results"]["damaged"][key] = str(exc)
            continue
        dst.put_result(key, record)
        summary["results"]["copied"].append(key)
    problems = [
        e
        for e in summary["entries"]
        if e["unavailable"] or e["damaged_after_copy"] or e.get("damaged")
    ]
    summary["ok"] = not problems and not summary["results"]["damaged"]
    entries = summary["entries"]
    summary["n_chunks_copied"] = sum(len(e["copied"]) for e in entries)
    summary["n_chunks_changed"] = sum(len(e["changed"]) for e in entries)
    summary["n_chunks_skipped"] = sum(e["skipped"] for e in entries)
    summary["bytes_copied"] = sum(e["bytes_copied"] for e in entries)
    return summary


def _damaged_report(key: str, why: str) -> dict[str, Any]:
    """The copy report of a source entry whose metadata cannot be read: nothing copied."""
    return {
        "key": key,
        "copied": [],
        "changed": [],
        "skipped": 0,
        "bytes_copied": 0,
        "unavailable": [],
        "damaged_after_copy": [],
        "complete": False,
        "damaged": why,
    }


def export_hdf5(
    src: Store,
    path: str | Path,
    keys: Sequence[str] | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write entries (all, or ``keys``), their datasets and results into one HDF5 file."""
    from featstore.store import is_hdf5_location, open_store

    path = str(path)
    if not is_hdf5_location(path):
        raise StoreError(f"an HDF5 export file must end in .h5 or .hdf5, not {path}")
    with open_store(path, mode="a") as dst:
        return copy_store(src, dst, keys, progress=progress)


def import_hdf5(
    path: str | Path,
    dst: Store,
    keys: Sequence[str] | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Copy everything (or ``keys``) from an HDF5 file written by ``export_hdf5`` into ``dst``."""
    from featstore.store import open_store

    with open_store(str(path), mode="r") as src:
        return copy_store(src, dst, keys, progress=progress)


def entries_equal(a: Entry, b: Entry) -> bool:
    """Same shape, dtype, attrs (geometry aside) and bytes: for tests and `copy --check`."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    strip = {k: v for k, v in a.attrs.items() if k not in _GEOMETRY_ATTRS}
    other = {k: v for k, v in b.attrs.items() if k not in _GEOMETRY_ATTRS}
    return strip == other and bool(np.array_equal(a.read(), b.read()))
