"""Dataset sources: class folders, split/class folders, CSV or JSON manifests, built-ins, schemes.

``SCHEME:PATH`` sources (benchmark layouts, retrieval sets, hf:, wds:) are dispatched
through the scheme table in :mod:`featstore.datasets.registry`.

Every source is checked before anything is registered: each image is decoded once and
hashed, so a truncated or fake image is named in the error and the store stays unchanged
(or, with ``skip_bad``, left out and recorded in the dataset's ``skipped`` list).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from featstore.datasets.core import Dataset, build_dataset
from featstore.datasets.images import check_and_hash_all, is_image_file
from featstore.datasets.registry import BUILTIN_PREFIX, builtin_dataset, parse_source
from featstore.errors import DatasetError, ManifestError
from featstore.progress import Progress

SPLIT_NAMES = ("train", "val", "valid", "validation", "test", "trainval")
DEFAULT_TEST_FRACTION = 0.2


@dataclass
class _Sample:
    sample_id: str
    path: str
    label: Any  # class name (single-label) or {name: +1/-1} (multi-label)
    split: str
    where: str  # for error messages: "row 3" or the relative path


def dataset_from_source(
    name: str,
    source: str,
    *,
    skip_bad: bool = False,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    progress: Progress | None = None,
) -> Dataset:
    """Build (but do not register) the dataset ``name`` from ``source``."""
    if source.startswith(BUILTIN_PREFIX):
        return builtin_dataset(source, name)
    scheme_source = parse_source(source)  # voc2007:DIR, cifar10:DIR, oxford:DIR, hf:DIR, ...
    if scheme_source is not None:
        scheme = scheme_source.scheme
        if scheme.path_must_exist and not os.path.exists(scheme_source.path):
            raise DatasetError(
                f"{scheme.name}: source {scheme_source.path} does not exist; "
                f"{scheme.name}: reads {scheme.reads}"
            )
        return scheme_source.load(name, skip_bad=skip_bad, progress=progress)
    if not os.path.exists(source):
        raise DatasetError(
            f"dataset source {source} does not exist; give a folder, a .csv/.json manifest, "
            "builtin:NAME or SCHEME:DIR (see featstore datasets add --help)"
        )
    if os.path.isdir(source):
        samples, layout = _scan_folder(source, test_fraction)
        description = {"kind": "folder", "root": os.path.abspath(source), "layout": layout}
    elif source.lower().endswith(".csv"):
        samples = _read_csv(source)
        description = {"kind": "manifest", "path": os.path.abspath(source)}
    elif source.lower().endswith(".json"):
        samples = _read_json(source)
        description = {"kind": "manifest", "path": os.path.abspath(source)}
    else:
        raise DatasetError(
            f"cannot read dataset source {source}: expected a folder, a .csv or a .json manifest"
        )
    return _assemble(name, samples, description, skip_bad, progress)


def _assemble(
    name: str,
    samples: list[_Sample],
    source: dict[str, Any],
    skip_bad: bool,
    progress: Progress | None,
) -> Dataset:
    if not samples:
        raise DatasetError(f"no images found in {source.get('root') or source.get('path')}")
    hashes, skipped = check_and_hash_all([s.path for s in samples], skip_bad, progress)
    kept = [(s, h) for s, h in zip(samples, hashes, strict=False) if h is not None]
    if not kept:
        raise DatasetError("every image was bad; nothing to register")
    multilabel = isinstance(kept[0][0].label, dict)
    if multilabel:
        classes = sorted({c for s, _ in kept for c in s.label})
        labels = np.zeros((len(kept), len(classes)), dtype=np.int8)
        for row, (sample, _) in enumerate(kept):
            for cls, value in sample.label.items():
                labels[row, classes.index(cls)] = value
    else:
        classes = sorted({str(s.label) for s, _ in kept if s.label is not None})
        labels = np.array(
            [classes.index(str(s.label)) if s.label is not None else -1 for s, _ in kept],
            dtype=np.int32,
        )
    return build_dataset(
        name,
        [s.sample_id for s, _ in kept],
        [os.path.abspath(s.path) for s, _ in kept],
        labels,
        [s.split for s, _ in kept],
        classes,
        [h for _, h in kept if h],
        source,
        skipped,
    )


# --- folders ----------------------------------------------------------------------------
def _subdirs(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _images_in(path: str) -> list[str]:
    found: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if is_image_file(f))
    return found


def _scan_folder(root: str, test_fraction: float) -> tuple[list[_Sample], str]:
    top = _subdirs(root)
    if not top:
        raise DatasetError(
            f"{root} has no subfolders; expected one subfolder per class, or split folders "
            "(train/, test/) holding class subfolders"
        )
    samples: list[_Sample] = []
    if all(d.lower() in SPLIT_NAMES for d in top):
        for split in top:
            samples.extend(_class_samples(root, os.path.join(root, split), split.lower()))
        return samples, "split/class"
    samples = _class_samples(root, root, None)
    _assign_split(samples, test_fraction)
    return (
        samples,
        f"class (generated split: {1 - test_fraction:.0%} train / {test_fraction:.0%} test, seed 0)",
    )


def _class_samples(root: str, folder: str, split: str | None) -> list[_Sample]:
    classes = _subdirs(folder)
    if not classes:
        raise DatasetError(f"{folder} has no class subfolders")
    samples = []
    for cls in classes:
        paths = _images_in(os.path.join(folder, cls))
        if not paths:
            raise DatasetError(f"class folder {os.path.join(folder, cls)} holds no images")
        for path in paths:
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            samples.append(_Sample(rel, path, cls, split or "train", rel))
    return samples


def _assign_split(samples: list[_Sample], test_fraction: float) -> None:
    """A stratified, seeded train/test split for folders that come without one."""
    if not 0 < test_fraction < 1:
        raise DatasetError(f"test fraction must be between 0 and 1, not {test_fraction}")
    rng = np.random.default_rng(0)
    by_class: dict[str, list[_Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample.label, []).append(sample)
    for members in by_class.values():
        n_test = int(round(len(members) * test_fraction))
        for i in rng.permutation(len(members))[:n_test]:
            members[i].split = "test"


# --- manifests --------------------------------------------------------------------------
def _parse_labels(raw: Any, where: str) -> Any:
    """A class name, or for several labels ``{name: +1}`` (``?name`` marks a difficult one: -1)."""
    if isinstance(raw, list) or (isinstance(raw, str) and (";" in raw or "|" in raw)):
        names = raw if isinstance(raw, list) else raw.replace("|", ";").split(";")
        out = {}
        for item in (str(n).strip() for n in names):
            if item:
                out[item.lstrip("?")] = -1 if item.startswith("?") else 1
        return out
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ManifestError(f"{where}: the label is empty")
    return str(raw).strip()


def _manifest_sample(row: dict[str, Any], base: str, where: str) -> _Sample:
    path = row.get("path")
    if path in (None, ""):
        raise ManifestError(
            f"{where}: missing the 'path' column (columns: path, label or labels, split, id)"
        )
    if "label" in row and row["label"] not in (None, ""):
        label = _parse_labels(row["label"], where)
    elif "labels" in row and row["labels"] not in (None, ""):
        label = _parse_labels(row["labels"], where)
        if not isinstance(label, dict):
            label = {label: 1}
    else:
        raise ManifestError(f"{where}: missing the 'label' (or 'labels') column")
    full = (
        path if os.path.isabs(path) else os.path.join(base, path)
    )  # existence: checked with the bytes
    split = str(row.get("split") or "train").strip().lower()
    sample_id = str(row.get("id") or path).strip()
    return _Sample(sample_id, full, label, split, where)


def _read_csv(path: str) -> list[_Sample]:
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise ManifestError(
                f"{path}: the header must name a 'path' column (got {reader.fieldnames})"
            )
        return [
            _manifest_sample(row, base, f"{path} row {i}") for i, row in enumerate(reader, start=2)
        ]


def _read_json(path: str) -> list[_Sample]:
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, encoding="utf-8") as handle:
            rows = json.load(handle)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
    if isinstance(rows, dict) and "images" in rows:
        rows = rows["images"]
    if not isinstance(rows, list):
        raise ManifestError(f"{path}: expected a list of {{path, label, split, id}} objects")
    samples = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ManifestError(f"{path} item {i}: expected an object, got {type(row).__name__}")
        samples.append(_manifest_sample(row, base, f"{path} item {i}"))
    return samples
