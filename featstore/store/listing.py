"""Listing a Zarr store in a few requests: entries and result records read in batches.

A listing (``featstore ls``, ``report``, sweep planning, ``verify``) needs every entry's
metadata, done markers and size, and every result record. Read one object at a time, that
is a round trip per object on object storage. Here:

- entries: ONE recursive listing of ``features/`` (a page per 1,000 objects) gives every
  entry's files, its done markers and its size; the metadata comes from the root's
  consolidated metadata (object stores) or, for entries not in it, from one concurrent
  ``cat`` of their ``zarr.json`` files. Each entry is still proven (key re-derived from its
  factors, :meth:`featstore.store.base.Store._proven`).
- records: one listing of ``results/`` (with each object's ETag); on object stores the
  bodies of unchanged records come from the catalog object ``catalog/results`` (one GET),
  the others from one concurrent ``cat``. A body from the catalog is used only when its
  MD5 is the ETag the listing gives for that record now, so the catalog can only save
  requests, never serve bytes the store does not hold; every record is then checked
  against its own key and seal as when it is read alone.

The catalog is a cache, not a source of truth: it is rewritten (one PUT) by a listing of
all records on a writable store that found it out of date (the end of a sweep, ``verify``),
last writer wins, and a lost or stale catalog only costs the reads of the records it lacks.
No conditional write is needed for that, so concurrent writers never wait on it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.errors import DamagedEntryError
from featstore.keys import KEY_PATTERN, check_key

if TYPE_CHECKING:
    from featstore.store.base import Entry
    from featstore.store.proofs import CheckedRecord
    from featstore.store.zarr_store import ZarrStore

logger = logging.getLogger(__name__)

CATALOG = "catalog/results"  # relative to the store root; outside results/, never listed
CATALOG_FORMAT = 1
_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass
class EntryListing:
    """Every entry of a store as one listing saw it: the readable ones (their done chunks
    as listed), the damaged ones (key -> why, with the fix) and each entry's stored bytes."""

    entries: list[Entry] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)
    nbytes: dict[str, int | None] = field(default_factory=dict)


