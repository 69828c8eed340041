"""Object-storage helpers: where a store lives, how big its write units are, secrets kept out.

A store on object storage is opened from a URL plus fsspec ``storage_options``; with s3fs
the credentials come from the standard AWS chain (environment, ``~/.aws`` profile,
instance role) unless given as options (``key``, ``secret``, ``token``, ``profile``).
``StoreSpec`` carries both to other processes (Dask workers open the store themselves)
and never shows a secret in its repr, so it is safe in logs and error messages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featstore.store.base import DEFAULT_CHUNK_BYTES, Store, default_chunk_rows

SHARD_BYTES = 128 * 1024 * 1024  # DESIGN.md: 64-256 MB shards keep object counts sane on S3

# storage option names whose values are secrets (s3fs, gcsfs, adlfs spellings)
SECRET_NAMES = (
    "key",
    "secret",
    "token",
    "password",
    "session_token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "account_key",
    "sas_token",
    "client_secret",
)


def redact(options: Any) -> Any:
    """A copy of ``options`` with every secret value replaced by ``"***"`` (nested too)."""
    if isinstance(options, Mapping):
        return {
            k: "***" if str(k).lower() in SECRET_NAMES and v not in (None, "") else redact(v)
            for k, v in options.items()
        }
    if isinstance(options, (list, tuple)):
        return type(options)(redact(v) for v in options)
    return options


def secret_values(options: Any) -> list[str]:
    """The secret strings inside ``options`` (to check that none leaked)."""
    found: list[str] = []
    if isinstance(options, Mapping):
        for k, v in options.items():
            if str(k).lower() in SECRET_NAMES and isinstance(v, str) and v:
                found.append(v)
            else:
                found.extend(secret_values(v))
    elif isinstance(options, (list, tuple)):
        for v in options:
            found.extend(secret_values(v))
    return found


def is_remote(url: str) -> bool:
    """True for URLs of object stores (anything with a protocol other than file://)."""
    return "://" in url and not url.startswith("file://")


@dataclass(frozen=True)
class StoreSpec:
    """Where a store is and how to reach it: enough for another process to open it."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, store: Store | str, storage_options: Mapping[str, Any] | None = None) -> StoreSpec:
        if isinstance(store, Store):
            options = dict(getattr(store, "storage_options", {}) or {})
            return cls(str(store.url), options)
        return cls(str(store), dict(storage_options or {}))

    def open(self, mode: str = "a") -> Store:
        from featstore.store import open_store

        return open_store(self.url, mode=mode, storage_options=self.storage_options or None)

    def __repr__(self) -> str:
        return f"StoreSpec(url={self.url!r}, storage_options={redact(self.storage_options)!r})"

    __str__ = __repr__


def entry_geometry(
    shape: Sequence[int],
    dtype: str = "float16",
    *,
    remote: bool,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    shard_bytes: int = SHARD_BYTES,
) -> tuple[int, int | None]:
    """(chunk_rows, shard_rows) for a new entry.

    On object storage an entry larger than ``2 * shard_bytes`` is sharded: chunks of
    ~``chunk_bytes`` grouped into shards of ~``shard_bytes``, one object each; the unit of
    work (lease, done marker) is then a whole shard. Local stores are never sharded.
    """
    row_shape = tuple(int(s) for s in shape[1:])
    n_rows = int(shape[0]) if shape else 0
    chunk_rows = default_chunk_rows(row_shape, dtype, chunk_bytes)
    row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
    if not remote or n_rows * row_bytes <= 2 * shard_bytes:
        return chunk_rows, None
    per_shard = max(1, math.floor(shard_bytes / (chunk_rows * row_bytes)))
    return chunk_rows, chunk_rows * per_shard
