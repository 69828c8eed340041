"""featstore: a feature cache and dataset manager for transfer-learning studies."""

from __future__ import annotations

from featstore.errors import FeatstoreError
from featstore.store import open_store
from featstore.store.select import lookup  # reading cached features: no torch, no network

__version__ = "0.1.0"

__all__ = ["FeatstoreError", "lookup", "open_store", "__version__"]
