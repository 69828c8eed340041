"""Per-layer and per-network options as a command line or a script gives them.

``--pool SPEC[,SPEC]`` applies to every layer and ``--pool LAYER=SPEC[,SPEC]`` to one;
``--weights FILE|random`` applies to every network and ``--weights NET=FILE`` to one. These
turn such strings into the mappings :meth:`ExtractionRequest.parse` takes (``"*"`` = all).
"""

from __future__ import annotations

from collections.abc import Sequence

from featstore.specs import DEFAULT_POOLING

__all__ = ["pooling_by_layer", "split_names", "weights_by_model"]


def split_names(values: Sequence[str] | str | None) -> list[str]:
    """Comma-separated and/or repeated names, stripped, empties dropped."""
    if not values:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def pooling_by_layer(values: Sequence[str]) -> dict[str, list[str]]:
    """``("max,gem:3", "layer3=grid:max:3")`` -> ``{"*": ["max", "gem:3"], "layer3": [...]}``."""
    out: dict[str, list[str]] = {}
    for value in values:
        layer, sep, specs = value.partition("=")
        key, body = (layer.strip(), specs) if sep else ("*", value)
        out.setdefault(key, []).extend(split_names(body))
    out.setdefault("*", [str(DEFAULT_POOLING)])
    return out


def weights_by_model(values: Sequence[str], models: Sequence[str]) -> dict[str, str] | None:
    """``("random",)`` -> ``{"*": "random"}``; ``("resnet18=/w.pt",)`` -> ``{"resnet18": ...}``."""
    if not values:
        return None
    per: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if sep and name in models:
            per[name] = path
        else:
            per["*"] = value
    return per
