"""Zarr v3 backend: a local directory or any fsspec URL (memory://, s3://, file://).

Arrays live in the Zarr hierarchy; done markers, being one small object per chunk, are
written through fsspec next to the entry's array (``features/<key>/_done/<i>``), so each
marker is its own object and concurrent writers never update a shared one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.core.array_spec import ArrayConfigParams
from zarr.errors import ContainsArrayError, ContainsGroupError
from zarr.storage import FsspecStore, LocalStore

from featstore._atomic import PARTIAL_SUFFIX, write_atomic
from featstore.errors import (
    EntryNotFoundError,
    NotAStoreError,
    StoreVersionError,
)
from featstore.store.base import (
    FORMAT_VERSION,
    Entry,
    ObjectFolder,
    Store,
    store_not_found,
)
from featstore.store.spec import StoreSpec

ZARR_CONFIG: ArrayConfigParams = {
    "write_empty_chunks": True
}  # DESIGN.md: the all-zero scan costs 3-8x
MARKER_DIR = "_done"


def _compressor() -> ZstdCodec:
    return ZstdCodec(level=1)


@contextmanager
def _ignore_foreign_objects() -> Iterator[None]:
    """Zarr warns about our marker objects when it lists a group; they are ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*not recognized as a component of a Zarr hierarchy.*"
        )
        warnings.filterwarnings("ignore", message=".*Consolidated metadata is currently not part.*")
        yield


class ZarrEntry(Entry):
    def __init__(
        self, store: ZarrStore, key: str, array: zarr.Array, attrs: dict[str, Any], chunk_rows: int
    ) -> None:
        super().__init__(
            key, attrs, tuple(array.shape), str(array.dtype), chunk_rows, store.read_only
        )
        self._store = store
        self._array = array
        self._group_path = f"features/{key}"

    def _marker_path(self, index: int | None = None) -> str:
        base = self._store._path(f"{self._group_path}/{MARKER_DIR}")
        return base if index is None else f"{base}/{index}"

    def done_chunks(self) -> set[int]:
        fs = self._store.fs
        try:
            names = fs.ls(self._marker_path(), detail=False, refresh=True)
        except FileNotFoundError:
            return set()
        done = set()
        for name in names:
            tail = name.rstrip("/").rsplit("/", 1)[-1]
            if tail.isdigit():
                done.add(int(tail))
        return done

    def marker(self, index: int) -> dict[str, Any] | None:
        try:
            return json.loads(self._store.fs.cat_file(self._marker_path(index)))
        except FileNotFoundError:
            return None

    def _write_rows(self, start: int, stop: int, data: np.ndarray) -> None:
        self._array[start:stop] = data

    @property
    def geometry(self) -> tuple[int, int | None]:
        shards = self._array.shards
        if shards:
            return int(self._array.chunks[0]), int(shards[0])
        return self.chunk_rows, None

    def side_objects(self, folder: str) -> ObjectFolder:
        fs = self._store.fs
        protocols = np.atleast_1d(fs.protocol)
        return ObjectFolder(
            fs=fs,
            path=self._store._path(f"{self._group_path}/{folder}"),
            local=self._store.is_local,
            s3=any(p in ("s3", "s3a") for p in protocols),
        )

    def _write_marker(self, index: int, record: dict[str, Any]) -> None:
        record = {**record, "time": time.time()}
        self._store._put_object(self._marker_path(index), json.dumps(record).encode())

    def _delete_marker(self, index: int) -> None:
        try:
            self._store.fs.rm(self._marker_path(index))
        except FileNotFoundError:
            pass

    def _read_rows(self, rows: slice | np.ndarray) -> np.ndarray:
        if isinstance(rows, slice):
            return np.asarray(self._array[rows])
        if rows.size == 0:
            return np.empty((0, *self.row_shape), dtype=self.dtype)
        return np.asarray(self._array.oindex[rows])

    def update_attrs(self, **values: Any) -> None:
        self._check_writable()
        group = zarr.open_group(self._store.zarr_store, path=self._group_path, mode="a")
        group.attrs.update(values)
        self.attrs.update(values)
        self._store.consolidate()


