"""Datasets: manifests of images with labels and splits, fingerprinted by content."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from featstore.datasets.core import Dataset, build_dataset
from featstore.datasets.registry import (
    Scheme,
    builtin_names,
    register_builtin_dataset,
    register_provider,
    schemes,
)
from featstore.errors import DamagedEntryError
from featstore.progress import Progress

if TYPE_CHECKING:
    from featstore.datasets.sources import dataset_from_source

# The registry fills itself on first use (featstore/datasets/registry.py, _fill), and the
# names below are imported when first asked for: importing featstore.datasets (as reading
# cached features does, for the Dataset class) imports no PIL and none of the loaders.
_LAZY = {
    "dataset_from_source": "featstore.datasets.sources",
    "digits_dataset": "featstore.datasets.builtin",
    "digits_image": "featstore.datasets.builtin",
    "copydays_dataset": "featstore.datasets.retrieval_copydays",
    "copydays_image": "featstore.datasets.retrieval_copydays",
    "load_holidays": "featstore.datasets.retrieval",
    "load_oxford": "featstore.datasets.retrieval",
    "load_retrieval_json": "featstore.datasets.retrieval",
    "load_revisited": "featstore.datasets.retrieval",
    "load_ukbench": "featstore.datasets.retrieval",
    "PROVIDERS": "featstore.datasets.benchmarks",
    "SCHEMES": "featstore.datasets.benchmarks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Dataset",
    "Scheme",
    "add_dataset",
    "build_dataset",
    "builtin_names",
    "dataset_from_source",
    "register_builtin_dataset",
    "register_dataset",
    "register_provider",
    "schemes",
]


def add_dataset(
    store: Any,
    name: str,
    source: str,
    *,
    skip_bad: bool = False,
    replace: bool = False,
    progress: Progress | None = None,
    splits: Sequence[str] | None = None,
) -> Dataset:
    """Read ``source``, check every image, and register it in ``store`` as ``name``.

    Nothing is written unless the whole source is valid (or ``skip_bad`` drops the bad
    images, which are then listed in ``dataset.skipped``). ``splits`` declares the split
    names a manifest may use. Two registrations of one name with different content at
    once never leave two datasets of that name: the store claims the name before writing,
    so one is stored and the others are refused (see featstore/store/names.py). Registering
    the same content again from another place (a moved folder) re-points the stored image
    locations; ``dataset.repointed`` says how many changed.
    """
    from featstore.datasets.sources import dataset_from_source

    store._check_writable()
    dataset = dataset_from_source(name, source, skip_bad=skip_bad, progress=progress, splits=splits)
    return register_dataset(store, dataset, replace=replace)


def register_dataset(store: Any, dataset: Dataset, *, replace: bool = False) -> Dataset:
    """Register a built dataset (see :func:`add_dataset`); sets ``dataset.repointed``."""
    before = None
    if dataset.id in store.dataset_ids():
        try:
            before = store.get_dataset(dataset.id)
        except DamagedEntryError:  # e.g. labels edited in the store: --replace rewrites it
            if not replace:
                raise
            store.delete_dataset(dataset.id)
    store.put_dataset(dataset, replace=replace)
    if before is not None:
        dataset.repointed = sum(a != b for a, b in zip(before.refs, dataset.refs, strict=False))
    return dataset
