"""Built-in datasets made from images that ship inside installed packages (no network).

A provider turns ``builtin:<set>/<index>`` refs into images; a factory builds the Dataset.
Retrieval sets register their own provider and factory here too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image

from featstore.datasets.core import Dataset, build_dataset
from featstore.errors import DatasetError

_PROVIDERS: dict[str, Callable[[int], Image.Image]] = {}
_FACTORIES: dict[str, Callable[[str], Dataset]] = {}


def register_provider(name: str, provider: Callable[[int], Image.Image]) -> None:
    if name in _PROVIDERS and _PROVIDERS[name] is not provider:
        raise DatasetError(f"a builtin image provider named {name!r} is already registered")
    _PROVIDERS[name] = provider


def register_builtin_dataset(name: str, factory: Callable[[str], Dataset]) -> None:
    """``factory(dataset_name) -> Dataset``; makes ``builtin:<name>`` a dataset source."""
    if name in _FACTORIES and _FACTORIES[name] is not factory:
        raise DatasetError(f"a builtin dataset named {name!r} is already registered")
    _FACTORIES[name] = factory


def _load_plugins() -> None:
    """Import the modules that register further built-ins (retrieval sets)."""
    try:
        import featstore.datasets.retrieval  # noqa: F401
    except ImportError:
        pass


def builtin_names() -> list[str]:
    _load_plugins()
    return sorted(_FACTORIES)


def builtin_dataset(source: str, name: str) -> Dataset:
    _load_plugins()
    set_name = source.removeprefix("builtin:")
    if set_name not in _FACTORIES:
        raise DatasetError(
            f"no built-in dataset {set_name!r}; built-ins are: {', '.join(builtin_names())}"
        )
    return _FACTORIES[set_name](name)


def provider_image(ref: str) -> Image.Image:
    _load_plugins()
    body = ref.removeprefix("builtin:")
    set_name, _, index = body.partition("/")
    if set_name not in _PROVIDERS or not index.isdigit():
        raise DatasetError(
            f"image ref {ref!r} names no built-in image (providers: {sorted(_PROVIDERS)})"
        )
    return _PROVIDERS[set_name](int(index))


def image_digest(image: Image.Image) -> str:
    """sha256 over an image's mode, size and pixels: the 'bytes' of a generated image."""
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(np.asarray(image).tobytes())
    return digest.hexdigest()


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
    hashes = [hashlib.sha256(images[i].tobytes()).hexdigest() for i in range(n)]
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


register_provider("digits", digits_image)
register_builtin_dataset("digits", digits_dataset)
