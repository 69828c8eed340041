"""Atomic writes of small local files: readers see the old content or the new, never half.

A write goes to a ``.partial`` file beside the target and is renamed into place
(``os.replace`` is atomic on POSIX); ``create_new`` links the partial file to the target,
which fails if the target exists, so exactly one of several writers creates it;
``exchange`` swaps two folders in one step. Stores clean up ``.partial`` leftovers of killed
writers in ``gc``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import uuid

__all__ = ["PARTIAL_SUFFIX", "create_new", "exchange", "write_atomic"]

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


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:
        return None


def exchange(new: str | os.PathLike[str], target: str | os.PathLike[str]) -> str:
    """Put folder ``new`` in place of folder ``target`` in one step; returns where the old
    ``target`` now lies (the caller removes it).

    Linux: ``renameat2(RENAME_EXCHANGE)`` swaps the two names atomically, so a reader (or a
    kill) sees the old folder or the new, never neither. Where that call is missing or the
    filesystem refuses it: two renames (the old aside, then the new in), a window of two
    system calls in which ``target`` is absent.
    """
    new, target = os.fspath(new), os.fspath(target)
    call = _renameat2()
    if call is not None:
        done = call(  # type: ignore[operator]
            _AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE
        )
        if done == 0:
            return new
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), target)
    aside = f"{target}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
    os.rename(target, aside)
    os.rename(new, target)
    return aside
