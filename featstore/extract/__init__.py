"""Extraction: capture many layers in one forward pass, pool them, and fill the store.

from featstore.extract import ExtractionRequest, extract, plan, lookup
request = ExtractionRequest.parse("flowers", ["efficientnet_lite0"], ["penultimate", "stage6"],
                                  pooling="avg", views=["plain", "flip"])
summary = extract(store, request)                   # or plan(store, request): what it would do
entry = lookup(store, "flowers", "efficientnet_lite0", "penultimate")   # the cached entry

``lookup`` is :func:`featstore.store.select.lookup`; without torch: ``featstore.lookup``.
"""

from __future__ import annotations

from featstore.devices import resolve_device
from featstore.extract.capture import LayerCapture
from featstore.extract.device import Compute, resolve_compute
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
from featstore.extract.request import ExtractionRequest
from featstore.store.select import lookup  # asked of the store: no plan, no network

__all__ = [
    "Compute",
    "EntryPlan",
    "ExtractPlan",
    "ExtractionRequest",
    "LayerCapture",
    "Pooling",
    "View",
    "apply_pooling",
    "check_space",
    "crop_boxes",
    "effective_pooling",
    "entry_key",
    "extract",
    "lookup",
    "output_shape",
    "parse_pooling",
    "parse_view",
    "plan",
    "resolve_compute",
    "resolve_device",
    "row_shape",
]
