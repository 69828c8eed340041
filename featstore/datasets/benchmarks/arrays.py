"""CIFAR-10 / CIFAR-100 from the python pickle batches: images that come from arrays.

Each image is stored as the ref ``builtin:cifar/<abs batch file>#<row>``, which the
``cifar`` image provider opens again at extraction time (the batch is unpickled once per
process and kept). An image is hashed over its pixels like a generated image
(:func:`featstore.datasets.registry.image_digest`), so two downloads hash the same.
Batches are read with the restricted unpickler (:mod:`featstore.datasets.safe_pickle`):
a batch that names code is refused, at registration and at extraction.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from PIL import Image

from featstore.datasets.benchmarks.common import Entry, assemble, benchmark_source
from featstore.datasets.core import Dataset
from featstore.datasets.registry import ImageProvider, option_choice, provider_ref
from featstore.datasets.safe_pickle import load_pickle
from featstore.errors import DatasetError, shown
from featstore.progress import Progress

CIFAR10_LAYOUT = "cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta"
CIFAR100_LAYOUT = "cifar-100-python/ with train, test and meta"
_CACHE_SIZE = 2  # batches kept per process (a CIFAR-100 'train' batch is 150 MB)
_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


def _unpickle(path: str) -> dict[str, Any]:
    try:
        batch = load_pickle(path, what="CIFAR pickle batch (download it again)", encoding="latin1")
    except FileNotFoundError:
        raise DatasetError(
            f"CIFAR batch {path} does not exist (was it moved? register it again)"
        ) from None
    except IsADirectoryError:
        raise DatasetError(f"CIFAR batch {path} is a folder, not a pickle batch") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path} holds a {type(batch).__name__}, not a CIFAR batch dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _label_names(batch: dict[str, Any], key: str, path: str) -> list[str]:
    """The class names of a meta batch: strings (or bytes) only, so a crafted meta file
    cannot hand over an object whose text is gigabytes."""
    names = batch.get(key, [])
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DatasetError(f"{path}: {key!r} must be a list of names, got {shown(names)}")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def _batch(path: str) -> dict[str, Any]:
    """The unpickled batch, kept (a few per process) so extraction reads each file once."""
    with _lock:
        if path in _cache:
            _cache.move_to_end(path)
            return _cache[path]
        batch = _unpickle(path)
        data = batch.get("data")
        if not isinstance(data, np.ndarray) or data.size % 3072 or data.dtype.kind not in "ui":
            raise DatasetError(
                f"{path} has no 'data' array of 32x32 RGB rows: not a CIFAR python batch"
            )
        batch["data"] = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        _cache[path] = batch
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return batch


def _labels(values: Any, path: str, key: str) -> np.ndarray:
    """A batch's label list as int64: a flat list (or array) of integers, nothing else."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "ui":
        return values.astype(np.int64)
    if isinstance(values, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**31 for v in values
    ):
        return np.asarray(values, dtype=np.int64)
    raise DatasetError(f"{path}: {key!r} must be a list of integer labels, got {shown(values)}")


def _pixels(data: np.ndarray, row: int) -> np.ndarray:
    return np.ascontiguousarray(data[row].transpose(1, 2, 0))


def open_cifar(locator: str) -> Image.Image:
    """``<abs batch file>#<row>`` -> the 32x32 RGB image."""
    path, _, row = locator.rpartition("#")
    if not path or not row.isdigit():
        raise DatasetError(
            f"CIFAR image ref {locator!r} is not '<batch file>#<row>'; register it again"
        )
    data = _batch(path)["data"]
    if int(row) >= len(data):
        raise DatasetError(f"CIFAR batch {path} has {len(data)} images, not a row {row}")
    return Image.fromarray(_pixels(data, int(row)), mode="RGB")


CIFAR_PROVIDER = ImageProvider("cifar", open_cifar)


