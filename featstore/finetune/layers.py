"""Which parameters a recipe freezes or re-initialises, by the network's layer names.

``--freeze LAYER`` keeps the weights of every module up to and including LAYER (in module
order, LAYER's submodules included, and the parameters the root module holds itself: a
ViT's class token and position embedding); ``--reinit-above LAYER`` gives every module after it
fresh random weights. LAYER is any name or alias extraction accepts (``featstore models
layers NET``) that is a module of the network.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from featstore.errors import SpecError
from featstore.models import resolve_layer

__all__ = ["module_order", "split_at"]


def module_order(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named submodules in module (pre-)order, the root left out."""
    return [(n, m) for n, m in module.named_modules() if n]


def _module_name(spec: Any, module: nn.Module, layer: str) -> str:
    """The module a layer name or alias refers to (a graph node maps to its module)."""
    info = resolve_layer(spec, layer)
    names = dict(module.named_modules())
    target = info.name
    while target and target not in names:
        target = target.rpartition(".")[0]
    if not target:
        raise SpecError(
            f"layer {layer!r} of {spec.name} is not inside a module, so it cannot bound frozen or "
            f"re-initialised layers; pick a module (see `featstore models layers {spec.name}`)"
        )
    return target


def split_at(spec: Any, module: nn.Module, layer: str) -> tuple[list[str], list[str]]:
    """(modules up to and including ``layer``'s subtree, modules after it), in module order."""
    target = _module_name(spec, module, layer)
    order = [n for n, _ in module_order(module)]
    inside = [i for i, n in enumerate(order) if n == target or n.startswith(target + ".")]
    end = max(inside) + 1
    return order[:end], order[end:]


def direct_tensors(module: nn.Module, names: list[str]) -> dict[str, Any]:
    """The parameters and buffers held directly by the named modules, by full name."""
    mods = dict(module.named_modules())
    out: dict[str, Any] = {}
    for name in names:
        sub = mods[name]
        for pname, p in sub.named_parameters(recurse=False):
            out[f"{name}.{pname}"] = p
        for bname, b in sub.named_buffers(recurse=False):
            if b is not None:
                out[f"{name}.{bname}"] = b
    return out
