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

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.errors import (
    DamagedChunkError,
    DamagedEntryError,
    DatasetMismatchError,
    DtypeOverflowError,
    EntryMismatchError,
    EntryNotFoundError,
    IncompleteEntryError,
    ReadOnlyError,
    StoreNotFoundError,
)
from featstore.keys import check_dataset_id, content_hash
from featstore.store.checksum import chunk_checksum, is_bound, marker_checksum, matches
from featstore.store.geometry import entry_geometry
from featstore.store.listing import EntryListing
from featstore.store.names import (
    drop_name,
    holds_name,
    lost_name,
    read_claim,
    release_names,
    take_name,
)
from featstore.store.objects import ObjectFolder
from featstore.store.proofs import (
    DAMAGED,
    CheckedRecord,
    dataset_state,
    entry_key_state,
    record_state,
)
from featstore.store.spec import StoreSpec

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset

# 2: feature keys hold the images' content id (``images``), datasets keep per-image hashes,
# image lists under images/; format-1 stores are read as they are (see store/content.py)
# and converted in place by ``featstore upgrade`` (store/upgrade.py)
# Objects also carry their own proof (store/proofs.py, store/checksum.py): markers
# ``xxh3_128@key:`` (bound to entry key and chunk index), entries a ``key`` attribute,
# records ``key`` and ``checksum``. Those written before are read as they are, listed by
# `verify` as unbound (older format) and bound in place by `featstore upgrade`; the store
# format number does not change for them.
FORMAT_VERSION = 2
DEFAULT_DTYPE = "float16"

# attrs that must agree when an existing entry is reopened for the same key
DATASET_SUMMARY = ("name", "n", "classes", "split_counts", "source", "fingerprint", "skipped")
# what a registration holds once written whole (its attributes are written in one go, last)
DATASET_ATTRS = ("name", "fingerprint", "n", "classes", "split_names")
DATASET_ARRAYS = ("ids", "refs", "labels", "split")
_REGISTER_AGAIN = (
    "register it again with `featstore datasets add` (the same source repairs it), or remove "
    "it with `featstore datasets rm {id}`"
)


def unfinished_dataset(
    dataset_id: str, attrs: dict[str, Any], arrays: dict[str, Any] | None = None
) -> str | None:
    """Why a stored registration is incomplete (None if it is whole): an older featstore wrote
    a dataset's attributes one at a time, so a registration killed meanwhile was listed with
    some of them."""
    missing = [a for a in DATASET_ATTRS if a not in attrs]
    missing += [f"array {a}" for a in DATASET_ARRAYS if arrays is not None and a not in arrays]
    if not missing:
        return None
    return (
        f"dataset {dataset_id}: its registration is incomplete (no {', '.join(missing)}; a "
        f"registration killed while it was written); {_REGISTER_AGAIN.format(id=dataset_id)}"
    )


FLOAT16_MAX = 65504.0
READ_BLOCK_BYTES = 256 * 1024 * 1024  # a verified read decodes at most this much at once


def check_fits(values: np.ndarray, dtype: str, where: str) -> None:
    """Refuse finite values that ``dtype`` cannot hold (float16: |x| > 65504 becomes inf).

    ``where`` names the rows for the message (e.g. "chunk 3 of entry feat-..."). Infinite
    or NaN values the network itself produced are stored as they are.
    """
    values = np.asarray(values)
    if np.dtype(dtype) != np.float16 or values.dtype.kind != "f" or values.dtype.itemsize <= 2:
        return
    if not values.size:
        return
    peak = np.max(np.abs(values))
    if peak <= FLOAT16_MAX:  # NaN compares False: fall through to the exact check
        return
    over = np.abs(values) > FLOAT16_MAX
    over &= np.isfinite(values)
    if over.any():
        largest = float(np.max(np.abs(values[over])))
        raise DtypeOverflowError(
            f"{where} has values up to {largest:.6g}, beyond float16's range (+-65504): stored as "
            "float16 they would become inf; extract with --dtype float32"
        )


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
    damaged: str | None = None  # why the entry's metadata cannot be read, if it cannot

    @property
    def complete(self) -> bool:
        return self.damaged is None and self.n_done == self.n_chunks


