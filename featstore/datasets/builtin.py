"""Built-in datasets made from images that ship inside installed packages (no network).

A provider turns ``builtin:<set>/<index>`` refs into images; a factory builds the Dataset.
Both are registered in :mod:`featstore.datasets.registry` by
:func:`featstore.datasets.defaults.register_defaults` (on the registry's first use).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from featstore.datasets.core import Dataset, build_dataset
from featstore.datasets.registry import (  # noqa: F401 - the registry's names, kept importable here
    builtin_dataset,
    builtin_names,
    image_digest,
    provider_image,
    register_builtin_dataset,
    register_provider,
)
from featstore.errors import DatasetError

# --- scikit-learn's handwritten digits ------------------------------------------------
DIGITS_SIZE = 64  # the 8x8 originals, upsampled (nearest) so networks see real strokes
DIGITS_TEST_FRACTION = 0.25


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def digits_image(index: int) -> Image.Image:
    images, _ = _digits()
    if not 0 <= index < len(images):
        raise DatasetError(f"builtin:digits has {len(images)} images, not an image {index}")
    gray = (255 - images[index] * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # dark ink on white
    return (
        Image.fromarray(gray, mode="L")
        .resize((DIGITS_SIZE, DIGITS_SIZE), Image.Resampling.NEAREST)
        .convert("RGB")
    )


def digits_dataset(name: str) -> Dataset:
    """1797 real 8x8 digits (UCI, via scikit-learn) as RGB images; a fixed 75/25 train/test split."""
    images, target = _digits()
    n = len(images)
    rng = np.random.default_rng(0)
    test = np.zeros(n, dtype=bool)
    for label in np.unique(target):  # stratified, seeded: the same split everywhere
        rows = np.flatnonzero(target == label)
        test[rng.choice(rows, size=round(len(rows) * DIGITS_TEST_FRACTION), replace=False)] = True
    ids = [f"digit_{i:04d}" for i in range(n)]
    refs = [f"builtin:digits/{i}" for i in range(n)]
    # the digest extraction recomputes from the provider's image (registry.image_digest)
    hashes = [image_digest(digits_image(i)) for i in range(n)]
    return build_dataset(
        name,
        ids,
        refs,
        target.astype(np.int32),
        ["test" if t else "train" for t in test],
        [str(d) for d in range(10)],
        hashes,
        source={
            "kind": "builtin",
            "builtin": "digits",
            "description": "scikit-learn load_digits (UCI)",
        },
    )
