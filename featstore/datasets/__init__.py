"""Datasets: manifests of images with labels and splits, fingerprinted by content."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from featstore.datasets import registry
from featstore.datasets.benchmarks import PROVIDERS, SCHEMES
from featstore.datasets.builtin import digits_dataset, digits_image
from featstore.datasets.core import Dataset, build_dataset
from featstore.datasets.registry import (
    Scheme,
    builtin_names,
    register_builtin_dataset,
    register_provider,
    schemes,
)
from featstore.datasets.retrieval import (
    load_holidays,
    load_oxford,
    load_retrieval_json,
    load_revisited,
    load_ukbench,
)
from featstore.datasets.retrieval_copydays import copydays_dataset, copydays_image
from featstore.datasets.sources import dataset_from_source
from featstore.errors import DamagedEntryError
from featstore.progress import Progress

# --- the registry, filled here and only here ---------------------------------------------
register_provider("digits", digits_image)
register_builtin_dataset("digits", digits_dataset)
register_provider("copydays", copydays_image)
register_builtin_dataset("copydays", copydays_dataset)
for _provider in PROVIDERS:  # images inside CIFAR batches, HF tables, tar shards
    registry.register_image_provider(_provider)
for _scheme in (
    Scheme("oxford", load_oxford, "Oxford5k gt files (<q>_query/good/ok/junk.txt) and images", ("images", "gt")),
    Scheme("paris", load_oxford, "Paris6k gt files (<q>_query/good/ok/junk.txt) and images", ("images", "gt")),
    Scheme("revisited", load_revisited, "gnd_roxford5k.pkl / gnd_rparis6k.pkl with jpg/ beside it", ("images",)),
    Scheme("holidays", load_holidays, "INRIA Holidays NNNNNN.jpg"),
    Scheme("ukbench", load_ukbench, "UKBench ukbenchNNNNN.jpg"),
    Scheme("retrieval-json", load_retrieval_json, "a JSON {query: {positives, junk, bbox}} over a folder", ("images",)),
    *SCHEMES,
):  # fmt: skip
    registry.register_scheme(_scheme)

__all__ = [
    "Dataset",
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
