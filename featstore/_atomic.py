"""Atomic writes of small local files: readers see the old content or the new, never half.

A write goes to a ``.partial`` file beside the target and is renamed into place
(``os.replace`` is atomic on POSIX); ``create_new`` links the partial file to the target,
which fails if the target exists, so exactly one of several writers creates it. Stores
clean up ``.partial`` leftovers of killed writers in ``gc``.
"""

from __future__ import annotations

import os
import uuid

__all__ = ["PARTIAL_SUFFIX", "create_new", "write_atomic"]

PARTIAL_SUFFIX = ".partial"


def _partial(path: str, payload: bytes) -> str:
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    partial = f"{path}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
    with open(partial, "wb") as handle:
        handle.write(payload)
    return partial


def write_atomic(path: str | os.PathLike[str], payload: bytes) -> None:
    """Replace ``path`` with ``payload`` in one step."""
    target = os.fspath(path)
    partial = _partial(target, payload)
    try:
        os.replace(partial, target)
    except BaseException:
        os.unlink(partial)
        raise


def create_new(path: str | os.PathLike[str], payload: bytes) -> bool:
    """Create ``path`` holding ``payload`` only if it does not exist; True if this call did."""
    target = os.fspath(path)
    partial = _partial(target, payload)
    try:
        os.link(partial, target)
    except FileExistsError:
        return False
    finally:
        os.unlink(partial)
    return True
