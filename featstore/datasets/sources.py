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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featstore.datasets.core import Dataset, build_dataset
from featstore.datasets.images import check_and_hash_all, is_image_file, shown
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
    splits: Sequence[str] | None = None,
) -> Dataset:
    """Build (but do not register) the dataset ``name`` from ``source``.

    ``splits``: the split names a manifest may use (default: :data:`SPLIT_NAMES`), so a
    typo such as ``tarin`` is refused instead of becoming a split of its own.
    """
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
        _check_splits(samples, splits)
        description = {"kind": "manifest", "path": os.path.abspath(source)}
    elif source.lower().endswith(".json"):
        samples = _read_json(source)
        _check_splits(samples, splits)
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
    multilabel = _check_label_forms([s for s, _ in kept])
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
    dataset = build_dataset(
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
    dataset.warnings.extend(_single_image_classes(kept, multilabel))
    return dataset


def _check_label_forms(samples: list[_Sample]) -> bool:
    """Whether the labels are multi-label; a mix of single- and multi-label rows is refused."""
    multi = [s for s in samples if isinstance(s.label, dict)]
    single = [s for s in samples if not isinstance(s.label, dict)]
    if multi and single:
        raise ManifestError(
            f"the manifest mixes single-label rows ({single[0].where}: {single[0].label!r}) and "
            f"multi-label rows ({multi[0].where}: {';'.join(_label_names(multi[0].label))!r}); "
            "use a 'labels' column for multi-label data, or one class per row in 'label'"
        )
    return bool(multi)


def _label_names(label: dict[str, int]) -> list[str]:
    return [name if value > 0 else f"?{name}" for name, value in label.items()]


def _single_image_classes(kept: list[tuple[_Sample, str]], multilabel: bool) -> list[str]:
    """Warnings for classes with one image: no train/test split can hold it on both sides."""
    if multilabel:
        counts = Counter(c for s, _ in kept for c, v in s.label.items() if v > 0)
    else:
        counts = Counter(str(s.label) for s, _ in kept if s.label is not None)
    lonely = sorted(c for c, n in counts.items() if n == 1)
    if not lonely:
        return []
    more = f" and {len(lonely) - 5} more" if len(lonely) > 5 else ""
    return [
        f"{len(lonely)} classes have a single image ({', '.join(lonely[:5])}{more}); "
        "classifiers cannot be trained and tested on them: add images or drop those classes"
    ]


# --- folders ----------------------------------------------------------------------------
def _unreadable(path: str, exc: OSError) -> DatasetError:
    return DatasetError(
        f"cannot read folder {shown(path)} ({exc.strerror or exc}); make it readable "
        "(chmod +rx) or move it out of the dataset"
    )


def _subdirs(path: str) -> list[str]:
    try:
        entries = list(os.scandir(path))
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _images_in(path: str) -> list[str]:
    def onerror(exc: OSError) -> None:
        raise _unreadable(exc.filename or path, exc)

    found: list[str] = []
    for root, dirs, files in os.walk(path, onerror=onerror):
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
    split_dirs = [d for d in top if d.lower() in SPLIT_NAMES]
    if split_dirs and len(split_dirs) < len(top):
        others = [d for d in top if d.lower() not in SPLIT_NAMES]
        raise DatasetError(
            f"{root} mixes split folders ({', '.join(split_dirs)}) with other folders "
            f"({', '.join(others[:5])}); put every class folder inside a split folder, "
            "or rename the split folders if they are classes"
        )
    if split_dirs:
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
        n_test = round(len(members) * test_fraction)
        for i in rng.permutation(len(members))[:n_test]:
            members[i].split = "test"


# --- manifests --------------------------------------------------------------------------
def _parse_labels(raw: Any, where: str) -> Any:
    """A class name, or for several labels ``{name: +1}`` (``?name`` marks a difficult one: -1).

    A lone ``?name`` is a multi-label row whose only label is difficult.
    """
    if isinstance(raw, bool) or not isinstance(raw, (str, int, list)):
        raise ManifestError(
            f"{where}: a label must be a class name or a list of class names, "
            f"not {type(raw).__name__} {raw!r}"
        )
    if isinstance(raw, list) or (isinstance(raw, str) and (";" in raw or "|" in raw)):
        names = raw if isinstance(raw, list) else raw.replace("|", ";").split(";")
        out = {}
        for item in names:
            if not isinstance(item, (str, int)) or isinstance(item, bool):
                raise ManifestError(
                    f"{where}: a label list holds class names, not {type(item).__name__} {item!r}"
                )
            item = str(item).strip()
            if item:
                out[_class_name(item.lstrip("?"), where)] = -1 if item.startswith("?") else 1
        if not out:
            raise ManifestError(f"{where}: the label list is empty")
        return out
    text = str(raw).strip()
    if not text:
        raise ManifestError(f"{where}: the label is empty")
    if text.startswith("?"):
        return {_class_name(text[1:], where): -1}
    return text


def _class_name(name: str, where: str) -> str:
    name = name.strip()
    if not name:
        raise ManifestError(f"{where}: '?' must be followed by a class name (?dog)")
    return name


def _manifest_sample(row: dict[str, Any], base: str, where: str) -> _Sample:
    path = row.get("path")
    if path in (None, ""):
        raise ManifestError(
            f"{where}: missing the 'path' column (columns: path, label or labels, split, id)"
        )
    if not isinstance(path, str):
        raise ManifestError(
            f"{where}: 'path' must be a file path string, not {type(path).__name__} {path!r}"
        )
    for column in ("split", "id"):
        value = row.get(column)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise ManifestError(
                f"{where}: {column!r} must be a string, not {type(value).__name__} {value!r}"
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


def _check_splits(samples: list[_Sample], declared: Sequence[str] | None) -> None:
    """Refuse split names outside the known (or declared) ones: ``tarin`` is a typo."""
    allowed = [s.strip().lower() for s in declared] if declared else list(SPLIT_NAMES)
    for sample in samples:
        if sample.split not in allowed:
            raise ManifestError(
                f"{sample.where}: unknown split {sample.split!r}; use one of {', '.join(allowed)}"
                ", or declare your split names (datasets add --splits NAME,NAME)"
            )


def _read_csv(path: str) -> list[_Sample]:
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8-sig") as handle:  # Excel writes a BOM
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
