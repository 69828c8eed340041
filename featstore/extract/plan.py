"""Planning an extraction: which feature entries a request means, which exist, what is missing.

Planning loads no network weights when the weights hash is cached: a request whose
entries are all complete costs a few metadata reads. Keys follow CONTRACTS.md: the
content hash of dataset fingerprint, network identity (name, source, weights sha256),
layer, preprocessing, view, stored pooling, storage dtype and compute dtype.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featstore.errors import InsufficientSpaceError, SpecError
from featstore.extract.device import Compute, resolve_compute
from featstore.extract.pooling import effective_pooling, parse_pooling, parse_view, row_shape
from featstore.keys import make_key
from featstore.models import (
    LayerInfo,
    ModelSpec,
    WeightsRef,
    get_spec,
    resolve_layer,
    resolve_weights,
    weights_identity,
)
from featstore.store.base import default_chunk_rows

DEFAULT_POOLING = "avg"
MAX_CHUNK_ROWS = 256  # resume granularity: a killed run loses at most this many rows per entry
KEY_FIELDS = (
    "dataset_id",
    "dataset_fingerprint",
    "model",
    "layer",
    "layer_target",
    "preprocess",
    "view",
    "pooling",
    "dtype",
    "compute_dtype",
)


@dataclass
class EntryPlan:
    """One feature entry of the request and how much of it is missing."""

    key: str
    attrs: dict[str, Any]
    model: str
    layer: str
    target: LayerInfo
    view: str
    pooling: str
    row_shape: tuple[int, ...]
    dtype: str
    n_rows: int
    chunk_rows: int
    exists: bool
    missing_chunks: list[int]

    @property
    def n_chunks(self) -> int:
        return max(1, math.ceil(self.n_rows / self.chunk_rows)) if self.n_rows else 0

    @property
    def complete(self) -> bool:
        return not self.missing_chunks

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def missing_rows(self) -> np.ndarray:
        """Row indices covered by the missing chunks."""
        parts = [
            np.arange(c * self.chunk_rows, min((c + 1) * self.chunk_rows, self.n_rows))
            for c in self.missing_chunks
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    @property
    def missing_bytes(self) -> int:
        return int(self.missing_rows().size) * self.row_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "model": self.model,
            "layer": self.layer,
            "layer_target": self.target.name,
            "view": self.view,
            "pooling": self.pooling,
            "shape": [self.n_rows, *self.row_shape],
            "dtype": self.dtype,
            "chunks": self.n_chunks,
            "missing_chunks": len(self.missing_chunks),
            "exists": self.exists,
            "complete": self.complete,
            "bytes": self.n_rows * self.row_bytes,
            "missing_bytes": self.missing_bytes,
        }


@dataclass
class ModelPlan:
    """A network of the request: spec (with effective preprocessing), weights, identity."""

    spec: ModelSpec
    weights: WeightsRef
    identity: dict[str, str]
    layers: dict[str, LayerInfo]  # layer as given -> what it resolves to


@dataclass
class ExtractPlan:
    dataset: Any
    compute: Compute
    dtype: str
    models: list[ModelPlan]
    entries: list[EntryPlan]
    store_url: str = ""
    free_bytes: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def todo(self) -> list[EntryPlan]:
        return [e for e in self.entries if not e.complete]

    @property
    def missing_bytes(self) -> int:
        return sum(e.missing_bytes for e in self.entries)

    def rows_to_compute(self) -> np.ndarray:
        rows = [e.missing_rows() for e in self.todo]
        return np.unique(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
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
            "images_to_compute": int(self.rows_to_compute().size),
            "missing_bytes": self.missing_bytes,
            "free_bytes": self.free_bytes,
            "store": self.store_url,
        }


# --- request normalisation ---------------------------------------------------------------------
def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return (
            [v.strip() for v in value.split(",") if v.strip()]
            if "crops" not in value
            else [value.strip()]
        )
    return [str(v).strip() for v in value if str(v).strip()]


def _per_model(value: Any, model: str, default: Any) -> Any:
    """A per-model option: one value for all, or a dict keyed by model name."""
    if isinstance(value, Mapping):
        return value.get(model, value.get("*", default))
    return default if value is None else value


def _poolings_for(pooling: Any, layer: str) -> list[str]:
    if isinstance(pooling, Mapping):
        chosen = pooling.get(layer, pooling.get("*", DEFAULT_POOLING))
    else:
        chosen = DEFAULT_POOLING if pooling is None else pooling
    items = [chosen] if isinstance(chosen, str) else list(chosen)
    out: list[str] = []
    for item in items:
        out.extend(p for p in str(item).split(",") if p.strip())
    return out or [DEFAULT_POOLING]


def model_plan(
    name: str,
    layers: Sequence[str] | None,
    weights: str | None,
    preprocess: Mapping[str, Any] | None,
) -> ModelPlan:
    """Resolve a network, its weights identity and its layers at the effective input size."""
    spec = get_spec(name)
    if preprocess:
        spec = spec.with_preprocess(spec.preprocess.override(**dict(preprocess)))
        native = get_spec(name).input_size
        if spec.fixed_input and spec.input_size != native:
            raise SpecError(
                f"{name} only takes {native[0]}x{native[1]} inputs; drop the crop override for it"
            )
    ref = resolve_weights(spec, weights)
    identity = weights_identity(spec, ref)
    wanted = list(layers) if layers else list(spec.default_layers)
    if not wanted:
        raise SpecError(
            f"{name} has no default layers: name them with -l (see `featstore models layers {name}`)"
        )
    resolved = {layer: resolve_layer(spec, layer) for layer in dict.fromkeys(wanted)}
    return ModelPlan(spec=spec, weights=ref, identity=identity, layers=resolved)


def entry_attrs(
    dataset: Any, mp: ModelPlan, layer: str, view: str, pooling: str, dtype: str, compute_dtype: str
) -> dict[str, Any]:
    """Every factor of an entry; the key is the hash of the KEY_FIELDS among them."""
    info = mp.layers[layer]
    return {
        "kind": "features",
        "dataset_id": dataset.id,
        "dataset_name": dataset.name,
        "dataset_fingerprint": dataset.fingerprint,
        "model": dict(mp.identity),
        "model_name": mp.spec.name,
        "layer": layer,
        "layer_target": info.name,
        "layer_shape": list(info.shape or ()),
        "preprocess": mp.spec.preprocess.to_dict(),
        "view": view,
        "pooling": pooling,
        "dtype": dtype,
        "compute_dtype": compute_dtype,
    }


def feature_key(attrs: Mapping[str, Any]) -> str:
    return make_key("feat", {k: attrs[k] for k in KEY_FIELDS})


def _chunk_rows(row: tuple[int, ...], dtype: str, n_rows: int, cap: int | None) -> int:
    """A power of two: chunks of every entry of a run nest, and stay ~<= 4 MB."""
    limit = max(1, min(default_chunk_rows(row, dtype), cap or MAX_CHUNK_ROWS, max(1, n_rows)))
    return 1 << (limit.bit_length() - 1)


def free_space(url: str) -> int | None:
    """Free bytes on the local disk holding ``url`` (None for object storage)."""
    if "://" in url and not url.startswith("file://"):
        return None
    path = Path(url.removeprefix("file://")).expanduser().resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return int(shutil.disk_usage(path).free)


def check_space(plan: ExtractPlan, reserve_bytes: int = 64 * 1024 * 1024) -> None:
    """Refuse a run whose uncompressed missing features do not fit on the local disk."""
    need = plan.missing_bytes
    if plan.free_bytes is not None and need + reserve_bytes > plan.free_bytes:
        raise InsufficientSpaceError(
            f"extraction needs up to {need / 1e9:.2f} GB for {len(plan.todo)} entries but the disk of "
            f"{plan.store_url} has {plan.free_bytes / 1e9:.2f} GB free; free space, pool more "
            f"(e.g. --pool avg) or use another --store"
        )


def plan(
    store: Any,
    dataset: Any,
    models: str | Sequence[str],
    layers: Any = None,
    pooling: Any = DEFAULT_POOLING,
    views: Any = ("plain",),
    *,
    weights: Any = None,
    preprocess: Mapping[str, Any] | None = None,
    device: str = "auto",
    amp: bool | None = None,
    compute_dtype: str | None = None,
    dtype: str = "float16",
    chunk_rows: int | None = None,
) -> ExtractPlan:
    """What ``extract`` would do, without running a network.

    models: names (list or comma-separated); layers: names for every network, a dict
    {model: [layers]}, or None for each network's defaults; pooling: a spec, a list of
    specs, or {layer: spec(s), "*": default}; views: plain, flip, crops:<scales>;
    weights: one choice for all networks or {model: choice}.
    """
    if isinstance(dataset, str):
        dataset = store.get_dataset(dataset)
    compute = resolve_compute(device, amp, compute_dtype)
    dtype = str(np.dtype(dtype))
    view_names = list(dict.fromkeys(str(parse_view(v)) for v in (_as_list(views) or ["plain"])))
    entries: list[EntryPlan] = []
    mplans: list[ModelPlan] = []
    seen: set[str] = set()
    for name in dict.fromkeys(_as_list(models)):
        layer_list = layers.get(name) if isinstance(layers, Mapping) else layers
        pre = (
            preprocess.get(name)
            if isinstance(preprocess, Mapping) and name in preprocess
            else preprocess
        )
        mp = model_plan(name, _as_list(layer_list) or None, _per_model(weights, name, None), pre)
        mplans.append(mp)
        for layer, info in mp.layers.items():
            shape = tuple(info.shape or ())
            for pool_spec in _poolings_for(pooling, layer):
                pool = str(effective_pooling(parse_pooling(pool_spec), shape, info.tokens))
                for view in view_names:
                    attrs = entry_attrs(
                        dataset, mp, layer, view, pool, dtype, compute.compute_dtype
                    )
                    key = feature_key(attrs)
                    if key in seen:
                        continue
                    seen.add(key)
                    rshape = row_shape(pool, shape, view, info.tokens)
                    exists = store.has_entry(key)
                    if exists:
                        entry = store.get_entry(key)
                        cr, missing = entry.chunk_rows, entry.missing_chunks()
                    else:
                        cr = _chunk_rows(rshape, dtype, dataset.n, chunk_rows)
                        missing = list(range(max(1, math.ceil(dataset.n / cr)) if dataset.n else 0))
                    entries.append(
                        EntryPlan(
                            key=key,
                            attrs=attrs,
                            model=name,
                            layer=layer,
                            target=info,
                            view=view,
                            pooling=pool,
                            row_shape=rshape,
                            dtype=dtype,
                            n_rows=int(dataset.n),
                            chunk_rows=cr,
                            exists=exists,
                            missing_chunks=list(missing),
                        )
                    )
    if not mplans:
        raise SpecError("no network given: name at least one with -m")
    url = str(getattr(store, "url", ""))
    return ExtractPlan(
        dataset=dataset,
        compute=compute,
        dtype=dtype,
        models=mplans,
        entries=entries,
        store_url=url,
        free_bytes=free_space(url) if url else None,
    )
