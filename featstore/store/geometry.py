"""Entry geometry, decided in one place: rows per chunk, and shards on object storage.

A chunk holds ~``chunk_bytes`` uncompressed (DESIGN.md: 2-4 MB). Extraction asks for a
power of two no larger than ``max_rows`` (resume granularity; the chunks of every entry of
one run then nest). On object storage an entry larger than ``2 * shard_bytes`` is sharded:
chunks grouped into shards of ~``shard_bytes``, one object each, and the unit of work (a
done marker, a lease) is then a whole shard. Local stores and HDF5 are never sharded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_CHUNK_BYTES", "SHARD_BYTES", "default_chunk_rows", "entry_geometry"]

DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024  # DESIGN.md: ~2-4 MB chunks along the sample axis
SHARD_BYTES = 128 * 1024 * 1024  # DESIGN.md: 64-256 MB shards keep object counts sane on S3


def default_chunk_rows(
    row_shape: Sequence[int], dtype: str, target_bytes: int = DEFAULT_CHUNK_BYTES
) -> int:
    """Rows per chunk so that one chunk holds about ``target_bytes`` uncompressed."""
    row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
    return max(1, target_bytes // row_bytes)


def entry_geometry(
    shape: Sequence[int],
    dtype: str = "float16",
    *,
    shards: bool,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    shard_bytes: int = SHARD_BYTES,
    max_rows: int | None = None,
) -> tuple[int, int | None]:
    """(chunk_rows, shard_rows) for a new entry of ``shape``.

    ``shards``: whether the store shards large entries (``store.supports_shards`` and remote);
    ``max_rows``: cap the chunk at a power of two no larger than this (extraction's rule).
    """
    row_shape = tuple(int(s) for s in shape[1:])
    n_rows = int(shape[0]) if shape else 0
    chunk_rows = default_chunk_rows(row_shape, dtype, chunk_bytes)
    if max_rows is not None:
        limit = max(1, min(chunk_rows, int(max_rows), max(1, n_rows)))
        chunk_rows = 1 << (limit.bit_length() - 1)
    row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
    if not shards or n_rows * row_bytes <= 2 * shard_bytes:
        return chunk_rows, None
    per_shard = max(1, math.floor(shard_bytes / (chunk_rows * row_bytes)))
    return chunk_rows, chunk_rows * per_shard
