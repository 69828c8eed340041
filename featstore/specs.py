"""The factors that produce a feature entry, as frozen types defined once (the ground floor).

Every factor is parsed from user text once, at the edge (CLI, sweep spec, library call),
and passed around as one of these objects; its canonical text or dict is what goes into
keys and attributes, so the same factor always hashes the same way:

- :class:`Preprocess`: how an image becomes the network input (resize, crop, normalisation);
- :class:`Pooling`: what is stored of a layer's map or tokens (none, avg, max, gem, grids);
- :class:`View`: which view of the image the network sees (plain, flip, sub-patch crops);
- :class:`WeightsIdentity`: which weights (name, source, sha256 of the loaded state dict);
- :class:`FeatureKey`: all of them for one entry; its canonical JSON hashes to the key.

Pooling specs:
  none          flattened activations                  -> (D,)
  avg | max     global average / max over space         -> (C,)
  gem[:p]       generalised mean, p=3 by default        -> (C,)
  grid:max:g    adaptive max pooling to a g x g grid    -> (C, g, g)
  map:avg:s     adaptive average pooling to s x s       -> (C, s, s)
  cls | mean | cls+mean | tokens   token views of transformer layers (see extract.pooling)

This module imports nothing but the standard library and featstore's errors and keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from featstore.errors import SpecError
from featstore.keys import make_key

__all__ = [
    "COMPUTE_DTYPES",
    "DEFAULT_DEVICE",
    "DEFAULT_GEM_P",
    "DEFAULT_POOLING",
    "DEFAULT_STORAGE_DTYPE",
    "DEFAULT_VIEW",
    "TOKEN_VIEWS",
    "FeatureKey",
    "Pooling",
    "Preprocess",
    "View",
    "WeightsIdentity",
    "compute_dtype_name",
    "parse_pooling",
    "parse_view",
]

# --- preprocessing ---------------------------------------------------------------------
ORIENTATIONS = ("exif",)  # EXIF orientation applied at decoding (featstore.datasets.images)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the network input.

    resize: shorter side to this many pixels (int) or exact (height, width);
    crop: centre crop of this size (int or (height, width));
    interpolation: PIL resampling filter name;
    mean/std/scale: input = (pixel_0_255 * scale - mean) / std per channel;
    orientation: how EXIF orientation is handled when decoding; "exif" (applied, as
    viewers do) is the one decoder featstore has (see featstore.datasets.images).
    """

    resize: int | tuple[int, int] = 256
    crop: int | tuple[int, int] = 224
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    scale: float = 1.0 / 255.0
    orientation: str = "exif"

    def __post_init__(self) -> None:
        if self.orientation not in ORIENTATIONS:
            raise SpecError(
                f"unknown orientation handling {self.orientation!r}; use one of {', '.join(ORIENTATIONS)}"
            )
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
            "orientation": self.orientation,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocess:
        """Build from a dict such as a team network's preprocess or a key's record."""
        known = {"resize", "crop", "interpolation", "mean", "std", "scale", "orientation"}
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
        if "orientation" in data:
            kwargs["orientation"] = str(data["orientation"])
        return cls(**kwargs)

    def override(self, **values: Any) -> Preprocess:
        """A copy with some fields replaced (None values are ignored)."""
        given = {k: v for k, v in values.items() if v is not None}
        if not given:
            return self
        merged = self.to_dict()
        merged.update(given)
        return Preprocess.from_dict(merged)


# --- pooling -------------------------------------------------------------------------------
GEM_EPS = 1e-6  # GeM clamps activations to this before the power, as in Radenovic et al.
DEFAULT_GEM_P = 3.0
TOKEN_VIEWS = ("cls", "mean", "cls+mean", "tokens")  # transformer layers: which tokens, how
DEFAULT_GRID = 6
DEFAULT_MAP = 7


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class Pooling:
    """What is stored of a layer's output: a vector (none/avg/max/gem), a pooled grid/map,
    or a view of a transformer layer's tokens (cls, mean, cls+mean, tokens)."""

    kind: str  # none | avg | max | gem | grid | map | cls | mean | cls+mean | tokens
    p: float | None = None
    size: int | None = None

    def __str__(self) -> str:
        if self.kind == "gem":
            return f"gem:{_num(self.p or DEFAULT_GEM_P)}"
        if self.kind == "grid":
            return f"grid:max:{self.size}"
        if self.kind == "map":
            return f"map:avg:{self.size}"
        return self.kind

    @property
    def is_vector(self) -> bool:
        return self.kind in ("none", "avg", "max", "gem", "cls", "mean", "cls+mean")

    @property
    def is_token_view(self) -> bool:
        return self.kind in TOKEN_VIEWS

    @classmethod
    def parse(cls, spec: str | Pooling) -> Pooling:
        """The pooling a spec names (see :func:`parse_pooling`)."""
        return parse_pooling(spec)


