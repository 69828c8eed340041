"""Extraction: capture many layers in one forward pass, pool them, and fill the store.

from featstore.extract import extract, plan, lookup
summary = extract(store, "flowers", ["efficientnet_lite0"], ["penultimate", "stage6"],
                  pooling="avg", views=["plain", "flip"])
entry = lookup(store, "flowers", "efficientnet_lite0", "penultimate")   # the cached entry
"""

from __future__ import annotations

from typing import Any

from featstore.errors import EntryNotFoundError
from featstore.extract.capture import LayerCapture
from featstore.extract.device import Compute, resolve_compute, resolve_device
from featstore.extract.pipeline import extract
from featstore.extract.plan import (
    EntryPlan,
    ExtractPlan,
    check_space,
    entry_key,
    plan,
)
from featstore.extract.pooling import (
    Pooling,
    View,
    apply_pooling,
    crop_boxes,
    effective_pooling,
    output_shape,
    parse_pooling,
    parse_view,
    row_shape,
)

__all__ = [
    "Compute",
    "EntryPlan",
    "ExtractPlan",
    "LayerCapture",
    "Pooling",
    "View",
    "apply_pooling",
    "check_space",
    "crop_boxes",
    "effective_pooling",
    "extract",
    "entry_key",
    "lookup",
    "output_shape",
    "parse_pooling",
    "parse_view",
    "plan",
    "resolve_compute",
    "resolve_device",
    "row_shape",
]


def lookup(
    store: Any,
    dataset: Any,
    model: str,
    layer: str,
    pooling: str = "avg",
    view: str = "plain",
    **options: Any,
) -> Any:
    """The cached entry for one (network, layer, pooling, view) of a dataset.

    Resolves aliases and effective pooling exactly as extraction does (``options`` are
    plan()'s keyword arguments: weights, preprocess, device, compute_dtype, dtype ...).
    Raises EntryNotFoundError, with the command that would create it, when absent. An
    entry served by another entry's rows (a superset of the dataset's images) comes as a
    :class:`~featstore.store.content.RowView` in the dataset's row order.
    """
    p = plan(store, dataset, [model], [layer], pooling, [view], **options)
    e = p.entries[0]
    if not e.exists:
        raise EntryNotFoundError(
            f"no cached features for {model} layer {layer} (pooling {e.pooling}, view {view}) of "
            f"dataset {p.dataset.name}; create them with `featstore extract -d {p.dataset.name} "
            f"-m {model} -l {layer} --pool {e.pooling}`"
        )
    if e.by_index:
        from featstore.store.content import ContentIndex

        return ContentIndex(store).find(p.dataset, e.attrs)
    return store.get_entry(e.key)
