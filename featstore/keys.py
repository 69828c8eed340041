"""Canonical JSON and content hashes: the same factors always give the same key.

Keys are never derived from pickles or reprs of functions, only from declarative,
JSON-serialisable descriptions of what produced a value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from featstore.errors import InvalidKeyError

KEY_LENGTH = 20  # hex characters of sha256 kept in a key: 80 bits, no practical collisions


_JUST_STR = frozenset({str})
_isfinite = math.isfinite


def _normalise(value: Any) -> Any:
    """Turn a value into plain JSON types with a canonical form (sorted, no NaN)."""
    kind = type(value)  # the plain JSON types first: records of a listing are thousands
    if kind is str or kind is bool or kind is int or value is None:
        return value
    if kind is dict and _JUST_STR.issuperset(map(type, value)):  # json.dumps sorts the keys
        out: dict[str, Any] = {}
        for k, v in value.items():  # the leaves inline: a call per value costs more than all
            t = type(v)  # the rest of a record's check (issue 24, the listing benchmark)
            if t is str or t is int or t is bool or v is None:
                out[k] = v
            elif t is float and _isfinite(v):
                out[k] = int(v) if v.is_integer() else v
            else:
                out[k] = _normalise(v)
        return out
    if kind is list:
        items: list[Any] = []
        for v in value:
            t = type(v)
            if t is str or t is int or t is bool or v is None:
                items.append(v)
            elif t is float and _isfinite(v):
                items.append(int(v) if v.is_integer() else v)
            else:
                items.append(_normalise(v))
        return items
    if kind is float and math.isfinite(value):  # repr round-trips: the float as it is
        return int(value) if value.is_integer() else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _normalise(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        if all(type(v) is str for v in value):  # a dataset's ids or split names: as they are
            return list(value)
        return [_normalise(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot put non-finite number {value!r} into a key")
        # integral floats hash like ints so 256 and 256.0 give one key
        return int(value) if value.is_integer() else float(repr(value))
    if hasattr(value, "item"):  # numpy scalars
        return _normalise(value.item())
    raise TypeError(f"cannot put {type(value).__name__} into a key: use plain JSON values")


def canonical_json(value: Any) -> str:
    """JSON text with sorted keys and no whitespace; equal inputs give equal text."""
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any, length: int = KEY_LENGTH) -> str:
    """Hex sha256 of the canonical JSON of ``value``, truncated to ``length``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:length]


def make_key(prefix: str, value: Any) -> str:
    """A readable, content-addressed key such as ``feat-3fa2...``."""
    return f"{prefix}-{content_hash(value)}"


# --- keys that become storage paths ------------------------------------------------------------
# A key names one object under datasets/, features/ or results/. Keys featstore makes are
# ``feat-<20 hex>``, ``res-<20 hex>`` and dataset ids ``<name>-<12 hex>``; the grammar below
# is that shape (a lowercase prefix, one dash, letters/digits/underscores) and nothing with a
# slash, a dot-only part or an empty string can match it, so a key is always one path part.
KEY_PATTERN = re.compile(r"[a-z][a-z0-9]{0,15}-[A-Za-z0-9_]{1,64}")
DATASET_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
DATASET_ID_PATTERN = re.compile(rf"{DATASET_NAME_PATTERN.pattern}-[0-9a-f]{{8,64}}")
IMAGES_ID_PATTERN = re.compile(r"img-[0-9a-f]{40}")  # datasets.core.images_id: img- + sha256[:40]


def check_key(key: object, what: str = "key") -> str:
    """``key`` if it is a well-formed entry or result key; InvalidKeyError otherwise."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidKeyError(
            f"{what} {key!r} is not a well-formed featstore key (like feat-0123456789abcdef0123 "
            "or res-0123456789abcdef0123); copy keys from `featstore ls --all`"
        )
    return key


def check_dataset_id(dataset_id: object) -> str:
    """``dataset_id`` if it is a well-formed dataset id (``name-<hex>``); InvalidKeyError otherwise."""
    if not isinstance(dataset_id, str) or not DATASET_ID_PATTERN.fullmatch(dataset_id):
        raise InvalidKeyError(
            f"dataset id {dataset_id!r} is not well formed (a name, a dash and hex digits, like "
            "flowers-0123456789ab); `featstore datasets list` shows the ids"
        )
    return dataset_id


def check_dataset_name(name: object) -> str:
    """``name`` if it can name a dataset's objects in a store (a name claim); InvalidKeyError otherwise."""
    if not isinstance(name, str) or not DATASET_NAME_PATTERN.fullmatch(name):
        raise InvalidKeyError(
            f"dataset name {name!r} is not valid in a store: use up to 128 letters, digits, "
            "'_', '-' and '.', starting with a letter or digit"
        )
    return name


def check_images_id(value: object) -> str:
    """``value`` if it is an images id (``img-`` and 40 hex digits, the name of an image
    list under ``images/``); InvalidKeyError otherwise."""
    if not isinstance(value, str) or not IMAGES_ID_PATTERN.fullmatch(value):
        raise InvalidKeyError(
            f"{value!r} is not an images id (img- and 40 hex digits); take it from an entry's "
            "'images' attribute or a dataset's images_id"
        )
    return value