class GcResult(list[str]):
    """What ``Store.gc`` removed (or would remove), and in ``held`` the leftovers it kept
    because a live writer holds a lease on them: entry key -> who (host, pid, chunks)."""

    def __init__(self, removed: Iterable[str] = (), held: dict[str, str] | None = None) -> None:
        super().__init__(removed)
        self.held = dict(held or {})


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
        """The done marker's record (checksum, rows) of chunk ``index``, or None when it has
        none. A marker that exists but cannot be parsed gives ``{"unreadable": reason}``."""

    def markers(self, indices: Iterable[int]) -> dict[int, dict[str, Any] | None]:
        """The marker records of several chunks (backends may fetch them in one go)."""
        return {int(i): self.marker(int(i)) for i in indices}

    def content_checksum(self) -> str:
        """One digest of every chunk's checksum: what a result record binds itself to.

        Reads the done markers only, never the data. IncompleteEntryError when a chunk has
        no marker; DamagedChunkError when a marker holds no checksum.
        """
        records = self.markers(range(self.n_chunks))
        parts = []
        for index in range(self.n_chunks):
            record = records.get(index)
            if record is None:
                raise IncompleteEntryError(
                    f"entry {self.key} is incomplete: chunk {index} is not written; rerun the "
                    "extraction to finish it"
                )
            expected = marker_checksum(record)
            if expected is None:
                raise self._damaged(index, "its done marker holds no readable checksum")
            parts.append(expected)
        return content_hash({"key": self.key, "shape": list(self.shape), "chunks": parts})

    # --- writing ----------------------------------------------------------------------
    def write_chunk(
        self, index: int, data: np.ndarray, before_marker: Callable[[], None] | None = None
    ) -> None:
        """Write the rows of chunk ``index`` and then its done marker.

        The data is cast to the entry's dtype. The marker carries the chunk's checksum, bound
        to this entry's key and this index, so `verify` and every read find damaged chunks
        and chunks moved here from elsewhere. ``before_marker`` runs between the two; if it
        raises, no marker is written (a leased writer's fence: store/lease_keeper.py).
        """
        self._check_writable()
        start, stop = self.chunk_bounds(index)
        expected = (stop - start, *self.row_shape)
        array = np.asarray(data)
        if tuple(array.shape) != expected:
            raise EntryMismatchError(
                f"chunk {index} of entry {self.key} needs shape {expected}, got {tuple(array.shape)}"
            )
        check_fits(array, self.dtype, f"chunk {index} (rows {start}-{stop}) of entry {self.key}")
        array = np.ascontiguousarray(array.astype(self.dtype, copy=False))
        self._write_rows(start, stop, array)
        checksum = chunk_checksum(array, key=self.key, index=index)
        if before_marker is not None:
            before_marker()
        self._write_marker(index, {"rows": [start, stop], "checksum": checksum})

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
        """Rows of the entry (all by default), every chunk checked against its done marker.

        Whole chunks are decoded (zarr decodes whole chunks anyway), hashed and compared
        with the checksum in their marker before any row is returned; each chunk is read
        once. Raises IncompleteEntryError if a needed chunk has no done marker (unless
        ``allow_incomplete``: unwritten rows then hold whatever is stored, usually zeros,
        unchecked), and DamagedChunkError naming the chunk when its bytes do not match.
        """
        selection, needed = self._selection(rows)
        records = self._needed_markers(needed, allow_incomplete)
        if isinstance(selection, slice):
            if not needed:
                return self._read_rows(selection)
            lo, hi = self.chunk_bounds(needed[0])[0], self.chunk_bounds(needed[-1])[1]
            block = self._read_block(lo, hi, records)
            if (selection.start, selection.stop) == (lo, hi):
                return block
            return block[selection.start - lo : selection.stop - lo].copy()
        return self._gather(selection, needed, records)

    def read_blocks(
        self, rows: Iterable[int] | slice | None = None, *, allow_incomplete: bool = False
    ) -> Iterator[tuple[slice | np.ndarray, np.ndarray]]:
        """The rows of :meth:`read`, one stored chunk at a time: ``(where, block)`` pairs
        with ``block`` equal to ``read(rows)[where]``.

        A reader that fills its own output from these never holds more than one decoded
        chunk, however large the entry (an evaluation pooling stored maps, say). Each chunk
        is decoded and checked once; every needed marker is checked before the first block,
        so an incomplete entry is refused as :meth:`read` refuses it. ``where`` is a slice
        of the output for a contiguous selection, else the output positions of the block's
        rows (in the order given, repeats allowed).
        """
        selection, needed = self._selection(rows)
        records = self._needed_markers(needed, allow_incomplete)
        if isinstance(selection, slice):
            for c in needed:
                lo, hi = self.chunk_bounds(c)
                a, b = max(lo, selection.start), min(hi, selection.stop)
                block = self._read_block(lo, hi, records)
                yield slice(a - selection.start, b - selection.start), block[a - lo : b - lo]
                del block  # never hold this chunk while the next one is decoded
            return
        order = np.argsort(selection, kind="stable")
        ordered = selection[order]
        for c in needed:
            lo, hi = self.chunk_bounds(c)
            a, b = np.searchsorted(ordered, [lo, hi])
            block = self._read_block(lo, hi, records)
            yield order[a:b], block[ordered[a:b] - lo]
            del block

    def _needed_markers(
        self, needed: list[int], allow_incomplete: bool
    ) -> dict[int, dict[str, Any] | None]:
        """The marker records of the chunks a read needs; IncompleteEntryError when one has
        none (unless ``allow_incomplete``)."""
        records = self.markers(needed)
        missing = [i for i in needed if records.get(i) is None]
        if missing and not allow_incomplete:
            raise IncompleteEntryError(
                f"entry {self.key} is incomplete: {len(missing)} of its chunks are not written "
                f"(first missing: {missing[:5]}); rerun the extraction to finish it"
            )
        return records

    def _selection(
        self, rows: Iterable[int] | slice | None
    ) -> tuple[slice | np.ndarray, list[int]]:
        """(contiguous slice or row indices, sorted chunks they need)."""
        if rows is None:
            return slice(0, self.n_rows), list(range(self.n_chunks))
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.n_rows)
            if step == 1:
                stop = max(start, stop)
                first, last = start // self.chunk_rows, (stop - 1) // self.chunk_rows
                return slice(start, stop), list(range(first, last + 1)) if stop > start else []
            rows = np.arange(start, stop, step)
        index = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.n_rows):
            raise IndexError(f"row index out of range for entry {self.key} with {self.n_rows} rows")
        # bincount, not np.unique: np.unique imports numpy.ma (~40 ms on a cold read)
        return index, np.flatnonzero(np.bincount(index // self.chunk_rows)).tolist()

    def _gather(
        self, index: np.ndarray, needed: list[int], records: dict[int, dict[str, Any] | None]
    ) -> np.ndarray:
        """Rows ``index`` (any order, repeats allowed), reading runs of adjacent chunks."""
        out = np.empty((index.size, *self.row_shape), dtype=self.dtype)
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        chunk_bytes = max(1, self.chunk_rows * self._row_bytes())
        per_block = max(1, READ_BLOCK_BYTES // chunk_bytes)
        run: list[int] = []
        for c in [*needed, None]:
            if c is not None and run and c == run[-1] + 1 and len(run) < per_block:
                run.append(c)
                continue
            if run:
                lo, hi = self.chunk_bounds(run[0])[0], self.chunk_bounds(run[-1])[1]
                block = self._read_block(lo, hi, records)
                a, b = np.searchsorted(ordered, [lo, hi])
                out[order[a:b]] = block[ordered[a:b] - lo]
            run = [c] if c is not None else []
        return out

    def _row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def _read_block(
        self, lo: int, hi: int, records: dict[int, dict[str, Any] | None]
    ) -> np.ndarray:
        """Rows [lo, hi) (whole chunks), each chunk checked against its marker."""
        first, last = lo // self.chunk_rows, (hi - 1) // self.chunk_rows
        try:
            block = self._read_rows(slice(lo, hi))
        except Exception as exc:  # an undecodable chunk; find which one
            for c in range(first, last + 1):
                start, stop = self.chunk_bounds(c)
                try:
                    self._read_rows(slice(start, stop))
                except Exception as inner:
                    raise self._damaged(c, f"its data cannot be decoded ({inner})") from inner
            raise DamagedChunkError(
                f"entry {self.key}: rows {lo}-{hi} cannot be read ({exc}); "
                f"run `featstore verify {self.key}` to find the damaged chunk"
            ) from exc
        for c in range(first, last + 1):
            record = records.get(c)
            if record is None:  # allow_incomplete: nothing to check against
                continue
            expected = marker_checksum(record)
            if expected is None:
                raise self._damaged(c, "its done marker holds no readable checksum")
            start, stop = self.chunk_bounds(c)
            if not matches(block[start - lo : stop - lo], expected, self.key, c):
                raise self._damaged(
                    c,
                    "its data do not match the checksum in its done marker (changed, or moved "
                    "here with its marker from another entry or chunk)",
                )
        return block

    def _damaged(self, index: int, why: str) -> DamagedChunkError:
        start, stop = self.chunk_bounds(index)
        return DamagedChunkError(
            f"chunk {index} (rows {start}-{stop}) of entry {self.key} is damaged: {why}; "
            f"recompute it with `featstore repair {self.key}` (or `featstore verify --repair`)"
        )

    def read_chunk(self, index: int) -> np.ndarray:
        """The rows of chunk ``index``, checked against its marker."""
        start, stop = self.chunk_bounds(index)
        return self.read(slice(start, stop))

    def verify(self) -> dict[str, Any]:
        """Check every marked chunk's data against its checksum.

        Returns ``{"missing": [...], "damaged": [...], "ok": n, "unbound": [...]}``; damaged
        chunks are those whose stored bytes no longer match the marker (or were moved here
        with it), that cannot be decoded, or whose marker holds no checksum (empty or torn).
        ``unbound`` lists verified chunks whose marker is of the older format that does not
        bind the entry key and chunk index (``featstore upgrade`` binds them).
        """
        done = sorted(self.done_chunks())
        records = self.markers(done)
        damaged: list[int] = []
        unbound: list[int] = []
        ok = 0
        for index in done:
            record = records.get(index)
            if record is None:  # removed since the listing: it is missing now
                continue
            start, stop = self.chunk_bounds(index)
            try:
                self._read_block(start, stop, {index: record})
            except DamagedChunkError:
                damaged.append(index)
                continue
            ok += 1
            expected = marker_checksum(record)
            if expected is not None and not is_bound(expected):
                unbound.append(index)
        return {"missing": self.missing_chunks(), "damaged": damaged, "ok": ok, "unbound": unbound}

    def bind_markers(self) -> dict[str, list[int]]:
        """Rewrite the older-format markers of verified chunks bound to this key and index
        (``featstore upgrade``); a chunk that fails its old checksum is left as it is.
        Returns {"bound": [...], "damaged": [...]}."""
        self._check_writable()
        done = sorted(self.done_chunks())
        records = self.markers(done)
        out: dict[str, list[int]] = {"bound": [], "damaged": []}
        for index in done:
            record = records.get(index)
            expected = marker_checksum(record)
            if record is None or (expected is not None and is_bound(expected)):
                continue
            start, stop = self.chunk_bounds(index)
            try:
                block = self._read_block(start, stop, {index: record})
            except DamagedChunkError:
                out["damaged"].append(index)
                continue
            checksum = chunk_checksum(block, key=self.key, index=index)
            self._write_marker(index, {"rows": [start, stop], "checksum": checksum})
            out["bound"].append(index)
        return out

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

    def _name_claims(self) -> ObjectFolder | None:
        """Where the dataset name claims live (see :mod:`featstore.store.names`), or None
        when the backend needs none (HDF5: one writer holds the file)."""
        return None

    def trained_objects(self) -> ObjectFolder | None:
        """Where stored networks (fine-tuned weights and their records) live (see
        :mod:`featstore.store.trained`), or None when the backend keeps no side objects (HDF5)."""
        return None

    def put_dataset(self, dataset: Dataset, *, replace: bool = False) -> str:
        """Register ``dataset`` (a featstore.datasets.Dataset); returns its id.

        The same content again is a no-op, except that it re-points the stored image
        locations (and source) when they differ: the same files moved to another folder are
        registered again where they now are. A format-1 registration gains its per-image
        hashes the same way. A different dataset under a name already used is refused
        unless ``replace``. Two registrations of one name at once: the name's claim is
        taken before anything is written, so exactly one of them is stored and told so
        (:mod:`featstore.store.names`); the others get DatasetMismatchError.

        A dataset is listed only once its metadata is written whole (one write, after its
        arrays), so a registration killed at any point leaves the old state or the new.
        """
        self._check_writable()
        name, dataset_id = dataset.name, check_dataset_id(dataset.id)
        rivals = self._datasets_named(name, dataset_id)  # also finds datasets older than claims
        if rivals and not replace:
            info = rivals[0]
            raise DatasetMismatchError(
                f"a different dataset is already registered as {name!r} (id {info['id']}, "
                f"{info['n']} images; the new one is {dataset_id}, {dataset.n} images); pick "
                "another name or pass --replace"
            )
        claims = self._name_claims()
        if replace:
            return self._replace_dataset(dataset, dataset_id, claims)
        took = claims is not None and take_name(claims, name, dataset_id, self._present_dataset_ids)
        try:
            created = self._write_dataset(dataset)
        except BaseException:
            if took and claims is not None:  # leave the name free, not claimed by a failure
                drop_name(claims, name, dataset_id)
            raise
        if claims is not None and not holds_name(claims, name, dataset_id):
            if created:  # a --replace (or a stale-claim takeover) took the name meanwhile
                self._delete_dataset(dataset_id)
            raise lost_name(claims, name)
        return dataset_id

    def _replace_dataset(
        self, dataset: Dataset, dataset_id: str, claims: ObjectFolder | None
    ) -> str:
        """``--replace``: the new dataset is written whole under its own id while the old one
        stays registered (a dataset whose name's claim names another present dataset is not
        listed); then the claim is swapped to it in one write, and only then is the old one
        removed. A kill at any point leaves the old registration or the new one.
        ``dataset_id`` is the id ``put_dataset`` checked.

        Two replacements at once: "old" is what the name held before this one wrote (read
        first), so a dataset another replacement writes meanwhile is never taken for an old
        one; the replacement whose claim landed last keeps the name, the other removes only
        its own dataset; and old datasets are removed only while this one holds the name."""
        name = dataset.name
        previous = read_claim(claims, name) if claims is not None else None
        old = {info["id"] for info in self._datasets_named(name, dataset_id, every=True)}
        if previous is not None and previous.dataset_id in self._present_dataset_ids():
            old.add(previous.dataset_id)  # also a damaged (half-made) holder of the name
        created = self._write_dataset(dataset)
        if claims is not None:
            take_name(claims, name, dataset_id, self._present_dataset_ids, replace=True)
        for old_id in sorted(old - {dataset_id}):
            if claims is not None and not holds_name(claims, name, dataset_id):
                break  # another replacement took the name since: what is left is its to clear
            with contextlib.suppress(EntryNotFoundError):  # removed by another process meanwhile
                self._delete_dataset(old_id)
        if claims is not None and not holds_name(claims, name, dataset_id):
            if created:  # another --replace landed after ours: it keeps the name
                with contextlib.suppress(EntryNotFoundError):
                    self._delete_dataset(dataset_id)
            raise lost_name(claims, name)
        return dataset_id

    def _write_dataset(self, dataset: Dataset) -> bool:
        """Write ``dataset``'s arrays unless the same are stored; True if it was not there."""
        attrs, arrays = dataset.to_arrays()
        if dataset.id not in self.dataset_ids():
            self._put_dataset_arrays(dataset.id, attrs, arrays)
            return True
        stored_attrs, stored = self._get_dataset_arrays(dataset.id)
        if (
            unfinished_dataset(dataset.id, stored_attrs, stored) is not None
            or [str(r) for r in stored.get("refs", [])] != list(dataset.refs)
            or stored_attrs.get("source") != dataset.source
            or ("hashes" not in stored and "hashes" in arrays)
        ):
            self._put_dataset_arrays(dataset.id, attrs, arrays)
        return False

    def _datasets_named(
        self, name: str, dataset_id: str, *, every: bool = False
    ) -> list[dict[str, Any]]:
        """Listed datasets called ``name`` other than ``dataset_id`` (``every``: also those
        not listed because the name's claim names another one, see :meth:`list_datasets`)."""
        listed = self._all_datasets() if every else self.list_datasets()
        return [i for i in listed if i["name"] == name and i["id"] != dataset_id]

    def _present_dataset_ids(self) -> set[str]:
        """Ids of the datasets in the store, readable or damaged (a damaged one keeps its
        name claimed until `featstore datasets rm` removes it)."""
        return set(self.dataset_ids()) | set(self.damaged_datasets())

    def get_dataset(self, name_or_id: str) -> Dataset:
        """The dataset registered under this name or id; DamagedEntryError (one line) when
        its stored attributes or arrays are incomplete (e.g. left by a killed registration)."""
        from featstore.datasets.core import Dataset

        dataset_id = self.resolve_dataset_id(name_or_id)
        attrs, arrays = self._get_dataset_arrays(dataset_id)
        why = unfinished_dataset(dataset_id, attrs, arrays)
        if why is not None:
            raise DamagedEntryError(why)
        try:
            dataset = Dataset.from_arrays(attrs, arrays)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise DamagedEntryError(
                f"dataset {dataset_id}: its stored registration cannot be read ({type(exc).__name__}"
                f": {exc}); {_REGISTER_AGAIN.format(id=dataset_id)}"
            ) from exc
        state, why = dataset_state(dataset_id, dataset)
        if state == DAMAGED:  # a format-1 dataset (unbound) is read as it is: see upgrade
            raise DamagedEntryError(why)
        return dataset

    def resolve_dataset_id(self, name_or_id: str) -> str:
        if name_or_id in self.dataset_ids():
            return name_or_id
        damaged = self.damaged_datasets()
        if name_or_id in damaged:
            raise DamagedEntryError(damaged[name_or_id])
        datasets = self.list_datasets()
        for info in datasets:
            if info["name"] == name_or_id:
                return str(info["id"])
        known = ", ".join(sorted(str(i["name"]) for i in datasets if i["name"])) or "none yet"
        unreadable = (
            f"; unreadable (damaged): {', '.join(sorted(damaged))}, remove with "
            "`featstore datasets rm ID` and register again"
            if damaged
            else ""
        )
        raise EntryNotFoundError(
            f"no dataset {name_or_id!r} in store {self.url} (registered: {known}{unreadable}); "
            "register it with `featstore datasets add NAME SOURCE`"
        )

    def list_datasets(self) -> list[dict[str, Any]]:
        """One summary per registered dataset: id, name, n, classes, split counts, source.

        A dataset whose metadata cannot be read (or is incomplete) is listed with
        ``damaged`` (why) and no other fields, so one damaged dataset never hides the
        others. Of several datasets called one name, the one the name's claim names is
        listed: the others are a ``--replace`` not finished (killed, or running now).
        """
        out = self._all_datasets()
        claims = self._name_claims()
        names = [i["name"] for i in out if i["name"] is not None]
        shared = {n for n in names if names.count(n) > 1}
        if claims is None or not shared:
            return out
        holders = {n: read_claim(claims, n) for n in shared}
        ids = {i["id"] for i in out}
        return [
            i
            for i in out
            if i["name"] not in shared
            or (claim := holders[i["name"]]) is None
            or claim.dataset_id not in ids
            or claim.dataset_id == i["id"]
        ]

    def _all_datasets(self) -> list[dict[str, Any]]:
        """:meth:`list_datasets` before datasets superseded by their name's claim are left out."""
        out = []
        for dataset_id in self.dataset_ids():
            try:
                attrs = self._get_dataset_attrs(dataset_id)
            except DamagedEntryError as exc:
                out.append({"id": dataset_id, "name": None, "damaged": str(exc)})
                continue
            except EntryNotFoundError:
                continue  # removed (by another process) since it was listed
            why = unfinished_dataset(dataset_id, attrs)
            if why is not None:
                out.append({"id": dataset_id, "name": None, "damaged": why})
                continue
            out.append({"id": dataset_id, **{k: attrs.get(k) for k in DATASET_SUMMARY}})
        for dataset_id, why in self.damaged_datasets().items():
            if all(info["id"] != dataset_id for info in out):
                out.append({"id": dataset_id, "name": None, "damaged": why})
        return out

    def damaged_datasets(self) -> dict[str, str]:
        """Datasets whose metadata cannot be read: id -> why (with the fix)."""
        return {}

    @abstractmethod
    def _get_dataset_attrs(self, dataset_id: str) -> dict[str, Any]: ...

    def delete_dataset(self, name_or_id: str) -> None:
        """Remove a dataset (by name or id, or a damaged one by id) and release its name."""
        self._check_writable()
        if name_or_id in self.damaged_datasets():
            dataset_id = check_dataset_id(name_or_id)
        else:
            dataset_id = self.resolve_dataset_id(name_or_id)
        self._delete_dataset(dataset_id)
        claims = self._name_claims()
        if claims is not None:
            release_names(claims, dataset_id)

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
        """The entry under ``key``; EntryNotFoundError if none, DamagedEntryError when its
        metadata cannot be read or it does not belong under ``key`` (see :meth:`_proven`)."""

    @staticmethod
    def _proven(entry: Entry) -> Entry:
        """``entry`` if its recorded factors (and recorded key) give the key it is read
        under; DamagedEntryError otherwise (see :mod:`featstore.store.proofs`)."""
        state, why = entry_key_state(entry.key, entry.attrs)
        if state == DAMAGED:
            raise DamagedEntryError(why)
        return entry

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
        full_attrs.update({"shape": list(shape), "dtype": dtype, "key": key})
        return self._create_entry(key, full_attrs, shape, dtype, chunk_rows, shard_rows)

    def damaged_entries(self) -> dict[str, str]:
        """Entries whose metadata cannot be read, beyond those :meth:`entry_keys` lists
        (e.g. a folder of chunks whose array metadata is gone): key -> why, with the fix."""
        return {}

    def list_entries(self) -> EntryListing:
        """Every entry (each proven, see :meth:`_proven`), the damaged ones (key -> why) and
        each one's stored bytes, read in as few requests as the backend can
        (:mod:`featstore.store.listing`); this default asks entry by entry. A listed entry
        the listing saw complete answers ``done_chunks()`` from it; others ask again."""
        out = EntryListing(damaged=dict(self.damaged_entries()))
        for key in self.entry_keys():
            try:
                out.entries.append(self.get_entry(key))
            except DamagedEntryError as exc:
                out.damaged[key] = str(exc)
                continue
            except EntryNotFoundError:
                continue  # removed since it was listed
            out.nbytes[key] = self.entry_nbytes(key)
        return out

    def entries(self) -> list[EntryInfo]:
        """A summary of every entry, for listing; an unreadable entry is listed as damaged."""
        listing = self.list_entries()
        damaged = dict(listing.damaged)
        infos = [
            EntryInfo(
                key=entry.key,
                kind=str(entry.attrs.get("kind", "features")),
                shape=entry.shape,
                dtype=entry.dtype,
                n_chunks=entry.n_chunks,
                n_done=len(entry.done_chunks()),
                nbytes_stored=listing.nbytes.get(entry.key),
                attrs=dict(entry.attrs),
            )
            for entry in listing.entries
        ]
        for key, why in sorted(damaged.items()):
            infos.append(EntryInfo(key, "damaged", (), "", 0, 0, None, {}, damaged=why))
        return sorted(infos, key=lambda info: info.key)

    # --- format ----------------------------------------------------------------------------
    @property
    def format_version(self) -> int:
        """The store format this store was written in (1: before content keys)."""
        return FORMAT_VERSION

    def _set_format_version(self, version: int) -> None:
        raise ReadOnlyError(f"store {self.url} cannot record a format version")

    # --- image lists (store format 2) ----------------------------------------------------
    def put_image_list(self, images_id: str, hashes: Sequence[str]) -> None:
        """Record the ordered image hashes behind ``images_id`` (once; content-addressed),
        so any dataset can map its rows to the entries holding these images."""
        from featstore.store.content import check_images_id, pack_hashes

        self._check_writable()
        if self.get_image_list(check_images_id(images_id)) is None:
            self._put_image_blob(images_id, pack_hashes(images_id, hashes))

    def get_image_list(self, images_id: str) -> list[str] | None:
        """The ordered image hashes recorded for ``images_id``, or None."""
        from featstore.store.content import check_images_id, unpack_hashes

        payload = self._get_image_blob(check_images_id(images_id))
        return None if payload is None else unpack_hashes(images_id, payload)

    def _put_image_blob(self, images_id: str, payload: bytes) -> None:
        raise ReadOnlyError(f"store {self.url} cannot hold image lists")

    def _get_image_blob(self, images_id: str) -> bytes | None:
        return None

    # --- named networks (featstore.store.networks): small JSON objects networks/<name> ---
    def _put_network_blob(self, name: str, payload: bytes) -> None:
        raise ReadOnlyError(f"store {self.url} cannot hold named networks")

    def _get_network_blob(self, name: str) -> bytes | None:
        return None

    def _network_blob_names(self) -> list[str]:
        return []

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

    def get_results(
        self, keys: Iterable[str] | None = None
    ) -> dict[str, dict[str, Any] | DamagedEntryError]:
        """The records under ``keys`` (all by default) as :meth:`get_result` reads them, or
        the DamagedEntryError it raises; a key with no record is left out. Backends read
        them in a batch (:mod:`featstore.store.listing`); this default reads one by one.
        Callers still check each record's key and seal (:func:`proofs.record_state`)."""
        out: dict[str, dict[str, Any] | DamagedEntryError] = {}
        for key in self.result_keys() if keys is None else dict.fromkeys(keys):
            try:
                out[key] = self.get_result(key)
            except EntryNotFoundError:
                continue
            except DamagedEntryError as exc:
                out[key] = exc
        return out

    def get_checked_results(self, keys: Iterable[str] | None = None) -> dict[str, CheckedRecord]:
        """:meth:`get_results` with each record checked against its key and seal
        (:func:`proofs.record_state`): (record, state, why), the record None when it is
        damaged. Backends that hold the stored bytes check the seal over them
        (:func:`proofs.check_result`); this default re-serialises each record."""
        out: dict[str, CheckedRecord] = {}
        for key, got in self.get_results(keys).items():
            if isinstance(got, DamagedEntryError):
                out[key] = CheckedRecord(None, DAMAGED, str(got))
                continue
            state, why = record_state(key, got)
            out[key] = CheckedRecord(None if state == DAMAGED else got, state, why)
        return out

    def refresh_catalog(self) -> None:  # noqa: B027 - optional hook
        """Bring a listing accelerator up to date (object stores' result catalog, see
        :mod:`featstore.store.listing`) after many records were written."""

    # --- maintenance ------------------------------------------------------------------
    @abstractmethod
    def gc(
        self, *, dry_run: bool = False, older_than_s: float = 3600.0, force: bool = False
    ) -> list[str]:
        """Remove leftovers of killed runs; returns what was (or would be) removed (a
        :class:`GcResult` where a leftover was kept because a live writer leases it, unless
        ``force``)."""

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