def parse_pooling(spec: str | Pooling) -> Pooling:
    """Parse a pooling spec string into its canonical form; SpecError names the problem."""
    if isinstance(spec, Pooling):
        return spec
    text = str(spec).strip().lower()
    if text in ("none", "avg", "max", *TOKEN_VIEWS):
        return Pooling(text)
    m = re.fullmatch(r"gem(?::([0-9]*\.?[0-9]+))?", text)
    if m:
        p = float(m.group(1)) if m.group(1) else DEFAULT_GEM_P
        if p <= 0:
            raise SpecError(f"pooling {spec!r}: GeM needs p > 0")
        return Pooling("gem", p=p)
    m = re.fullmatch(r"(grid|map)(?::(max|avg))?(?::(\d+))?", text)
    if m:
        kind, op, size = m.group(1), m.group(2), m.group(3)
        want = "max" if kind == "grid" else "avg"
        if op is not None and op != want:
            other = "map:avg:S" if kind == "grid" else "grid:max:G"
            raise SpecError(
                f"pooling {spec!r}: {kind} grids are {want}-pooled; for {op} use {other}"
            )
        n = int(size) if size else (DEFAULT_GRID if kind == "grid" else DEFAULT_MAP)
        if n < 1:
            raise SpecError(f"pooling {spec!r}: the grid size must be >= 1")
        return Pooling(kind, size=n)
    raise SpecError(
        f"unknown pooling {spec!r}; use none, avg, max, gem[:p], grid:max:G or map:avg:S "
        f"(for example gem:3, grid:max:6, map:avg:7), or for token layers cls, mean, "
        f"cls+mean or tokens"
    )


# --- views ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """plain, flip (horizontal mirror of the network input) or crops over scales."""

    kind: str
    scales: tuple[int, ...] = ()

    def __str__(self) -> str:
        if self.kind == "crops":
            return "crops:" + ",".join(f"{k}x{k}" for k in self.scales)
        return self.kind

    @property
    def n_patches(self) -> int:
        return sum(k * k for k in self.scales) if self.kind == "crops" else 1

    @classmethod
    def parse(cls, spec: str | View) -> View:
        """The view a spec names (see :func:`parse_view`)."""
        return parse_view(spec)


def parse_view(spec: str | View) -> View:
    """'plain', 'flip' or 'crops:1x1,2x2,3x3' (a scale k means a k x k grid of patches)."""
    if isinstance(spec, View):
        return spec
    text = str(spec).strip().lower()
    if text in ("plain", "flip"):
        return View(text)
    if text.startswith("crops"):
        body = text[len("crops") :].lstrip(":") or "1x1,2x2,3x3"
        scales = []
        for part in body.split(","):
            m = re.fullmatch(r"(\d+)(?:x(\d+))?", part.strip())
            if not m or (m.group(2) and m.group(2) != m.group(1)) or int(m.group(1)) < 1:
                raise SpecError(
                    f"view {spec!r}: scales are square grids such as 1x1,2x2,3x3 (got {part!r})"
                )
            scales.append(int(m.group(1)))
        if len(set(scales)) != len(scales):
            raise SpecError(f"view {spec!r} repeats a scale")
        return View("crops", tuple(scales))
    raise SpecError(f"unknown view {spec!r}; use plain, flip or crops:1x1,2x2,3x3")


# --- defaults: each written once, for the extraction request and the read path ----------------
DEFAULT_POOLING = Pooling("avg")  # what a layer is stored as when no pooling is asked
DEFAULT_VIEW = View("plain")
DEFAULT_STORAGE_DTYPE = "float16"  # features are stored in half precision unless asked
DEFAULT_DEVICE = "auto"  # cuda when available, else cpu (featstore.extract.device)


# --- weights -------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightsIdentity:
    """Which weights produced a feature: the network's name, where the weights came from
    (torchvision, bundled, file, module, timm, random, ...) and the sha256 of the state
    dict that was actually loaded, so two files with the same tensors share keys."""

    name: str
    source: str
    weights_sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "source": self.source, "weights_sha256": self.weights_sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeightsIdentity:
        try:
            return cls(str(data["name"]), str(data["source"]), str(data["weights_sha256"]))
        except KeyError as exc:
            raise SpecError(
                f"a weights identity needs name, source and weights_sha256: missing {exc}"
            ) from None


# --- the key of a feature entry --------------------------------------------------------------
@dataclass(frozen=True)
class FeatureKey:
    """Every factor that decides the numbers of one feature entry.

    ``key`` is the content hash of :meth:`to_dict`'s canonical JSON; nothing outside these
    fields (a dataset's name, a path, a label, a split) can change it. ``images`` is the
    content id of the ordered images (:func:`featstore.datasets.core.images_id`: a hash over
    every image's sha256, in row order), so the same images under any name, labels or splits
    share the entry. Descriptive attributes that are not factors (the dataset's and the
    network's names, the layer's shape) live beside it in the entry's attrs, never in the key.
    """

    images: str
    model: WeightsIdentity
    layer: str
    layer_target: str
    preprocess: Preprocess
    view: View
    pooling: Pooling
    dtype: str
    compute_dtype: str

    def to_dict(self) -> dict[str, Any]:
        """The factors as the JSON values recorded in an entry's attrs."""
        return {
            "images": self.images,
            "model": self.model.to_dict(),
            "layer": self.layer,
            "layer_target": self.layer_target,
            "preprocess": self.preprocess.to_dict(),
            "view": str(self.view),
            "pooling": str(self.pooling),
            "dtype": self.dtype,
            "compute_dtype": self.compute_dtype,
        }

    @property
    def key(self) -> str:
        return make_key("feat", self.to_dict())


# --- compute dtype ---------------------------------------------------------------------------
COMPUTE_DTYPES = ("float32", "float16-amp", "bfloat16")
_COMPUTE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "float32": "float32",
    "fp16": "float16-amp",
    "float16": "float16-amp",
    "float16-amp": "float16-amp",
    "amp": "float16-amp",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


def compute_dtype_name(value: str) -> str:
    """The recorded name of a compute dtype given as fp32, bf16, fp16, amp ... (SpecError if unknown)."""
    cd = _COMPUTE_ALIASES.get(str(value).strip().lower())
    if cd is None:
        raise SpecError(f"unknown compute dtype {value!r}; use one of {', '.join(COMPUTE_DTYPES)}")
    return cd
