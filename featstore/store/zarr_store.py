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
import uuid
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Literal

import fsspec
import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.core.array_spec import ArrayConfigParams
from zarr.errors import ContainsArrayError, ContainsGroupError
from zarr.storage import FsspecStore, LocalStore

from featstore._atomic import PARTIAL_SUFFIX, exchange, write_atomic
from featstore.errors import (
    DamagedEntryError,
    EntryNotFoundError,
    NotAStoreError,
    StoreVersionError,
)
from featstore.keys import KEY_PATTERN, check_dataset_id, check_key
from featstore.store.base import (
    FORMAT_VERSION,
    Entry,
    GcResult,
    Store,
    store_not_found,
    unfinished_dataset,
)
from featstore.store.lease import held_entries
from featstore.store.listing import (
    EntryListing,
    list_entries,
    read_checked_results,
    read_results,
)
from featstore.store.names import NAMES_DIR, gc_names
from featstore.store.objects import ObjectFolder, object_folder
from featstore.store.proofs import CheckedRecord, parse_result, record_bytes, record_fix
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
        self,
        store: ZarrStore,
        key: str,
        array: zarr.Array[Any] | dict[str, Any],
        attrs: dict[str, Any],
        chunk_rows: int,
        listed_done: set[int] | None = None,
    ) -> None:
        if isinstance(array, dict):  # a listing's metadata: the array is built when first used
            shape, dtype = _shape_dtype(array)
            self._meta: dict[str, Any] | None = array
            self._built: zarr.Array[Any] | None = None
        else:
            shape, dtype = tuple(array.shape), str(array.dtype)
            self._meta, self._built = None, array
        super().__init__(key, attrs, shape, dtype, chunk_rows, store.read_only)
        self._store = store
        self._group_path = f"features/{key}"
        # an entry from a store listing (store/listing.py): its done markers as listed then
        self._listed_done = None if listed_done is None else set(listed_done)

    @property
    def _array(self) -> zarr.Array[Any]:
        if self._built is None:  # built from the listing's metadata on first use
            self._built = self._store._array_from_meta(f"{self._group_path}/data", self._meta or {})
        return self._built

    def _marker_path(self, index: int | None = None) -> str:
        base = self._store._path(f"{self._group_path}/{MARKER_DIR}")
        return base if index is None else f"{base}/{index}"

    def done_chunks(self) -> set[int]:
        """Chunks whose marker exists. An entry of a store listing that saw it complete
        answers from the listing (a listing asks nothing per entry; a complete entry stays
        so, and every read still checks each chunk's marker); otherwise the store is asked."""
        listed = self._listed_done
        if listed is not None and len(listed) >= self.n_chunks:
            return set(listed)
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
            raw = self._store.fs.cat_file(self._marker_path(index))
        except FileNotFoundError:
            return None
        except OSError as exc:  # a folder where the marker should be, unreadable bytes ...
            return {"unreadable": f"done marker cannot be read ({type(exc).__name__})"}
        return _parse_marker(raw)

    def markers(self, indices: Iterable[int]) -> dict[int, dict[str, Any] | None]:
        wanted = [int(i) for i in indices]
        if len(wanted) < 2:
            return {i: self.marker(i) for i in wanted}
        paths = {self._marker_path(i): i for i in wanted}
        # one call: concurrent requests on object stores, a loop of local reads otherwise
        found = self._store.fs.cat(list(paths), on_error="return")
        out: dict[int, dict[str, Any] | None] = {}
        for path, index in paths.items():
            raw = found.get(path, FileNotFoundError())
            if isinstance(raw, FileNotFoundError):
                out[index] = None
            elif isinstance(raw, BaseException):
                out[index] = self.marker(index)  # another error: ask once more, alone
            else:
                out[index] = _parse_marker(raw)
        return out

    def _write_rows(self, start: int, stop: int, data: np.ndarray) -> None:
        self._array[start:stop] = data

    @property
    def geometry(self) -> tuple[int, int | None]:
        shards = self._array.shards
        if shards:
            return int(self._array.chunks[0]), int(shards[0])
        return self.chunk_rows, None

    def side_objects(self, folder: str) -> ObjectFolder:
        return self._store._object_folder(f"{self._group_path}/{folder}")

    def _write_marker(self, index: int, record: dict[str, Any]) -> None:
        record = {**record, "time": time.time()}
        self._store._put_object(self._marker_path(index), json.dumps(record).encode())
        if self._listed_done is not None:
            self._listed_done.add(index)

    def _delete_marker(self, index: int) -> None:
        if self._listed_done is not None:
            self._listed_done.discard(index)
        # recursive: a damaged "marker" may be a folder
        with suppress(FileNotFoundError):
            self._store.fs.rm(self._marker_path(index), recursive=True)

    def _read_rows(self, rows: slice | np.ndarray) -> np.ndarray:
        if isinstance(rows, slice):
            return np.asarray(self._array[rows])
        if rows.size == 0:
            return np.empty((0, *self.row_shape), dtype=self.dtype)
        return np.asarray(self._array.oindex[rows])

    def update_attrs(self, **values: Any) -> None:
        self._check_writable()
        group = zarr.open_group(self._store.zarr_store, path=self._group_path, mode="a")
        group.update_attributes(values)  # one write of zarr.json, not one per attribute
        self.attrs.update(values)
        self._store.consolidate()


