"""Stores: ``open_store`` turns a path, URL or Store into a Store; backends behind one interface."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

from featstore.errors import FeatstoreError, ReadOnlyError, StoreError, redacting
from featstore.store.base import FORMAT_VERSION, Entry, EntryInfo, Store
from featstore.store.spec import StoreSpec

__all__ = [
    "DEFAULT_STORE",
    "FORMAT_VERSION",
    "Entry",
    "EntryInfo",
    "Store",
    "StoreSpec",
    "default_store_url",
    "is_hdf5_location",
    "open_store",
]

logger = logging.getLogger(__name__)

DEFAULT_STORE = "stores/default.zarr"
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def default_store_url() -> str:
    """FEATSTORE_STORE if set, else the local Zarr store under stores/."""
    return os.environ.get("FEATSTORE_STORE") or DEFAULT_STORE


def is_hdf5_location(location: str | Path) -> bool:
    """Whether ``open_store`` opens this location with the HDF5 backend (by its suffix)."""
    return str(location).lower().endswith(HDF5_SUFFIXES)


@redacting
def open_store(
    location: str | Path | Store | None = None,
    mode: str = "a",
    storage_options: dict[str, Any] | None = None,
) -> Store:
    """Open (mode "a" also creates) the store at ``location``.

    ``location`` is a local path, any fsspec URL (``memory://``, ``s3://bucket/x.zarr``) or
    an open Store (returned as is). Paths ending in .h5/.hdf5 open the HDF5 backend.
    """
    if isinstance(location, Store):
        return location
    if mode not in ("r", "a"):
        raise StoreError(
            f"mode must be 'r' (read-only) or 'a' (read/write, create if missing), not {mode!r}"
        )
    url = str(location) if location is not None else default_store_url()
    try:
        return _open(url, mode, storage_options)
    except FeatstoreError:
        raise
    except ImportError as exc:
        raise StoreError(_missing_backend(url, exc)) from None
    except PermissionError:
        raise ReadOnlyError(
            f"permission denied opening store {url}; fix its permissions, choose a writable "
            "--store, or use a read-only command (ls, info, report)"
        ) from None
    except (NotADirectoryError, FileExistsError):
        raise StoreError(
            f"cannot open store {url}: part of its path is a file, not a folder; "
            "choose another --store"
        ) from None
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise ReadOnlyError(
                f"store {url} is on a read-only file system; choose a writable --store"
            ) from None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(
                f"no space left to create store {url}; free space or use another --store"
            ) from None
        raise StoreError(_remote_failure(url, exc)) from None
    except ValueError as exc:
        if "protocol" in str(exc).lower():
            raise StoreError(
                f"unknown protocol in store URL {url}; use a local path, file://, memory://, "
                "s3:// (pip install 'featstore[s3]') or gs:// (pip install 'featstore[gcs]')"
            ) from None
        raise StoreError(_remote_failure(url, exc)) from None
    except Exception as exc:  # fsspec backends raise their own kinds (botocore ...)
        raise StoreError(_remote_failure(url, exc)) from None


BACKEND_EXTRAS = {"s3fs": "s3", "gcsfs": "gcs"}


def _missing_backend(url: str, exc: ImportError) -> str:
    """Which package (and featstore extra) a URL's fsspec backend needs."""
    text = str(exc)
    for package, extra in BACKEND_EXTRAS.items():
        if package in text or (exc.name or "") == package:
            return (
                f"store {url} needs the {package} package; install it with "
                f"pip install 'featstore[{extra}]'"
            )
    return f"store {url} needs a package that is not installed ({text}); install it and retry"


def _remote_failure(url: str, exc: BaseException) -> str:
    """One line for a store that cannot be reached: credentials, endpoint, or other."""
    name = type(exc).__name__
    first = (str(exc).splitlines() or [""])[0][:200]
    if "Credential" in name or "credential" in first.lower():
        return (
            f"no credentials for store {url}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE), or pass --storage-option key=... --storage-option secret=..."
        )
    if any(word in name for word in ("Endpoint", "Connect", "Timeout")) or any(
        word in first.lower() for word in ("connect", "timed out", "timeout", "unreachable")
    ):
        return (
            f"cannot reach the endpoint of store {url} ({name}: {first}); check the URL and "
            "--storage-option endpoint_url, and that the server is running"
        )
    return (
        f"cannot open store {url} ({name}: {first}); check the URL and its --storage-option values"
    )


def _open(url: str, mode: str, storage_options: dict[str, Any] | None) -> Store:
    if is_hdf5_location(url):
        if "://" in url and not url.startswith("file://"):
            raise StoreError(
                f"HDF5 stores must be local files, not {url}; use a Zarr store for object storage"
            )
        from featstore.store.hdf5_store import HDF5Store

        return HDF5Store(url.removeprefix("file://"), mode=mode)
    from featstore.store.zarr_store import ZarrStore

    return ZarrStore(url, mode=mode, storage_options=storage_options)
