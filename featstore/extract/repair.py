"""Repair: recompute exactly the damaged and missing chunks of an entry, nothing else.

An entry's attrs record every factor of its key, so the request that made it can be
planned again; the plan must give the entry's own key (else the network, its weights or a
factor changed, and repairing would mix two sets of features). Damaged chunks lose their
done marker (they are then missing, the state a killed run leaves) and the extraction
fills exactly those chunks (``work=``). Chunk bytes are a pure function of the key's
factors, so the repaired entry is byte-identical to an undamaged run on the same device
and compute dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featstore.errors import ExtractionError
from featstore.extract.pipeline import extract
from featstore.extract.plan import plan
from featstore.extract.request import ExtractionRequest
from featstore.progress import Progress

if TYPE_CHECKING:
    from featstore.store.base import Store

__all__ = ["repair_entry", "request_of"]


def request_of(
    store: Store, entry: Any, weights: str | None = None, device: str | None = None
) -> ExtractionRequest:
    """The extraction request that an entry's attrs describe (computed on ``device``)."""
    attrs = entry.attrs
    missing = [
        name
        for name in ("model_name", "layer", "pooling", "view", "preprocess", "dtype")
        if name not in attrs
    ]
    if missing:
        raise ExtractionError(
            f"entry {entry.key} does not record {missing}, so it cannot be re-extracted; "
            f"remove it with `featstore rm {entry.key}` and extract again"
        )
    dataset_ref = attrs.get("dataset_id") or attrs.get("dataset_name")
    model = attrs.get("model") if isinstance(attrs.get("model"), dict) else {}
    if weights is None and model.get("source") == "random":
        weights = "random"
    return ExtractionRequest.parse(
        store.get_dataset(str(dataset_ref)),
        [str(attrs["model_name"])],
        [str(attrs["layer"])],
        [str(attrs["pooling"])],
        [str(attrs["view"])],
        weights=weights,
        preprocess=dict(attrs["preprocess"]),
        device=device,
        compute_dtype=attrs.get("compute_dtype"),
        dtype=str(attrs["dtype"]),
    )


def repair_entry(
    store: Store,
    key: str,
    *,
    weights: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    check: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Verify entry ``key`` (or use ``check``, a :meth:`Entry.verify` report) and recompute
    its damaged and missing chunks. Returns {key, damaged, missing, recomputed,
    forward_batches, ok}; ExtractionError when its request no longer gives its key."""
    entry = store.get_entry(key)
    report = check if check is not None else entry.verify()
    damaged, missing = list(report["damaged"]), list(report["missing"])
    out: dict[str, Any] = {
        "key": key,
        "damaged": damaged,
        "missing": missing,
        "recomputed": [],
        "forward_batches": 0,
        "ok": True,
    }
    todo = sorted(set(damaged) | set(missing))
    if not todo:
        return out
    request = request_of(store, entry, weights, device)
    first = plan(store, request)
    keys = [e.key for e in first.entries]
    if keys != [key]:
        raise ExtractionError(
            f"entry {key} cannot be repaired: its recorded factors now plan {keys} (the network, "
            "its weights or featstore changed); pass the weights it was made with (--weights "
            f"FILE), or remove it with `featstore rm {key}` and extract again"
        )
    for index in damaged:
        entry.invalidate_chunk(index)  # damaged = missing from now on
    summary = extract(  # planned again: the damaged chunks are missing now
        store, request, batch_size=batch_size, progress=progress, work={key: todo}
    )
    after = store.get_entry(key).verify()
    out.update(
        recomputed=todo,
        forward_batches=int(summary.get("forward_batches", 0)),
        ok=not after["damaged"] and not after["missing"],
        after=after,
    )
    return out
