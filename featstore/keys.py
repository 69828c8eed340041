"""Canonical JSON and content hashes: the same factors always give the same key.

Keys are never derived from pickles or reprs of functions, only from declarative,
JSON-serialisable descriptions of what produced a value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

KEY_LENGTH = 20  # hex characters of sha256 kept in a key: 80 bits, no practical collisions


def _normalise(value: Any) -> Any:
    """Turn a value into plain JSON types with a canonical form (sorted, no NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _normalise(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
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
