"""What every benchmark loader shares: finding the layout, reading list files, assembling.

A loader reads the files a dataset ships into :class:`Entry` rows (id relative to the
dataset's root, image ref, label, official split) and hands them to :func:`assemble`,
which hashes every image (files and provider refs alike) and builds the same
:class:`~featstore.datasets.core.Dataset` the folder and manifest sources build. Ids are
relative and hashes are over image bytes, so two downloads of the same official dataset
get the same fingerprint wherever they live.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featstore.datasets.core import Dataset, build_dataset
from featstore.datasets.images import check_and_hash_all
from featstore.errors import DatasetError
from featstore.progress import Progress


@dataclass
class Entry:
    """One image of a benchmark: its id, where it is, its label(s) and its official split."""

    sample_id: str
    ref: str  # a file path or a builtin:<provider>/<locator> ref
    label: int | np.ndarray  # class index, or a (K,) int8 row (+1 / 0 / -1 difficult)
    split: str


def layout_error(scheme: str, missing: str, root: str, layout: str) -> DatasetError:
    """The error for a file or folder the layout needs: names it and the layout expected."""
    return DatasetError(f"no {missing} under {root}: {scheme}: expects {layout}")


def require(root: str, rel: str, scheme: str, layout: str, *, folder: bool = False) -> str:
    """``root/rel`` if it exists (as a folder when ``folder``); else the layout error."""
    path = os.path.join(root, rel)
    if not (os.path.isdir(path) if folder else os.path.isfile(path)):
        raise layout_error(scheme, rel, root, layout)
    return path


def find_root(path: str, marker: str, candidates: Sequence[str]) -> str:
    """The folder holding ``marker``: ``path`` itself or one of its ``candidates`` subfolders.

    Users point at the folder they downloaded or the one it unpacks to
    (``VOCdevkit`` or ``VOCdevkit/VOC2007``): both are accepted.
    """
    for sub in ("", *candidates):
        root = os.path.join(path, sub) if sub else path
        if os.path.exists(os.path.join(root, marker)):
            return root
    return path


def read_lines(path: str) -> list[str]:
    """Non-empty, non-comment lines of a text file, stripped."""
    with open(path, encoding="utf-8") as handle:
        return [s for line in handle if (s := line.strip()) and not s.startswith("#")]


def read_pairs(path: str, scheme: str) -> list[tuple[str, str]]:
    """``key value`` lines (the CUB-style ``<image id> <value>`` files)."""
    pairs = []
    for number, line in enumerate(read_lines(path), start=1):
        key, _, value = line.partition(" ")
        if not value:
            raise DatasetError(
                f"{path} line {number}: {scheme}: expected '<id> <value>', got {line!r}"
            )
        pairs.append((key, value.strip()))
    return pairs


def fold_option(options: dict[str, Any], scheme: str, n_folds: int) -> int:
    from featstore.datasets.registry import option_int

    return option_int(options, "fold", 1, scheme, 1, n_folds)


def check_files(entries: Sequence[Entry], scheme: str, listed_in: str) -> None:
    """Every listed image file exists (checked up front: one clear error, not a hash failure)."""
    missing = [
        e.ref for e in entries if not e.ref.startswith("builtin:") and not os.path.isfile(e.ref)
    ]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(
            f"{scheme}: {listed_in} lists image {missing[0]}, which does not exist{more}; "
            "is the download complete?"
        )


def assemble(
    name: str,
    entries: Sequence[Entry],
    classes: Sequence[str],
    source: dict[str, Any],
    *,
    skip_bad: bool = False,
    progress: Progress | None = None,
    hashes: Sequence[str] | None = None,
) -> Dataset:
    """Hash every image (unless ``hashes`` are given) and build the Dataset in ``entries`` order."""
    if not entries:
        raise DatasetError(f"{source.get('scheme')}: no images listed under {source.get('root')}")
    skipped: list[dict[str, str]] = []
    if hashes is None:
        found, skipped = check_and_hash_all([e.ref for e in entries], skip_bad, progress)
        kept = [(e, h) for e, h in zip(entries, found, strict=True) if h is not None]
    else:
        kept = list(zip(entries, hashes, strict=True))
    if not kept:
        raise DatasetError("every image was bad; nothing to register")
    first = kept[0][0].label
    if isinstance(first, np.ndarray):
        labels = np.stack([np.asarray(e.label, dtype=np.int8) for e, _ in kept])
    else:
        labels = np.array([int(e.label) for e, _ in kept], dtype=np.int32)
    return build_dataset(
        name,
        [e.sample_id for e, _ in kept],
        [e.ref for e, _ in kept],
        labels,
        [e.split for e, _ in kept],
        list(classes),
        [h for _, h in kept],
        source,
        skipped,
    )


def benchmark_source(scheme: str, root: str, protocol: str, **fields: Any) -> dict[str, Any]:
    """The dataset's source record: scheme, root, official protocol, fold and options."""
    return {
        "kind": "benchmark",
        "scheme": scheme,
        "root": os.path.abspath(root),
        "protocol": protocol,
        **{k: v for k, v in fields.items() if v is not None},
    }


def class_index(classes: Sequence[str]) -> dict[str, int]:
    return {c: i for i, c in enumerate(classes)}
