"""The Dataset: sample ids, labels, splits and where each image lives, with a content fingerprint.

A dataset's id is its name plus a fingerprint over ids, labels, splits and the bytes of
every image, so the same images registered from another path get the same id, and a
teammate whose files differ gets a different one. Feature keys record the dataset id and
this fingerprint (see :class:`featstore.specs.FeatureKey`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from featstore.errors import BadImageError, DatasetError
from featstore.keys import content_hash

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FINGERPRINT_LENGTH = 12  # hex characters of the fingerprint kept in the dataset id


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise DatasetError(
            f"dataset name {name!r} is not valid: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit"
        )
    return name


@dataclass
class Dataset:
    """A registered set of images with labels and splits, in store order."""

    name: str
    ids: list[str]
    refs: list[str]
    labels: np.ndarray
    splits: np.ndarray
    split_names: list[str]
    classes: list[str]
    fingerprint: str
    source: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # found at registration; not stored

    @property
    def id(self) -> str:
        return f"{self.name}-{self.fingerprint[:FINGERPRINT_LENGTH]}"

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def multilabel(self) -> bool:
        return self.labels.ndim == 2

    def split_indices(self, split: str) -> np.ndarray:
        """Row indices of the samples in ``split`` (e.g. "train"), in store order."""
        if split not in self.split_names:
            raise DatasetError(
                f"dataset {self.name!r} has no split {split!r}; its splits are {self.split_names}"
            )
        return np.flatnonzero(self.splits == self.split_names.index(split))

    def split_counts(self) -> dict[str, int]:
        return {
            name: int((self.splits == code).sum()) for code, name in enumerate(self.split_names)
        }

    def load_image(self, index: int) -> Image.Image:
        """The image of row ``index`` as RGB."""
        from featstore.datasets.images import load_image

        return load_image(self.refs[index])

    # --- persistence ------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        attrs = {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "n": self.n,
            "classes": list(self.classes),
            "split_names": list(self.split_names),
            "split_counts": self.split_counts(),
            "source": self.source,
            "skipped": self.skipped,
            "extra": self.extra,
        }
        arrays = {
            "ids": np.asarray(self.ids, dtype=str),
            "refs": np.asarray(self.refs, dtype=str),
            "labels": self.labels,
            "split": self.splits.astype(np.uint8),
        }
        return attrs, arrays

    @classmethod
    def from_arrays(cls, attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> Dataset:
        return cls(
            name=attrs["name"],
            ids=[str(v) for v in arrays["ids"]],
            refs=[str(v) for v in arrays["refs"]],
            labels=np.asarray(arrays["labels"]),
            splits=np.asarray(arrays["split"], dtype=np.uint8),
            split_names=list(attrs["split_names"]),
            classes=list(attrs["classes"]),
            fingerprint=attrs["fingerprint"],
            source=dict(attrs.get("source") or {}),
            skipped=list(attrs.get("skipped") or []),
            extra=dict(attrs.get("extra") or {}),
        )

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "n": self.n,
            "classes": self.classes,
            "split_counts": self.split_counts(),
            "source": self.source,
            "fingerprint": self.fingerprint,
            "skipped": self.skipped,
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }


def fingerprint(
    ids: list[str],
    labels: np.ndarray,
    splits: list[str],
    image_hashes: list[str],
    extra: dict[str, Any] | None = None,
) -> str:
    """Content hash over everything that defines a dataset (not its name or location)."""
    digest = hashlib.sha256()
    digest.update(
        content_hash({"ids": ids, "splits": splits, "extra": extra or {}}, length=64).encode()
    )
    digest.update(np.ascontiguousarray(labels).astype(np.int64).tobytes())
    digest.update(str(labels.shape).encode())
    for value in image_hashes:
        digest.update(value.encode())
    return digest.hexdigest()


def build_dataset(
    name: str,
    ids: list[str],
    refs: list[str],
    labels: np.ndarray,
    splits: list[str],
    classes: list[str],
    image_hashes: list[str],
    source: dict[str, Any],
    skipped: list[dict[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Dataset:
    """Assemble a Dataset from per-sample lists, checking ids are unique."""
    check_name(name)
    if not ids:
        raise DatasetError(f"dataset {name!r} has no images")
    seen: dict[str, int] = {}
    for row, sample_id in enumerate(ids):
        if sample_id in seen:
            raise DatasetError(
                f"duplicate id {sample_id!r} (rows {seen[sample_id]} and {row}); ids must be unique"
            )
        seen[sample_id] = row
    split_names = list(dict.fromkeys(splits))
    split_codes = np.array([split_names.index(s) for s in splits], dtype=np.uint8)
    labels = np.asarray(labels)
    return Dataset(
        name=name,
        ids=list(ids),
        refs=list(refs),
        labels=labels,
        splits=split_codes,
        split_names=split_names,
        classes=list(classes),
        fingerprint=fingerprint(list(ids), labels, list(splits), image_hashes, extra),
        source=source,
        skipped=list(skipped or []),
        extra=dict(extra or {}),
    )


__all__ = ["Dataset", "build_dataset", "check_name", "fingerprint", "BadImageError"]
