"""The Dataset: sample ids, labels, splits, where each image lives and what each image is.

Two identities, for two uses:

- ``id`` (name + ``fingerprint``): the fingerprint hashes ids, labels, splits and the bytes
  of every image, so the same dataset registered from another path gets the same id and a
  teammate whose files differ gets another. Result keys record the fingerprint (labels and
  splits decide a score).
- ``images_id``: a hash over the ordered per-image hashes (``image_hashes``: sha256 of each
  file's bytes, or of a generated image's pixels) and nothing else. Feature keys hold this,
  never the name, labels or splits (see :class:`featstore.specs.FeatureKey`), so a renamed,
  relabelled or re-split copy shares every feature entry, and a dataset whose images are a
  subset of an entry's images reads its rows from that entry by hash.

Datasets registered by store format 1 carry no per-image hashes (``image_hashes`` is None);
``featstore upgrade`` adds them.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.errors import BadImageError, DatasetError, clip
from featstore.keys import content_hash

if TYPE_CHECKING:  # a Dataset is read without PIL; its images are opened by datasets.images
    from PIL import Image

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FINGERPRINT_LENGTH = 12  # hex characters of the fingerprint kept in the dataset id
IMAGES_PREFIX = "img-"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):  # '$' lets a '\n' end it
        raise DatasetError(
            f"dataset name {clip(repr(name))} is not valid: use letters, digits, '_', '-' and "
            "'.', starting with a letter or digit"
        )
    return name


def check_class_names(classes: list[str]) -> None:
    """Refuse a class name holding control characters (terminal escapes, newlines): it
    would be printed by every command that shows the dataset."""
    for c in classes:
        if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in str(c)):
            raise DatasetError(
                f"class name {clip(repr(str(c)))} holds control characters (terminal escapes "
                "or line breaks); rename that class (its folder or label) and register again"
            )


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
    image_hashes: list[str] | None = None  # sha256 per row; None: registered by format 1
    repointed: int = 0  # set by add_dataset: image locations moved for the same content
    warnings: list[str] = field(default_factory=list)  # found at registration; not stored

    @property
    def id(self) -> str:
        return f"{self.name}-{self.fingerprint[:FINGERPRINT_LENGTH]}"

    @cached_property
    def images_id(self) -> str | None:
        """The content id of the ordered images (what feature keys hold), or None for a
        format-1 registration that recorded no per-image hashes."""
        return None if self.image_hashes is None else images_id(self.image_hashes)

    def require_images_id(self) -> str:
        """:attr:`images_id`, or a DatasetError saying how to add the missing hashes."""
        value = self.images_id
        if value is None:
            raise DatasetError(
                f"dataset {self.name!r} was registered by an older featstore (store format 1) "
                "without per-image hashes; run `featstore upgrade` on the store, or register it "
                "again with `featstore datasets add`"
            )
        return value

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

    def split_warnings(self) -> list[str]:
        """What makes a test score mean less than it says, found from labels, splits and hashes:
        test classes with no training image, and test images byte-identical to training ones."""
        if "test" not in self.split_names:
            return []
        test = self.splits == self.split_names.index("test")
        if test.all():
            return []
        out = []
        y = np.asarray(self.labels)
        if y.ndim == 2:
            present_test = set(np.flatnonzero((y[test] == 1).any(axis=0)).tolist())
            present_train = set(np.flatnonzero((y[~test] == 1).any(axis=0)).tolist())
        else:
            present_test = set(np.unique(y[test][y[test] >= 0]).tolist())
            present_train = set(np.unique(y[~test][y[~test] >= 0]).tolist())
        absent = sorted(present_test - present_train)
        if absent:
            names = [self.classes[c] if c < len(self.classes) else str(c) for c in absent]
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            out.append(
                f"{len(absent)} test class(es) have no training image ({', '.join(names[:5])}{more}): "
                "no classifier can predict them; add training images or drop them from the test split"
            )
        if self.image_hashes is not None:
            seen = {
                h: i
                for i, h in zip(
                    np.flatnonzero(~test), np.asarray(self.image_hashes)[~test], strict=True
                )
            }
            twins = [
                (int(i), seen[h]) for i, h in enumerate(self.image_hashes) if test[i] and h in seen
            ]
            if twins:
                i, j = twins[0]
                out.append(
                    f"{len(twins)} test image(s) are byte-identical to training images (e.g. test "
                    f"{self.ids[i]!r} = {self.split_names[self.splits[j]]} {self.ids[j]!r}): the "
                    "test score counts images trained on; remove the duplicates from one split"
                )
        return out

    def split_counts(self) -> dict[str, int]:
        return {
            name: int((self.splits == code).sum()) for code, name in enumerate(self.split_names)
        }

    def load_image(self, index: int) -> Image.Image:
        """The image of row ``index`` as RGB."""
        from featstore.datasets.images import load_image

        return load_image(self.refs[index])

    def load_image_checked(self, index: int) -> tuple[Image.Image, bool]:
        """The image of row ``index`` and whether its bytes are still those registered
        (True when this registration recorded no hashes: format 1, nothing to compare)."""
        from featstore.datasets.images import load_image_hashed

        image, digest = load_image_hashed(self.refs[index])
        return image, self.image_hashes is None or digest == self.image_hashes[index]

    # --- persistence ------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        attrs = {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "images_id": self.images_id,
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
        if self.image_hashes is not None:
            arrays["hashes"] = np.asarray(self.image_hashes, dtype=str)
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
            image_hashes=[str(v) for v in arrays["hashes"]] if "hashes" in arrays else None,
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
            "images_id": self.images_id,
            "skipped": self.skipped,
            "repointed": self.repointed,
            **({"warnings": found} if (found := [*self.warnings, *self.split_warnings()]) else {}),
        }


def images_id(image_hashes: list[str]) -> str:
    """The content id of an ordered list of image hashes: ``img-`` + sha256 over them.

    Only the images and their order count; the same files in the same order give the same
    id under any name, path, labels or splits.
    """
    digest = hashlib.sha256()
    for value in image_hashes:
        digest.update(value.encode())
        digest.update(b"\n")
    return IMAGES_PREFIX + digest.hexdigest()[:40]


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
    digest.update("".join(image_hashes).encode())  # one update: the same bytes, in one call
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
    check_class_names(classes)
    if not ids:
        raise DatasetError(f"dataset {name!r} has no images")
    seen: dict[str, int] = {}
    for row, sample_id in enumerate(ids):
        if sample_id in seen:
            raise DatasetError(
                f"duplicate id {sample_id!r} (rows {seen[sample_id]} and {row}); ids must be unique"
            )
        seen[sample_id] = row
    if len(image_hashes) != len(ids):
        raise DatasetError(
            f"dataset {name!r}: {len(image_hashes)} image hashes for {len(ids)} images; "
            "every image needs its hash (a bug in the source that built it)"
        )
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
        image_hashes=list(image_hashes),
    )


__all__ = [
    "BadImageError",
    "Dataset",
    "build_dataset",
    "check_class_names",
    "check_name",
    "fingerprint",
    "images_id",
]
