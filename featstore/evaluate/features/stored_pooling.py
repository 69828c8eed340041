"""Pooling rows read from a stored entry: maps, max grids and sub-patches to vectors.

An entry stores what extraction kept of a layer (see :class:`featstore.specs.Pooling`):
a vector, a ``grid:max:G`` grid of cell maxima, a ``map:avg:S`` averaged map, or one vector
per sub-patch of a crops view. A transform's ``pool=`` step derives the pooling it asks
for from that stored form without a forward pass, exactly where that is possible (max over
a max grid, coarser grids whose sizes divide the stored one) and refuses where it is not.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from featstore.errors import TransformError
from featstore.evaluate.features.transform_spec import Step
from featstore.specs import DEFAULT_GEM_P, GEM_EPS, Pooling, parse_pooling

__all__ = ["POOL_BLOCK_BYTES", "pool_rows"]


def _adaptive_max(x: np.ndarray, k: int) -> np.ndarray:
    """Adaptive max pooling of (N, C, h, w) to (N, C, k, k), torch's cell boundaries."""
    n, c, h, w = x.shape
    if h % k == 0 and w % k == 0:
        pooled: np.ndarray = x.reshape(n, c, k, h // k, k, w // k).max(axis=(3, 5))
        return pooled
    out = np.empty((n, c, k, k), dtype=x.dtype)
    for i in range(k):
        r0, r1 = (i * h) // k, -((-(i + 1) * h) // k)
        for j in range(k):
            c0, c1 = (j * w) // k, -((-(j + 1) * w) // k)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].max(axis=(2, 3))
    return out


_POOL_NAMES = {"avg": "Average pooling", "max": "Max pooling", "gem": "GeM", "grid": "Grid pooling"}


def _stored_kind(pooling: Pooling, row_shape: tuple[int, ...]) -> tuple[str, int]:
    """('vector'|'grid'|'map'|'patches', size) for an entry's stored pooling and row shape."""
    if len(row_shape) == 3 and pooling.kind == "grid":
        return "grid", row_shape[-1]
    if len(row_shape) == 3:  # map:avg:s, or any other stored (C, h, w) average-like map
        return "map", row_shape[-1]
    if len(row_shape) == 2:
        return "patches", row_shape[0]
    return "vector", 0


POOL_BLOCK_BYTES = 1024 * 1024  # float32 rows pooled at once: bounds the working copy


def pool_rows(x: np.ndarray, step: Step | None, pooling: str | Pooling) -> np.ndarray:
    """Rows of one entry (N, *row_shape) stored with ``pooling``, pooled to (N, D) float32.

    Maps are converted to float32 and pooled a few rows at a time (``POOL_BLOCK_BYTES``),
    so pooling a float16 chunk never holds a float32 copy of it; each row is pooled on its
    own, so the result is the same as pooling all rows at once. Raises TransformError when
    the stored form cannot give the asked pooling exactly (or, for reduced average maps, in
    the documented approximate way).
    """
    x = np.asarray(x)
    pool = _pooler(step, parse_pooling(pooling), tuple(x.shape[1:]))
    if pool is None:
        return _as_float32(x)
    row_bytes = 4 * int(np.prod(x.shape[1:], dtype=np.int64))
    per_block = max(1, POOL_BLOCK_BYTES // max(1, row_bytes))
    if len(x) <= per_block:
        return pool(_as_float32(x))
    return np.concatenate(
        [pool(_as_float32(x[i : i + per_block])) for i in range(0, len(x), per_block)]
    )


_CAST_STEP = 64 * 1024  # values cast at once


@functools.cache
def _float16_table() -> np.ndarray:
    """The float32 value of every float16 bit pattern (256 KB), made by numpy's own cast."""
    return np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)


def _as_float32(x: np.ndarray) -> np.ndarray:
    """``x`` as float32, bit for bit what ``astype`` gives. A float16 array (the stored
    default) goes through a lookup table: numpy's own float16 cast runs at ~8 ns a value
    here, 2.5x slower than the table, and it was most of the time spent pooling maps."""
    if x.dtype != np.float16:
        return np.asarray(x, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.float32)
    bits = np.ascontiguousarray(x).view(np.uint16).reshape(-1)
    flat, table = out.reshape(-1), _float16_table()
    for i in range(0, bits.size, _CAST_STEP):  # take() widens its indices to int64: bound that
        np.take(table, bits[i : i + _CAST_STEP], out=flat[i : i + _CAST_STEP])
    return out


def _pooler(
    step: Step | None, pooling: Pooling, row_shape: tuple[int, ...]
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The function pooling float32 rows of this stored form as ``step`` asks (None: the
    rows are vectors already); TransformError when the stored form cannot give it."""
    kind, size = _stored_kind(pooling, row_shape)
    if step is None:
        if kind == "vector":
            return None
        if kind == "patches":
            raise TransformError(
                f"this entry holds {size} sub-patches per image (view with pooling={pooling}); "
                "add pool=avg or pool=max as the first transform step to combine them"
            )
        raise TransformError(
            f"this entry holds a {size}x{size} spatial map per image (pooling={pooling}); add a "
            "pool= step to the transform, e.g. pool=max or pool=grid:1x1+2x2"
        )
    mode, name = step.mode, _POOL_NAMES[step.mode]
    if kind == "vector":
        if _same_pooling(step, pooling):
            return None
        raise TransformError(
            f"{name} needs a spatial map; this entry was stored with pooling={pooling}"
        )
    if kind == "patches":
        if mode == "avg":
            return lambda x: x.mean(axis=1)
        if mode == "max":
            return lambda x: x.max(axis=1)
        raise TransformError(
            f"{name} needs a spatial map; this entry holds sub-patch vectors (pooling={pooling}); "
            "use pool=avg or pool=max"
        )
    if mode == "max":
        return lambda x: x.max(axis=(2, 3))
    if mode == "grid":
        if kind == "grid":
            bad = [k for k in step.levels if size % k]
            if bad:
                raise TransformError(
                    f"a {bad[0]}x{bad[0]} grid cannot be derived exactly from the stored "
                    f"{size}x{size} max grid (pooling={pooling}); use levels that divide {size}, or "
                    f"extract with a grid size that all levels divide (e.g. grid:max:{_lcm(step.levels)})"
                )
        levels = step.levels
        return lambda x: np.concatenate(
            [_adaptive_max(x, k).reshape(len(x), -1) for k in levels], axis=1
        )
    if kind == "grid":
        raise TransformError(
            f"{name} needs an averaged map; this entry was stored with pooling={pooling}, which keeps "
            "only cell maxima (extract with pooling map:avg:S to derive avg or GeM)"
        )
    if mode == "avg":
        return lambda x: x.mean(axis=(2, 3))
    p = float(step.value or DEFAULT_GEM_P)
    return lambda x: np.power(np.power(np.maximum(x, GEM_EPS), p).mean(axis=(2, 3)), 1.0 / p)


def _same_pooling(step: Step, pooling: Pooling) -> bool:
    if step.mode in ("avg", "max"):
        return pooling.kind == step.mode
    if step.mode == "gem":
        return pooling.kind == "gem" and float(pooling.p or DEFAULT_GEM_P) == float(
            step.value or DEFAULT_GEM_P
        )
    return False


def _lcm(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out = out * v // math.gcd(out, v)
    return out
