"""Single-label benchmarks whose official split is a list file: Flowers-102, Pets, CUB, MIT67,
Stanford 40 Actions, Food-101.

Each loader reads the files the dataset ships (``.mat`` or ``.txt``), checks every listed
image exists, and keeps the official split names (``trainval`` where the dataset only
defines train+val, ``train``/``val``/``test`` where it defines three).
"""

from __future__ import annotations

import glob
import os

import numpy as np

from featstore.datasets.benchmarks.common import (
    Entry,
    assemble,
    benchmark_source,
    check_files,
    class_index,
    find_root,
    read_lines,
    read_pairs,
    require,
)
from featstore.datasets.core import Dataset
from featstore.errors import DatasetError
from featstore.progress import Progress


def _loadmat(path: str, keys: tuple[str, ...], scheme: str) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    try:
        content = loadmat(path, squeeze_me=True)
    except (ValueError, OSError, TypeError) as exc:
        raise DatasetError(
            f"{path} is not a readable .mat file ({exc}); download it again"
        ) from None
    missing = [k for k in keys if k not in content]
    if missing:
        raise DatasetError(
            f"{path}: {scheme}: has no variable {missing[0]!r} (expected {', '.join(keys)})"
        )
    return {k: np.atleast_1d(np.asarray(content[k])).astype(np.int64) for k in keys}


# --- Oxford Flowers-102 -----------------------------------------------------------------
FLOWERS_LAYOUT = (
    "jpg/image_NNNNN.jpg, imagelabels.mat ('labels') and setid.mat ('trnid', 'valid', 'tstid')"
)


