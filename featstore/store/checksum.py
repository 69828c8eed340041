"""Chunk checksums: what a done marker records about the bytes of its chunk, and the check.

A marker records ``"checksum": "<algorithm>:<hex>"`` over the chunk's bytes as stored (C
order, stored dtype). New markers use xxh3_128 (the xxhash package, ~10 GB/s here against
~1.2 GB/s for sha256 with SHA-NI and ~4.6 GB/s for crc32c). ``benchmarks/verify.py`` on
20k x 2048 float16 ReLU-like rows, zstd-1, local Zarr, 256-row chunks measured the
verified / unverified full-read ratio (unverified time over verified) at 0.94 for xxh3_128,
0.92 for crc32c and 0.68 for sha256; xxh3_128 also has 128 bits, so an accidental change
going unnoticed is out of the question. Markers written before carry ``"sha256": "<hex>"``
and still verify. A marker without a checksum (empty, torn, foreign) verifies nothing, so
its chunk counts as damaged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xxhash

__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "chunk_checksum", "marker_checksum", "matches"]

DEFAULT_ALGORITHM = "xxh3_128"


def _contiguous(data: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(data)).cast("B")  # type: ignore[arg-type]


ALGORITHMS: dict[str, Callable[[np.ndarray], str]] = {
    "xxh3_128": lambda data: xxhash.xxh3_128_hexdigest(_contiguous(data)),
    "sha256": lambda data: hashlib.sha256(_contiguous(data)).hexdigest(),
}


def chunk_checksum(data: np.ndarray, algorithm: str = DEFAULT_ALGORITHM) -> str:
    """``"<algorithm>:<hex>"`` of a chunk's bytes (C order, in the dtype it is stored in)."""
    return f"{algorithm}:{ALGORITHMS[algorithm](data)}"


def marker_checksum(record: Mapping[str, Any] | None) -> str | None:
    """The checksum a marker record holds, as ``"<algorithm>:<hex>"``; None when it holds
    none this featstore can check (empty or torn marker, unknown algorithm)."""
    if not isinstance(record, Mapping):
        return None
    value = record.get("checksum")
    if isinstance(value, str) and value.partition(":")[0] in ALGORITHMS and ":" in value:
        return value
    legacy = record.get("sha256")
    if isinstance(legacy, str) and legacy:
        return f"sha256:{legacy}"
    return None


def matches(data: np.ndarray, expected: str) -> bool:
    """Whether ``data`` has the checksum ``expected`` (``"<algorithm>:<hex>"``)."""
    algorithm, _, digest = expected.partition(":")
    return ALGORITHMS[algorithm](data) == digest
