"""PASCAL VOC2007 classification: 20 classes, multi-label, with the devkit's difficult flags.

Reads ``Annotations/<id>.xml`` for every image listed in ``ImageSets/Main/trainval.txt``
and ``test.txt``; images are ``JPEGImages/<id>.jpg``. A class is present (+1) in an image
with at least one non-difficult object of it, difficult (-1) when all its objects there
are difficult (the devkit's ``<class>_<set>.txt`` writes 0 for those), absent (0) otherwise.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

from featstore.datasets.benchmarks.common import (
    Entry,
    assemble,
    benchmark_source,
    check_files,
    find_root,
    read_lines,
    require,
)
from featstore.datasets.core import Dataset
from featstore.errors import DatasetError
from featstore.progress import Progress

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
VOC_LAYOUT = (
    "the VOC2007 folder inside VOCdevkit (Annotations/*.xml, JPEGImages/*.jpg, "
    "ImageSets/Main/{trainval,test}.txt)"
)
VOC_SPLITS = ("trainval", "test")


def _objects(xml_path: str) -> list[tuple[str, bool]]:
    """(class name, difficult) of every object in one annotation file."""
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as exc:
        raise DatasetError(
            f"{xml_path} is not valid XML ({exc}); re-extract the VOC devkit"
        ) from None
    found = []
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise DatasetError(
                f"{xml_path}: object class {name!r} is not one of the 20 VOC classes"
            )
        found.append((name, (obj.findtext("difficult") or "0").strip() == "1"))
    return found


def voc_labels(objects: list[tuple[str, bool]]) -> np.ndarray:
    """The (20,) int8 row: +1 present, -1 only difficult objects of the class, 0 absent."""
    row = np.zeros(len(VOC_CLASSES), dtype=np.int8)
    for name, difficult in objects:
        k = VOC_CLASSES.index(name)
        if not difficult:
            row[k] = 1
        elif row[k] == 0:
            row[k] = -1
    return row


def load_voc2007(
    name: str, path: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset:
    """VOC2007 trainval / test, 20 classes, multi-label with difficult flags."""
    root = find_root(path, "ImageSets", ("VOC2007", "VOCdevkit/VOC2007"))
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    for split in VOC_SPLITS:
        listing = require(root, f"ImageSets/Main/{split}.txt", "voc2007", VOC_LAYOUT)
        for image_id in (line.split()[0] for line in read_lines(listing)):
            if image_id in seen:
                raise DatasetError(
                    f"voc2007: image {image_id} is listed in both {seen[image_id]}.txt and "
                    f"{split}.txt; the official splits are disjoint"
                )
            seen[image_id] = split
            xml_path = os.path.join(root, "Annotations", f"{image_id}.xml")
            if not os.path.isfile(xml_path):
                raise DatasetError(
                    f"no Annotations/{image_id}.xml under {root}: voc2007: every image of "
                    f"ImageSets/Main/{split}.txt needs its annotation ({VOC_LAYOUT})"
                )
            ref = os.path.join(root, "JPEGImages", f"{image_id}.jpg")
            entries.append(Entry(image_id, ref, voc_labels(_objects(xml_path)), split))
    check_files(entries, "voc2007", "ImageSets/Main")
    source: dict[str, Any] = benchmark_source(
        "voc2007",
        root,
        "VOC2007 classification: trainval / test, 20 classes, difficult objects ignored",
    )
    return assemble(name, entries, VOC_CLASSES, source, skip_bad=skip_bad, progress=progress)
