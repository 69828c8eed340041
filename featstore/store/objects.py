"""Small objects beside a store's arrays (leases, name claims) and the owners that hold them.

Claims are race-safe only if an object can be created *only if it is absent*; how that is
done depends on the storage, and is written here once for every kind of claim:

- local directory: a temporary file hard-linked to the name (``link`` fails if the name
  exists, atomically; see featstore/_atomic.py);
- S3 (s3fs): a conditional PUT, ``If-None-Match: *`` (AWS S3 and moto's server honour it);
- any other fsspec backend (memory://, gcs, ...): check, write, then read back.
  Two writers whose writes interleave within one round trip can both believe they created
  the object: :attr:`ObjectFolder.atomic_create` is False there, so callers can say so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from featstore._atomic import PARTIAL_SUFFIX, create_new, write_atomic

__all__ = ["ObjectFolder", "default_owner", "object_folder", "owner_is_dead"]

TAKEOVER_INFIX = ".takeover-"  # <name>.takeover-<digest>: see ObjectFolder.replace


@dataclass(frozen=True)
class ObjectFolder:
    """A folder of small objects reached through fsspec.

    ``local``: plain files (atomic rename and link work); ``s3``: conditional PUTs work.
    """

    fs: Any
    path: str
    local: bool
    s3: bool

    @property
    def atomic_create(self) -> bool:
        """Whether :meth:`create` is atomic (exactly one of several creators succeeds)."""
        return self.local or self.s3

    def path_of(self, name: str) -> str:
        return f"{self.path}/{name}"

    def create(self, name: str, payload: bytes) -> bool:
        """Create object ``name`` holding ``payload`` only if it is absent; True if this call did."""
        path = self.path_of(name)
        if self.local:
            return create_new(path, payload)
        if self.s3:
            try:
                self.fs.pipe_file(path, payload, mode="create")  # If-None-Match: *
            except FileExistsError:
                return False
            except OSError as exc:  # some servers answer 409/412 for a concurrent create
                if "precondition" in str(exc).lower() or "conflict" in str(exc).lower():
                    return False
                raise
            return True
        if self.fs.exists(path):
            return False
        self.fs.pipe_file(path, payload)
        return self.read(name) == payload  # the residual race: see the module docstring

    def put(self, name: str, payload: bytes) -> None:
        """Write object ``name`` in one step (local: temporary file + rename; else one PUT)."""
        path = self.path_of(name)
        if self.local:
            write_atomic(path, payload)
        else:
            self.fs.pipe_file(path, payload)

    def replace(self, name: str, payload: bytes, old: bytes, version: Any = None) -> bool:
        """Replace object ``name`` by ``payload`` only if it still holds ``old``; True if this
        call did (``version``: from :meth:`read_versioned`, with ``old``).

        Local: a takeover file named after a digest of ``old`` is created first, so only one
        of several writers that read the same object replaces it; it stays until the object
        is deleted. S3: a PUT with ``If-Match: <etag>``. Elsewhere: re-read, write, read back.
        """
        path = self.path_of(name)
        if self.local:
            digest = hashlib.sha256(old).hexdigest()[:16]
            if not create_new(f"{path}{TAKEOVER_INFIX}{digest}", payload):
                return False
            if self.read(name) != old:
                return False  # it changed since it was read (released, renewed, replaced)
            write_atomic(path, payload)
            return True
        if self.s3 and version:
            try:
                self.fs.pipe_file(path, payload, IfMatch=version)
            except OSError as exc:
                if "precondition" in str(exc).lower() or "conflict" in str(exc).lower():
                    return False
                raise
            return True
        if self.read(name) != old:
            return False
        self.fs.pipe_file(path, payload)
        return self.read(name) == payload

    def read(self, name: str) -> bytes | None:
        """The object's bytes, fresh from the storage (no cached listing); None if absent."""
        found = self._read(name, versioned=False)
        return None if found is None else found[0]

    def read_versioned(self, name: str) -> tuple[bytes, Any] | None:
        """(bytes, version) of the object, or None: what :meth:`replace` needs to replace it
        only if unchanged (the version is the S3 ETag, asked before the body; else None)."""
        return self._read(name, versioned=True)

    def _read(self, name: str, *, versioned: bool) -> tuple[bytes, Any] | None:
        path = self.path_of(name)
        try:
            if not self.s3:
                return bytes(self.fs.cat_file(path)), None
            self.fs.invalidate_cache(path)
            version = self.fs.info(path).get("ETag") if versioned else None
            # s3fs asks for the size first unless told not to split the download
            return bytes(self.fs.cat_file(path, max_concurrency=1)), version
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        """Remove object ``name`` (and, locally, the takeover files :meth:`replace` left)."""
        targets = [self.path_of(name)]
        if self.local and os.path.isdir(self.path):
            prefix = f"{name}{TAKEOVER_INFIX}"
            targets += [
                os.path.join(self.path, n) for n in os.listdir(self.path) if n.startswith(prefix)
            ]
        for target in targets:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(target)

    def names(self) -> list[str]:
        """Names of the objects in the folder (temporary and takeover files left out)."""
        try:
            listed = self.fs.ls(self.path, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        tails = (str(n).rstrip("/").rsplit("/", 1)[-1] for n in listed)
        return sorted(
            t for t in tails if t and not t.endswith(PARTIAL_SUFFIX) and TAKEOVER_INFIX not in t
        )


def object_folder(fs: Any, path: str, *, local: bool) -> ObjectFolder:
    """The folder ``path`` of filesystem ``fs``, knowing whether conditional PUTs work there."""
    protocols = np.atleast_1d(fs.protocol)
    return ObjectFolder(
        fs=fs, path=path, local=local, s3=any(p in ("s3", "s3a") for p in protocols)
    )


def default_owner() -> str:
    """A name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """Whether ``owner`` (see :func:`default_owner`) names a process of this host that has exited.

    Only this host's processes can be checked; an owner elsewhere is alive until its claim
    expires. A pid reused by another process reads as alive: the claim then waits for expiry.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False  # it exists (another user's) or cannot be asked
    return False