def _digest(pixels: np.ndarray) -> str:
    """Equals ``image_digest`` of the RGB image with these HWC pixels (without building it)."""
    digest = hashlib.sha256(f"RGB{(pixels.shape[1], pixels.shape[0])}".encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()


def _find(path: str, folder: str, marker: str, scheme: str, layout: str) -> str:
    for root in (path, os.path.join(path, folder)):
        if os.path.isfile(os.path.join(root, marker)):
            return os.path.abspath(root)
    raise DatasetError(f"no {marker} under {path}: {scheme}: expects {layout}")


def _load_cifar(
    name: str,
    scheme: str,
    root: str,
    batches: list[tuple[str, str]],
    label_key: str,
    classes: list[str],
    protocol: str,
    progress: Progress | None,
    **fields: Any,
) -> Dataset:
    entries: list[Entry] = []
    hashes: list[str] = []
    counts: dict[str, int] = {}
    for done, (batch_name, split) in enumerate(batches):
        path = os.path.join(root, batch_name)
        if not os.path.isfile(path):
            raise DatasetError(
                f"no {batch_name} under {root}: {scheme}: expects the python batches"
            )
        batch = _batch(path)
        if label_key not in batch:
            raise DatasetError(
                f"{path} has no {label_key!r} list: {scheme}: is this the python version?"
            )
        data, labels = batch["data"], _labels(batch[label_key], path, label_key)
        if len(labels) != len(data) or (
            len(labels) and not 0 <= labels.min() <= labels.max() < len(classes)
        ):
            raise DatasetError(
                f"{path}: {len(data)} images but labels do not match ({len(classes)} classes)"
            )
        for row in range(len(data)):
            index = counts.get(split, 0)
            counts[split] = index + 1
            entries.append(
                Entry(
                    f"{split}/{index:05d}",
                    provider_ref("cifar", f"{path}#{row}"),
                    int(labels[row]),
                    split,
                )
            )
            hashes.append(_digest(_pixels(data, row)))
        if progress is not None:
            progress(done + 1, len(batches), {"batch": batch_name})
    source = benchmark_source(scheme, root, protocol, **fields)
    return assemble(name, entries, classes, source, hashes=hashes)


def load_cifar10(
    name: str, path: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset:
    """CIFAR-10: 50000 train (data_batch_1..5) / 10000 test (test_batch), 10 classes."""
    root = _find(path, "cifar-10-batches-py", "batches.meta", "cifar10", CIFAR10_LAYOUT)
    meta_path = os.path.join(root, "batches.meta")
    classes = _label_names(_unpickle(meta_path), "label_names", meta_path)
    if not classes:
        raise DatasetError(
            f"{root}/batches.meta has no 'label_names': cifar10: expects {CIFAR10_LAYOUT}"
        )
    batches = [(f"data_batch_{i}", "train") for i in range(1, 6)] + [("test_batch", "test")]
    protocol = "CIFAR-10: official train (data_batch_1..5) / test (test_batch)"
    return _load_cifar(name, "cifar10", root, batches, "labels", classes, protocol, progress)


def load_cifar100(
    name: str,
    path: str,
    *,
    skip_bad: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Dataset:
    """CIFAR-100: 50000 train / 10000 test; 100 fine labels, or 20 coarse with ``label=coarse``."""
    level = option_choice(options, "label", ("fine", "coarse"), "cifar100")
    root = _find(path, "cifar-100-python", "meta", "cifar100", CIFAR100_LAYOUT)
    meta_path = os.path.join(root, "meta")
    classes = _label_names(_unpickle(meta_path), f"{level}_label_names", meta_path)
    if not classes:
        raise DatasetError(
            f"{root}/meta has no '{level}_label_names': cifar100: expects {CIFAR100_LAYOUT}"
        )
    protocol = f"CIFAR-100: official train / test, {level} labels"
    return _load_cifar(
        name,
        "cifar100",
        root,
        [("train", "train"), ("test", "test")],
        f"{level}_labels",
        classes,
        protocol,
        progress,
        label=level,
    )
