"""Declarative descriptions of networks: preprocessing and the frozen ModelSpec.

A ModelSpec says how to build an architecture, where its default weights live, how
its input is prepared and which layers have friendly names. Everything that changes
the features is declarative data here, so it can be hashed into feature keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from featstore.specs import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, Preprocess

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "ModelSpec", "Preprocess"]


@dataclass(frozen=True)
class ModelSpec:
    """One registered network.

    builder() returns the architecture with random weights (the variant that matches
    the default weights); post_load(module) fixes it up after weights are loaded.
    layers maps friendly aliases (penultimate, last_conv, fc7 ...) to module or graph
    node names; every other module or node name is accepted as well.
    """

    name: str
    family: str
    source: str  # torchvision | bundled | module | timm | hf | open_clip
    builder: Callable[[], nn.Module] = field(compare=False, repr=False)
    preprocess: Preprocess = field(default_factory=Preprocess)
    layers: tuple[tuple[str, str], ...] = ()
    default_layers: tuple[str, ...] = ("penultimate",)
    weights_url: str | None = None
    weights_file: str | None = None  # file name in the hub cache, or an absolute path
    weights_loader: Callable[[str], nn.Module] | None = field(
        default=None, compare=False, repr=False
    )
    post_load: Callable[[nn.Module], None] | None = field(default=None, compare=False, repr=False)
    fixed_input: bool = False  # the architecture only takes its own input size
    min_input: int = 32
    description: str = ""
    # timm / Hugging Face / OpenCLIP: weights, layer table and loading come from the source
    # (featstore.models.adapter.SourceAdapter); None for torchvision, bundled and team networks
    adapter: Any = field(default=None, compare=False, repr=False)

    @property
    def input_size(self) -> tuple[int, int]:
        """Network input (height, width) with the spec's preprocessing."""
        return self.preprocess.crop_hw

    @property
    def aliases(self) -> dict[str, str]:
        return dict(self.layers)

    def with_preprocess(self, preprocess: Preprocess) -> ModelSpec:
        return replace(self, preprocess=preprocess)
