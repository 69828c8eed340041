"""Depth order of a network's layers, for figures that read "from the input to the output".

A record names its layer as it was asked for (an alias such as ``penultimate`` or a module
name such as ``_blocks.10``), and names sort badly (``penultimate`` < ``stage3``). The
network's own module table (built on the meta device, no weights, no forward pass; modules in
registration order, which is forward order for these architectures; graph nodes from
:func:`featstore.models.layers.list_layers` only when a layer is one) gives the depth;
aliases are resolved through the network's spec. Networks outside the registry (a
teammate's, a test's) have no table: their layers keep the order they were given in.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["depth_order", "layer_depths"]


@functools.lru_cache(maxsize=32)
def _modules(network: str) -> tuple[dict[str, int], dict[str, str], Any]:
    """(module name -> position, alias -> target, spec) of a registered network; empty if unknown."""
    try:
        from featstore.models.layers import build_meta
        from featstore.models.registry import get_spec

        spec = get_spec(network)
        names = [name for name, _ in build_meta(spec).named_modules() if name]  # no forward run
        order = {name: pos for pos, name in enumerate(names)}
        return order, dict(spec.aliases), spec
    except Exception:  # depth is presentation only: never fail a report on it
        return {}, {}, None


@functools.lru_cache(maxsize=32)
def _nodes(network: str) -> dict[str, int]:
    """Graph nodes (values inside forward functions) in forward order, traced only when needed."""
    order, _, spec = _modules(network)
    if spec is None:
        return {}
    try:
        from featstore.models.layers import list_layers

        names = [i.name for i in list_layers(spec, nodes=True) if i.name not in order]
    except Exception:  # some architectures cannot be traced; modules suffice
        return {}
    return {name: len(order) + pos for pos, name in enumerate(names)}


def _lookup(network: str, name: str) -> int | None:
    order, _, _ = _modules(network)
    if name in order:
        return order[name]
    nodes = _nodes(network)
    if name in nodes:
        return nodes[name]
    return nodes.get(re.sub(r"_\d+$", "", name))  # a later call of a node (name_1)


def layer_depths(network: str, layers: Sequence[str]) -> dict[str, int | None]:
    """Each layer's position in the network's forward order (None where it is not known)."""
    order, aliases, _ = _modules(str(network))
    out: dict[str, int | None] = {}
    for layer in layers:
        if not order:
            out[layer] = None
            continue
        parts = str(layer).split("+")  # a concatenation sits at its deepest member
        found = [_lookup(str(network), aliases.get(p, p)) for p in parts]
        known = [f for f in found if f is not None]
        out[layer] = max(known) if known and len(known) == len(found) else None
    return out


def depth_order(network: str, layers: Sequence[str]) -> list[str]:
    """``layers`` from the input to the output; unknown ones keep their given order, last."""
    given = list(dict.fromkeys(layers))
    depths = layer_depths(network, given)

    def key(item: tuple[int, Any]) -> tuple[int, int, int]:
        pos, layer = item
        d = depths[layer]
        return (0, d, pos) if d is not None else (1, 0, pos)

    return [layer for _, layer in sorted(enumerate(given), key=key)]
