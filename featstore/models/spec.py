"""Declarative descriptions of networks: preprocessing and the frozen ModelSpec.

A ModelSpec says how to build an architecture, where its default weights live, how
its input is prepared and which layers have friendly names. Everything that changes
the features is declarative data here, so it can be hashed into feature keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from featstore.errors import SpecError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the network input.

    resize: shorter side to this many pixels (int) or exact (height, width);
    crop: centre crop of this size (int or (height, width));
    interpolation: PIL resampling filter name;
    mean/std/scale: input = (pixel_0_255 * scale - mean) / std per channel.
    """

    resize: int | tuple[int, int] = 256
    crop: int | tuple[int, int] = 224
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    scale: float = 1.0 / 255.0

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise SpecError(
                f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}"
            )
        for name in ("resize", "crop"):
            value = getattr(self, name)
            sizes = value if isinstance(value, tuple) else (value,)
            if not sizes or any(int(s) <= 0 for s in sizes) or len(sizes) > 2:
                raise SpecError(
                    f"preprocess {name} must be a positive size or (height, width), got {value!r}"
                )
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise SpecError("preprocess mean and std need three values each (std > 0)")

    @property
    def crop_hw(self) -> tuple[int, int]:
        """Network input (height, width)."""
        if isinstance(self.crop, tuple):
            return int(self.crop[0]), int(self.crop[-1])
        return int(self.crop), int(self.crop)

    @property
    def geometry(self) -> tuple[Any, ...]:
        """What decides the uint8 input tensor (networks sharing it share one decode)."""
        return (self.resize, self.crop, self.interpolation)

    def to_dict(self) -> dict[str, Any]:
        """The exact values used, as recorded in feature keys."""

        def size(v: int | tuple[int, int]) -> int | list[int]:
            return [int(s) for s in v] if isinstance(v, tuple) else int(v)

        return {
            "resize": size(self.resize),
            "crop": size(self.crop),
            "interpolation": self.interpolation,
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
            "scale": float(self.scale),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocess:
        """Build from a dict such as a team network's preprocess or a key's record."""
        known = {"resize", "crop", "interpolation", "mean", "std", "scale"}
        unknown = set(data) - known
        if unknown:
            raise SpecError(f"unknown preprocess fields {sorted(unknown)}; known: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for name in ("resize", "crop"):
            if name in data:
                v = data[name]
                kwargs[name] = tuple(int(s) for s in v) if isinstance(v, (list, tuple)) else int(v)
        if "interpolation" in data:
            kwargs["interpolation"] = str(data["interpolation"]).lower()
        for name in ("mean", "std"):
            if name in data:
                kwargs[name] = tuple(float(x) for x in data[name])
        if "scale" in data:
            kwargs["scale"] = float(data["scale"])
        return cls(**kwargs)

    def override(self, **values: Any) -> Preprocess:
        """A copy with some fields replaced (None values are ignored)."""
        given = {k: v for k, v in values.items() if v is not None}
        if not given:
            return self
        merged = self.to_dict()
        merged.update(given)
        return Preprocess.from_dict(merged)


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
    preprocess: Preprocess = Preprocess()
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
