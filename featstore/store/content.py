"""Features keyed by image content: finding the entry that holds a dataset's images.

A feature key holds the content id of the ordered images (``images``, see
:func:`featstore.datasets.core.images_id`), never a dataset's name, labels or splits. So:

- a dataset with exactly an entry's images (renamed, relabelled, re-split) has the entry's
  key and reads it as it is;
- a dataset whose images are all among an entry's images (a sweep ``subset:``, a few-shot
  draw, a retrieval set built from a classification set, a permutation) reads its rows from
  that entry by index, through a :class:`RowView`, with no forward pass.

The row mapping needs the entry's ordered image hashes. Each store keeps them once per
images id as an *image list* (``images/<images_id>``: the 32-byte digests, in row order,
self-checking: their hash must be the id), written when the first entry for those images is
created; a registered dataset with the same images id serves as a fallback (a store copied
without its image lists). Entries of store format 1 carry ``dataset_fingerprint`` instead
of ``images``: they are found for the dataset with that fingerprint, row for row, until
``featstore upgrade`` annotates them.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from featstore.datasets.core import images_id as compute_images_id
from featstore.errors import DatasetError, IncompleteEntryError, StoreError
from featstore.keys import IMAGES_ID_PATTERN, check_images_id

logger = logging.getLogger(__name__)

__all__ = [
    "FACTOR_FIELDS",
    "IMAGES_ID_PATTERN",
    "ContentIndex",
    "RowView",
    "check_images_id",
    "entries_for",
    "factor_signature",
    "image_list",
    "pack_hashes",
    "row_map",
    "unpack_hashes",
    "view_for",
]


def pack_hashes(images_id: str, hashes: Sequence[str]) -> bytes:
    """The image list object: the hashes in row order, one a line, zlib-compressed;
    refused unless they hash to ``images_id``."""
    check_images_id(images_id)
    if compute_images_id(list(hashes)) != images_id:
        raise DatasetError(
            f"these {len(hashes)} image hashes do not hash to {images_id}; register the dataset again"
        )
    return zlib.compress("\n".join(hashes).encode(), 1)


def unpack_hashes(images_id: str, payload: bytes) -> list[str]:
    """The hashes of an image list object; a damaged object is refused, never trusted."""
    check_images_id(images_id)
    try:
        text = zlib.decompress(payload).decode()
    except (zlib.error, UnicodeDecodeError):
        text = None
    hashes = text.split("\n") if text else []
    if text is None or compute_images_id(hashes) != images_id:
        raise StoreError(
            f"image list {images_id} is damaged (its hashes no longer match its id); run "
            "`featstore upgrade` to write it again from a registered dataset"
        )
    return hashes


def image_list(store: Any, images_id: str) -> list[str] | None:
    """The ordered image hashes behind ``images_id``: the store's image list, else those of
    a registered dataset with these images, else None."""
    found = store.get_image_list(images_id)
    if found is not None:
        return list(found)
    for dataset_id in store.dataset_ids():
        try:
            ds = store.get_dataset(dataset_id)
        except Exception:  # a damaged dataset is reported elsewhere
            continue
        if ds.image_hashes is not None and ds.images_id == images_id:
            return list(ds.image_hashes)
    return None


def row_map(entry_hashes: Sequence[str], wanted: Sequence[str]) -> np.ndarray | None:
    """Entry row of each wanted image (by hash), or None if one of them is not in the entry."""
    where: dict[str, int] = {}
    for row, value in enumerate(entry_hashes):
        where.setdefault(value, row)
    out = np.empty(len(wanted), dtype=np.int64)
    for i, value in enumerate(wanted):
        found = where.get(value)
        if found is None:
            return None
        out[i] = found
    return out


class RowView:
    """The rows of one entry in another dataset's order: dataset row i is entry row rows[i].

    Reads go through the entry (so its checks apply) and touch only the entry chunks that
    hold the wanted rows, each once: the wanted entry rows are read in increasing order,
    then put back in the dataset's order. Its chunks are the dataset's rows in blocks of the
    entry's chunk size, so chunked readers keep their memory bound. ``key`` is the entry's.
    """

    def __init__(self, entry: Any, rows: np.ndarray) -> None:
        self.entry = entry
        self.rows = np.asarray(rows, dtype=np.int64)
        self.key = entry.key
        self.attrs = entry.attrs
        self.dtype = entry.dtype
        self.chunk_rows = int(entry.chunk_rows)
        self.shape: tuple[int, ...] = (int(self.rows.size), *entry.shape[1:])
        self.read_only = True

    # --- geometry, as an Entry answers it -----------------------------------------------
    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    @property
    def n_chunks(self) -> int:
        return -(-self.n_rows // self.chunk_rows) if self.n_rows else 0

    def chunk_bounds(self, index: int) -> tuple[int, int]:
        if not 0 <= index < self.n_chunks:
            raise IndexError(f"chunk {index} out of range: this view has {self.n_chunks} chunks")
        start = index * self.chunk_rows
        return start, min(start + self.chunk_rows, self.n_rows)

    @property
    def source_chunks(self) -> list[int]:
        """The entry chunks this view reads."""
        return sorted({int(c) for c in np.unique(self.rows // self.entry.chunk_rows)})

    def missing_chunks(self) -> list[int]:
        """The view's chunks whose rows lie in a missing chunk of the entry."""
        missing = set(self.entry.missing_chunks())
        if not missing:
            return []
        bad = np.isin(self.rows // self.entry.chunk_rows, sorted(missing))
        return sorted({int(i) // self.chunk_rows for i in np.flatnonzero(bad)})

    def done_chunks(self) -> set[int]:
        return set(range(self.n_chunks)) - set(self.missing_chunks())

    @property
    def is_complete(self) -> bool:
        return not self.missing_chunks()

    # --- reading --------------------------------------------------------------------------
    def _entry_rows(self, rows: Iterable[int] | slice | None) -> np.ndarray:
        """The entry rows behind the view's ``rows`` (all when None), in that order."""
        if rows is None:
            return self.rows
        if isinstance(rows, slice):
            return self.rows[rows]
        index = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.n_rows):
            raise IndexError(
                f"row index out of range for the {self.n_rows} rows read from entry {self.key}"
            )
        return self.rows[index]

    def read(
        self, rows: Iterable[int] | slice | None = None, *, allow_incomplete: bool = False
    ) -> np.ndarray:
        wanted = self._entry_rows(rows)
        if wanted.size == 0:
            return np.empty((0, *self.row_shape), dtype=self.dtype)
        unique, inverse = np.unique(wanted, return_inverse=True)
        try:
            data = self.entry.read(unique, allow_incomplete=allow_incomplete)
        except IncompleteEntryError as exc:
            raise IncompleteEntryError(
                f"{exc} (the rows of this dataset are read from entry {self.key})"
            ) from exc
        return np.asarray(data)[inverse.reshape(-1)]

    def read_blocks(
        self, rows: Iterable[int] | slice | None = None, *, allow_incomplete: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The rows of :meth:`read` one *entry* chunk at a time (see ``Entry.read_blocks``):
        the view's rows may lie anywhere in the entry, and each entry chunk is decoded once."""
        wanted = self._entry_rows(rows)
        try:
            for where, block in self.entry.read_blocks(wanted, allow_incomplete=allow_incomplete):
                yield np.asarray(where, dtype=np.int64), block
                del block  # never hold this chunk while the next one is decoded
        except IncompleteEntryError as exc:
            raise IncompleteEntryError(
                f"{exc} (the rows of this dataset are read from entry {self.key})"
            ) from exc

    def read_chunk(self, index: int) -> np.ndarray:
        start, stop = self.chunk_bounds(index)
        return self.read(slice(start, stop))

    def __getattr__(self, name: str) -> Any:  # marker, verify, side_objects ...: the entry's
        return getattr(self.entry, name)

    def __repr__(self) -> str:
        return f"<RowView of {self.entry!r}: {self.n_rows} rows by index>"


def _matches(attrs: dict[str, Any], name: str, value: Any) -> bool:
    if name == "model" and isinstance(value, str):  # a model given by name
        model = attrs.get("model")
        return attrs.get("model_name") == value or (
            isinstance(model, dict) and model.get("name") == value
        )
    return bool(attrs.get(name) == value)


def _readable_entries(store: Any) -> list[Any]:
    """Every entry whose metadata reads; a damaged one is logged and left out (`featstore
    verify` names it), so it never stops a lookup among the others."""
    listing = store.list_entries()  # in batches: see store/listing.py
    for why in listing.damaged.values():
        logger.warning("skipping a damaged entry: %s", why)
    return list(listing.entries)


def entries_for(
    store: Any, dataset: Any, entries: Sequence[Any] | None = None, **factors: Any
) -> list[Any]:
    """The feature entries holding ``dataset``'s images whose attrs match ``factors``.

    ``entries`` (already read, e.g. by :class:`featstore.store.select.Catalog`) replaces
    scanning the store.

    Entries with exactly these images (and format-1 entries of this dataset's fingerprint)
    come as they are; when there are none, entries holding all of the
    dataset's images among others come as :class:`RowView`s mapping the dataset's rows,
    complete ones first. None values in ``factors`` match anything.
    """
    wanted = {k: v for k, v in factors.items() if v is not None}
    own = dataset.images_id
    exact: list[Any] = []
    others: list[Any] = []
    for entry in _readable_entries(store) if entries is None else entries:
        attrs = entry.attrs
        if attrs.get("kind", "features") != "features":
            continue
        if not all(_matches(attrs, name, value) for name, value in wanted.items()):
            continue
        images = attrs.get("images")
        if images is None:
            if attrs.get("dataset_fingerprint") == dataset.fingerprint:
                exact.append(entry)  # format 1, keyed by this dataset
        elif own is not None and images == own:
            exact.append(entry)
        elif own is not None:
            others.append(entry)
    if exact or not others:
        return exact
    lists: dict[str, list[str] | None] = {}
    views: list[RowView] = []
    for entry in others:
        images = str(entry.attrs["images"])
        if images not in lists:
            lists[images] = image_list(store, images)
        hashes = lists[images]
        if hashes is None or len(hashes) != entry.shape[0]:
            continue
        rows = row_map(hashes, dataset.image_hashes)
        if rows is not None:
            views.append(RowView(entry, rows))
    views.sort(key=lambda v: (not v.is_complete, v.entry.shape[0]))
    return list(views)


# the attrs of a feature key besides its images: two entries with equal values hold the
# same features of (possibly different) images
FACTOR_FIELDS = (
    "model",
    "layer",
    "layer_target",
    "preprocess",
    "view",
    "pooling",
    "dtype",
    "compute_dtype",
)


def factor_signature(attrs: dict[str, Any]) -> str:
    """Canonical text of an entry's factors without its images (see FACTOR_FIELDS)."""
    from featstore.keys import canonical_json

    return canonical_json({name: attrs.get(name) for name in FACTOR_FIELDS})


class ContentIndex:
    """One scan of a store's entries, grouped by their factors, to find for a planned key
    an entry that already holds the dataset's images (format 1, or a superset)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._groups: dict[str, list[Any]] | None = None
        self._lists: dict[str, list[str] | None] = {}

    def _scan(self) -> dict[str, list[Any]]:
        if self._groups is None:
            groups: dict[str, list[Any]] = {}
            for entry in _readable_entries(self.store):
                if entry.attrs.get("kind", "features") == "features":
                    groups.setdefault(factor_signature(entry.attrs), []).append(entry)
            self._groups = groups
        return self._groups

    def find(self, dataset: Any, factors: dict[str, Any]) -> Any | None:
        """An entry of exactly this dataset's images under another key (format 1, or
        upgraded from it) as is, else a complete entry holding all of its images among
        others (as a :class:`RowView`), else None."""
        candidates = self._scan().get(factor_signature(factors), [])
        for entry in candidates:
            images = entry.attrs.get("images")
            if (
                images is None and entry.attrs.get("dataset_fingerprint") == dataset.fingerprint
            ) or (images is not None and images == dataset.images_id):
                return entry
        if dataset.image_hashes is None:
            return None
        for entry in sorted(candidates, key=lambda e: e.shape[0]):
            images = entry.attrs.get("images")
            if images is None or images == dataset.images_id:
                continue
            if images not in self._lists:
                self._lists[images] = image_list(self.store, str(images))
            hashes = self._lists[images]
            if hashes is None or len(hashes) != entry.shape[0]:
                continue
            rows = row_map(hashes, dataset.image_hashes)
            if rows is not None:
                view = RowView(entry, rows)
                if view.is_complete:
                    return view
        return None


def view_for(store: Any, dataset: Any, entry: Any) -> Any | None:
    """``entry`` as ``dataset`` reads it: as is when it holds exactly its images (or is a
    format-1 entry of it), a :class:`RowView` when it holds them among others, else None."""
    images = entry.attrs.get("images")
    if images is None:
        return entry if entry.attrs.get("dataset_fingerprint") == dataset.fingerprint else None
    if images == dataset.images_id:
        return entry
    if dataset.image_hashes is None:
        return None
    hashes = image_list(store, str(images))
    if hashes is None or len(hashes) != entry.shape[0]:
        return None
    rows = row_map(hashes, dataset.image_hashes)
    return None if rows is None else RowView(entry, rows)
