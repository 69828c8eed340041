"""Small synthetic datasets and feature entries for evaluation tests (no images, no network).

Entries carry the attrs that extraction writes (featstore.extract.plan.entry_attrs), so evaluation finds them
by factors exactly as it finds real ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from featstore.datasets import build_dataset
from featstore.keys import make_key


def add_dataset(
    store: Any, name: str, labels: Any, splits: Sequence[str], classes: Sequence[str] | None = None
) -> Any:
    """Register a dataset whose images are never loaded (refs point at a fake builtin set)."""
    labels = np.asarray(labels)
    n = len(splits)
    if classes is None:
        k = labels.shape[1] if labels.ndim == 2 else int(labels.max()) + 1
        classes = [f"c{i}" for i in range(k)]
    ds = build_dataset(
        name,
        ids=[f"img{i:04d}" for i in range(n)],
        refs=[f"builtin:none/{i}" for i in range(n)],
        labels=labels.astype(np.int8 if labels.ndim == 2 else np.int32),
        splits=list(splits),
        classes=list(classes),
        image_hashes=[f"{name}-{i}" for i in range(n)],
        source={"kind": "test"},
    )
    store.put_dataset(ds)
    return ds


def add_features(
    store: Any,
    ds: Any,
    array: Any,
    *,
    model: str = "toynet",
    layer: str = "fc",
    pooling: str = "avg",
    view: str = "plain",
    chunk_rows: int | None = None,
    complete: bool = True,
    weights_source: str = "random",
    weights_sha256: str = "0" * 64,
    compute_dtype: str = "float32",
    layer_target: str | None = None,
) -> Any:
    """An entry with the attrs extraction writes, holding ``array``; ``complete=False`` leaves chunk 0 unwritten.

    ``layer_target`` (the module a layer alias names) is one of the key's factors when given,
    as extraction records it; an entry's key must follow from its recorded factors."""
    array = np.asarray(array, dtype=np.float32)
    identity = {
        "images": ds.images_id,
        "model": {"name": model, "source": weights_source, "weights_sha256": weights_sha256},
        "layer": layer,
        "preprocess": {
            "resize": 8,
            "crop": 8,
            "interpolation": "bilinear",
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "scale": 1.0,
        },
        "view": view,
        "pooling": pooling,
        "dtype": "float32",
        "compute_dtype": compute_dtype,
    }
    if layer_target is not None:
        identity["layer_target"] = layer_target
    key = make_key("feat", identity)
    attrs = {
        "kind": "features",
        "dataset_name": ds.name,
        "model_name": model,
        **identity,
        "status": "complete" if complete else "writing",
    }
    entry = store.create_entry(
        key, attrs, array.shape, dtype="float32", chunk_rows=chunk_rows or max(1, len(array) // 3)
    )
    for i in range(entry.n_chunks):
        if complete or i > 0:
            a, b = entry.chunk_bounds(i)
            entry.write_chunk(i, array[a:b])
    return entry


def blobs(
    n_per_class: Sequence[int],
    dim: int = 8,
    spread: float = 0.3,
    seed: int = 0,
    separation: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Linearly separable clusters: class c sits at ``separation`` on axis c, with small noise."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c, n in enumerate(n_per_class):
        centre = np.zeros(dim)
        centre[c] = separation
        xs.append(centre + spread * rng.normal(size=(n, dim)))
        ys.append(np.full(n, c))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def interleave_splits(y: np.ndarray, test_every: int = 4, val_every: int = 0) -> list[str]:
    """Every ``test_every``-th sample of each class is test (and ``val_every``-th val)."""
    out, seen = [], {}
    for label in y.tolist():
        i = seen.get(label, 0)
        seen[label] = i + 1
        if i % test_every == test_every - 1:
            out.append("test")
        elif val_every and i % val_every == val_every - 1:
            out.append("val")
        else:
            out.append("train")
    return out


def put_features(
    store: Any,
    ds: Any,
    rows: np.ndarray,
    *,
    view: str = "plain",
    pooling: str = "avg",
    layer: str = "fc",
    complete: bool = True,
    chunk_rows: int | None = None,
    **extra: Any,
) -> str:
    """An entry with the attrs extraction writes, filled with ``rows``."""
    attrs = {
        "images": ds.images_id,
        "model": {"name": "toy", "source": "random", "weights_sha256": "0" * 64},
        "layer": layer,
        "preprocess": {"resize": 8, "crop": 8},
        "view": view,
        "pooling": pooling,
        "dtype": "float32",
        "compute_dtype": "float32",
        **extra,
    }
    key = make_key("feat", attrs)
    attrs.update(
        {"kind": "features", "dataset_name": ds.name, "model_name": "toy", "status": "complete"}
    )
    entry = store.create_entry(
        key, attrs, rows.shape, dtype="float32", chunk_rows=chunk_rows or len(rows)
    )
    for i in range(entry.n_chunks if complete else entry.n_chunks - 1):
        start, stop = entry.chunk_bounds(i)
        entry.write_chunk(i, rows[start:stop])
    return key


# rows 0..5 = 100000 100001 100002 100100 100101 100200; the queries are rows 0 and 3
HOLIDAY_FEATURES = np.array(
    [
        [1.0, 0.0, 0.0],  # q0
        [0.9, 0.1, 0.0],  # q0's positive, ranked 1st
        [0.05, 0.2, 1.0],  # q0's positive, ranked 4th (after 100200 and 100101)
        [0.0, 1.0, 0.0],  # q1
        [0.5, 0.5, 0.0],  # q1's positive
        [0.7, 0.0, 0.5],  # distractor
    ],
    dtype=np.float32,
)
