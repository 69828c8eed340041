"""Evaluation: classification, retrieval, transferability and similarity over cached features.

The public names are resolved lazily (PEP 562) so that importing ``featstore.evaluate`` (as
every CLI command does) does not pull in scikit-learn's solvers or torch; a cached
evaluation then pays only for the modules it really uses.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ClassifierSpec", "classify_arrays", "evaluate_classification"]

_LAZY = {
    "ClassifierSpec": "featstore.evaluate.probes.protocol",
    "classify_arrays": "featstore.evaluate.probes.arrays",
    "evaluate_classification": "featstore.evaluate.probes.task",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'featstore.evaluate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
