"""Stanford Cars and FGVC Aircraft in the layouts ``torchvision.datasets`` reads.

Both are read through torchvision itself (``StanfordCars``, ``FGVCAircraft``), which
parses the ``.mat`` / ``.txt`` annotations of a local copy without downloading or
checksumming. torchvision keeps the parsed list in private attributes
(``_samples``; ``_image_files`` and ``_labels``): if a later version renames them the
loader says so instead of guessing.
"""

from __future__ import annotations

import os
from typing import Any

from featstore.datasets.benchmarks.common import (
    Entry,
    assemble,
    benchmark_source,
    check_files,
)
from featstore.datasets.core import Dataset
from featstore.datasets.registry import option_choice
from featstore.errors import DatasetError
from featstore.progress import Progress


def _tv_root(path: str, folder: str, marker: str, scheme: str, layout: str) -> str:
    """torchvision's ``root``: the folder holding ``folder`` (the user may name either)."""
    path = os.path.abspath(path)
    if os.path.basename(path) == folder and os.path.exists(os.path.join(path, marker)):
        return os.path.dirname(path)
    if os.path.exists(os.path.join(path, folder, marker)):
        return path
    raise DatasetError(f"no {folder}/{marker} under {path}: {scheme}: expects {layout}")


def _private(obj: object, *names: str) -> list[Any]:
    try:
        return [getattr(obj, n) for n in names]
    except AttributeError:
        import torchvision

        raise DatasetError(
            f"torchvision {torchvision.__version__} {type(obj).__name__} has no {names}; "
            "featstore reads that torchvision attribute: report this with your torchvision version"
        ) from None


# --- Stanford Cars ----------------------------------------------------------------------
CARS_LAYOUT = (
    "stanford_cars/ with devkit/{cars_meta,cars_train_annos}.mat, cars_test_annos_withlabels.mat, "
    "cars_train/ and cars_test/ (torchvision's StanfordCars layout)"
)


def load_cars(
    name: str, path: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset:
    """Stanford Cars: 196 models, the official train / test, through torchvision."""
    from torchvision.datasets import StanfordCars

    root = _tv_root(path, "stanford_cars", "devkit", "cars", CARS_LAYOUT)
    base = os.path.join(root, "stanford_cars")
    entries: list[Entry] = []
    classes: list[str] = []
    for split in ("train", "test"):
        try:
            tv = StanfordCars(root, split=split)
        except RuntimeError:
            missing = (
                "devkit/cars_train_annos.mat"
                if split == "train"
                else "cars_test_annos_withlabels.mat"
            )
            raise DatasetError(
                f"no {missing} (or cars_{split}/) under {base}: cars: expects {CARS_LAYOUT}"
            ) from None
        (samples,) = _private(tv, "_samples")
        classes = [str(c) for c in tv.classes]
        for image_path, target in samples:
            rel = os.path.relpath(image_path, base).replace(os.sep, "/")
            entries.append(Entry(rel, image_path, int(target), split))
    check_files(entries, "cars", "the annotation .mat files")
    source = benchmark_source(
        "cars", base, "Stanford Cars: official train / test (torchvision layout)"
    )
    return assemble(name, entries, classes, source, skip_bad=skip_bad, progress=progress)


# --- FGVC Aircraft ----------------------------------------------------------------------
AIRCRAFT_LEVELS = ("variant", "family", "manufacturer")
AIRCRAFT_LAYOUT = (
    "fgvc-aircraft-2013b/data/ with images/, {variants,families,manufacturers}.txt and "
    "images_<level>_{train,val,test}.txt (torchvision's FGVCAircraft layout)"
)


def load_aircraft(
    name: str,
    path: str,
    *,
    skip_bad: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Dataset:
    """FGVC Aircraft: train / val / test at ``level`` variant (100), family (70) or manufacturer (30)."""
    from torchvision.datasets import FGVCAircraft

    level = option_choice(options, "level", AIRCRAFT_LEVELS, "aircraft")
    root = _tv_root(path, "fgvc-aircraft-2013b", "data", "aircraft", AIRCRAFT_LAYOUT)
    base = os.path.join(root, "fgvc-aircraft-2013b")
    entries: list[Entry] = []
    classes: list[str] = []
    for split in ("train", "val", "test"):
        listing = os.path.join(base, "data", f"images_{level}_{split}.txt")
        if not os.path.isfile(listing):
            raise DatasetError(
                f"no data/images_{level}_{split}.txt under {base}: aircraft: expects {AIRCRAFT_LAYOUT}"
            )
        try:
            tv = FGVCAircraft(root, split=split, annotation_level=level)
        except (FileNotFoundError, KeyError) as exc:
            raise DatasetError(
                f"aircraft: cannot read {base}/data at level {level} ({exc}); expects {AIRCRAFT_LAYOUT}"
            ) from None
        files, labels = _private(tv, "_image_files", "_labels")
        classes = [str(c) for c in tv.classes]
        for image_path, target in zip(files, labels, strict=True):
            rel = os.path.relpath(image_path, os.path.join(base, "data")).replace(os.sep, "/")
            entries.append(Entry(rel, image_path, int(target), split))
    check_files(entries, "aircraft", f"data/images_{level}_*.txt")
    source = benchmark_source(
        "aircraft", base, f"FGVC Aircraft: official train / val / test, {level} level", level=level
    )
    return assemble(name, entries, classes, source, skip_bad=skip_bad, progress=progress)
