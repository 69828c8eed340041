"""The Store interface shared by every backend, and the Entry that holds one feature array.

A store holds three kinds of things (see DESIGN.md, "Store format"):

- datasets/<dataset_id>: sample ids, labels, splits and where each image lives;
- features/<key>: one array of rows (one per sample, store order) plus one done-marker per
  write unit ("chunk"), written only after that chunk's data landed;
- results/<key>: one JSON record per evaluation.

Rows are written only in whole chunks (``Entry.write_chunk``), so two writers filling
disjoint chunks never touch the same object, and a killed run leaves chunks that are
either marked done (trusted) or not (recomputed on resume).
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featstore.errors import (
    DatasetMismatchError,
    EntryMismatchError,
    EntryNotFoundError,
    IncompleteEntryError,
    ReadOnlyError,
    StoreNotFoundError,
)
from featstore.store.geometry import entry_geometry
from featstore.store.spec import StoreSpec

FORMAT_VERSION = 1
DEFAULT_DTYPE = "float16"

# attrs that must agree when an existing entry is reopened for the same key
DATASET_SUMMARY = ("name", "n", "classes", "split_counts", "source", "fingerprint", "skipped")


def chunk_checksum(data: np.ndarray) -> str:
    """sha256 of a chunk's bytes as stored (C order, stored dtype)."""
    return hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()


@dataclass(frozen=True)
class ObjectFolder:
    """A folder of small objects beside an entry (leases), reached through fsspec.

    ``local``: plain files (atomic rename and link work); ``s3``: conditional PUTs work.
    """

    fs: Any
    path: str
    local: bool
    s3: bool


@dataclass(frozen=True)
class EntryInfo:
    """A summary line for `featstore ls`."""

    key: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    n_chunks: int
    n_done: int
    nbytes_stored: int | None
    attrs: dict[str, Any]

    @property
    def complete(self) -> bool:
        return self.n_done == self.n_chunks


