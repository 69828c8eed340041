"""``builtin:copydays``: a Copydays-style copy-detection set made offline from scikit-image photos.

Each original photo (shipped inside scikit-image, loaded without network) is a query;
the database holds its known transformations (crops, rotations, rescales, JPEG
re-encodes, colour shifts, a flip and one strong combination) and the other originals'
transformations as distractors. Images are generated on demand by the provider behind
refs ``builtin:copydays/<row>``; every random choice (crop positions) comes from a
generator seeded by (SEED, original, transform), so the images, and the fingerprint
hashed over their pixels, are the same on every machine with the same Pillow.

Transform specs (composable with "+", applied left to right):
``crop:F`` keep an F*w x F*h window at a seeded position; ``rotate:A`` rotate A degrees
counter-clockwise (90: lossless, canvas turned; otherwise same canvas, black corners);
``scale:F`` resize by F (Lanczos); ``jpeg:Q`` re-encode at quality Q; ``flip`` mirror
left-right; ``tint:R,G,B`` multiply the channels; ``brightness:F`` scale brightness.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageEnhance

from featstore.datasets.builtin import image_digest, register_builtin_dataset, register_provider
from featstore.datasets.core import Dataset
from featstore.errors import DatasetError

__all__ = [
    "COPYDAYS_ORIGINALS",
    "COPYDAYS_TRANSFORMS",
    "apply_transform",
    "copydays_dataset",
    "copydays_image",
    "copydays_layout",
]

SEED = 20140623  # fixed: crop positions must never change, or the fingerprint would
MAX_SIDE = 512  # originals are downscaled so their longer side is at most this
# scikit-image photos that load offline (checked: skimage 0.26 ships them in the wheel)
COPYDAYS_ORIGINALS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "hubble_deep_field",
    "immunohistochemistry",
    "coins",
    "clock",
    "moon",
)
COPYDAYS_TRANSFORMS = (
    "crop:0.75",
    "crop:0.5",
    "rotate:90",
    "rotate:10",
    "scale:0.5",
    "scale:0.25",
    "jpeg:50",
    "jpeg:10",
    "flip",
    "tint:1.25,1.0,0.75",
    "brightness:1.4",
    "crop:0.6+rotate:5+jpeg:30",
)
ROWS_PER_ORIGINAL = 1 + len(COPYDAYS_TRANSFORMS)


@lru_cache(maxsize=len(COPYDAYS_ORIGINALS))
def _original(index: int) -> Image.Image:
    import skimage.data

    name = COPYDAYS_ORIGINALS[index]
    array = np.asarray(getattr(skimage.data, name)())
    image = Image.fromarray(array.astype(np.uint8)).convert("RGB")  # gray photos -> RGB
    w, h = image.size
    if max(w, h) > MAX_SIDE:
        f = MAX_SIDE / max(w, h)
        image = image.resize((round(w * f), round(h * f)), Image.Resampling.LANCZOS)
    return image


def apply_transform(image: Image.Image, spec: str, rng: np.random.Generator) -> Image.Image:
    """Apply one transform spec (see the module docstring); steps joined by "+" in order."""
    for step in spec.split("+"):
        op, _, arg = step.partition(":")
        w, h = image.size
        if op == "crop":
            f = float(arg)
            cw, ch = round(w * f), round(h * f)
            x0 = int(rng.integers(0, w - cw + 1))
            y0 = int(rng.integers(0, h - ch + 1))
            image = image.crop((x0, y0, x0 + cw, y0 + ch))
        elif op == "rotate":
            angle = float(arg)
            if angle % 90 == 0:
                image = image.rotate(angle, expand=True)
            else:
                image = image.rotate(
                    angle, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0)
                )
        elif op == "scale":
            f = float(arg)
            image = image.resize(
                (max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS
            )
        elif op == "jpeg":
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(arg))
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                image = decoded.convert("RGB")
        elif op == "flip":
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        elif op == "tint":
            gains = np.array([float(v) for v in arg.split(",")], dtype=np.float32)
            pixels = np.asarray(image, dtype=np.float32) * gains
            image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
        elif op == "brightness":
            image = ImageEnhance.Brightness(image).enhance(float(arg))
        else:
            raise DatasetError(f"unknown copydays transform {step!r} in {spec!r}")
    return image


def copydays_layout() -> list[tuple[int, str | None]]:
    """(original index, transform spec or None for the query itself) of every row."""
    return [
        (k, None if j == 0 else COPYDAYS_TRANSFORMS[j - 1])
        for k in range(len(COPYDAYS_ORIGINALS))
        for j in range(ROWS_PER_ORIGINAL)
    ]


def copydays_image(index: int) -> Image.Image:
    """The image of row ``index`` (provider for refs ``builtin:copydays/<index>``)."""
    n = len(COPYDAYS_ORIGINALS) * ROWS_PER_ORIGINAL
    if not 0 <= index < n:
        raise DatasetError(f"builtin:copydays has {n} images, not an image {index}")
    k, j = divmod(index, ROWS_PER_ORIGINAL)
    if j == 0:
        return _original(k).copy()
    rng = np.random.default_rng([SEED, k, j])
    return apply_transform(_original(k), COPYDAYS_TRANSFORMS[j - 1], rng)


def _row_id(k: int, spec: str | None) -> str:
    return f"{COPYDAYS_ORIGINALS[k]}/{'original' if spec is None else spec}"


def copydays_dataset(name: str) -> Dataset:
    """Build the dataset (queries = originals, database = all transformed images)."""
    from featstore.datasets.retrieval import RetrievalQuery, build_retrieval_dataset

    layout = copydays_layout()
    ids = [_row_id(k, spec) for k, spec in layout]
    hashes = [image_digest(copydays_image(i)) for i in range(len(layout))]
    queries = [
        RetrievalQuery(
            name=COPYDAYS_ORIGINALS[k],
            image=_row_id(k, None),
            positives=[_row_id(k, t) for t in COPYDAYS_TRANSFORMS],
        )
        for k in range(len(COPYDAYS_ORIGINALS))
    ]
    database = [i for i, (_, spec) in zip(ids, layout, strict=True) if spec is not None]
    source = {
        "kind": "builtin",
        "builtin": "copydays",
        "seed": SEED,
        "description": "Copydays-style copies of scikit-image photos",
        "originals": list(COPYDAYS_ORIGINALS),
        "transforms": list(COPYDAYS_TRANSFORMS),
    }
    return build_retrieval_dataset(
        name,
        {i: f"builtin:copydays/{row}" for row, i in enumerate(ids)},
        queries,
        "generic",
        source,
        database=database,
        groups={i: k for i, (k, _) in zip(ids, layout, strict=True)},
        classes=list(COPYDAYS_ORIGINALS),
        image_hashes=hashes,
    )


register_provider("copydays", copydays_image)
register_builtin_dataset("copydays", copydays_dataset)
