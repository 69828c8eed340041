"""Typed errors. Every error featstore raises is a FeatstoreError and also a builtin.

Callers may catch ``FeatstoreError`` for anything featstore refuses, or the builtin
(``LookupError``, ``ValueError`` ...) they would expect from plain Python. Messages say
what was wrong and how to fix it; the CLI shows them verbatim.
"""

from __future__ import annotations


class FeatstoreError(Exception):
    """Base class of every error featstore raises on purpose."""


# --- stores ---------------------------------------------------------------------------
class StoreError(FeatstoreError):
    """A store cannot be opened or used as asked."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No featstore store at the given location (and mode does not allow creating one)."""


class NotAStoreError(StoreError, ValueError):
    """Something exists at the location, but it is not a featstore store."""


class StoreVersionError(StoreError, ValueError):
    """The store was written by a newer featstore format than this version reads."""


class ReadOnlyError(StoreError, PermissionError):
    """A write was attempted on a store opened read-only."""


class EntryNotFoundError(StoreError, LookupError):
    """No feature entry, dataset or result under the given key or name."""


class IncompleteEntryError(StoreError, RuntimeError):
    """An entry is missing chunks, so it cannot be served as cached features."""


class EntryMismatchError(StoreError, ValueError):
    """An entry exists under a key but with other shape/dtype/attributes than asked."""


class InsufficientSpaceError(StoreError, OSError):
    """The target disk lacks room for the planned writes."""


class LeaseError(StoreError, RuntimeError):
    """A unit of work is leased by another writer."""


class InvalidKeyError(StoreError, ValueError):
    """A key, dataset id or name is not well formed; it never becomes a storage path."""


class DamagedChunkError(StoreError, OSError):
    """A chunk's stored bytes do not match the checksum in its done marker (or cannot be read)."""


class DamagedEntryError(StoreError, OSError):
    """The metadata of one entry or dataset cannot be read; the rest of the store is fine."""


class DtypeOverflowError(StoreError, OverflowError):
    """Values do not fit the entry's storage dtype (float16 beyond +-65504 would become inf)."""


# --- datasets -------------------------------------------------------------------------
class DatasetError(FeatstoreError, ValueError):
    """A dataset source or manifest is invalid."""


class BadImageError(DatasetError):
    """An image file is missing, truncated or not an image."""


class ManifestError(DatasetError):
    """A CSV/JSON manifest row is malformed."""


class DatasetMismatchError(DatasetError):
    """Two objects that must refer to the same dataset do not."""


class ImageChangedError(DatasetError):
    """An image's bytes differ from those hashed when its dataset was registered."""


# --- models and extraction ------------------------------------------------------------
class ModelError(FeatstoreError, ValueError):
    """A network cannot be built or loaded as asked."""


class UnknownModelError(ModelError, LookupError):
    """No network of that name in the registry."""


class UnknownLayerError(ModelError, LookupError):
    """A layer name that the network does not have."""


class WeightsNotFoundError(ModelError, FileNotFoundError):
    """Pretrained weights are not available offline."""


class ExtractionError(FeatstoreError, RuntimeError):
    """Feature extraction failed."""


# --- evaluation -----------------------------------------------------------------------
class TransformError(FeatstoreError, ValueError):
    """A post-learning transform does not fit the features it is applied to."""


class EvaluationError(FeatstoreError, ValueError):
    """An evaluation cannot run on the given data (one class, no test split ...)."""


class SpecError(FeatstoreError, ValueError):
    """A sweep or transform specification is malformed."""


class AmbiguousSelectionError(EvaluationError):
    """Several cached entries match a selection and no documented rule picks one."""
