"""Benchmarks with several official splits (SUN397, DTD: ``?fold=K``) or a seeded protocol
(Caltech-101: N train per class, the rest test).

The fold (or seed) is part of the split, so it changes the fingerprint: fold 1 and fold 2
of SUN397 are two datasets that share their features (same images, same order).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from featstore.datasets.benchmarks.common import (
    Entry,
    assemble,
    benchmark_source,
    check_files,
    class_index,
    find_root,
    fold_option,
    read_lines,
    require,
)
from featstore.datasets.core import Dataset
from featstore.datasets.images import is_image_file
from featstore.datasets.registry import option_choice, option_int
from featstore.errors import DatasetError
from featstore.progress import Progress

# --- SUN397 -----------------------------------------------------------------------------
SUN_LAYOUT = (
    "SUN397/<letter>/<class>/sun_*.jpg beside Partitions/{ClassName,Training_0K,Testing_0K}.txt "
    "(K = 1..10)"
)


def _sun_class(rel: str) -> str:
    """'/a/abbey/sun_x.jpg' -> 'abbey'; '/b/bakery/shop/sun_x.jpg' -> 'bakery/shop'."""
    parts = rel.strip("/").split("/")
    return "/".join(parts[1:-1])


def load_sun397(
    name: str,
    path: str,
    *,
    skip_bad: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Dataset:
    """SUN397, one of the 10 official partitions (50 train / 50 test per class each)."""
    fold = fold_option(options, "sun397", 10)
    root = find_root(path, "Partitions", ("..",))
    images = os.path.join(root, "SUN397") if os.path.isdir(os.path.join(root, "SUN397")) else root
    rows: list[tuple[str, str, str]] = []
    for split, prefix in (("train", "Training"), ("test", "Testing")):
        listing = require(root, f"Partitions/{prefix}_{fold:02d}.txt", "sun397", SUN_LAYOUT)
        rows.extend((rel.strip("/"), _sun_class(rel), split) for rel in read_lines(listing))
    names_file = os.path.join(root, "Partitions", "ClassName.txt")
    if os.path.isfile(names_file):
        classes = [_sun_class(line + "/x") for line in read_lines(names_file)]
    else:
        classes = sorted({cls for _, cls, _ in rows})
    index = class_index(classes)
    unknown = [cls for _, cls, _ in rows if cls not in index]
    if unknown:
        raise DatasetError(
            f"sun397: a partition names class {unknown[0]!r}, not in Partitions/ClassName.txt"
        )
    entries = [Entry(rel, os.path.join(images, rel), index[cls], split) for rel, cls, split in rows]
    check_files(entries, "sun397", f"Partitions/Training_{fold:02d}.txt")
    source = benchmark_source(
        "sun397",
        root,
        f"SUN397: official partition {fold} of 10 (Training_/Testing_{fold:02d}.txt)",
        fold=fold,
    )
    return assemble(name, entries, classes, source, skip_bad=skip_bad, progress=progress)


# --- Describable Textures ---------------------------------------------------------------
DTD_LAYOUT = "images/<class>/*.jpg and labels/{train,val,test}K.txt (K = 1..10)"


def load_dtd(
    name: str,
    path: str,
    *,
    skip_bad: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Dataset:
    """DTD: 47 textures, train / val / test of one of the 10 official splits."""
    fold = fold_option(options, "dtd", 10)
    root = find_root(path, "labels", ("dtd",))
    rows = []
    for split in ("train", "val", "test"):
        for rel in read_lines(require(root, f"labels/{split}{fold}.txt", "dtd", DTD_LAYOUT)):
            rows.append((rel, rel.split("/", 1)[0], split))
    require(root, "images", "dtd", DTD_LAYOUT, folder=True)
    classes = sorted({cls for _, cls, _ in rows})
    index = class_index(classes)
    entries = [
        Entry(rel, os.path.join(root, "images", rel), index[cls], split) for rel, cls, split in rows
    ]
    check_files(entries, "dtd", f"labels/*{fold}.txt")
    source = benchmark_source(
        "dtd", root, f"DTD: official split {fold} of 10 (labels/*{fold}.txt)", fold=fold
    )
    return assemble(name, entries, classes, source, skip_bad=skip_bad, progress=progress)


# --- Caltech-101 ------------------------------------------------------------------------
CALTECH_LAYOUT = "101_ObjectCategories/<class>/image_NNNN.jpg"
CALTECH_BACKGROUND = "BACKGROUND_Google"


def _class_rng(seed: int, cls: str) -> np.random.Generator:
    """One generator per class, so leaving a class out never changes another class's split."""
    return np.random.default_rng([seed, int(hashlib.sha256(cls.encode()).hexdigest()[:8], 16)])


def load_caltech101(
    name: str,
    path: str,
    *,
    skip_bad: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Dataset:
    """Caltech-101: ``train`` (30) random images per class for training, the rest test.

    Seeded (``seed``, default 0) per class; the background class is left out unless
    ``background=1``. The protocol and seed are kept in the dataset's source.
    """
    seed = option_int(options, "seed", 0, "caltech101", 0)
    n_train = option_int(options, "train", 30, "caltech101", 1)
    background = option_choice(options, "background", ("0", "1"), "caltech101") == "1"
    root = find_root(path, "101_ObjectCategories", ("caltech101",))
    folder = require(root, "101_ObjectCategories", "caltech101", CALTECH_LAYOUT, folder=True)
    classes = sorted(
        e.name for e in os.scandir(folder)
        if e.is_dir() and not e.name.startswith(".") and (background or e.name != CALTECH_BACKGROUND)
    )  # fmt: skip
    if not classes:
        raise DatasetError(f"no class folders in {folder}: caltech101: expects {CALTECH_LAYOUT}")
    entries = []
    for k, cls in enumerate(classes):
        files = sorted(f for f in os.listdir(os.path.join(folder, cls)) if is_image_file(f))
        if len(files) <= n_train:
            raise DatasetError(
                f"caltech101: class {cls} has {len(files)} images, too few for {n_train} train and "
                "at least one test image; pass ?train=K with a smaller K"
            )
        train = set(_class_rng(seed, cls).permutation(len(files))[:n_train].tolist())
        for i, fname in enumerate(files):
            rel = f"{cls}/{fname}"
            entries.append(
                Entry(rel, os.path.join(folder, rel), k, "train" if i in train else "test")
            )
    protocol = (
        f"Caltech-101: {n_train} train/class, the rest test, seed {seed}, "
        f"background class {'included' if background else 'excluded'}"
    )
    source = benchmark_source(
        "caltech101", root, protocol, seed=seed, train_per_class=n_train, background=background
    )
    return assemble(name, entries, classes, source, skip_bad=skip_bad, progress=progress)
