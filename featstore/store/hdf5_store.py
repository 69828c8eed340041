"""HDF5 backend: one ``.h5`` file, one writer at a time (HDF5's own file locking).

Same layout as the Zarr store. With a single writer there is no concurrent update to
fear (so no dataset name claims either: the name check cannot race), and each entry's done
markers are one small dataset (``_done``, uint8 per chunk)
and one checksum per chunk (``_checksum``, "<algorithm>:<hex>"; entries written before
it have ``_sha256``), written after the chunk's rows.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import h5py
import numpy as np

from featstore.errors import (
    DamagedEntryError,
    EntryNotFoundError,
    NotAStoreError,
    StoreError,
    StoreVersionError,
)
from featstore.keys import check_dataset_id, check_key
from featstore.store.base import (
    FORMAT_VERSION,
    Entry,
    Store,
    store_not_found,
    unfinished_dataset,
)
from featstore.store.proofs import parse_result
from featstore.store.spec import StoreSpec

STR = h5py.string_dtype(encoding="utf-8")
STAGING = "_staging"  # datasets being written: moved into datasets/ once whole


def _to_attr(value: Any) -> str:
    return json.dumps(value)


def _from_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    out = {}
    for name, raw in attrs.items():
        if isinstance(raw, bytes):
            raw = raw.decode()
        try:
            out[name] = json.loads(raw)
        except (TypeError, ValueError):
            out[name] = raw
    return out


class HDF5Entry(Entry):
    def __init__(self, store: HDF5Store, key: str, group: h5py.Group) -> None:
        attrs = _from_attrs(group.attrs)
        data = group["data"]
        super().__init__(
            key,
            attrs,
            tuple(data.shape),
            str(data.dtype),
            int(attrs["chunk_rows"]),
            store.read_only,
        )
        self._store = store
        self._group = group

    def done_chunks(self) -> set[int]:
        return {int(i) for i in np.flatnonzero(self._group["_done"][...])}

    def marker(self, index: int) -> dict[str, Any] | None:
        if not self._group["_done"][index]:
            return None
        start, stop = self.chunk_bounds(index)
        record: dict[str, Any] = {"rows": [start, stop]}
        for name, field in (("_checksum", "checksum"), ("_sha256", "sha256")):
            if name in self._group:
                value = self._group[name][index]
                value = value.decode() if isinstance(value, bytes) else str(value)
                if value:
                    record[field] = value
                    break
        return record

    def _write_rows(self, start: int, stop: int, data: np.ndarray) -> None:
        self._group["data"][start:stop] = data

    def _write_marker(self, index: int, record: dict[str, Any]) -> None:
        if "_checksum" not in self._group:  # an entry written before checksums had names
            self._group.create_dataset("_checksum", shape=self._group["_done"].shape, dtype=STR)
        self._group["_checksum"][index] = record["checksum"]
        self._group["_done"][index] = 1
        self._store._file.flush()

    def _delete_marker(self, index: int) -> None:
        self._group["_done"][index] = 0
        self._store._file.flush()

    def _read_rows(self, rows: slice | np.ndarray) -> np.ndarray:
        data = self._group["data"]
        if isinstance(rows, slice):
            return np.asarray(data[rows])
        if rows.size == 0:
            return np.empty((0, *self.row_shape), dtype=self.dtype)
        # h5py wants increasing unique indices: read those, then put them back in order
        unique, inverse = np.unique(rows, return_inverse=True)
        return np.asarray(data[unique])[inverse]

    def update_attrs(self, **values: Any) -> None:
        self._check_writable()
        for name, value in values.items():
            self._group.attrs[name] = _to_attr(value)
        self.attrs.update(values)


class HDF5Store(Store):
    """A featstore store in one HDF5 file."""

    def __init__(self, path: str, mode: str = "a") -> None:
        self.url = str(path)
        self.read_only = mode == "r"
        exists = os.path.exists(path)
        if not exists and self.read_only:
            raise store_not_found(os.path.abspath(path))
        try:
            self._file = h5py.File(path, "r" if self.read_only else "a")
        except BlockingIOError as exc:
            raise StoreError(
                f"{path} is open for writing by another process; HDF5 takes one writer at a time "
                "(use a Zarr store for concurrent writers)"
            ) from exc
        except OSError as exc:
            raise NotAStoreError(f"{path} is not an HDF5 file featstore can open: {exc}") from exc
        info = self._file.attrs.get("featstore")
        if info is None:
            if self.read_only or len(self._file.keys()):
                self._file.close()
                raise NotAStoreError(f"{path} is an HDF5 file but not a featstore store")
            self._file.attrs["featstore"] = _to_attr({"format": FORMAT_VERSION})
            self.created = True
        else:
            fmt = json.loads(info)["format"]
            if int(fmt) > FORMAT_VERSION:
                self._file.close()
                raise StoreVersionError(
                    f"{path} was written in store format {fmt}, newer than the format "
                    f"{FORMAT_VERSION} this featstore reads; upgrade featstore to open it"
                )

    # --- capabilities: one local file, one writer ----------------------------------------
    @property
    def spec(self) -> StoreSpec:
        return StoreSpec(self.url)

    @property
    def is_remote(self) -> bool:
        return False

    @property
    def location(self) -> str:
        return os.path.abspath(self.url)

    @property
    def supports_concurrent_writers(self) -> bool:
        return False

    @property
    def supports_shards(self) -> bool:
        return False

    @property
    def reopenable(self) -> bool:
        return self.read_only  # a writer holds the file; readers may share it

    def free_bytes(self) -> int | None:
        return int(shutil.disk_usage(os.path.dirname(os.path.abspath(self.url)) or ".").free)

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    # --- datasets -----------------------------------------------------------------------
    def _put_dataset_arrays(
        self, dataset_id: str, attrs: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None:
        """Built whole under ``_staging/<id>``, then moved into ``datasets/`` (an old one of
        this id is moved aside first and removed after), so it is listed whole or not at all."""
        self._check_writable()
        dataset_id = check_dataset_id(dataset_id)
        path, staging = f"datasets/{dataset_id}", f"{STAGING}/{dataset_id}"
        if staging in self._file:  # left by a killed write
            del self._file[staging]
        group = self._file.require_group(staging)
        for name, values in arrays.items():
            values = np.asarray(values)
            if values.dtype.kind in "US":
                group.create_dataset(name, data=values.astype(object), dtype=STR)
            else:
                group.create_dataset(name, data=values)
        for name, value in attrs.items():
            group.attrs[name] = _to_attr(value)
        self._file.require_group("datasets")
        if path in self._file:
            self._file.move(path, f"{STAGING}/{dataset_id}.old")
        self._file.move(staging, path)
        if f"{STAGING}/{dataset_id}.old" in self._file:
            del self._file[f"{STAGING}/{dataset_id}.old"]
        self._file.flush()

    def _get_dataset_arrays(self, dataset_id: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        path = f"datasets/{check_dataset_id(dataset_id)}"
        if path not in self._file:
            raise EntryNotFoundError(f"no dataset {dataset_id!r} in store {self.url}")
        group = self._file[path]
        arrays = {}
        for name, dset in group.items():
            values = dset[...]
            if h5py.check_string_dtype(dset.dtype) is not None:
                values = np.array(
                    [v.decode() if isinstance(v, bytes) else v for v in values], dtype=str
                )
            arrays[name] = values
        return _from_attrs(group.attrs), arrays

    def _get_dataset_attrs(self, dataset_id: str) -> dict[str, Any]:
        path = f"datasets/{check_dataset_id(dataset_id)}"
        if path not in self._file:
            raise EntryNotFoundError(f"no dataset {dataset_id!r} in store {self.url}")
        return _from_attrs(self._file[path].attrs)

    def _dataset_state(self) -> tuple[list[str], dict[str, str]]:
        ids, damaged = [], {}
        for name in sorted(self._file["datasets"].keys()) if "datasets" in self._file else []:
            why = unfinished_dataset(name, _from_attrs(self._file[f"datasets/{name}"].attrs))
            if why is None:
                ids.append(name)
            else:
                damaged[name] = why
        return ids, damaged

    def dataset_ids(self) -> list[str]:
        return self._dataset_state()[0]

    def damaged_datasets(self) -> dict[str, str]:
        return self._dataset_state()[1]

    def _delete_dataset(self, dataset_id: str) -> None:
        self._check_writable()
        del self._file[f"datasets/{check_dataset_id(dataset_id)}"]

    # --- format ----------------------------------------------------------------------------
    @property
    def format_version(self) -> int:
        info = self._file.attrs.get("featstore")
        return int(json.loads(info)["format"]) if info is not None else FORMAT_VERSION

    def _set_format_version(self, version: int) -> None:
        self._check_writable()
        self._file.attrs["featstore"] = _to_attr({"format": int(version)})
        self._file.flush()

    # --- image lists: uint8 datasets images/<images_id> -------------------------------------
    def _put_image_blob(self, images_id: str, payload: bytes) -> None:
        group = self._file.require_group("images")
        if images_id not in group:
            group.create_dataset(images_id, data=np.frombuffer(payload, dtype=np.uint8))
        self._file.flush()

    def _get_image_blob(self, images_id: str) -> bytes | None:
        path = f"images/{images_id}"
        return bytes(self._file[path][...].tobytes()) if path in self._file else None

    # --- named networks: uint8 datasets networks/<name> --------------------------------------
    def _put_network_blob(self, name: str, payload: bytes) -> None:
        self._check_writable()
        group = self._file.require_group("networks")
        if name in group:
            del group[name]
        group.create_dataset(name, data=np.frombuffer(payload, dtype=np.uint8))
        self._file.flush()

    def _get_network_blob(self, name: str) -> bytes | None:
        path = f"networks/{name}"
        return bytes(self._file[path][...].tobytes()) if path in self._file else None

    def _network_blob_names(self) -> list[str]:
        return sorted(self._file["networks"]) if "networks" in self._file else []

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
        group = self._file.require_group(f"features/{check_key(key, 'entry key')}")
        for name in ("data", "_done", "_sha256", "_checksum"):
            if name in group:
                del group[name]
        group.create_dataset(
            "data",
            shape=shape,
            dtype=dtype,
            chunks=(chunk_rows, *shape[1:]) if shape[0] else None,
            fillvalue=0,
        )
        n_chunks = -(-shape[0] // chunk_rows) if shape[0] else 0
        group.create_dataset("_done", shape=(n_chunks,), dtype="u1", fillvalue=0)
        group.create_dataset("_checksum", shape=(n_chunks,), dtype=STR)
        for name, value in {**attrs, "chunk_rows": chunk_rows}.items():
            group.attrs[name] = _to_attr(value)
        self._file.flush()
        return HDF5Entry(self, key, group)

    def get_entry(self, key: str) -> Entry:
        if not self.has_entry(key):
            raise EntryNotFoundError(
                f"no feature entry {key!r} in store {self.url}; `featstore ls` lists the entries"
            )
        try:
            entry = HDF5Entry(self, key, self._file[f"features/{key}"])
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise DamagedEntryError(
                f"entry {key}: its metadata in {self.url} cannot be read ({exc}); remove it with "
                f"`featstore rm {key}` and extract again"
            ) from exc
        return self._proven(entry)

    def has_entry(self, key: str) -> bool:
        return f"features/{check_key(key, 'entry key')}/_done" in self._file

    def entry_keys(self) -> list[str]:
        if "features" not in self._file:
            return []
        return sorted(k for k in self._file["features"] if self.has_entry(k))

    def delete_entry(self, key: str) -> None:
        self._check_writable()
        if f"features/{check_key(key, 'entry key')}" not in self._file:
            raise EntryNotFoundError(f"no feature entry {key!r} in store {self.url}")
        del self._file[f"features/{key}"]
        self._file.flush()

    def entry_nbytes(self, key: str) -> int | None:
        data = self._file[f"features/{check_key(key, 'entry key')}/data"]
        return int(data.id.get_storage_size())

    # --- results ------------------------------------------------------------------------
    def put_result(self, key: str, record: dict[str, Any]) -> None:
        self._check_writable()
        check_key(key, "result key")
        group = self._file.require_group("results")
        if key in group:
            del group[key]
        group.create_dataset(key, data=json.dumps(record, sort_keys=True), dtype=STR)
        self._file.flush()

    def get_result(self, key: str) -> dict[str, Any]:
        path = f"results/{check_key(key, 'result key')}"
        if path not in self._file:
            raise EntryNotFoundError(f"no result {key!r} in store {self.url}")
        try:
            raw = self._file[path][()]
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
        except (AttributeError, TypeError, ValueError, OSError, UnicodeDecodeError) as exc:
            raise DamagedEntryError(
                f"result {key}: its record in {self.url} cannot be read ({exc}); remove it with "
                f"`featstore rm {key}` and evaluate again"
            ) from exc
        return parse_result(key, f"{self.url}:{path}", text)

    def has_result(self, key: str) -> bool:
        return f"results/{check_key(key, 'result key')}" in self._file

    def result_keys(self) -> list[str]:
        return sorted(self._file["results"].keys()) if "results" in self._file else []

    def delete_result(self, key: str) -> None:
        self._check_writable()
        if f"results/{check_key(key, 'result key')}" not in self._file:
            raise EntryNotFoundError(f"no result {key!r} in store {self.url}")
        del self._file[f"results/{key}"]

    # --- maintenance --------------------------------------------------------------------
    def gc(
        self, *, dry_run: bool = False, older_than_s: float = 3600.0, force: bool = False
    ) -> list[str]:
        """Remove entries without a single finished chunk (an HDF5 store has one writer)."""
        self._check_writable()
        removed = []
        for key in list(self._file["features"].keys()) if "features" in self._file else []:
            try:
                if self.has_entry(key) and self.get_entry(key).done_chunks():
                    continue
            except (DamagedEntryError, ValueError):
                continue  # unreadable or foreign: never deleted by gc
            if "data" in self._file[f"features/{key}"] and not self.has_entry(key):
                continue  # rows without their markers dataset: kept for `featstore rm`
            removed.append(f"features/{key}")
            if not dry_run:
                del self._file[f"features/{key}"]
        # HDF5 records no object ages, and this process holds the file's only write lock, so
        # no run elsewhere can be filling an entry: ``older_than_s`` has nothing to protect
        _ = older_than_s
        return removed
