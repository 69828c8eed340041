"""Networks derived from a registered one: the same architecture with a new classifier head.

A fine-tuned network keeps its parent's architecture, preprocessing and layer names; only
its last linear layer (the classifier head) may have another number of outputs. A
:class:`Head` says which module that is and its shape, as plain data that is recorded with
the stored weights, so the architecture can be rebuilt from the record alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from featstore.errors import ModelError
from featstore.models.spec import ModelSpec

__all__ = ["Head", "derived_spec", "find_head", "replace_head"]


@dataclass(frozen=True)
class Head:
    """The classifier head of a derived network: module name and its (in, out) features."""

    module: str
    in_features: int
    out_features: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "in_features": self.in_features,
            "out_features": self.out_features,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Head:
        try:
            return cls(str(data["module"]), int(data["in_features"]), int(data["out_features"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"a head record needs module, in_features, out_features: {exc}"
            ) from None


def find_head(module: nn.Module, name: str = "the network") -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` in module order: the classifier head fine-tuning replaces."""
    found = [(n, m) for n, m in module.named_modules() if n and isinstance(m, nn.Linear)]
    if not found:
        raise ModelError(
            f"{name} has no linear classifier layer (nn.Linear) to replace with a head for the "
            "dataset's classes; fine-tune a classification network"
        )
    return found[-1]


def replace_head(module: nn.Module, head: Head) -> nn.Module:
    """Put a fresh ``nn.Linear(in, out)`` at ``head.module`` (initialised from torch's RNG)."""
    parent: nn.Module = module
    *path, last = head.module.split(".")
    for part in path:
        parent = getattr(parent, part)
    old = getattr(parent, last, None)
    if not isinstance(old, nn.Linear) or old.in_features != head.in_features:
        raise ModelError(
            f"module {head.module!r} is not a linear layer with {head.in_features} inputs; the "
            "stored network does not fit its parent architecture"
        )
    setattr(parent, last, nn.Linear(head.in_features, head.out_features, bias=old.bias is not None))
    return module


def derived_spec(parent: ModelSpec, name: str, head: Head | None, description: str) -> ModelSpec:
    """``parent`` under a new name, its builder putting ``head`` in place (None: unchanged)."""
    if parent.adapter is not None:
        raise ModelError(
            f"{parent.name} comes from {parent.source}; fine-tuned networks are derived from "
            "torchvision, bundled and team (package.module:function) networks"
        )
    build = parent.builder

    def builder() -> nn.Module:
        module = build()
        if parent.post_load is not None:
            parent.post_load(module)
        return module if head is None else replace_head(module, head)

    return replace(
        parent,
        name=name,
        source="store",
        builder=builder,
        weights_url=None,
        weights_file=None,
        weights_loader=None,
        post_load=None,
        description=description,
    )