class Entry(ABC):
    """One feature array (N rows, any trailing shape) with per-chunk done markers."""

    def __init__(
        self,
        key: str,
        attrs: dict[str, Any],
        shape: tuple[int, ...],
        dtype: str,
        chunk_rows: int,
        read_only: bool,
    ) -> None:
        self.key = key
        self.attrs = attrs
        self.shape = tuple(int(s) for s in shape)
        self.dtype = str(dtype)
        self.chunk_rows = int(chunk_rows)
        self.read_only = read_only

    # --- geometry ---------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def geometry(self) -> tuple[int, int | None]:
        """(chunk_rows, shard_rows) as stored; ``chunk_rows`` above is the unit of work
        (a shard when the entry is sharded)."""
        return self.chunk_rows, None

    @property
    def n_chunks(self) -> int:
        return max(1, math.ceil(self.n_rows / self.chunk_rows)) if self.n_rows else 0

    def chunk_bounds(self, index: int) -> tuple[int, int]:
        """Row range [start, stop) of chunk ``index``."""
        if not 0 <= index < self.n_chunks:
            raise IndexError(
                f"chunk {index} out of range: entry {self.key} has {self.n_chunks} chunks"
            )
        start = index * self.chunk_rows
        return start, min(start + self.chunk_rows, self.n_rows)

    # --- completion -------------------------------------------------------------------
    @abstractmethod
    def done_chunks(self) -> set[int]:
        """Indices of chunks whose done marker exists."""

    def missing_chunks(self) -> list[int]:
        done = self.done_chunks()
        return [i for i in range(self.n_chunks) if i not in done]

    @property
    def is_complete(self) -> bool:
        return not self.missing_chunks()

    @abstractmethod
    def marker(self, index: int) -> dict[str, Any] | None:
        """The done marker's record (checksum, rows) of chunk ``index``, or None."""

    # --- writing ----------------------------------------------------------------------
    def write_chunk(self, index: int, data: np.ndarray) -> None:
        """Write the rows of chunk ``index`` and then its done marker.

        The data is cast to the entry's dtype. The marker carries the chunk's checksum so
        `verify` can find damaged chunks later.
        """
        self._check_writable()
        start, stop = self.chunk_bounds(index)
        expected = (stop - start, *self.row_shape)
        array = np.asarray(data)
        if tuple(array.shape) != expected:
            raise EntryMismatchError(
                f"chunk {index} of entry {self.key} needs shape {expected}, got {tuple(array.shape)}"
            )
        array = np.ascontiguousarray(array.astype(self.dtype, copy=False))
        self._write_rows(start, stop, array)
        self._write_marker(index, {"rows": [start, stop], "sha256": chunk_checksum(array)})

    @abstractmethod
    def _write_rows(self, start: int, stop: int, data: np.ndarray) -> None: ...

    @abstractmethod
    def _write_marker(self, index: int, record: dict[str, Any]) -> None: ...

    @abstractmethod
    def _delete_marker(self, index: int) -> None: ...

    @abstractmethod
    def update_attrs(self, **values: Any) -> None:
        """Merge ``values`` into the entry's attributes (JSON values only)."""

    # --- reading ----------------------------------------------------------------------
    @abstractmethod
    def _read_rows(self, rows: slice | np.ndarray) -> np.ndarray: ...

    def read(
        self, rows: Iterable[int] | slice | None = None, *, allow_incomplete: bool = False
    ) -> np.ndarray:
        """Rows of the entry (all by default), never loading more chunks than needed.

        Raises IncompleteEntryError if a needed chunk has no done marker, unless
        ``allow_incomplete`` (then unwritten rows hold whatever is stored, usually zeros).
        """
        if rows is None:
            selection: slice | np.ndarray = slice(0, self.n_rows)
            needed: list[int] = list(range(self.n_chunks))
        elif isinstance(rows, slice):
            start, stop, step = rows.indices(self.n_rows)
            selection = slice(start, stop, step)
            idx = np.arange(start, stop, step)
            needed = sorted({int(i) // self.chunk_rows for i in idx})
        else:
            selection = np.asarray(
                list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64
            )
            if selection.size and (selection.min() < 0 or selection.max() >= self.n_rows):
                raise IndexError(
                    f"row index out of range for entry {self.key} with {self.n_rows} rows"
                )
            needed = sorted({int(i) // self.chunk_rows for i in selection})
        if not allow_incomplete:
            done = self.done_chunks()
            missing = [i for i in needed if i not in done]
            if missing:
                raise IncompleteEntryError(
                    f"entry {self.key} is incomplete: {len(missing)} of its chunks are not written "
                    f"(first missing: {missing[:5]}); rerun the extraction to finish it"
                )
        return self._read_rows(selection)

    def read_chunk(self, index: int) -> np.ndarray:
        start, stop = self.chunk_bounds(index)
        return self._read_rows(slice(start, stop))

    def verify(self) -> dict[str, Any]:
        """Check every marked chunk's data against its checksum.

        Returns ``{"missing": [...], "damaged": [...], "ok": n}``; damaged chunks are those
        whose stored bytes no longer match the marker (or that cannot be read).
        """
        damaged: list[int] = []
        ok = 0
        for index in sorted(self.done_chunks()):
            record = self.marker(index) or {}
            try:
                data = self.read_chunk(index)
            except Exception:  # noqa: BLE001 - a chunk that cannot be decoded is damaged
                damaged.append(index)
                continue
            expected = record.get("sha256")
            if (
                expected is not None
                and chunk_checksum(data.astype(self.dtype, copy=False)) != expected
            ):
                damaged.append(index)
            else:
                ok += 1
        return {"missing": self.missing_chunks(), "damaged": damaged, "ok": ok}

    def side_objects(self, folder: str) -> ObjectFolder | None:
        """Where small per-entry objects named ``folder`` live (leases), or None when the
        backend keeps no such objects (HDF5: one writer, nothing to lease)."""
        return None

    def invalidate_chunk(self, index: int) -> None:
        """Forget chunk ``index`` (delete its marker) so the next run recomputes it."""
        self._check_writable()
        self._delete_marker(index)

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(
                f"entry {self.key} was opened read-only; open the store with mode='a' to write"
            )

    def __repr__(self) -> str:
        return f"<Entry {self.key} shape={self.shape} dtype={self.dtype} chunks={self.n_chunks}>"


def store_not_found(location: str) -> StoreNotFoundError:
    """The error for a store that does not exist where a command looked (nothing created);
    ``location`` (an absolute path when local) rides along for callers that report it."""
    exc = StoreNotFoundError(
        f"no featstore store at {location}; check --store (or FEATSTORE_STORE), or create one "
        "with a command that registers data (featstore datasets add NAME SOURCE, or featstore "
        "sweep SPEC); in Python open_store(url, mode='a')"
    )
    exc.location = location  # type: ignore[attr-defined]
    return exc


class Store(ABC):
    """A featstore store: datasets, feature entries and result records under one root.

    Callers ask a store what it can do (the capability properties below) instead of
    guessing from its URL or its class.
    """

    url: str
    read_only: bool
    created: bool = False  # this open created the store: it did not exist before

    @property
    def location(self) -> str:
        """Where the store is, as a person should read it: an absolute path when local."""
        return self.url

    # --- capabilities -----------------------------------------------------------------
    @property
    @abstractmethod
    def spec(self) -> StoreSpec:
        """URL and storage options: the one way to reopen this store in another process."""

    @property
    @abstractmethod
    def is_remote(self) -> bool:
        """On object storage (s3://, gs://, ...), not a local disk."""

    @property
    @abstractmethod
    def supports_concurrent_writers(self) -> bool:
        """Several processes may fill disjoint chunks of one entry at once."""

    @property
    @abstractmethod
    def supports_shards(self) -> bool:
        """Entries may be sharded (several chunks per stored object)."""

    @property
    @abstractmethod
    def reopenable(self) -> bool:
        """Another process can open this store from :attr:`spec` and see the same data
        (not so for an in-process ``memory://`` store, or an HDF5 file while this process
        holds it open for writing)."""

    def free_bytes(self) -> int | None:
        """Free bytes where new data would land, or None when that cannot be told."""
        return None

    def entry_geometry(
        self, shape: Sequence[int], dtype: str, *, max_rows: int | None = None
    ) -> tuple[int, int | None]:
        """(chunk_rows, shard_rows) of a new entry here (see :mod:`featstore.store.geometry`)."""
        return entry_geometry(
            shape, dtype, shards=self.supports_shards and self.is_remote, max_rows=max_rows
        )

    # --- datasets (the Dataset class lives in featstore.datasets) ---------------------
    @abstractmethod
    def _put_dataset_arrays(
        self, dataset_id: str, attrs: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None: ...

    @abstractmethod
    def _get_dataset_arrays(
        self, dataset_id: str
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...

    @abstractmethod
    def dataset_ids(self) -> list[str]: ...

    def put_dataset(self, dataset: Any, *, replace: bool = False) -> str:
        """Register ``dataset`` (a featstore.datasets.Dataset); returns its id.

        The same content again is a no-op. A different dataset under a name already used
        is refused unless ``replace``.
        """
        self._check_writable()
        for info in self.list_datasets():
            if info["name"] == dataset.name and info["id"] != dataset.id:
                if not replace:
                    raise DatasetMismatchError(
                        f"a different dataset is already registered as {dataset.name!r} "
                        f"(id {info['id']}, {info['n']} images; the new one is {dataset.id}, "
                        f"{dataset.n} images); pick another name or pass --replace"
                    )
                self._delete_dataset(info["id"])
        attrs, arrays = dataset.to_arrays()
        if dataset.id not in self.dataset_ids():
            self._put_dataset_arrays(dataset.id, attrs, arrays)
        return str(dataset.id)

    def get_dataset(self, name_or_id: str) -> Any:
        """The dataset registered under this name or id."""
        from featstore.datasets.core import Dataset

        attrs, arrays = self._get_dataset_arrays(self.resolve_dataset_id(name_or_id))
        return Dataset.from_arrays(attrs, arrays)

    def resolve_dataset_id(self, name_or_id: str) -> str:
        if name_or_id in self.dataset_ids():
            return name_or_id
        datasets = self.list_datasets()
        for info in datasets:
            if info["name"] == name_or_id:
                return str(info["id"])
        known = ", ".join(sorted(info["name"] for info in datasets)) or "none yet"
        raise EntryNotFoundError(
            f"no dataset {name_or_id!r} in store {self.url} (registered: {known}); "
            "register it with `featstore datasets add NAME SOURCE`"
        )

    def list_datasets(self) -> list[dict[str, Any]]:
        """One summary per registered dataset: id, name, n, classes, split counts, source."""
        out = []
        for dataset_id in self.dataset_ids():
            attrs = self._get_dataset_attrs(dataset_id)
            out.append({"id": dataset_id, **{k: attrs.get(k) for k in DATASET_SUMMARY}})
        return out

    @abstractmethod
    def _get_dataset_attrs(self, dataset_id: str) -> dict[str, Any]: ...

    def delete_dataset(self, name_or_id: str) -> None:
        self._check_writable()
        self._delete_dataset(self.resolve_dataset_id(name_or_id))

    @abstractmethod
    def _delete_dataset(self, dataset_id: str) -> None: ...

    # --- entries ----------------------------------------------------------------------
    @abstractmethod
    def _create_entry(
        self,
        key: str,
        attrs: dict[str, Any],
        shape: tuple[int, ...],
        dtype: str,
        chunk_rows: int,
        shard_rows: int | None,
    ) -> Entry: ...

    @abstractmethod
    def get_entry(self, key: str) -> Entry:
        """The entry under ``key``; EntryNotFoundError if none."""

    @abstractmethod
    def has_entry(self, key: str) -> bool: ...

    @abstractmethod
    def entry_keys(self) -> list[str]: ...

    @abstractmethod
    def delete_entry(self, key: str) -> None: ...

    @abstractmethod
    def entry_nbytes(self, key: str) -> int | None:
        """Bytes the entry occupies in the store, when the backend can tell cheaply."""

    def create_entry(
        self,
        key: str,
        attrs: dict[str, Any],
        shape: Sequence[int],
        dtype: str = DEFAULT_DTYPE,
        chunk_rows: int | None = None,
        shard_rows: int | None = None,
    ) -> Entry:
        """Create the entry for ``key``, or reopen it if it exists with the same shape and dtype.

        Reopening is what makes a killed or concurrent run resume: the caller then writes
        only ``entry.missing_chunks()``. With ``shard_rows`` (Zarr only), the write unit
        is a shard of that many rows, made of chunks of ``chunk_rows``.
        """
        self._check_writable()
        shape = tuple(int(s) for s in shape)
        dtype = str(np.dtype(dtype))
        if self.has_entry(key):
            entry = self.get_entry(key)
            if entry.shape != shape or entry.dtype != dtype:
                raise EntryMismatchError(
                    f"entry {key} exists with shape {entry.shape} and dtype {entry.dtype}, "
                    f"not {shape} {dtype}; remove it with `featstore rm {key}` if it is stale"
                )
            return entry
        if chunk_rows is None:
            chunk_rows, auto_shards = self.entry_geometry(shape, dtype)
            shard_rows = shard_rows if shard_rows is not None else auto_shards
        chunk_rows = max(1, min(int(chunk_rows), max(1, shape[0])))
        if shard_rows is not None:
            shard_rows = max(chunk_rows, (int(shard_rows) // chunk_rows) * chunk_rows)
        full_attrs = dict(attrs)
        full_attrs.update({"shape": list(shape), "dtype": dtype})
        return self._create_entry(key, full_attrs, shape, dtype, chunk_rows, shard_rows)

    def entries(self) -> list[EntryInfo]:
        """A summary of every entry, for listing."""
        infos = []
        for key in self.entry_keys():
            entry = self.get_entry(key)
            infos.append(
                EntryInfo(
                    key=key,
                    kind=str(entry.attrs.get("kind", "features")),
                    shape=entry.shape,
                    dtype=entry.dtype,
                    n_chunks=entry.n_chunks,
                    n_done=len(entry.done_chunks()),
                    nbytes_stored=self.entry_nbytes(key),
                    attrs=dict(entry.attrs),
                )
            )
        return infos

    # --- results ----------------------------------------------------------------------
    @abstractmethod
    def put_result(self, key: str, record: dict[str, Any]) -> None: ...

    @abstractmethod
    def get_result(self, key: str) -> dict[str, Any]:
        """The record under ``key``; EntryNotFoundError if none."""

    @abstractmethod
    def has_result(self, key: str) -> bool: ...

    @abstractmethod
    def result_keys(self) -> list[str]: ...

    @abstractmethod
    def delete_result(self, key: str) -> None: ...

    def results(self) -> list[dict[str, Any]]:
        return [self.get_result(k) for k in self.result_keys()]

    # --- maintenance ------------------------------------------------------------------
    @abstractmethod
    def gc(self, *, dry_run: bool = False, older_than_s: float = 3600.0) -> list[str]:
        """Remove leftovers of killed runs; returns what was (or would be) removed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (HDF5 file handles)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(
                f"store {self.url} was opened read-only; open it with mode='a' to write"
            )