class ZarrStore(Store):
    """A featstore store in Zarr v3 format."""

    def __init__(
        self, url: str, mode: str = "a", storage_options: dict[str, Any] | None = None
    ) -> None:
        self.url = str(url)
        self.read_only = mode == "r"
        self.storage_options = dict(storage_options or {})
        # object stores: the root zarr.json carries every node's metadata (see consolidate())
        self._consolidated: dict[str, Any] | None = None
        fs_options = dict(self.storage_options)
        if self.url.split("://", 1)[0] in ("s3", "s3a", "gs", "gcs"):
            # markers and leases are listed then read: a cached listing would hide new ones
            fs_options.setdefault("use_listings_cache", False)
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **fs_options)
        self.root = self.root.rstrip("/")
        self.is_local = "file" in np.atleast_1d(self.fs.protocol)
        if self.is_local:
            self.root = os.path.abspath(self.root)
            self.zarr_store: LocalStore | FsspecStore = LocalStore(
                self.root, read_only=self.read_only
            )
        else:
            self.zarr_store = FsspecStore.from_url(
                self.url, storage_options=self.storage_options or None, read_only=self.read_only
            )
        self._open_root(mode)

    # --- capabilities ---------------------------------------------------------------------
    @property
    def spec(self) -> StoreSpec:
        return StoreSpec(self.url, dict(self.storage_options))

    @property
    def is_remote(self) -> bool:
        return not self.is_local

    @property
    def location(self) -> str:
        return self.root if self.is_local else self.url

    @property
    def supports_concurrent_writers(self) -> bool:
        return True  # one object per chunk and per marker: disjoint chunks never collide

    @property
    def supports_shards(self) -> bool:
        return True

    @property
    def reopenable(self) -> bool:
        return "memory" not in np.atleast_1d(self.fs.protocol)  # memory:// lives in one process

    def free_bytes(self) -> int | None:
        if not self.is_local:
            return None
        path = self.root
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        return int(shutil.disk_usage(path).free)

    # --- opening ------------------------------------------------------------------------
    def _open_root(self, mode: str, attempts: int = 6) -> None:
        """Open (or create) the root; several processes creating one new store at once race
        on its zarr.json (zarr raises ContainsGroupError, or a half-written file is read):
        the losers retry and open what the winner created."""
        for attempt in range(attempts):
            try:
                self._open_root_once(mode)
                return
            except (ContainsGroupError, ContainsArrayError, NotAStoreError):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _open_root_once(self, mode: str) -> None:
        meta_path = self._path("zarr.json")
        if not self.is_local and self._open_root_consolidated(meta_path):
            return
        exists = self.fs.exists(self.root)
        if exists and not self.fs.exists(meta_path):
            contents = (
                self.fs.ls(self.root, detail=False) if self.fs.isdir(self.root) else [self.root]
            )
            if contents:
                raise NotAStoreError(
                    f"{self.url} exists but is not a featstore store (no zarr.json); "
                    "choose an empty or new location"
                )
            exists = False
        if not exists:
            if self.read_only:
                raise store_not_found(self.location)
            group = zarr.open_group(self.zarr_store, mode="a")
            group.attrs["featstore"] = {"format": FORMAT_VERSION}
            self._group = group
            self.created = True
            return
        try:
            group = zarr.open_group(self.zarr_store, mode="r" if self.read_only else "a")
        except Exception as exc:  # noqa: BLE001 - zarr raises several kinds here
            raise NotAStoreError(f"{self.url} is not a readable Zarr hierarchy: {exc}") from exc
        info = group.attrs.get("featstore")
        if not isinstance(info, dict) or "format" not in info:
            raise NotAStoreError(
                f"{self.url} is a Zarr hierarchy but not a featstore store (no 'featstore' attribute)"
            )
        if int(info["format"]) > FORMAT_VERSION:
            raise StoreVersionError(
                f"{self.url} was written in store format {info['format']}, newer than the format "
                f"{FORMAT_VERSION} this featstore reads; upgrade featstore to open it"
            )
        self._group = group

    def _open_root_consolidated(self, meta_path: str) -> bool:
        """Object stores: open from the root zarr.json alone (one GET) when it can be read."""
        try:
            # s3fs asks for the size first unless told not to split the download
            extra = {"max_concurrency": 1} if "s3" in np.atleast_1d(self.fs.protocol) else {}
            meta = json.loads(self.fs.cat_file(meta_path, **extra))
        except (FileNotFoundError, ValueError):
            return False  # the general path below says what is wrong
        info = meta.get("attributes", {}).get("featstore")
        if (
            not isinstance(info, dict)
            or "format" not in info
            or int(info["format"]) > FORMAT_VERSION
        ):
            return False
        self._set_consolidated(meta)
        return True

    def _set_consolidated(self, root_meta: dict[str, Any]) -> None:
        cons = root_meta.get("consolidated_metadata") or {}
        self._consolidated = dict(cons.get("metadata") or {}) if cons else None

    def consolidate(self) -> None:
        """Object stores: copy every node's metadata into the root zarr.json (zarr's consolidated metadata).

        Called after each structural change (entry or dataset created or removed, entry attrs
        updated), so a reader opens the store and its entries in about one request. Done
        markers and leases are plain objects outside the Zarr hierarchy, so writing chunks
        leaves it valid. A node missing from it (created by another writer since) is looked
        up directly. Local stores are not consolidated (opening them is cheap).
        """
        if self.is_local or self.read_only:
            return
        with _ignore_foreign_objects():
            group = zarr.consolidate_metadata(self.zarr_store)
        self._set_consolidated(group.metadata.to_dict())

    def _consolidated_meta(self, relative: str) -> dict[str, Any] | None:
        return None if self._consolidated is None else self._consolidated.get(relative)

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def _put_object(self, path: str, payload: bytes) -> None:
        """Write one small object atomically (local: temp file + rename; object stores: one PUT)."""
        if self.is_local:
            write_atomic(path, payload)
        else:
            self.fs.pipe_file(path, payload)

    def _children(self, relative: str) -> list[str]:
        try:
            names = self.fs.ls(self._path(relative), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            tail = name.rstrip("/").rsplit("/", 1)[-1]
            if tail != "zarr.json" and not tail.endswith(PARTIAL_SUFFIX):
                out.append(tail)
        return sorted(out)

    # --- datasets -----------------------------------------------------------------------
    def _put_dataset_arrays(
        self, dataset_id: str, attrs: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None:
        self._check_writable()
        group = zarr.open_group(self.zarr_store, path=f"datasets/{dataset_id}", mode="a")
        for name, values in arrays.items():
            values = np.asarray(values)
            dtype = str if values.dtype.kind in "US" else values.dtype
            array = group.create_array(
                name,
                shape=values.shape,
                dtype=dtype,
                overwrite=True,
                compressors=_compressor() if dtype is not str else "auto",
                config=ZARR_CONFIG,
            )
            if values.size:
                array[...] = values
        group.attrs.update(attrs)  # attrs last: a dataset without them is not listed
        self.consolidate()

    def _get_dataset_arrays(self, dataset_id: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if dataset_id not in self.dataset_ids():
            raise EntryNotFoundError(f"no dataset {dataset_id!r} in store {self.url}")
        group = zarr.open_group(self.zarr_store, path=f"datasets/{dataset_id}", mode="r")
        with _ignore_foreign_objects():
            names = [name for name, _ in group.arrays()]
        arrays = {
            name: np.asarray(
                zarr.open_array(self.zarr_store, path=f"datasets/{dataset_id}/{name}", mode="r")[
                    ...
                ]
            )
            for name in names
        }
        return dict(group.attrs), arrays

    def _get_dataset_attrs(self, dataset_id: str) -> dict[str, Any]:
        try:
            meta = json.loads(self.fs.cat_file(self._path(f"datasets/{dataset_id}/zarr.json")))
        except FileNotFoundError:
            raise EntryNotFoundError(f"no dataset {dataset_id!r} in store {self.url}") from None
        return dict(meta.get("attributes", {}))

    def dataset_ids(self) -> list[str]:
        ids = []
        for name in self._children("datasets"):
            cached = self._consolidated_meta(f"datasets/{name}")
            if cached is not None and "name" in cached.get("attributes", {}):
                ids.append(name)
                continue
            try:
                meta = json.loads(self.fs.cat_file(self._path(f"datasets/{name}/zarr.json")))
            except FileNotFoundError:
                continue
            if "name" in meta.get("attributes", {}):
                ids.append(name)
        return ids

    def _delete_dataset(self, dataset_id: str) -> None:
        self._check_writable()
        self.fs.rm(self._path(f"datasets/{dataset_id}"), recursive=True)
        self._forget_consolidated(f"datasets/{dataset_id}")
        self.consolidate()

    # --- entries ------------------------------------------------------------------------
    def _create_entry(
        self,
        key: str,
        attrs: dict[str, Any],
        shape: tuple[int, ...],
        dtype: str,
        chunk_rows: int,
        shard_rows: int | None,
    ) -> Entry:
        try:
            group = zarr.open_group(self.zarr_store, path=f"features/{key}", mode="a")
        except ContainsGroupError:  # another writer created it between zarr's check and ours
            group = zarr.open_group(self.zarr_store, path=f"features/{key}", mode="a")
        chunks = (chunk_rows, *shape[1:])
        shards = (shard_rows, *shape[1:]) if shard_rows else None
        unit_rows = shard_rows or chunk_rows
        group.attrs.update(
            {**attrs, "chunk_rows": unit_rows}
        )  # attrs first: data/zarr.json marks existence
        try:
            array = group.create_array(
                "data",
                shape=shape,
                chunks=chunks,
                shards=shards,
                dtype=dtype,
                fill_value=0,
                compressors=_compressor(),
                config=ZARR_CONFIG,
                overwrite=False,
            )
        except ContainsArrayError:
            # another writer created it between our check and now: never overwrite its chunks
            return self.create_entry(key, attrs, shape, dtype)
        self.consolidate()
        return ZarrEntry(self, key, array, dict(group.attrs), unit_rows)

    def get_entry(self, key: str) -> Entry:
        if not self.has_entry(key):
            raise EntryNotFoundError(
                f"no feature entry {key!r} in store {self.url}; `featstore ls` lists the entries"
            )
        cached = self._entry_from_consolidated(key)
        if cached is not None:
            return cached
        group = zarr.open_group(
            self.zarr_store, path=f"features/{key}", mode="r" if self.read_only else "a"
        )
        array = zarr.open_array(
            self.zarr_store,
            path=f"features/{key}/data",
            mode="r" if self.read_only else "a",
            config=ZARR_CONFIG,
        )
        attrs = dict(group.attrs)
        return ZarrEntry(self, key, array, attrs, int(attrs.get("chunk_rows", array.chunks[0])))  # type: ignore[arg-type]

    def _entry_from_consolidated(self, key: str) -> Entry | None:
        """The entry built from consolidated metadata without a request (None if not in it)."""
        group_meta = self._consolidated_meta(f"features/{key}")
        array_meta = self._consolidated_meta(f"features/{key}/data")
        if group_meta is None or array_meta is None:
            return None
        from zarr.core.array import AsyncArray
        from zarr.core.metadata import ArrayV3Metadata
        from zarr.storage import StorePath

        path = StorePath(self.zarr_store, f"features/{key}/data")
        metadata = ArrayV3Metadata.from_dict(dict(array_meta))
        array = zarr.Array(AsyncArray(metadata, store_path=path, config=ZARR_CONFIG))
        attrs = dict(group_meta.get("attributes", {}))
        return ZarrEntry(self, key, array, attrs, int(attrs.get("chunk_rows", array.chunks[0])))

    def _forget_consolidated(self, prefix: str) -> None:
        if self._consolidated is not None:
            self._consolidated = {
                k: v
                for k, v in self._consolidated.items()
                if k != prefix and not k.startswith(prefix + "/")
            }

    def has_entry(self, key: str) -> bool:
        if self._consolidated_meta(f"features/{key}/data") is not None:
            return True
        return self.fs.exists(self._path(f"features/{key}/data/zarr.json"))

    def entry_keys(self) -> list[str]:
        return [k for k in self._children("features") if self.has_entry(k)]

    def delete_entry(self, key: str) -> None:
        self._check_writable()
        if not self.fs.exists(self._path(f"features/{key}")):
            raise EntryNotFoundError(f"no feature entry {key!r} in store {self.url}")
        self.fs.rm(self._path(f"features/{key}"), recursive=True)
        self._forget_consolidated(f"features/{key}")
        self.consolidate()

    def entry_nbytes(self, key: str) -> int | None:
        try:
            return int(self.fs.du(self._path(f"features/{key}"), total=True))
        except (FileNotFoundError, NotImplementedError):
            return None

    # --- results ------------------------------------------------------------------------
    def _result_path(self, key: str) -> str:
        return self._path(f"results/{key}.json")

    def put_result(self, key: str, record: dict[str, Any]) -> None:
        self._check_writable()
        self._put_object(self._result_path(key), json.dumps(record, sort_keys=True).encode())

    def get_result(self, key: str) -> dict[str, Any]:
        try:
            return json.loads(self.fs.cat_file(self._result_path(key)))
        except FileNotFoundError:
            raise EntryNotFoundError(f"no result {key!r} in store {self.url}") from None

    def has_result(self, key: str) -> bool:
        return self.fs.exists(self._result_path(key))

    def result_keys(self) -> list[str]:
        return [
            name[: -len(".json")] for name in self._children("results") if name.endswith(".json")
        ]

    def delete_result(self, key: str) -> None:
        self._check_writable()
        try:
            self.fs.rm(self._result_path(key))
        except FileNotFoundError:
            raise EntryNotFoundError(f"no result {key!r} in store {self.url}") from None

    # --- maintenance --------------------------------------------------------------------
    def gc(self, *, dry_run: bool = False, older_than_s: float = 3600.0) -> list[str]:
        """Remove temp files of interrupted writes and entries that never got a single chunk.

        Only leftovers older than ``older_than_s`` are touched, so a run in progress elsewhere
        is left alone.
        """
        self._check_writable()
        now = time.time()
        removed: list[str] = []
        for path in self.fs.find(self.root):
            if path.endswith(PARTIAL_SUFFIX) and now - _mtime(self.fs, path, now) > older_than_s:
                removed.append(path)
                if not dry_run:
                    self.fs.rm(path)
        for key in self._children("features"):
            base = self._path(f"features/{key}")
            if self.has_entry(key):
                entry = self.get_entry(key)
                if (
                    entry.done_chunks()
                    or now - _mtime(self.fs, f"{base}/zarr.json", now) <= older_than_s
                ):
                    continue
            removed.append(base)
            if not dry_run:
                self.fs.rm(base, recursive=True)
                self._forget_consolidated(f"features/{key}")
        if removed and not dry_run:
            self.consolidate()
        return removed


def _mtime(fs: fsspec.AbstractFileSystem, path: str, default: float) -> float:
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return default
    for field in ("mtime", "created", "LastModified"):
        value = info.get(field)
        if value is None:
            continue
        return value.timestamp() if hasattr(value, "timestamp") else float(value)
    return default
