"""Store-wide checks and summaries used by `featstore ls` and `featstore verify`."""

from __future__ import annotations

from typing import Any

from featstore.errors import DamagedEntryError
from featstore.store.base import EntryInfo, Store


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
    """Verify every (or the given) entries; damaged chunks are named per entry.

    An entry whose metadata cannot be read is reported with ``error`` (why, and the fix)
    and the others are still verified.
    """
    results = []
    damaged_meta = store.damaged_entries() if keys is None else {}
    for key in keys or store.entry_keys():
        try:
            report = store.get_entry(key).verify()
        except DamagedEntryError as exc:
            damaged_meta[key] = str(exc)
            continue
        results.append({"key": key, **report})
    for key, why in sorted(damaged_meta.items()):
        results.append({"key": key, "missing": [], "damaged": [], "ok": 0, "error": why})
    datasets = store.damaged_datasets() if keys is None else {}
    return {
        "store": store.url,
        "entries": results,
        "n_damaged": sum(len(r["damaged"]) for r in results),
        "n_incomplete": sum(1 for r in results if r["missing"]),
        "n_unreadable": sum(1 for r in results if r.get("error")),
        "damaged_datasets": datasets,
    }
