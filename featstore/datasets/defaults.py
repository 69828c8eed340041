"""featstore's own image providers, built-in datasets and source schemes.

:func:`register_defaults` fills :mod:`featstore.datasets.registry` with them; the registry
calls it once, the first time it is used (a lookup or a registration), not when
``featstore.datasets`` is imported: their loaders import PIL, ``tarfile`` and XML parsers,
which reading cached features never needs (issue 22: a Python read imports no PIL).
"""

from __future__ import annotations

from featstore.datasets import registry
from featstore.datasets.benchmarks import PROVIDERS, SCHEMES
from featstore.datasets.builtin import digits_dataset, digits_image
from featstore.datasets.registry import Scheme
from featstore.datasets.retrieval import (
    load_holidays,
    load_oxford,
    load_retrieval_json,
    load_revisited,
    load_ukbench,
)
from featstore.datasets.retrieval_copydays import copydays_dataset, copydays_image

__all__ = ["register_defaults"]

_RETRIEVAL = (
    Scheme("oxford", load_oxford, "Oxford5k gt files (<q>_query/good/ok/junk.txt) and images", ("images", "gt")),
    Scheme("paris", load_oxford, "Paris6k gt files (<q>_query/good/ok/junk.txt) and images", ("images", "gt")),
    Scheme("revisited", load_revisited, "gnd_roxford5k.pkl / gnd_rparis6k.pkl with jpg/ beside it", ("images",)),
    Scheme("holidays", load_holidays, "INRIA Holidays NNNNNN.jpg"),
    Scheme("ukbench", load_ukbench, "UKBench ukbenchNNNNN.jpg"),
    Scheme("retrieval-json", load_retrieval_json, "a JSON {query: {positives, junk, bbox}} over a folder", ("images",)),
)  # fmt: skip


def register_defaults() -> None:
    """Register every provider, built-in dataset and scheme featstore ships (idempotent:
    registering the same object again is allowed, another under a taken name is not)."""
    registry.register_provider("digits", digits_image)
    registry.register_builtin_dataset("digits", digits_dataset)
    registry.register_provider("copydays", copydays_image)
    registry.register_builtin_dataset("copydays", copydays_dataset)
    for provider in PROVIDERS:  # images inside CIFAR batches, HF tables, tar shards
        registry.register_image_provider(provider)
    for scheme in (*_RETRIEVAL, *SCHEMES):
        registry.register_scheme(scheme)
