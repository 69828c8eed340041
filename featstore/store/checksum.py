"""Chunk checksums: what a done marker records about the bytes of its chunk, and the check.

A marker records ``"checksum": "<algorithm>:<hex>"``. New markers use ``xxh3_128@key``: the
xxh3_128 (the xxhash package) of the entry's key and the chunk's index followed by the
chunk's bytes as stored (C order, stored dtype). Binding the key and index into the one
hash that is computed anyway costs no extra read: a chunk moved, together with its marker,
to another entry or another index no longer matches and is a damaged chunk.

``benchmarks/verify.py`` on 20k x 2048 float16 ReLU-like rows, zstd-1, local Zarr, 256-row
chunks measured the verified / unverified full-read ratio (unverified time over verified)
at 0.94 for xxh3_128, 0.92 for crc32c and 0.68 for sha256; xxh3_128 also has 128 bits, so
an accidental change going unnoticed is out of the question.

Markers written before the binding carry ``"xxh3_128:<hex>"`` or ``"sha256:<hex>"`` (older:
``"sha256": "<hex>"``) over the bytes alone. Their data still verify; they are *unbound*
(older format): ``featstore verify`` lists them and ``featstore upgrade`` rewrites them
bound after checking their data. A marker without a checksum (empty, torn, foreign)
verifies nothing, so its chunk counts as damaged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xxhash

__all__ = [
    "ALGORITHMS",
    "BOUND_SUFFIX",
    "DEFAULT_ALGORITHM",
    "chunk_checksum",
    "is_bound",
    "marker_checksum",
    "matches",
]

BOUND_SUFFIX = "@key"  # "<hash>@key": the entry key and chunk index are hashed before the bytes
DEFAULT_ALGORITHM = "xxh3_128" + BOUND_SUFFIX


def _contiguous(data: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(data)).cast("B")  # type: ignore[arg-type]


# hash objects by name; a checksum names one of these, plain or with BOUND_SUFFIX
HASHERS: dict[str, Callable[[], Any]] = {
    "xxh3_128": xxhash.xxh3_128,
    "sha256": hashlib.sha256,
}
ALGORITHMS = (*HASHERS, *(f"{name}{BOUND_SUFFIX}" for name in HASHERS))


def _known(algorithm: str) -> bool:
    base, _, rest = algorithm.partition(BOUND_SUFFIX)
    return base in HASHERS and not rest


def _binding(key: str, index: int) -> bytes:
    """What a bound checksum hashes before the bytes: the place the chunk belongs to."""
    return f"featstore-chunk\0{key}\0{int(index)}\0".encode()


def _digest(data: np.ndarray, algorithm: str, key: str | None, index: int | None) -> str:
    base, bound, _ = algorithm.partition(BOUND_SUFFIX)
    hasher = HASHERS[base]()
    if bound:
        if key is None or index is None:
            raise ValueError(f"a {algorithm} checksum needs the entry key and chunk index")
        hasher.update(_binding(key, index))
    hasher.update(_contiguous(data))
    return str(hasher.hexdigest())


def chunk_checksum(
    data: np.ndarray,
    algorithm: str = DEFAULT_ALGORITHM,
    *,
    key: str | None = None,
    index: int | None = None,
) -> str:
    """``"<algorithm>:<hex>"`` of a chunk's bytes (C order, in the dtype it is stored in);
    a bound algorithm (the default) also hashes ``key`` and ``index``, which it then needs."""
    return f"{algorithm}:{_digest(data, algorithm, key, index)}"


def marker_checksum(record: Mapping[str, Any] | None) -> str | None:
    """The checksum a marker record holds, as ``"<algorithm>:<hex>"``; None when it holds
    none this featstore can check (empty or torn marker, unknown algorithm)."""
    if not isinstance(record, Mapping):
        return None
    value = record.get("checksum")
    if isinstance(value, str) and ":" in value and _known(value.partition(":")[0]):
        return value
    legacy = record.get("sha256")
    if isinstance(legacy, str) and legacy:
        return f"sha256:{legacy}"
    return None


def is_bound(expected: str) -> bool:
    """Whether a checksum binds its chunk's entry key and index (else: older format)."""
    return expected.partition(":")[0].endswith(BOUND_SUFFIX)


def matches(
    data: np.ndarray, expected: str, key: str | None = None, index: int | None = None
) -> bool:
    """Whether ``data`` (chunk ``index`` of entry ``key``) has the checksum ``expected``."""
    algorithm, _, digest = expected.partition(":")
    return _digest(data, algorithm, key, index) == digest