def load_flowers102(
    name: str, path: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset:
    """Flowers-102: train / val / test from ``setid.mat``, labels 1..102 from ``imagelabels.mat``."""
    root = find_root(path, "setid.mat", ("flowers-102", "flowers102"))
    labels = _loadmat(
        require(root, "imagelabels.mat", "flowers102", FLOWERS_LAYOUT), ("labels",), "flowers102"
    )["labels"]
    setid = _loadmat(
        require(root, "setid.mat", "flowers102", FLOWERS_LAYOUT),
        ("trnid", "valid", "tstid"),
        "flowers102",
    )
    require(root, "jpg", "flowers102", FLOWERS_LAYOUT, folder=True)
    n_classes = int(labels.max())
    entries = []
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        for image_id in setid[key]:
            if not 1 <= image_id <= len(labels):
                raise DatasetError(
                    f"setid.mat {key} names image {image_id}, but imagelabels.mat labels {len(labels)} images"
                )
            rel = f"jpg/image_{image_id:05d}.jpg"
            entries.append(
                Entry(rel, os.path.join(root, rel), int(labels[image_id - 1]) - 1, split)
            )
    check_files(entries, "flowers102", "setid.mat")
    source = benchmark_source(
        "flowers102", root, "Flowers-102: official train / val / test (setid.mat)"
    )
    classes = [str(k) for k in range(1, n_classes + 1)]
    return assemble(name, entries, classes, source, skip_bad=skip_bad, progress=progress)


# --- Oxford-IIIT Pets -------------------------------------------------------------------
PETS_LAYOUT = (
    "images/*.jpg and annotations/{trainval,test}.txt ('<image> <class id> <species> <breed id>')"
)


def load_pets(
    name: str, path: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset:
    """Oxford-IIIT Pets: 37 breeds, trainval / test; class names from the image names."""
    root = find_root(path, "annotations", ("oxford-iiit-pet",))
    rows: list[tuple[str, int, str]] = []
    for split in ("trainval", "test"):
        listing = require(root, f"annotations/{split}.txt", "pets", PETS_LAYOUT)
        for number, line in enumerate(read_lines(listing), start=1):
            parts = line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                raise DatasetError(
                    f"{listing} line {number}: pets: expected '<image> <class id> ...', got {line!r}"
                )
            rows.append((parts[0], int(parts[1]), split))
    names: dict[int, str] = {}
    for image, class_id, _ in rows:
        names.setdefault(class_id, image.rsplit("_", 1)[0])
    if sorted(names) != list(range(1, len(names) + 1)):
        raise DatasetError(f"pets: class ids in {root}/annotations are not 1..{len(names)}")
    require(root, "images", "pets", PETS_LAYOUT, folder=True)
    entries = [
        Entry(
            f"images/{image}.jpg", os.path.join(root, "images", f"{image}.jpg"), class_id - 1, split
        )
        for image, class_id, split in rows
    ]
    check_files(entries, "pets", "annotations/{trainval,test}.txt")
    source = benchmark_source("pets", root, "Oxford-IIIT Pets: official trainval / test")
    return assemble(
        name,
        entries,
        [names[k] for k in sorted(names)],
        source,
        skip_bad=skip_bad,
        progress=progress,
    )


# --- Caltech-UCSD Birds-200-2011 --------------------------------------------------------
CUB_LAYOUT = "CUB_200_2011/ with images/, images.txt, image_class_labels.txt, train_test_split.txt, classes.txt"


def load_cub200(
    name: str, path: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset:
    """CUB-200-2011: 200 species, train / test from ``train_test_split.txt`` (1 = train)."""
    root = find_root(path, "images.txt", ("CUB_200_2011",))
    images = dict(read_pairs(require(root, "images.txt", "cub200", CUB_LAYOUT), "cub200"))
    labels = dict(
        read_pairs(require(root, "image_class_labels.txt", "cub200", CUB_LAYOUT), "cub200")
    )
    is_train = dict(
        read_pairs(require(root, "train_test_split.txt", "cub200", CUB_LAYOUT), "cub200")
    )
    class_rows = read_pairs(require(root, "classes.txt", "cub200", CUB_LAYOUT), "cub200")
    class_ids = {cid: k for k, (cid, _) in enumerate(class_rows)}
    entries = []
    for image_id, rel in images.items():
        if image_id not in labels or image_id not in is_train:
            raise DatasetError(
                f"cub200: image {image_id} of images.txt has no line in "
                f"{'image_class_labels.txt' if image_id not in labels else 'train_test_split.txt'}"
            )
        if labels[image_id] not in class_ids:
            raise DatasetError(
                f"cub200: image {image_id} has class {labels[image_id]}, not listed in classes.txt"
            )
        split = "train" if is_train[image_id] == "1" else "test"
        entries.append(
            Entry(rel, os.path.join(root, "images", rel), class_ids[labels[image_id]], split)
        )
    check_files(entries, "cub200", "images.txt")
    source = benchmark_source(
        "cub200", root, "CUB-200-2011: official train / test (train_test_split.txt)"
    )
    return assemble(
        name, entries, [c for _, c in class_rows], source, skip_bad=skip_bad, progress=progress
    )


# --- MIT Indoor 67 ----------------------------------------------------------------------
MIT67_LAYOUT = "Images/<class>/*.jpg with TrainImages.txt and TestImages.txt ('<class>/<file>.jpg')"


def load_mit67(
    name: str, path: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset:
    """MIT Indoor 67: 67 scene classes, the official 80 train / 20 test per class lists."""
    root = find_root(path, "TrainImages.txt", ("indoorCVPR_09",))
    rows = []
    for split, fname in (("train", "TrainImages.txt"), ("test", "TestImages.txt")):
        for rel in read_lines(require(root, fname, "mit67", MIT67_LAYOUT)):
            rel = rel.replace("\\", "/")
            rows.append((rel, rel.split("/", 1)[0], split))
    require(root, "Images", "mit67", MIT67_LAYOUT, folder=True)
    classes = sorted({cls for _, cls, _ in rows})
    index = class_index(classes)
    entries = [
        Entry(rel, os.path.join(root, "Images", rel), index[cls], split) for rel, cls, split in rows
    ]
    check_files(entries, "mit67", "TrainImages.txt / TestImages.txt")
    source = benchmark_source(
        "mit67", root, "MIT Indoor 67: official TrainImages.txt / TestImages.txt"
    )
    return assemble(name, entries, classes, source, skip_bad=skip_bad, progress=progress)


# --- Stanford 40 Actions ----------------------------------------------------------------
STANFORD40_LAYOUT = "JPEGImages/*.jpg and ImageSplits/<action>_{train,test}.txt"


def load_stanford40(
    name: str, path: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset:
    """Stanford 40 Actions: 40 actions, train / test from ``ImageSplits/<action>_<split>.txt``."""
    root = find_root(path, "ImageSplits", ("Stanford40",))
    splits_dir = require(root, "ImageSplits", "stanford40", STANFORD40_LAYOUT, folder=True)
    classes = sorted(
        os.path.basename(p)[: -len("_train.txt")]
        for p in glob.glob(os.path.join(splits_dir, "*_train.txt"))
    )
    if not classes:
        raise DatasetError(
            f"no ImageSplits/<action>_train.txt under {root}: stanford40: expects {STANFORD40_LAYOUT}"
        )
    entries = []
    for split in ("train", "test"):
        for k, action in enumerate(classes):
            listing = require(
                root, f"ImageSplits/{action}_{split}.txt", "stanford40", STANFORD40_LAYOUT
            )
            for image in read_lines(listing):
                entries.append(
                    Entry(f"JPEGImages/{image}", os.path.join(root, "JPEGImages", image), k, split)
                )
    check_files(entries, "stanford40", "ImageSplits")
    source = benchmark_source(
        "stanford40", root, "Stanford 40 Actions: official train / test (ImageSplits)"
    )
    return assemble(name, entries, classes, source, skip_bad=skip_bad, progress=progress)


# --- Food-101 ---------------------------------------------------------------------------
FOOD_LAYOUT = "images/<class>/<id>.jpg, meta/classes.txt and meta/{train,test}.txt ('<class>/<id>')"


def load_food101(
    name: str, path: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset:
    """Food-101: 101 dishes, the official 750 train / 250 test per class (meta/*.txt)."""
    root = find_root(path, "meta", ("food-101",))
    classes = read_lines(require(root, "meta/classes.txt", "food101", FOOD_LAYOUT))
    index = class_index(classes)
    entries = []
    for split in ("train", "test"):
        listing = require(root, f"meta/{split}.txt", "food101", FOOD_LAYOUT)
        for item in read_lines(listing):
            cls = item.split("/", 1)[0]
            if cls not in index:
                raise DatasetError(
                    f"food101: meta/{split}.txt names class {cls!r}, not in meta/classes.txt"
                )
            rel = f"images/{item}.jpg"
            entries.append(Entry(rel, os.path.join(root, rel), index[cls], split))
    check_files(entries, "food101", "meta/{train,test}.txt")
    source = benchmark_source("food101", root, "Food-101: official train / test (meta/*.txt)")
    return assemble(name, entries, classes, source, skip_bad=skip_bad, progress=progress)
