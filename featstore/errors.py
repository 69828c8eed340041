"""Typed errors. Every error featstore raises is a FeatstoreError and also a builtin.

Callers may catch ``FeatstoreError`` for anything featstore refuses, or the builtin
(``LookupError``, ``ValueError`` ...) they would expect from plain Python. Messages say
what was wrong and how to fix it; the CLI shows them verbatim.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

SHOWN_CHARS = 200  # a value echoed in a message is cut to this many characters


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


class UnsafePickleError(DatasetError):
    """A dataset's pickle names code (a callable beyond containers, numbers and arrays)."""


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


class UnsafeWeightsError(ModelError):
    """A weights file is a pickle that needs objects beyond tensors: it is never loaded."""


class ExtractionError(FeatstoreError, RuntimeError):
    """Feature extraction failed."""


class FinetuneError(FeatstoreError, ValueError):
    """A fine-tuning request cannot run as asked (nothing to train, a name in use ...)."""


# --- evaluation -----------------------------------------------------------------------
class TransformError(FeatstoreError, ValueError):
    """A post-learning transform does not fit the features it is applied to."""


class EvaluationError(FeatstoreError, ValueError):
    """An evaluation cannot run on the given data (one class, no test split ...)."""


class ProtocolLimitError(EvaluationError):
    """A protocol option (shots, kNN k, CV folds) asks for more than the data holds.

    ``option`` is the keyword (``shots``, ``knn_k``, ``cv``), ``value`` what was asked and
    ``limit`` the most the data allows; the message names all three and the fix.
    """

    def __init__(self, message: str, *, option: str = "", value: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.option, self.value, self.limit = option, int(value), int(limit)

    def __reduce__(self) -> tuple[object, ...]:  # crosses process boundaries whole
        return (_protocol_limit, (str(self), self.option, self.value, self.limit))


def _protocol_limit(message: str, option: str, value: int, limit: int) -> ProtocolLimitError:
    return ProtocolLimitError(message, option=option, value=value, limit=limit)


class SpecError(FeatstoreError, ValueError):
    """A sweep or transform specification is malformed."""


class AmbiguousSelectionError(EvaluationError):
    """Several cached entries match a selection and no documented rule picks one."""


# --- echoing user values in messages ---------------------------------------------------
def clip(text: str, limit: int = SHOWN_CHARS, tail: int = 0) -> str:
    """``text`` cut to ``limit`` characters (saying how long it was): a message stays a line.
    ``tail`` keeps that many characters of the end too (a message's hint)."""
    if len(text) <= limit:
        return text
    end = text[len(text) - tail :] if tail else ""
    return (
        f"{text[: max(limit - tail, 0)]}... ({len(text)} characters){' ...' + end if end else ''}"
    )


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A user value as a message shows it: scalars as their clipped repr (control characters
    escaped), containers by type and size only (their repr can be gigabytes)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        if isinstance(value, int) and value.bit_length() > 600:  # str() refuses > 4300 digits
            return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
        return clip(repr(value), limit)
    name = "mapping" if isinstance(value, Mapping) else type(value).__name__
    kind = f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"
    try:
        return f"{kind} of {len(value)} items"
    except TypeError:
        return kind


# userinfo runs to the first '@' (a secret may hold '/'): a path with '@' is over-redacted
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s@'\"]*@")
_URL_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:key|secret|token|password|passwd|access_token|sig|signature|sas|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|aws_secret_access_key)=)[^&#\s]*"
)


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``:
    ``s3://KEY:SECRET@bucket/x`` -> ``s3://***@bucket/x``, ``?token=...`` -> ``?token=***``."""
    text = _URL_USERINFO.sub(r"\1***@", str(text))
    return _URL_SECRET_QUERY.sub(r"\1***", text)


def redacting(func: F) -> F:
    """Decorate a function whose errors may quote a URL (``open_store``): every FeatstoreError
    it raises has the URL's credentials redacted (in place: its type and attributes stay)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FeatstoreError as exc:
            exc.args = tuple(redact_url(a) if isinstance(a, str) else a for a in exc.args)
            if isinstance(getattr(exc, "location", None), str):
                exc.location = redact_url(exc.location)  # type: ignore[attr-defined]
            raise

    return wrapper  # type: ignore[return-value]
