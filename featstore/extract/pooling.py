"""Applying the stored pooling to activations, and cutting an image into its view's patches.

The factor types (:class:`~featstore.specs.Pooling`, :class:`~featstore.specs.View`) and
their grammar live in :mod:`featstore.specs`; this module does the tensor work. Shapes are
per sample. A layer without spatial extent (a vector, or a 1x1 map) is
stored as it is, with pooling "none": pooling it would not change the numbers.
Token outputs (L, D) of transformers pool over the L tokens (avg/max/gem).

Token views, for layers whose source declares a TokenLayout (timm, hf:, open_clip:):
  cls           the class token                         -> (D,)
  mean          mean of the patch tokens only           -> (D,)
  cls+mean      both, concatenated                      -> (2D,)
  tokens        every token, for later pooling           -> (L, D)
  gem[:p], max  over the patch tokens only              -> (D,)
Prefix tokens (class, distillation, registers) never enter mean/max/gem; "avg" on such a
layer is stored as "mean", so the key says what was computed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from featstore.errors import SpecError
from featstore.models.tokens import TokenLayout
from featstore.specs import (
    DEFAULT_GEM_P,
    GEM_EPS,
    Pooling,
    View,
    parse_pooling,
    parse_view,
)

__all__ = [
    "Pooling",
    "View",
    "apply_pooling",
    "crop_boxes",
    "effective_pooling",
    "output_shape",
    "parse_pooling",
    "parse_view",
    "row_shape",
]


def _layout(layer_shape: tuple[int, ...]) -> str:
    """'vector' (C,), 'tokens' (L, D), 'map' (C, H, W) with H*W > 1, or 'other'."""
    if len(layer_shape) == 1:
        return "vector"
    if len(layer_shape) == 3 and layer_shape[1] * layer_shape[2] == 1:
        return "vector"
    if len(layer_shape) == 3:
        return "map"
    if len(layer_shape) == 2:
        return "tokens"
    return "other"


def _token_pooling(pool: Pooling, shape: tuple[int, ...], tokens: TokenLayout) -> Pooling:
    """A pooling of a declared token layer, checked against its layout."""
    if pool.kind in ("grid", "map"):
        raise SpecError(
            f"pooling {pool} needs a spatial map, but the layer outputs tokens {shape}; use cls, "
            f"mean, cls+mean, tokens, gem or max"
        )
    if pool.kind in ("cls", "cls+mean") and not tokens.has_cls:
        raise SpecError(
            f"token view {pool} needs a class token, but this layer has none ({tokens.prefix} "
            f"prefix tokens); use mean, gem, max or tokens"
        )
    if pool.kind in ("mean", "avg", "max", "gem", "cls+mean") and shape[0] <= tokens.prefix:
        raise SpecError(f"token view {pool} needs patch tokens, but the layer has only {shape[0]}")
    return Pooling("mean") if pool.kind == "avg" else pool


def effective_pooling(
    pooling: str | Pooling, layer_shape: tuple[int, ...], tokens: TokenLayout | None = None
) -> Pooling:
    """The pooling actually stored for a layer of this per-sample shape.

    Vectors and 1x1 maps are stored flattened ("none"); grids and maps need a spatial
    map; token sequences pool over tokens; token views need the layer's TokenLayout.
    """
    pool = parse_pooling(pooling)
    layout = _layout(tuple(layer_shape))
    if layout == "vector":
        return Pooling("none")
    if pool.kind == "none":
        return pool
    if layout == "tokens" and tokens is not None:
        return _token_pooling(pool, tuple(layer_shape), tokens)
    if pool.is_token_view:
        why = (
            "its source declares no token layout (use avg, max, gem or none)"
            if layout == "tokens"
            else f"it is not a token layer (shape {tuple(layer_shape)}); use avg, max, gem, "
            f"grid:max:G or map:avg:S"
        )
        raise SpecError(f"token view {pool} does not apply to this layer: {why}")
    if layout == "tokens" and pool.kind in ("grid", "map"):
        raise SpecError(
            f"pooling {pool} needs a spatial map, but the layer outputs tokens {tuple(layer_shape)}; "
            f"use avg, max, gem or none"
        )
    if layout == "other":
        raise SpecError(
            f"pooling {pool} does not apply to a layer of shape {tuple(layer_shape)}; use none"
        )
    return pool


def output_shape(
    pooling: str | Pooling, layer_shape: tuple[int, ...], tokens: TokenLayout | None = None
) -> tuple[int, ...]:
    """Per-sample shape after pooling (uses the effective pooling)."""
    pool = effective_pooling(pooling, layer_shape, tokens)
    shape = tuple(int(s) for s in layer_shape)
    if pool.kind == "none":
        return (math.prod(shape),)
    if pool.kind == "tokens":
        return shape
    if pool.kind == "cls+mean":
        return (2 * shape[-1],)
    if pool.kind in ("cls", "mean"):
        return (shape[-1],)
    if pool.kind in ("avg", "max", "gem"):
        return (shape[-1],) if _layout(shape) == "tokens" else (shape[0],)
    assert pool.size is not None
    return (shape[0], pool.size, pool.size)


def _pool_tokens(pool: Pooling, x: torch.Tensor, tokens: TokenLayout) -> torch.Tensor:
    """A token view of (N, L, D) tokens; prefix tokens never enter mean/max/gem."""
    if pool.kind == "tokens":
        return x
    patches = x[:, tokens.prefix :]
    if pool.kind == "cls":
        return x[:, 0]
    if pool.kind == "mean":
        return patches.mean(dim=1)
    if pool.kind == "cls+mean":
        return torch.cat([x[:, 0], patches.mean(dim=1)], dim=1)
    if pool.kind == "max":
        return patches.amax(dim=1)
    p = float(pool.p or DEFAULT_GEM_P)  # gem
    return patches.clamp(min=GEM_EPS).pow(p).mean(dim=1).pow(1.0 / p)


def apply_pooling(
    pooling: Pooling, x: torch.Tensor, tokens: TokenLayout | None = None
) -> torch.Tensor:
    """Pool a batch of activations (N, *layer_shape) in float32; returns (N, *row_shape).

    ``pooling`` is a parsed :class:`Pooling` (a plan's entries hold the stored one); only
    the layout rule of :func:`effective_pooling` is applied here, no text is parsed.
    """
    if not isinstance(pooling, Pooling):
        raise TypeError(f"apply_pooling takes a Pooling (Pooling.parse({pooling!r})), not text")
    pool = effective_pooling(pooling, tuple(x.shape[1:]), tokens)
    x = x.float()
    n = x.shape[0]
    if pool.kind == "none":
        return x.reshape(n, -1)
    if tokens is not None and _layout(tuple(x.shape[1:])) == "tokens":
        return _pool_tokens(pool, x, tokens)
    if _layout(tuple(x.shape[1:])) == "tokens":
        dims: tuple[int, ...] = (1,)
    else:
        dims = (2, 3)
    if pool.kind == "avg":
        return x.mean(dim=dims)
    if pool.kind == "max":
        return x.amax(dim=dims)
    if pool.kind == "gem":
        p = float(pool.p or DEFAULT_GEM_P)
        return x.clamp(min=GEM_EPS).pow(p).mean(dim=dims).pow(1.0 / p)
    size = int(pool.size or 1)
    if pool.kind == "grid":
        return F.adaptive_max_pool2d(x, size)
    return F.adaptive_avg_pool2d(x, size)


def crop_boxes(view: View, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (left, top, right, bottom) of a crops view, row-major per scale.

    At scale k the image is covered by k x k patches overlapping by half a patch: each
    patch spans 2/(k+1) of the width and height (the whole image for k = 1).
    """
    boxes = []
    for k in view.scales:
        frac = 2.0 / (k + 1)
        pw, ph = frac * width, frac * height
        for row in range(k):
            for col in range(k):
                left, top = col * pw / 2, row * ph / 2
                boxes.append(
                    (
                        round(left),
                        round(top),
                        max(round(left + pw), round(left) + 1),
                        max(round(top + ph), round(top) + 1),
                    )
                )
    return boxes


def row_shape(
    pooling: str | Pooling,
    layer_shape: tuple[int, ...],
    view: str | View,
    tokens: TokenLayout | None = None,
) -> tuple[int, ...]:
    """Stored per-sample shape for a layer, pooling and view: (P, D) for crops views."""
    v = parse_view(view)
    shape = output_shape(pooling, layer_shape, tokens)
    if v.kind == "crops":
        if len(shape) != 1:
            raise SpecError(
                f"view {v} stores one vector per patch; pooling "
                f"{effective_pooling(pooling, layer_shape, tokens)} keeps a map or tokens: use "
                f"none, avg, max, gem, cls or mean"
            )
        return (v.n_patches, shape[0])
    return shape
