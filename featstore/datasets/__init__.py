"""Datasets: manifests of images with labels and splits, fingerprinted by content."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from featstore.datasets.builtin import builtin_names, register_builtin_dataset, register_provider
from featstore.datasets.core import Dataset, build_dataset
from featstore.datasets.sources import dataset_from_source

__all__ = [
    "Dataset",
    "add_dataset",
    "build_dataset",
    "builtin_names",
    "dataset_from_source",
    "register_builtin_dataset",
    "register_provider",
]


def add_dataset(
    store: Any,
    name: str,
    source: str,
    *,
    skip_bad: bool = False,
    replace: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
) -> Dataset:
    """Read ``source``, check every image, and register it in ``store`` as ``name``.

    Nothing is written unless the whole source is valid (or ``skip_bad`` drops the bad
    images, which are then listed in ``dataset.skipped``).
    """
    store._check_writable()
    dataset = dataset_from_source(name, source, skip_bad=skip_bad, progress=progress)
    store.put_dataset(dataset, replace=replace)
    return dataset
