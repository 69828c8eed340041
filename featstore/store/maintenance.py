"""Store-wide checks and summaries used by `featstore ls` and `featstore verify`."""

from __future__ import annotations

from typing import Any

from featstore.errors import DamagedEntryError, EntryNotFoundError
from featstore.store.base import EntryInfo, Store
from featstore.store.proofs import DAMAGED, UNBOUND, dataset_state, entry_key_state


def entry_summary(info: EntryInfo) -> dict[str, Any]:
    """The factors of one entry people scan for in a listing."""
    attrs = info.attrs
    model = attrs.get("model")
    return {
        "key": info.key,
        "dataset": attrs.get("dataset_name") or attrs.get("dataset_id"),
        "model": attrs.get("model_name")
        or (model.get("name") if isinstance(model, dict) else model),
        "layer": attrs.get("layer"),
        "pooling": attrs.get("pooling"),
        "view": attrs.get("view"),
        # fp32 and bf16 entries (or random and pretrained ones) of one layer differ only here
        "compute_dtype": attrs.get("compute_dtype"),
        "weights": model.get("source") if isinstance(model, dict) else None,
        "weights_sha256": model.get("weights_sha256") if isinstance(model, dict) else None,
        "shape": list(info.shape),
        "dtype": info.dtype,
        "bytes": info.nbytes_stored,
        "chunks": info.n_chunks,
        "chunks_done": info.n_done,
        "complete": info.complete,
        "damaged": info.damaged,
    }


def verify_store(store: Store, keys: list[str] | None = None) -> dict[str, Any]:
    """Verify every (or the given) entries, and (for the whole store) every dataset and
    result record: each stored object must prove what it claims (see store/proofs.py).

    Entries: damaged chunks (bytes, or a chunk moved here with its marker) and older-format
    markers (``unbound``) per entry; an entry whose metadata cannot be read, or which does
    not belong under its key, is reported with ``error`` (why, and the fix) and the others
    are still verified. Datasets whose fingerprint no longer follows from their arrays go to
    ``damaged_datasets``; records that are torn, edited or copied from another key go to
    ``records["damaged"]``. Objects of the older format go to the ``unbound`` lists.
    """
    results = []
    damaged_meta: dict[str, str] = {}
    if keys:
        entries: list[Any] = []
        for key in keys:
            try:
                entries.append(store.get_entry(key))
            except DamagedEntryError as exc:
                damaged_meta[key] = str(exc)
    else:  # the whole store: every entry's metadata and markers in one listing
        listing = store.list_entries()
        entries, damaged_meta = listing.entries, dict(listing.damaged)
    for entry in entries:
        key = entry.key
        try:
            report = entry.verify()
        except DamagedEntryError as exc:
            damaged_meta[key] = str(exc)
            continue
        state, why = entry_key_state(key, entry.attrs)
        if state == UNBOUND:
            report["key_unbound"] = why
        results.append({"key": key, **report})
    for key, why in sorted(damaged_meta.items()):
        results.append(
            {"key": key, "missing": [], "damaged": [], "ok": 0, "unbound": [], "error": why}
        )
    datasets: dict[str, str] = {}
    unbound_datasets: dict[str, str] = {}
    records: dict[str, Any] = {"checked": 0, "damaged": {}, "unbound": {}}
    if keys is None:
        datasets, unbound_datasets = _check_datasets(store)
        records = _check_records(store)
    return {
        "store": store.url,
        "entries": results,
        "n_damaged": sum(len(r["damaged"]) for r in results),
        "n_incomplete": sum(1 for r in results if r["missing"]),
        "n_unreadable": sum(1 for r in results if r.get("error")),
        "n_unbound": sum(1 for r in results if r["unbound"] or r.get("key_unbound"))
        + len(unbound_datasets)
        + len(records["unbound"]),
        "damaged_datasets": datasets,
        "unbound_datasets": unbound_datasets,
        "records": records,
    }


def _check_datasets(store: Store) -> tuple[dict[str, str], dict[str, str]]:
    """(damaged, unbound) datasets: id -> why; reading each recomputes its fingerprint."""
    damaged = dict(store.damaged_datasets())
    unbound: dict[str, str] = {}
    for dataset_id in store.dataset_ids():
        try:
            dataset = store.get_dataset(dataset_id)
        except DamagedEntryError as exc:
            damaged[dataset_id] = str(exc)
            continue
        except EntryNotFoundError:
            continue  # removed meanwhile
        state, why = dataset_state(dataset_id, dataset)
        if state == UNBOUND and why:
            unbound[dataset_id] = why
    return damaged, unbound


def _check_records(store: Store) -> dict[str, Any]:
    """Every result record read and checked against its own key and checksum."""
    out: dict[str, Any] = {"checked": 0, "damaged": {}, "unbound": {}}
    # one batch; a writable object store's result catalog is rebuilt if out of date
    for key, (_, state, why) in store.get_checked_results().items():
        out["checked"] += 1
        if state == DAMAGED:
            out["damaged"][key] = why
        elif state == UNBOUND:
            out["unbound"][key] = why
    return out


def repair_objects(store: Store, report: dict[str, Any]) -> list[dict[str, str]]:
    """What ``featstore verify --repair`` does beyond recomputing chunks, each action listed:
    a damaged result record is removed (evaluating again recomputes it); an entry that
    cannot be read or belongs under another key, and a damaged dataset, are left (their
    fix is in ``why``: featstore cannot tell which copy is the right one)."""
    actions: list[dict[str, str]] = []
    for key, why in sorted(report.get("records", {}).get("damaged", {}).items()):
        try:
            store.delete_result(key)
        except EntryNotFoundError:
            continue  # removed meanwhile
        actions.append({"object": f"result {key}", "action": "removed", "why": why})
    for r in report.get("entries", []):
        if r.get("error"):
            actions.append({"object": f"entry {r['key']}", "action": "left", "why": r["error"]})
    for dataset_id, why in sorted(report.get("damaged_datasets", {}).items()):
        actions.append(
            {"object": f"dataset {dataset_id}", "action": "left: register it again", "why": why}
        )
    return actions
