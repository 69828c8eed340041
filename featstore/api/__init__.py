"""featstore from Python: the public API re-exported at the package root (``featstore.open``).

The CLI commands call these same functions (see :mod:`featstore.api.run`). Importing this
package imports no torch; only extraction and ``Features.torch`` do.
"""

from __future__ import annotations

from featstore.api.features import Block, Features
from featstore.api.run import add_dataset, evaluate_features, extract_features, run_sweep
from featstore.api.store import DatasetInfo, EntryRow, FeatureStore, open

__all__ = [
    "Block",
    "DatasetInfo",
    "EntryRow",
    "FeatureStore",
    "Features",
    "add_dataset",
    "evaluate_features",
    "extract_features",
    "open",
    "run_sweep",
]