def _shape_dtype(meta: dict[str, Any]) -> tuple[tuple[int, ...], str]:
    """(shape, dtype) of an entry's array from its zarr.json record; ValueError when they
    are not an array of rows of a plain numeric type."""
    shape, dtype = meta.get("shape"), meta.get("data_type")
    if not isinstance(shape, (list, tuple)) or not shape or not all(type(s) is int for s in shape):
        raise ValueError("features/data is not an array of rows")
    if not isinstance(dtype, str) or np.dtype(dtype).kind not in "fiub":
        raise ValueError(f"features/data holds {dtype!r}, not numbers")
    return tuple(shape), str(np.dtype(dtype))


def _parse_marker(raw: bytes) -> dict[str, Any]:
    """A marker's record; an empty or torn marker becomes ``{"unreadable": why}``."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return {"unreadable": f"done marker of {len(raw)} bytes is not a JSON record"}
    return record if isinstance(record, dict) else {"unreadable": "done marker is not a record"}


def _damaged_meta(what: str, path: str, exc: object, fix: str) -> DamagedEntryError:
    if isinstance(exc, RecursionError):
        exc = "nested too deeply to be a featstore record"
    return DamagedEntryError(f"{what}: its metadata {path} cannot be read ({exc}); {fix}")


def damaged_entry_meta(store: ZarrStore, key: str, exc: object) -> DamagedEntryError:
    """The error for an entry whose metadata cannot be read, with its fix."""
    return _damaged_meta(
        f"entry {key}",
        store._path(f"features/{key}"),
        exc,
        f"remove it with `featstore rm {key}` and extract again (its chunks are kept "
        "until then; `featstore gc` never deletes them)",
    )


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
            self._format = FORMAT_VERSION
            self.created = True
            return
        try:
            group = zarr.open_group(self.zarr_store, mode="r" if self.read_only else "a")
        except Exception as exc:  # zarr raises several kinds here
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
        self._format = int(info["format"])

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
        self._format = int(info["format"])
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

    def _object_folder(self, relative: str) -> ObjectFolder:
        """A folder of small plain objects (leases, name claims) outside the Zarr hierarchy."""
        return object_folder(self.fs, self._path(relative), local=self.is_local)

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
        """Write a registration so that it appears whole or not at all.

        Its arrays first, then every attribute in ONE write of the group's zarr.json (a
        dataset is listed once its attributes are there). A registration already stored
        under this id (images re-pointed, hashes added) is rebuilt aside in a local store and
        swapped in with one rename (featstore._atomic.exchange); object stores rewrite it in
        place (a kill meanwhile can leave it reported damaged, never read half).
        """
        self._check_writable()
        final = f"datasets/{check_dataset_id(dataset_id)}"
        if self.is_local and os.path.isdir(self._path(final)):
            staging = f"{final}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
            self._write_dataset_group(staging, attrs, arrays)
            old = exchange(self._path(staging), self._path(final))
            shutil.rmtree(old, ignore_errors=True)  # a kill here: a .partial folder, gc's
        else:
            self._write_dataset_group(final, attrs, arrays)
        self._forget_consolidated(final)
        self.consolidate()

    def _write_dataset_group(
        self, path: str, attrs: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None:
        group = zarr.open_group(self.zarr_store, path=path, mode="a")
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
        # last, in one write (group.attrs.update would write zarr.json once per attribute)
        group.update_attributes(attrs)

    def _get_dataset_arrays(self, dataset_id: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        check_dataset_id(dataset_id)
        if dataset_id not in self.dataset_ids():
            raise EntryNotFoundError(f"no dataset {dataset_id!r} in store {self.url}")
        try:
            known = self._dataset_from_consolidated(dataset_id)
            if known is not None:
                return known
            group = zarr.open_group(self.zarr_store, path=f"datasets/{dataset_id}", mode="r")
            with _ignore_foreign_objects():
                names = [name for name, _ in group.arrays()]
            arrays = {
                name: np.asarray(
                    zarr.open_array(
                        self.zarr_store, path=f"datasets/{dataset_id}/{name}", mode="r"
                    )[...]
                )
                for name in names
            }
            attrs = dict(group.attrs)
        except Exception as exc:  # zarr raises JSON, key and value errors here
            raise _damaged_meta(
                f"dataset {dataset_id}",
                self._path(f"datasets/{dataset_id}"),
                exc,
                f"remove it with `featstore datasets rm {dataset_id}` and register it again",
            ) from exc
        return attrs, arrays

    def _dataset_from_consolidated(
        self, dataset_id: str
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """Object stores: a dataset's attrs and arrays with their metadata taken from the
        consolidated root (only the chunks are read); None when it is not in it. The
        fingerprint check of ``get_dataset`` still proves what was read."""
        prefix = f"datasets/{dataset_id}"
        group = self._consolidated_meta(prefix)
        if self._consolidated is None or group is None or "name" not in group.get("attributes", {}):
            return None
        arrays = {}
        for path, meta in self._consolidated.items():
            name = path[len(prefix) + 1 :]
            if (
                path.startswith(prefix + "/")
                and "/" not in name
                and meta.get("node_type") == "array"
            ):
                arrays[name] = np.asarray(self._array_from_meta(path, meta)[...])
        return dict(group["attributes"]), arrays

    def _array_from_meta(self, path: str, meta: dict[str, Any]) -> zarr.Array[Any]:
        """The array at ``path`` built from its zarr.json record (no request)."""
        from zarr.core.array import AsyncArray
        from zarr.core.metadata import ArrayV3Metadata
        from zarr.storage import StorePath

        metadata = ArrayV3Metadata.from_dict(dict(meta))
        where = StorePath(self.zarr_store, path)
        return zarr.Array(AsyncArray(metadata, store_path=where, config=ZARR_CONFIG))

    def _get_dataset_attrs(self, dataset_id: str) -> dict[str, Any]:
        check_dataset_id(dataset_id)
        meta = self._dataset_meta(dataset_id)
        if meta is None:
            raise EntryNotFoundError(f"no dataset {dataset_id!r} in store {self.url}")
        return dict(meta.get("attributes", {}))

    def _dataset_meta(self, name: str) -> dict[str, Any] | None:
        """A dataset group's zarr.json (None if absent); DamagedEntryError if unreadable."""
        cached = self._consolidated_meta(f"datasets/{name}")
        if cached is not None and "name" in cached.get("attributes", {}):
            return cached
        path = self._path(f"datasets/{name}/zarr.json")
        try:
            meta = json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        except (ValueError, RecursionError, IsADirectoryError) as exc:
            raise _damaged_meta(
                f"dataset {name}",
                path,
                exc,
                f"remove it with `featstore datasets rm {name}` and register it again",
            ) from exc
        if not isinstance(meta, dict) or not isinstance(meta.get("attributes", {}), dict):
            raise DamagedEntryError(
                f"dataset {name}: its metadata {path} is not a Zarr group record; remove it "
                f"with `featstore datasets rm {name}` and register it again"
            )
        return meta

    def _dataset_state(self) -> tuple[list[str], dict[str, str]]:
        ids, damaged = [], {}
        for name in self._children("datasets"):
            try:
                meta = self._dataset_meta(name)
            except DamagedEntryError as exc:
                damaged[name] = str(exc)
                continue
            attrs = {} if meta is None else meta.get("attributes", {})
            if "name" not in attrs:
                continue  # arrays of a registration whose attributes never landed: not there
            why = unfinished_dataset(name, attrs)
            if why is not None:
                damaged[name] = why
            else:
                ids.append(name)
        return ids, damaged

    def dataset_ids(self) -> list[str]:
        return self._dataset_state()[0]

    def _name_claims(self) -> ObjectFolder:
        return self._object_folder(NAMES_DIR)  # names/<name>.json: see store/names.py

    def trained_objects(self) -> ObjectFolder:
        return self._object_folder("trained")  # see store/trained.py

    def damaged_datasets(self) -> dict[str, str]:
        return self._dataset_state()[1]

    def _delete_dataset(self, dataset_id: str) -> None:
        self._check_writable()
        check_dataset_id(dataset_id)
        self._remove_folder(f"datasets/{dataset_id}")
        self._forget_consolidated(f"datasets/{dataset_id}")
        self.consolidate()

    def _remove_folder(self, relative: str) -> None:
        """Remove a folder and everything in it; one already removed (by another process,
        e.g. two ``--replace`` of one name at once) is no error.

        A local folder is first renamed aside (atomic), so two removers never trip over one
        half-deleted tree and readers see it whole or gone; a remover killed meanwhile leaves
        a ``.partial`` folder, which is never listed and which `gc` removes.
        """
        path = self._path(relative)
        if not self.is_local:
            with suppress(FileNotFoundError):
                self.fs.rm(path, recursive=True)
            return
        aside = f"{path}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
        try:
            os.rename(path, aside)
            shutil.rmtree(aside)
        except FileNotFoundError:
            return  # removed by another process (or, once aside, by a `gc` run)

    # --- format ----------------------------------------------------------------------------
    @property
    def format_version(self) -> int:
        return self._format

    def _set_format_version(self, version: int) -> None:
        self._check_writable()
        group = zarr.open_group(self.zarr_store, mode="a")
        group.attrs["featstore"] = {"format": int(version)}
        self._group = group
        self._format = int(version)
        self.consolidate()

    # --- image lists: plain objects images/<images_id>, outside the Zarr hierarchy ---------
    def _put_image_blob(self, images_id: str, payload: bytes) -> None:
        self._put_object(self._path(f"images/{images_id}"), payload)

    def _get_image_blob(self, images_id: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(self._path(f"images/{images_id}")))
        except FileNotFoundError:
            return None

    # --- named networks: plain objects networks/<name>, outside the Zarr hierarchy --------
    def _put_network_blob(self, name: str, payload: bytes) -> None:
        self._check_writable()
        self._put_object(self._path(f"networks/{name}"), payload)

    def _get_network_blob(self, name: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(self._path(f"networks/{name}")))
        except FileNotFoundError:
            return None

    def _network_blob_names(self) -> list[str]:
        return self._children("networks")

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
        check_key(key, "entry key")
        try:
            group = zarr.open_group(self.zarr_store, path=f"features/{key}", mode="a")
        except ContainsGroupError:  # another writer created it between zarr's check and ours
            group = zarr.open_group(self.zarr_store, path=f"features/{key}", mode="a")
        chunks = (chunk_rows, *shape[1:])
        shards = (shard_rows, *shape[1:]) if shard_rows else None
        unit_rows = shard_rows or chunk_rows
        # attrs first, in one write: data/zarr.json marks existence
        group.update_attributes({**attrs, "chunk_rows": unit_rows})
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
            return self._proven(cached)
        mode: Literal["r", "a"] = "r" if self.read_only else "a"
        try:
            group = zarr.open_group(self.zarr_store, path=f"features/{key}", mode=mode)
            array = zarr.open_array(
                self.zarr_store, path=f"features/{key}/data", mode=mode, config=ZARR_CONFIG
            )
            attrs = dict(group.attrs)
            if not isinstance(array, zarr.Array) or not array.shape:
                raise ValueError("features/data is not an array of rows")
            chunk_rows = int(attrs.get("chunk_rows", array.chunks[0]))  # type: ignore[arg-type]
        except Exception as exc:  # zarr raises JSON, key and value errors here
            raise damaged_entry_meta(self, key, exc) from exc
        return self._proven(ZarrEntry(self, key, array, attrs, chunk_rows))

    def _entry_from_consolidated(self, key: str) -> Entry | None:
        """The entry built from consolidated metadata without a request (None if not in it)."""
        group_meta = self._consolidated_meta(f"features/{key}")
        array_meta = self._consolidated_meta(f"features/{key}/data")
        if group_meta is None or array_meta is None:
            return None
        return self._entry_from_meta(key, group_meta, array_meta)

    def _entry_from_meta(
        self,
        key: str,
        group_meta: dict[str, Any],
        array_meta: dict[str, Any],
        listed_done: set[int] | None = None,
    ) -> ZarrEntry:
        """The entry built from its group's and array's zarr.json records (no request);
        ValueError (or zarr's errors) when they are not an entry's."""
        if not isinstance(group_meta, dict) or not isinstance(array_meta, dict):
            raise ValueError("zarr.json is not a JSON object")
        attrs = group_meta.get("attributes", {})
        if not isinstance(attrs, dict):
            raise ValueError("the entry's attributes are not a JSON object")
        attrs = dict(attrs)
        if "chunk_rows" in attrs:  # zarr builds the array when the entry is first read
            return ZarrEntry(
                self, key, dict(array_meta), attrs, int(attrs["chunk_rows"]), listed_done
            )
        array = self._array_from_meta(f"features/{key}/data", array_meta)
        if not array.shape:
            raise ValueError("features/data is not an array of rows")
        chunk_rows = int(array.chunks[0])
        return ZarrEntry(self, key, array, attrs, chunk_rows, listed_done)

    def list_entries(self) -> EntryListing:
        """Every entry, its done markers and size, in about one listing (store/listing.py)."""
        return list_entries(self)

    def _forget_consolidated(self, prefix: str) -> None:
        if self._consolidated is not None:
            self._consolidated = {
                k: v
                for k, v in self._consolidated.items()
                if k != prefix and not k.startswith(prefix + "/")
            }

    def has_entry(self, key: str) -> bool:
        check_key(key, "entry key")
        if self._consolidated_meta(f"features/{key}/data") is not None:
            return True
        return bool(self.fs.exists(self._path(f"features/{key}/data/zarr.json")))

    def entry_keys(self) -> list[str]:
        return [k for k in self._key_children("features") if self.has_entry(k)]

    def _key_children(self, relative: str) -> list[str]:
        """Children named like keys (anything else was not written by featstore)."""
        out = []
        for name in self._children(relative):
            try:
                out.append(check_key(name))
            except ValueError:
                continue
        return out

    def damaged_entries(self) -> dict[str, str]:
        """Entry folders holding chunks or markers but no array metadata."""
        out = {}
        for key in self._key_children("features"):
            if self.has_entry(key):
                continue
            if _holds_data(self.fs, self._path(f"features/{key}")):
                out[key] = self.orphan_chunks_why(key)
        return out

    def orphan_chunks_why(self, key: str) -> str:
        """Why an entry folder holding chunks or markers but no array metadata is damaged."""
        base = self._path(f"features/{key}")
        return (
            f"entry {key}: {base} holds chunks or done markers but no array metadata "
            f"(data/zarr.json); restore it, or remove the entry with `featstore rm {key}`"
        )

    def delete_entry(self, key: str) -> None:
        self._check_writable()
        check_key(key, "entry key")
        if not self.fs.exists(self._path(f"features/{key}")):
            raise EntryNotFoundError(f"no feature entry {key!r} in store {self.url}")
        self.fs.rm(self._path(f"features/{key}"), recursive=True)
        self._forget_consolidated(f"features/{key}")
        self.consolidate()

    def entry_nbytes(self, key: str) -> int | None:
        check_key(key, "entry key")
        try:
            return int(self.fs.du(self._path(f"features/{key}"), total=True))
        except (FileNotFoundError, NotImplementedError):
            return None

    # --- results ------------------------------------------------------------------------
    def _result_path(self, key: str) -> str:
        return self._path(f"results/{check_key(key, 'result key')}.json")

    def put_result(self, key: str, record: dict[str, Any]) -> None:
        self._check_writable()
        self._put_object(self._result_path(key), record_bytes(record))

    def get_result(self, key: str) -> dict[str, Any]:
        path = self._result_path(key)
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            raise EntryNotFoundError(f"no result {key!r} in store {self.url}") from None
        except OSError as exc:  # a folder where the record should be ...
            raise DamagedEntryError(
                f"result {key}: {path} cannot be read ({type(exc).__name__}); {record_fix(key)}"
            ) from exc
        return parse_result(key, path, raw)

    def has_result(self, key: str) -> bool:
        return bool(self.fs.exists(self._result_path(key)))

    def get_results(
        self, keys: Iterable[str] | None = None
    ) -> dict[str, dict[str, Any] | DamagedEntryError]:
        """Records in one batch: one listing, then the catalog and one concurrent read
        on object stores (store/listing.py)."""
        return read_results(self, keys)

    def get_checked_results(self, keys: Iterable[str] | None = None) -> dict[str, CheckedRecord]:
        """The same batch, each seal checked over the stored bytes (store/listing.py)."""
        return read_checked_results(self, keys)

    def refresh_catalog(self) -> None:
        """Bring the result catalog of an object store up to date (one listing, the new
        records, one write when it changed); nothing to do on a local disk."""
        if self.is_remote and not self.read_only:
            read_results(self)

    def result_keys(self) -> list[str]:
        names = [n[: -len(".json")] for n in self._children("results") if n.endswith(".json")]
        return [n for n in names if KEY_PATTERN.fullmatch(n)]

    def delete_result(self, key: str) -> None:
        self._check_writable()
        try:
            self.fs.rm(self._result_path(key))
        except FileNotFoundError:
            raise EntryNotFoundError(f"no result {key!r} in store {self.url}") from None

    # --- maintenance --------------------------------------------------------------------
    def gc(
        self, *, dry_run: bool = False, older_than_s: float = 3600.0, force: bool = False
    ) -> GcResult:
        """Remove temp files of interrupted writes, entries that never got a single chunk and
        name claims whose dataset never appeared (see store/names.py).

        Only leftovers whose every object is older than ``older_than_s`` are touched, so a
        run in progress elsewhere is left alone; an entry a live writer holds a lease on is
        kept whatever its age (named in ``held``), unless ``force``. An entry whose metadata
        cannot be read is never removed while it holds a data chunk or a done marker
        (`featstore rm` does that).
        """
        self._check_writable()
        now = time.time()
        removed = GcResult()
        for path in self.fs.find(self.root, withdirs=True):  # folders: see _remove_folder
            if path.endswith(PARTIAL_SUFFIX) and now - _mtime(self.fs, path, now) > older_than_s:
                if any(path.startswith(f"{r}/") for r in removed):
                    continue  # inside a folder removed just before
                removed.append(path)
                if not dry_run:
                    # its writer (or remover) may have finished meanwhile
                    with suppress(FileNotFoundError):
                        self.fs.rm(path, recursive=True)
        for key in self._key_children("features"):
            base = self._path(f"features/{key}")
            if self.has_entry(key):
                try:
                    if self.get_entry(key).done_chunks():
                        continue
                except DamagedEntryError:
                    continue  # unreadable metadata: keep it, whatever it holds
            elif _holds_data(self.fs, base):
                continue  # chunks or markers without array metadata: never deleted here
            objects = self.fs.find(base)
            if any(now - _mtime(self.fs, obj, now) <= older_than_s for obj in objects):
                continue  # something in it is recent: a run may be creating or filling it
            held = {} if force else held_entries(self, [key])
            if held:
                removed.held.update(held)  # a live writer is filling it: never removed here
                continue
            removed.append(base)
            if not dry_run:
                self.fs.rm(base, recursive=True)
                self._forget_consolidated(f"features/{key}")
        if removed and not dry_run:
            self.consolidate()
        removed.extend(
            gc_names(
                self._name_claims(),
                self._present_dataset_ids(),
                older_than_s=older_than_s,
                dry_run=dry_run,
            )
        )
        return removed


def _holds_data(fs: fsspec.AbstractFileSystem, base: str) -> bool:
    """Whether an entry folder holds any data chunk or done marker (listing only)."""
    return holds_data_files(path[len(base) :].lstrip("/") for path in fs.find(base))


def holds_data_files(names: Iterable[str]) -> bool:
    """Whether these paths (relative to an entry folder) hold a data chunk or done marker."""
    for rel in names:
        if rel.startswith(f"{MARKER_DIR}/") and rel.rsplit("/", 1)[-1].isdigit():
            return True
        if rel.startswith("data/c/") or rel.startswith("data/c."):
            return True
    return False


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
