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
left-right; ``tint:R,G,B`` multiply the channels; ``brightness:F`` scale brightness;
``blur:R`` Gaussian blur of radius R; ``occlude:F`` paint a mid-grey block covering the
fraction F of the area (sides scaled by sqrt F) at a seeded position.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from featstore.datasets.core import Dataset
from featstore.datasets.registry import image_digest
from featstore.errors import DatasetError

__all__ = [
    "COPYDAYS_DISTRACTORS",
    "COPYDAYS_ORIGINALS",
    "COPYDAYS_TRANSFORMS",
    "apply_transform",
    "copydays_dataset",
    "copydays_image",
    "copydays_layout",
]

SEED = 20140623  # fixed: crop positions must never change, or the fingerprint would
OCCLUDER = (128, 128, 128)  # mid-grey block of the occlude transform
MAX_SIDE = 512  # originals are downscaled so their longer side is at most this
# photos that ship inside installed packages and load offline (skimage 0.26 keeps these
# in its wheel; the others need pooch and a network). The originals are the queries.
COPYDAYS_ORIGINALS = (
    "astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field",
    "immunohistochemistry", "coins", "clock", "retina", "brick", "grass", "gravel", "text",
)  # fmt: skip
# further photos whose copies are in the database as distractors only (no query)
COPYDAYS_DISTRACTORS = (
    "sklearn:china.jpg",
    "sklearn:flower.jpg",
    "matplotlib:grace_hopper.jpg",
    "moon",
)
COPYDAYS_TRANSFORMS = (
    "crop:0.6", "crop:0.3", "rotate:90", "rotate:45", "scale:0.1", "jpeg:30", "jpeg:3",
    "flip", "tint:1.4,1.0,0.5", "blur:6", "occlude:0.6",
    "crop:0.5+rotate:15+tint:0.8,1.0,1.3+jpeg:15",
    "crop:0.35+scale:0.4+brightness:1.5+jpeg:10",
)  # fmt: skip
PHOTOS = COPYDAYS_ORIGINALS + COPYDAYS_DISTRACTORS


def _load_photo(name: str) -> np.ndarray:
    source, _, file = name.rpartition(":")
    if source == "sklearn":
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(file))
    if source == "matplotlib":
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data(file, asfileobj=False)
        with Image.open(str(path)) as image:
            return np.asarray(image.convert("RGB"))
    import skimage.data

    return np.asarray(getattr(skimage.data, file)())


@lru_cache(maxsize=len(PHOTOS))
def _original(index: int) -> Image.Image:
    image = Image.fromarray(_load_photo(PHOTOS[index]).astype(np.uint8)).convert(
        "RGB"
    )  # grey -> RGB
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
        elif op == "blur":
            image = image.filter(ImageFilter.GaussianBlur(float(arg)))
        elif op == "occlude":
            f = math.sqrt(float(arg))
            ow, oh = round(w * f), round(h * f)
            x0 = int(rng.integers(0, w - ow + 1))
            y0 = int(rng.integers(0, h - oh + 1))
            image = image.copy()
            image.paste(OCCLUDER, (x0, y0, x0 + ow, y0 + oh))
        else:
            raise DatasetError(f"unknown copydays transform {step!r} in {spec!r}")
    return image


@lru_cache(maxsize=1)
def copydays_layout() -> tuple[tuple[int, int], ...]:
    """(photo index, transform index) of every row; transform 0 is the untouched original.

    Query photos contribute their original and every transform; distractor photos only
    their transforms.
    """
    rows: list[tuple[int, int]] = []
    for k in range(len(PHOTOS)):
        first = 0 if k < len(COPYDAYS_ORIGINALS) else 1
        rows.extend((k, j) for j in range(first, 1 + len(COPYDAYS_TRANSFORMS)))
    return tuple(rows)


def copydays_image(index: int) -> Image.Image:
    """The image of row ``index`` (provider for refs ``builtin:copydays/<index>``)."""
    layout = copydays_layout()
    if not 0 <= index < len(layout):
        raise DatasetError(f"builtin:copydays has {len(layout)} images, not an image {index}")
    k, j = layout[index]
    if j == 0:
        return _original(k).copy()
    rng = np.random.default_rng([SEED, k, j])
    return apply_transform(_original(k), COPYDAYS_TRANSFORMS[j - 1], rng)


def _row_id(k: int, j: int) -> str:
    name = PHOTOS[k].rpartition(":")[2].removesuffix(".jpg")
    return f"{name}/{'original' if j == 0 else COPYDAYS_TRANSFORMS[j - 1]}"


def copydays_dataset(name: str) -> Dataset:
    """Build the dataset (queries = originals, database = all transformed images)."""
    from featstore.datasets.retrieval import RetrievalQuery, build_retrieval_dataset

    layout = copydays_layout()
    ids = [_row_id(k, j) for k, j in layout]
    hashes = [image_digest(copydays_image(i)) for i in range(len(layout))]
    n_transforms = len(COPYDAYS_TRANSFORMS)
    queries = [
        RetrievalQuery(name=COPYDAYS_ORIGINALS[k], image=_row_id(k, 0),
                       positives=[_row_id(k, j) for j in range(1, 1 + n_transforms)])
        for k in range(len(COPYDAYS_ORIGINALS))
    ]  # fmt: skip
    database = [i for i, (_, j) in zip(ids, layout, strict=True) if j != 0]
    source = {
        "kind": "builtin", "builtin": "copydays", "seed": SEED,
        "description": "Copydays-style copies of photos shipped in scikit-image, scikit-learn, matplotlib",
        "originals": list(COPYDAYS_ORIGINALS), "distractors": list(COPYDAYS_DISTRACTORS),
        "transforms": list(COPYDAYS_TRANSFORMS),
    }  # fmt: skip
    return build_retrieval_dataset(
        name, {i: f"builtin:copydays/{row}" for row, i in enumerate(ids)}, queries, "generic",
        source, database=database, groups={i: k for i, (k, _) in zip(ids, layout, strict=True)},
        classes=[p.rpartition(":")[2].removesuffix(".jpg") for p in PHOTOS], image_hashes=hashes,
    )  # fmt: skip
