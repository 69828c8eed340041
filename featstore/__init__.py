"""featstore: a feature cache and dataset manager for transfer-learning studies.

The public API (``featstore.__all__``) speaks the CLI's words::

    store = featstore.open("stores/default.zarr")
    f = store.features("flowers", "efficientnet_lite0", "penultimate", split="train")
    f.X, f.y, f.ids, f.classes, f.key
    store.results(sweep="examples/flowers_sweep.yaml")       # a pandas DataFrame

``featstore.extract``, ``featstore.evaluate`` and ``featstore.sweep`` stay the subpackages
(``from featstore.extract import plan``); the commands they implement are the functions
``extract_features``, ``evaluate_features`` and ``run_sweep``. Everything not listed in
``__all__`` is private by convention. Importing featstore imports no torch.
"""

from __future__ import annotations

from featstore.api import (
    Block,
    DatasetInfo,
    EntryRow,
    Features,
    FeatureStore,
    add_dataset,
    evaluate_features,
    extract_features,
    open,
    run_sweep,
)
from featstore.errors import FeatstoreError
from featstore.store import open_store
from featstore.store.select import lookup  # reading cached features: no torch, no network

__version__ = "0.1.0"

__all__ = [
    "Block",
    "DatasetInfo",
    "EntryRow",
    "FeatstoreError",
    "FeatureStore",
    "Features",
    "__version__",
    "add_dataset",
    "evaluate_features",
    "extract_features",
    "lookup",
    "open",
    "open_store",
    "run_sweep",
]
