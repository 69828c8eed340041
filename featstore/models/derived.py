"""Networks derived from a registered one: the same architecture with a new classifier head.

A fine-tuned network keeps its parent's architecture, preprocessing and layer names; only
its classifier head (a timm model's ``get_classifier()``, else its last linear layer) may
have another number of outputs. A timm parent keeps its source adapter (layer taps). A
:class:`Head` says which module that is and its shape, as plain data that is recorded with
the stored weights, so the architecture can be rebuilt from the record alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from featstore.errors import ModelError, WeightsNotFoundError
from featstore.models.adapter import SourceAdapter
from featstore.models.spec import ModelSpec
from featstore.models.tokens import TokenLayout

__all__ = [
    "DerivedAdapter",
    "Head",
    "check_trainable",
    "classifier_name",
    "derived_spec",
    "find_head",
    "replace_head",
]


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


# Sources whose networks end in a classifier that a head can replace. The Hugging Face and
# OpenCLIP sources give feature towers (a checkpoint loaded as its backbone, its classifier
# dropped; an image tower ending in a projection): their last nn.Linear sits inside the last
# block, so "replace the last linear layer" would silently cut the network in two.
TRAINABLE_SOURCES = ("torchvision", "bundled", "module", "timm", "store")


def check_trainable(spec: ModelSpec) -> None:
    """Refuse, in words, a network whose classifier head cannot be replaced."""
    if spec.source not in TRAINABLE_SOURCES:
        raise ModelError(
            f"{spec.name} comes from {spec.source}, which gives a feature tower without a "
            "classifier layer (its last linear layer is inside its last block), so it has no "
            "head to replace and cannot be fine-tuned; fine-tune a torchvision, bundled, team "
            "(package.module:function) or timm:NAME network"
        )


def classifier_name(module: nn.Module, name: str = "the network") -> tuple[str, nn.Linear]:
    """The classifier head to replace: a timm model's own ``get_classifier()`` when it is a
    linear layer, else the last ``nn.Linear`` in module order."""
    get = getattr(module, "get_classifier", None)
    if callable(get):
        head = get()
        for n, m in module.named_modules():
            if n and m is head and isinstance(m, nn.Linear):
                return n, m
        raise ModelError(
            f"{name}'s classifier is {type(head).__name__}, not a linear layer; fine-tuning "
            "replaces a linear classifier head (build the timm model with its classifier)"
        )
    return find_head(module, name)


class DerivedAdapter(SourceAdapter):
    """The source adapter of a network derived from a timm one: the parent's library model
    with ``head`` in place, its layer taps; weights only from a file (the store's blob)."""

    def __init__(self, parent: SourceAdapter, name: str, head: Head | None) -> None:
        super().__init__(name, parent.version)
        self.parent = parent
        self.head = head
        self.source = parent.source

    def build(self) -> nn.Module:
        model = self.parent.build()
        return model if self.head is None else replace_head(model, self.head)

    def wrap(self, model: nn.Module) -> nn.Module:
        return self.parent.wrap(model)

    def taps(self, model: nn.Module) -> list[tuple[str, str, TokenLayout | None]]:
        return self.parent.taps(model)

    def default_weights(self) -> tuple[str, str]:
        raise WeightsNotFoundError(
            f"{self.name} is a network of a store: its weights come from that store"
        )

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.parent.adapt_state_dict(state_dict)

    def weights_files(self, path: str) -> list[str]:
        return [path]


def derived_spec(parent: ModelSpec, name: str, head: Head | None, description: str) -> ModelSpec:
    """``parent`` under a new name, its builder putting ``head`` in place (None: unchanged).
    A timm parent keeps its source adapter (layer taps), around the new head."""
    check_trainable(parent)
    if parent.adapter is not None:
        adapter = DerivedAdapter(parent.adapter, name, head)
        return replace(
            parent,
            name=name,
            source="store",
            builder=adapter.build,
            description=description,
            adapter=adapter,
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
