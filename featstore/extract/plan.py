"""Planning an extraction: which feature entries a request means, which exist, what is missing.

The request is an :class:`~featstore.extract.request.ExtractionRequest` (every factor
already parsed); a plan holds it, and its entries hold the stored :class:`Pooling` and
the :class:`View` as objects.

Planning loads no network weights when the weights hash is cached: a request whose
entries are all complete costs a few metadata reads. Each entry's key is its
:class:`~featstore.specs.FeatureKey`: the content id of the ordered images (never the
dataset's name, labels or splits), network identity (name, source, weights sha256), layer,
preprocessing, view, stored pooling, storage and compute dtype.

A planned entry that does not exist may still be served without a forward pass: by a
format-1 entry of this dataset, or by a complete entry holding all of the dataset's images
among others (a subset, a re-split, a permutation), read by index. The plan names that
entry (``source``) and computes nothing for it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from featstore.errors import InsufficientSpaceError, SpecError, UnknownModelError
from featstore.extract.device import Compute, resolve_compute
from featstore.extract.pooling import effective_pooling, row_shape
from featstore.extract.request import ExtractionRequest
from featstore.models import (
    LayerInfo,
    ModelSpec,
    WeightsRef,
    get_spec,
    resolve_layer,
    resolve_weights,
    weights_identity,
)
from featstore.specs import FeatureKey, Pooling, View, WeightsIdentity
from featstore.store.content import ContentIndex, RowView
from featstore.store.networks import AddedNetwork
from featstore.store.select import file_record

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset
    from featstore.store.base import Store

DEFAULT_RESERVE_BYTES = 64 * 1024 * 1024
RESERVE_ENV = "FEATSTORE_SPACE_RESERVE_MB"  # overrides the space kept free by check_space
MAX_CHUNK_ROWS = 256  # resume granularity: a killed run loses at most this many rows per entry


class EntryPlanJson(TypedDict):
    """One entry of a plan as ``featstore extract --dry-run --json`` prints it."""

    key: str
    model: str
    layer: str
    layer_target: str
    view: str
    pooling: str
    shape: list[int]  # rows, then the row's shape
    dtype: str
    chunks: int
    missing_chunks: int
    exists: bool
    complete: bool
    bytes: int
    missing_bytes: int
    source: str | None
    by_index: bool


class ExtractPlanJson(TypedDict):
    """A plan as ``featstore extract --dry-run --json`` prints it (and a summary's ``plan``)."""

    dataset_id: str
    dataset_name: str
    n_images: int
    device: str
    compute_dtype: str
    dtype: str
    entries: list[EntryPlanJson]
    n_entries: int
    n_complete: int
    n_by_index: int
    images_to_compute: int
    missing_bytes: int
    free_bytes: int | None
    store: str


@dataclass(frozen=True)
class EntryPlan:
    """One feature entry of the request and how much of it was missing when planned.

    ``chunk_rows`` is the entry's unit of work (a whole shard when ``shard_rows`` is set);
    a run computes the units it is given (see :func:`featstore.extract.pipeline.extract`),
    asking the entry what is still missing when it starts.
    """

    key: str
    attrs: dict[str, Any]
    model: str
    layer: str
    target: LayerInfo
    view: View
    pooling: Pooling  # as stored (the effective pooling for the layer's layout)
    row_shape: tuple[int, ...]
    dtype: str
    n_rows: int
    chunk_rows: int
    exists: bool
    missing_chunks: tuple[int, ...]
    shard_rows: int | None = None
    inner_chunk_rows: int | None = None  # the stored chunk when sharded
    source: str | None = None  # the entry serving these rows when not this key's own
    by_index: bool = False  # ``key`` (= source) holds these images among others: read by index

    @property
    def n_chunks(self) -> int:
        return max(1, math.ceil(self.n_rows / self.chunk_rows)) if self.n_rows else 0

    @property
    def complete(self) -> bool:
        return not self.missing_chunks

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def rows_of(self, chunks: Any) -> np.ndarray:
        """Row indices covered by these chunks (units) of the entry."""
        parts = [
            np.arange(c * self.chunk_rows, min((c + 1) * self.chunk_rows, self.n_rows))
            for c in sorted(chunks)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def missing_rows(self) -> np.ndarray:
        """Row indices covered by the missing chunks."""
        return self.rows_of(self.missing_chunks)

    @property
    def missing_bytes(self) -> int:
        return int(self.missing_rows().size) * self.row_bytes

    def to_dict(self) -> EntryPlanJson:
        return {
            "key": self.key,
            "model": self.model,
            "layer": self.layer,
            "layer_target": self.target.name,
            "view": str(self.view),
            "pooling": str(self.pooling),
            "shape": [self.n_rows, *self.row_shape],
            "dtype": self.dtype,
            "chunks": self.n_chunks,
            "missing_chunks": len(self.missing_chunks),
            "exists": self.exists,
            "complete": self.complete,
            "bytes": self.n_rows * self.row_bytes,
            "missing_bytes": self.missing_bytes,
            "source": self.source,
            "by_index": self.by_index,
        }


@dataclass(frozen=True)
class ModelPlan:
    """A network of the request: spec (with effective preprocessing), weights, identity."""

    spec: ModelSpec
    weights: WeightsRef
    identity: WeightsIdentity
    layers: dict[str, LayerInfo]  # layer as given -> what it resolves to
    # a `models add` name: identity as recorded, its file checked only if something is computed
    added: AddedNetwork | None = None


@dataclass(frozen=True)
class ExtractPlan:
    """What a request means against a store: immutable; a run keeps its own state."""

    request: ExtractionRequest
    dataset: Dataset
    compute: Compute
    dtype: str
    models: tuple[ModelPlan, ...]
    entries: tuple[EntryPlan, ...]
    store_url: str = ""
    free_bytes: int | None = None

    @property
    def todo(self) -> list[EntryPlan]:
        return [e for e in self.entries if not e.complete]

    @property
    def missing_bytes(self) -> int:
        return sum(e.missing_bytes for e in self.entries)

    def rows_to_compute(self) -> np.ndarray:
        rows = [e.missing_rows() for e in self.todo]
        return np.unique(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)

    def to_dict(self) -> ExtractPlanJson:
        return {
            "dataset_id": self.dataset.id,
            "dataset_name": self.dataset.name,
            "n_images": int(self.dataset.n),
            "device": self.compute.device,
            "compute_dtype": self.compute.compute_dtype,
            "dtype": self.dtype,
            "entries": [e.to_dict() for e in self.entries],
            "n_entries": len(self.entries),
            "n_complete": len(self.entries) - len(self.todo),
            "n_by_index": sum(1 for e in self.entries if e.by_index),
            "images_to_compute": int(self.rows_to_compute().size),
            "missing_bytes": self.missing_bytes,
            "free_bytes": self.free_bytes,
            "store": self.store_url,
        }


def model_plan(
    name: str,
    layers: Sequence[str] | None,
    weights: str | None,
    preprocess: Mapping[str, Any] | None,
    store: Store | None = None,
) -> ModelPlan:
    """Resolve a network, its weights identity and its layers at the effective input size.

    With ``store``, a network registered in that store (a fine-tuned one: see
    :mod:`featstore.store.trained`; or one added with ``models add``: see
    :mod:`featstore.store.networks`) is found by its name too, with the store's weights.
    """
    stored = _stored_network(store, name, weights)
    spec = base = stored.spec if stored is not None else _registry_spec(name, store)
    if preprocess:
        spec = spec.with_preprocess(spec.preprocess.override(**dict(preprocess)))
        native = base.input_size
        if spec.fixed_input and spec.input_size != native:
            raise SpecError(
                f"{name} only takes {native[0]}x{native[1]} inputs; drop the crop override for it"
            )
    ref = stored.weights if stored is not None else resolve_weights(spec, weights)
    added = stored if isinstance(stored, AddedNetwork) else None
    identity = added.identity if added is not None else weights_identity(spec, ref)
    wanted = list(layers) if layers else list(spec.default_layers)
    if not wanted:
        raise SpecError(
            f"{name} has no default layers: name them with -l (see `featstore models layers {name}`)"
        )
    resolved = {layer: resolve_layer(spec, layer) for layer in dict.fromkeys(wanted)}
    return ModelPlan(spec=spec, weights=ref, identity=identity, layers=resolved, added=added)


def _registry_spec(name: str, store: Store | None) -> ModelSpec:
    """``name`` from the registry; an unknown name also lists the store's named networks."""
    try:
        return get_spec(name)
    except UnknownModelError as exc:
        from featstore.store.networks import NAME_PATTERN, named_networks

        if store is None or not NAME_PATTERN.fullmatch(name):  # module:function, timm: ...
            raise

        names = sorted(str(n["name"]) for n in named_networks(store))
        held = f"store {store.url} names {', '.join(names)}" if names else "the store names none"
        raise UnknownModelError(
            f"{exc}; {held} (featstore models named; add one with featstore models add NAME "
            "ARCH --weights FILE)"
        ) from None


def _stored_network(store: Store | None, name: str, weights: Any) -> Any:
    """The store's network ``name`` (spec + verified weights), or None (the seam where store-
    registered names join the registry's): a fine-tuned one (featstore.store.trained.
    stored_network) or one added with ``models add`` (featstore.store.networks.added_network:
    keyed by its recorded weights; :func:`plan` proves its file only if it computes)."""
    if store is None:
        return None
    from featstore.store.trained import stored_network

    found = stored_network(store, name)
    if found is None:
        from featstore.store.networks import added_network

        return added_network(store, name, weights)
    if weights is not None:
        raise SpecError(
            f"{name} is a network of the store with its own weights; drop --weights for it"
        )
    return found


def entry_key(
    dataset: Dataset,
    mp: ModelPlan,
    layer: str,
    view: View,
    pooling: Pooling,
    dtype: str,
    compute_dtype: str,
) -> FeatureKey:
    """Every factor of one entry of the request (see :class:`featstore.specs.FeatureKey`)."""
    return _feature_key(dataset.require_images_id(), mp, layer, view, pooling, dtype, compute_dtype)


def _feature_key(
    images: str,
    mp: ModelPlan,
    layer: str,
    view: View,
    pooling: Pooling,
    dtype: str,
    compute_dtype: str,
) -> FeatureKey:
    return FeatureKey(
        images=images,
        model=mp.identity,
        layer=layer,
        layer_target=mp.layers[layer].name,
        preprocess=mp.spec.preprocess,
        view=view,
        pooling=pooling,
        dtype=dtype,
        compute_dtype=compute_dtype,
    )


def entry_attrs(dataset: Dataset, mp: ModelPlan, fkey: FeatureKey) -> dict[str, Any]:
    """The attrs an entry is created with: its factors plus what describes them for people
    and lets a reader select it without the network (see :mod:`featstore.store.select`):
    the network's layer table (aliases) and the weights file it was read from."""
    attrs = {
        "kind": "features",
        **fkey.to_dict(),
        "dataset_name": dataset.name,
        "model_name": mp.spec.name,
        "layer_shape": list(mp.layers[fkey.layer].shape or ()),
        "layer_aliases": dict(mp.spec.aliases),
    }
    if mp.weights.source == "file" and mp.weights.path and os.path.isfile(mp.weights.path):
        attrs["weights_file"] = file_record(mp.weights.path)
    return attrs


def space_reserve(free_bytes: int) -> int:
    """Bytes ``check_space`` keeps free: FEATSTORE_SPACE_RESERVE_MB if set, else 64 MB or a
    tenth of the free space, whichever is smaller (a small disk can still take small jobs)."""
    raw = os.environ.get(RESERVE_ENV)
    if raw not in (None, ""):
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value < 0:
            raise SpecError(f"{RESERVE_ENV}={raw!r} is not a size in MB; set it to 0 or more")
        return int(value * 1024 * 1024)
    return min(DEFAULT_RESERVE_BYTES, free_bytes // 10)


def check_space(plan: ExtractPlan, reserve_bytes: int | None = None) -> None:
    """Refuse a run whose uncompressed missing features do not fit on the local disk.

    A fully cached run needs nothing and is never refused; ``reserve_bytes`` (default:
    :func:`space_reserve`) is kept free for the store's metadata and other writers.
    """
    need = plan.missing_bytes
    if plan.free_bytes is None or need <= 0:
        return
    reserve = space_reserve(plan.free_bytes) if reserve_bytes is None else reserve_bytes
    if need + reserve > plan.free_bytes:
        raise InsufficientSpaceError(
            f"extraction needs up to {_mb(need)} for {len(plan.todo)} entries but the disk of "
            f"{plan.store_url} has {_mb(plan.free_bytes)} free, less a reserve of {_mb(reserve)} "
            f"(set {RESERVE_ENV} to change it); free space, pool more (e.g. --pool avg) or use "
            "another --store"
        )


def _plan_entry(
    store: Store,
    dataset: Dataset,
    index: ContentIndex,
    mp: ModelPlan,
    name: str,
    layer: str,
    info: LayerInfo,
    fkey: FeatureKey,
    rshape: tuple[int, ...],
    dtype: str,
    chunk_rows: int | None,
    view: View,
    pool: Pooling,
) -> EntryPlan:
    """One entry: its own key if stored, else an entry that already holds the dataset's
    images (format 1: that entry itself; a superset: read by index), else a new one."""
    common: dict[str, Any] = {
        "model": name, "layer": layer, "target": info, "view": view, "pooling": pool,
        "row_shape": rshape, "dtype": dtype, "n_rows": int(dataset.n),
    }  # fmt: skip
    own = dataset.images_id is not None
    key = fkey.key
    if own and store.has_entry(key):
        entry = store.get_entry(key)
        inner, shard = entry.geometry
        return EntryPlan(
            key=key, attrs=entry_attrs(dataset, mp, fkey), chunk_rows=entry.chunk_rows,
            exists=True, missing_chunks=tuple(entry.missing_chunks()), shard_rows=shard,
            inner_chunk_rows=inner if shard else None, **common,
        )  # fmt: skip
    served = index.find(dataset, fkey.to_dict())
    if isinstance(served, RowView):  # a complete superset: nothing to compute or write
        return EntryPlan(
            key=served.key, attrs=entry_attrs(dataset, mp, fkey), chunk_rows=served.chunk_rows,
            exists=True, missing_chunks=(), source=served.key, by_index=True, **common,
        )  # fmt: skip
    if served is not None:  # a format-1 entry of this very dataset: it is this entry
        inner, shard = served.geometry
        return EntryPlan(
            key=served.key, attrs=dict(served.attrs), chunk_rows=served.chunk_rows,
            exists=True, missing_chunks=tuple(served.missing_chunks()), shard_rows=shard,
            inner_chunk_rows=inner if shard else None, source=served.key, **common,
        )  # fmt: skip
    dataset.require_images_id()  # a format-1 dataset cannot key a new entry
    inner, shard = store.entry_geometry(
        (dataset.n, *rshape), dtype, max_rows=chunk_rows or MAX_CHUNK_ROWS
    )
    cr = shard or inner
    n_chunks = max(1, math.ceil(dataset.n / cr)) if dataset.n else 0
    return EntryPlan(
        key=key, attrs=entry_attrs(dataset, mp, fkey), chunk_rows=cr, exists=False,
        missing_chunks=tuple(range(n_chunks)), shard_rows=shard,
        inner_chunk_rows=inner if shard else None, **common,
    )  # fmt: skip


def _mb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.2f} MB"


def _check_pool_layers(request: ExtractionRequest, mplans: Sequence[ModelPlan]) -> None:
    """A per-layer pooling (LAYER=SPEC) must name a requested layer, never be dropped silently."""
    requested = [layer for mp in mplans for layer in mp.layers]
    unknown = [name for name in request.pooling.names if name not in requested]
    if unknown:
        raise SpecError(
            f"--pool names layer {unknown[0]!r}, which is not requested; requested layers: "
            f"{', '.join(dict.fromkeys(requested))} (add it with -l or fix the name)"
        )


def _check_grid(pool: Pooling, shape: tuple[int, ...], model: str, layer: str) -> None:
    """A grid or map finer than the layer's map would only repeat its cells."""
    if pool.kind in ("grid", "map") and pool.size is not None and len(shape) == 3:
        side = min(int(shape[1]), int(shape[2]))
        if pool.size > side:
            raise SpecError(
                f"pooling {pool} asks for a {pool.size}x{pool.size} grid but {model} {layer} "
                f"has a {shape[1]}x{shape[2]} map; use a size of at most {side}"
            )


def plan(store: Store, request: ExtractionRequest) -> ExtractPlan:
    """What extracting ``request`` into ``store`` would do, without running a network."""
    if not request.models:  # a request built field by field, not parsed
        raise SpecError("no network given: name at least one with -m")
    dataset = request.dataset
    if isinstance(dataset, str):
        dataset = store.get_dataset(dataset)
    compute = resolve_compute(request.device, request.amp, request.compute_dtype)
    dtype = request.dtype
    entries: list[EntryPlan] = []
    mplans: list[ModelPlan] = []
    seen: set[str] = set()
    own_images = dataset.images_id  # None: a format-1 registration (see _plan_entry)
    index = ContentIndex(store)
    for name in request.models:
        mp = model_plan(
            name,
            request.layers_for(name),
            request.weights_for(name),
            request.preprocess_for(name),
            store,
        )
        twin = next((m for m in mplans if m.spec.name == mp.spec.name), None)
        if twin is not None:  # a run's entries are computed by the network of that name
            raise SpecError(
                f"{name} is {mp.spec.name} (weights {mp.identity.weights_sha256[:12]}), like "
                f"another network of this request (weights {twin.identity.weights_sha256[:12]}); "
                "extract them in two runs"
            )
        mplans.append(mp)
        name = mp.spec.name  # a store name (models add) is its architecture with its weights
        for layer, info in mp.layers.items():
            shape = tuple(info.shape or ())
            for asked in request.poolings_for(layer):
                pool = effective_pooling(asked, shape, info.tokens)
                _check_grid(pool, shape, name, layer)
                for view in request.views:
                    fkey = _feature_key(
                        own_images or "", mp, layer, view, pool, dtype, compute.compute_dtype
                    )
                    rshape = row_shape(pool, shape, view, info.tokens)
                    entry_plan = _plan_entry(
                        store, dataset, index, mp, name, layer, info, fkey, rshape, dtype,
                        request.chunk_rows, view, pool,
                    )  # fmt: skip
                    if entry_plan.key in seen:
                        continue
                    seen.add(entry_plan.key)
                    entries.append(entry_plan)
    _check_pool_layers(request, mplans)
    for mp in mplans:  # a named network's file is needed (and proven) only to compute
        n_todo = sum(1 for e in entries if e.model == mp.spec.name and not e.complete)
        if mp.added is not None and n_todo:
            mp.added.check_file(n_todo)
    return ExtractPlan(
        request=request.with_dataset(dataset),
        dataset=dataset,
        compute=compute,
        dtype=dtype,
        models=tuple(mplans),
        entries=tuple(entries),
        store_url=str(store.url),
        free_bytes=store.free_bytes(),
    )