def _is_local(fs: Any) -> bool:
    return "file" in np.atleast_1d(fs.protocol)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a listing builds its records.

    Parsing and checking thousands of records allocates millions of containers, and each
    burst of allocations triggers collections that walk every object of the process (torch,
    numpy and the CLI's modules included). JSON values hold no cycles, so nothing is left
    for the collector; it runs again as usual afterwards.
    """
    if not gc.isenabled():  # already held off (a nested listing) or by the caller
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def list_tree(fs: Any, base: str, *, sizes: bool = True) -> dict[str, dict[str, Any]]:
    """Every object under ``base`` (one paginated listing on object stores): path relative
    to ``base`` -> the listing's info (size, ETag ...). ``sizes=False``: a local listing
    leaves out the size (no stat per file)."""
    if _is_local(fs):
        return _local_tree(base, sizes=sizes)
    try:
        found = fs.find(base, detail=True)
    except FileNotFoundError:
        return {}
    prefix = base.rstrip("/") + "/"
    out = {}
    for path, info in found.items():
        if info.get("type") == "directory" or not path.startswith(prefix):
            continue
        out[path[len(prefix) :]] = info
    return out


def _local_tree(base: str, *, sizes: bool = True) -> dict[str, dict[str, Any]]:
    """:func:`list_tree` of a local folder (os.scandir: one stat per file with ``sizes``,
    none without)."""
    out: dict[str, dict[str, Any]] = {}
    stack = [("", base)]
    while stack:
        rel, path = stack.pop()
        try:
            with os.scandir(path) as found:
                for item in found:
                    name = f"{rel}{item.name}"
                    if item.is_dir(follow_symlinks=False):
                        stack.append((name + "/", item.path))
                    elif not item.is_file(follow_symlinks=False):
                        continue
                    elif sizes:
                        out[name] = {"size": item.stat().st_size, "type": "file"}
                    else:
                        out[name] = {"type": "file"}
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed meanwhile
    return out


def read_many(fs: Any, paths: list[str]) -> dict[str, bytes | BaseException]:
    """The bytes of each path (an exception where it cannot be read): one concurrent ``cat``
    on object stores, a loop of plain reads on a local disk (fsspec's per-call path
    handling costs more than the read of a small file)."""
    if not paths:
        return {}
    if _is_local(fs):
        return {p: _read_file(p) for p in paths}
    found = fs.cat(list(paths), on_error="return")
    return {p: found.get(p, FileNotFoundError(p)) for p in paths}


def _read_file(path: str) -> bytes | OSError:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:  # missing (removed since the listing), a folder ...
        return exc


# --- entries ---------------------------------------------------------------------------
def list_entries(store: ZarrStore) -> EntryListing:
    """Every entry of ``store`` with its done markers and size, in about one listing."""
    from featstore.store.zarr_store import MARKER_DIR, damaged_entry_meta, holds_data_files

    tree = list_tree(store.fs, store._path("features"))
    files: dict[str, dict[str, dict[str, Any]]] = {}
    for rel, info in tree.items():
        key, _, inner = rel.partition("/")
        if inner:
            files.setdefault(key, {})[inner] = info
    out = EntryListing()
    metas: dict[str, tuple[Any, Any]] = {}
    wanted: list[str] = []
    for key in sorted(files):
        try:
            check_key(key)
        except ValueError:
            continue  # not written by featstore (a .partial folder, a stray object)
        if "data/zarr.json" not in files[key]:
            if holds_data_files(files[key]):
                out.damaged[key] = store.orphan_chunks_why(key)
            continue
        group = store._consolidated_meta(f"features/{key}")
        array = store._consolidated_meta(f"features/{key}/data")
        if group is not None and array is not None:
            metas[key] = (group, array)
        else:
            wanted.append(key)
    raw = read_many(
        store.fs,
        [store._path(f"features/{k}/{p}") for k in wanted for p in ("zarr.json", "data/zarr.json")],
    )
    for key in wanted:
        got = [raw[store._path(f"features/{key}/{p}")] for p in ("zarr.json", "data/zarr.json")]
        if isinstance(got[1], FileNotFoundError):
            continue  # removed since the listing
        try:
            texts = [v if isinstance(v, bytes) else _raise(v) for v in got]
            metas[key] = (json.loads(texts[0]), json.loads(texts[1]))
        except Exception as exc:  # unreadable bytes, JSON or value errors
            out.damaged[key] = str(damaged_entry_meta(store, key, exc))
    for key, (group, array) in metas.items():
        done = {
            int(inner.rsplit("/", 1)[-1])
            for inner in files[key]
            if inner.startswith(f"{MARKER_DIR}/") and inner.rsplit("/", 1)[-1].isdigit()
        }
        try:
            entry = store._entry_from_meta(key, group, array, listed_done=done)
            out.entries.append(store._proven(entry))
        except DamagedEntryError as exc:
            out.damaged[key] = str(exc)
            continue
        except Exception as exc:  # metadata zarr cannot build an array from
            out.damaged[key] = str(damaged_entry_meta(store, key, exc))
            continue
        out.nbytes[key] = sum(int(info.get("size") or 0) for info in files[key].values())
    out.entries.sort(key=lambda e: e.key)
    return out


def _raise(exc: BaseException) -> bytes:
    raise exc


# --- result records --------------------------------------------------------------------
def _tag(info: dict[str, Any]) -> str | None:
    """What the listing says identifies this version of an object (an S3 ETag), or None."""
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    return str(tag).strip('"') if tag else None


def _proves(tag: str, body: bytes) -> bool:
    """Whether ``body`` is the object the listing tagged ``tag``: an MD5 ETag must be the
    MD5 of the body; another tag (multipart, another cloud) changes with every write."""
    if _MD5.fullmatch(tag):
        return hashlib.md5(body, usedforsecurity=False).hexdigest() == tag
    return True


def _load_catalog(store: ZarrStore) -> dict[str, tuple[str, bytes]]:
    """The catalog's {key: (tag, body)}; empty when there is none or it cannot be read
    (it is only a cache: the records are then read one by one)."""
    # s3fs asks for the size first unless told not to split the download
    extra = {"max_concurrency": 1} if "s3" in store.fs.protocol else {}
    try:
        raw = store.fs.cat_file(store._path(CATALOG), **extra)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        logger.warning(
            "result catalog of %s not read (%s): records read one by one", store.url, exc
        )
        return {}
    try:
        data = json.loads(zlib.decompress(raw))
        if data.get("format") != CATALOG_FORMAT:
            return {}
        return {str(k): (str(v[0]), str(v[1]).encode("utf-8")) for k, v in data["records"].items()}
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, zlib.error) as exc:
        logger.warning("result catalog of %s is damaged (%s): it will be rebuilt", store.url, exc)
        return {}


def _write_catalog(store: ZarrStore, records: dict[str, tuple[str, bytes]]) -> None:
    payload = {
        "format": CATALOG_FORMAT,
        "records": {k: [tag, body.decode("utf-8")] for k, (tag, body) in sorted(records.items())},
    }
    store._put_object(store._path(CATALOG), zlib.compress(json.dumps(payload).encode(), 6))


def read_results(
    store: ZarrStore, keys: Iterable[str] | None = None
) -> dict[str, dict[str, Any] | DamagedEntryError]:
    """The records under ``keys`` (all by default) as :meth:`ZarrStore.get_result` reads
    them (DamagedEntryError for one that cannot be parsed); a key with no record is left out.

    Object stores: one listing, the catalog, one concurrent ``cat`` of what it lacks; a
    writable store rewrites the catalog when a full listing found it out of date.
    """
    from featstore.store.proofs import parse_result

    wanted, bodies, unread = _result_bodies(store, keys)
    out: dict[str, dict[str, Any] | DamagedEntryError] = dict(unread)
    with gc_paused():
        for key in wanted:
            if key in bodies:
                try:
                    out[key] = parse_result(key, store._result_path(key), bodies[key])
                except DamagedEntryError as exc:
                    out[key] = exc
    return {k: out[k] for k in wanted if k in out}


def read_checked_results(
    store: ZarrStore, keys: Iterable[str] | None = None
) -> dict[str, CheckedRecord]:
    """:func:`read_results` with each record checked against its key and seal as
    :func:`featstore.store.proofs.check_result` does it: over the stored bytes, without
    re-serialising a record stored in the current layout."""
    from featstore.store.proofs import DAMAGED, CheckedRecord, check_result

    wanted, bodies, unread = _result_bodies(store, keys)
    out = {k: CheckedRecord(None, DAMAGED, str(exc)) for k, exc in unread.items()}
    with gc_paused():
        for key in wanted:
            if key in bodies:
                out[key] = check_result(key, store._result_path(key), bodies[key])
    return {k: out[k] for k in wanted if k in out}


def _result_bodies(
    store: ZarrStore, keys: Iterable[str] | None
) -> tuple[list[str], dict[str, bytes], dict[str, DamagedEntryError]]:
    """(the keys listed, in order; their stored bytes; why those that could not be read
    could not be). Rewrites an object store's catalog as :func:`read_results` says."""
    from featstore.store.proofs import record_fix

    listed: dict[str, dict[str, Any]] = {}
    for name, info in list_tree(store.fs, store._path("results"), sizes=False).items():
        stem = name[: -len(".json")]
        if "/" not in name and name.endswith(".json") and KEY_PATTERN.fullmatch(stem):
            listed[stem] = info
    every = keys is None
    wanted = sorted(listed) if keys is None else [k for k in dict.fromkeys(keys) if k in listed]
    use_catalog = store.is_remote
    catalog = _load_catalog(store) if use_catalog else {}
    bodies: dict[str, bytes] = {}
    tags: dict[str, str] = {}
    fetch = []
    for key in wanted:
        tag = _tag(listed[key])
        if tag is not None:
            tags[key] = tag
        cached = catalog.get(key)
        if tag is not None and cached is not None and cached[0] == tag and _proves(tag, cached[1]):
            bodies[key] = cached[1]
        else:
            fetch.append(key)
    unread: dict[str, DamagedEntryError] = {}
    raw = read_many(store.fs, [store._result_path(k) for k in fetch])
    for key in fetch:
        path = store._result_path(key)
        value = raw[path]
        if isinstance(value, FileNotFoundError):
            continue  # removed since the listing
        if isinstance(value, BaseException):
            unread[key] = DamagedEntryError(
                f"result {key}: {path} cannot be read ({type(value).__name__}); {record_fix(key)}"
            )
            continue
        bodies[key] = bytes(value)
    stale = bool(fetch) or set(catalog) - set(listed)
    if use_catalog and every and stale and not store.read_only and tags:
        keep = {k: (tags[k], bodies[k]) for k in wanted if k in tags and k in bodies}
        try:
            _write_catalog(store, keep)
        except OSError as exc:  # a cache: the listing stands without it
            logger.warning("result catalog of %s not written (%s)", store.url, exc)
    return wanted, bodies, unread
