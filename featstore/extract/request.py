"""The extraction request: what to extract, parsed once at the edge into frozen types.

A request names a dataset, its networks, their layers, the poolings (:class:`Pooling`)
and views (:class:`View`) to store, the weights and preprocessing overrides, and how to
compute and store the numbers. :meth:`ExtractionRequest.parse` turns what a command line,
a sweep or a script gives (names, comma lists, per-layer or per-network mappings) into one;
after that nothing re-parses a string. The same request object is planned
(:func:`featstore.extract.plan`), run (:func:`featstore.extract.extract`,
:func:`featstore.extract.run.run_extraction`) and sent to Dask workers
(:func:`featstore.extract.distributed.run_distributed`): it is plain, picklable data.

Defaults are the constants of :mod:`featstore.specs` (``DEFAULT_POOLING`` ...), which the
read path (:mod:`featstore.store.select`) uses too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from featstore.errors import SpecError
from featstore.specs import (
    DEFAULT_DEVICE,
    DEFAULT_POOLING,
    DEFAULT_STORAGE_DTYPE,
    DEFAULT_VIEW,
    Pooling,
    View,
    compute_dtype_name,
)

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset

__all__ = ["ALL", "STORAGE_DTYPES", "ByName", "ExtractionRequest", "check_dtype", "group_request"]

ALL = "*"  # the name that stands for every network (or layer) not named
STORAGE_DTYPES = ("float16", "float32", "float64")  # integer storage would truncate features

T = TypeVar("T")


@dataclass(frozen=True)
class ByName(Generic[T]):
    """A value per name (a network or a layer), ``"*"`` for every name not listed."""

    items: tuple[tuple[str, T], ...] = ()

    def get(self, name: str) -> T | None:
        """The value for ``name``, else the one for every name, else None."""
        found = dict(self.items)
        return found.get(name, found.get(ALL))

    @property
    def names(self) -> tuple[str, ...]:
        """The names given one by one (not ``"*"``)."""
        return tuple(n for n, _ in self.items if n != ALL)


def check_dtype(dtype: Any) -> str:
    """The storage dtype's name; only float types keep features (int8 would truncate them)."""
    try:
        name = str(np.dtype(dtype))
    except TypeError:
        name = str(dtype)
    if name not in STORAGE_DTYPES:
        raise SpecError(
            f"storage dtype {dtype!r} is not supported; use one of {', '.join(STORAGE_DTYPES)}"
        )
    return name


@dataclass(frozen=True)
class ExtractionRequest:
    """One extraction request, every factor parsed (see :meth:`parse` for the loose forms).

    ``dataset`` is a dataset's name or id, or a registered dataset; ``layers`` (per network)
    None for the network's default layers; ``pooling`` per layer, ``"*"`` for the rest;
    ``weights`` and ``preprocess`` (override fields) per network.
    """

    dataset: str | Dataset
    models: tuple[str, ...]
    layers: ByName[tuple[str, ...]] = field(default_factory=ByName)
    pooling: ByName[tuple[Pooling, ...]] = field(
        default_factory=lambda: ByName(((ALL, (DEFAULT_POOLING,)),))
    )
    views: tuple[View, ...] = (DEFAULT_VIEW,)
    weights: ByName[Any] = field(default_factory=ByName)
    preprocess: ByName[tuple[tuple[str, Any], ...]] = field(default_factory=ByName)
    device: str = DEFAULT_DEVICE
    amp: bool | None = None
    compute_dtype: str | None = None
    dtype: str = DEFAULT_STORAGE_DTYPE
    chunk_rows: int | None = None

    # --- what planning asks ----------------------------------------------------------
    def layers_for(self, model: str) -> list[str] | None:
        """The layers asked of ``model``; None: its default layers."""
        found = self.layers.get(model)
        return list(found) if found else None

    def poolings_for(self, layer: str) -> tuple[Pooling, ...]:
        """The poolings asked of ``layer`` (as asked: the stored one may differ by layout)."""
        return self.pooling.get(layer) or (DEFAULT_POOLING,)

    def weights_for(self, model: str) -> Any:
        """The weights asked of ``model`` (a file, "random" ...); None: its default."""
        return self.weights.get(model)

    def preprocess_for(self, model: str) -> dict[str, Any] | None:
        """The preprocessing fields ``model``'s own are overridden with, if any."""
        found = self.preprocess.get(model)
        return dict(found) if found else None

    def with_dataset(self, dataset: str | Dataset) -> ExtractionRequest:
        """The same request for another dataset (e.g. its id, for a Dask worker)."""
        return replace(self, dataset=dataset)

    # --- the edge ---------------------------------------------------------------------
    @classmethod
    def parse(
        cls,
        dataset: str | Dataset,
        models: str | Sequence[str],
        layers: str | Sequence[str] | Mapping[str, Any] | None = None,
        pooling: Any = None,
        views: str | Sequence[str | View] | None = None,
        *,
        weights: str | Mapping[str, str] | None = None,
        preprocess: Mapping[str, Any] | None = None,
        device: str | None = None,
        amp: bool | None = None,
        compute_dtype: str | None = None,
        dtype: Any = None,
        chunk_rows: int | None = None,
    ) -> ExtractionRequest:
        """A request from loose values, each parsed once (SpecError names what is wrong).

        models: names (list or comma-separated); layers: names for every network, a dict
        {model: [layers]}, or None for each network's defaults; pooling: a spec, a list of
        specs, or {layer: spec(s), "*": default}; views: plain, flip, crops:<scales>;
        weights: one choice for all networks or {model: choice}; preprocess: override
        fields ({"crop": 160}) for all networks or {model: fields}.
        """
        names = tuple(dict.fromkeys(_as_list(models)))
        if not names:
            raise SpecError("no network given: name at least one with -m")
        parsed_views = tuple(
            dict.fromkeys(View.parse(v) for v in (_as_list(views) or [DEFAULT_VIEW]))
        )
        return cls(
            dataset=dataset,
            models=names,
            layers=_layers(layers),
            pooling=_poolings(pooling),
            views=parsed_views,
            weights=_weights(weights),
            preprocess=_preprocess(preprocess, names),
            device=DEFAULT_DEVICE if device is None else str(device),
            amp=amp,
            compute_dtype=None if compute_dtype is None else compute_dtype_name(compute_dtype),
            dtype=check_dtype(DEFAULT_STORAGE_DTYPE if dtype is None else dtype),
            chunk_rows=None if chunk_rows is None else int(chunk_rows),
        )


GROUP_OPTIONS = ("device", "compute_dtype", "dtype")  # a sweep's extract: options that are factors


def group_request(dataset: Dataset, group: Any, options: Mapping[str, Any]) -> ExtractionRequest:
    """The request filling a sweep's extraction group (one network's missing entries on one
    dataset: see :class:`featstore.sweep.plan.ExtractionGroup`), with the sweep's options."""
    missing = group.missing
    return ExtractionRequest.parse(
        dataset,
        [getattr(group, "extraction_network", group.network)],
        list(dict.fromkeys(e.layer for e in missing)),
        list(dict.fromkeys(e.pooling for e in missing)),
        list(dict.fromkeys(e.view for e in missing)),
        weights=group.weights,
        **{k: options[k] for k in GROUP_OPTIONS if k in options},
    )


# --- parsing the loose forms ----------------------------------------------------------------
def _as_list(value: Any) -> list[Any]:
    """Names from a comma list or a sequence; a crops view keeps its commas."""
    if value is None:
        return []
    if isinstance(value, (Pooling, View)):
        return [value]
    if isinstance(value, str):
        if "crops" in value:
            return [value.strip()]
        return [v.strip() for v in value.split(",") if v.strip()]
    out: list[Any] = []
    for v in value:
        if isinstance(v, (Pooling, View)):
            out.append(v)
        elif str(v).strip():
            out.append(str(v).strip())
    return out


def _layers(layers: Any) -> ByName[tuple[str, ...]]:
    if layers is None:
        return ByName()
    if isinstance(layers, Mapping):
        return ByName(tuple((str(m), tuple(_as_list(v))) for m, v in layers.items()))
    return ByName(((ALL, tuple(_as_list(layers))),))


def _pooling_list(value: Any) -> tuple[Pooling, ...]:
    items: Iterable[Any] = [value] if isinstance(value, (str, Pooling)) else list(value)
    out: list[Pooling] = []
    for item in items:
        if isinstance(item, Pooling):
            out.append(item)
        else:
            out.extend(Pooling.parse(p) for p in str(item).split(",") if p.strip())
    return tuple(dict.fromkeys(out)) or (DEFAULT_POOLING,)


def _poolings(pooling: Any) -> ByName[tuple[Pooling, ...]]:
    if pooling is None:
        return ByName(((ALL, (DEFAULT_POOLING,)),))
    if isinstance(pooling, Mapping):
        given = {str(layer): _pooling_list(specs) for layer, specs in pooling.items()}
        given.setdefault(ALL, (DEFAULT_POOLING,))
        return ByName(tuple(given.items()))
    return ByName(((ALL, _pooling_list(pooling)),))


def _weights(weights: Any) -> ByName[Any]:
    def one(w: Any) -> Any:
        return str(w) if isinstance(w, (str, os.PathLike)) else w  # a WeightsRef stays one

    if weights is None:
        return ByName()
    if isinstance(weights, Mapping):
        return ByName(tuple((str(m), one(w)) for m, w in weights.items() if w is not None))
    return ByName(((ALL, one(weights)),))


def _frozen(value: Any) -> Any:
    """Lists as tuples, so an override is immutable like the request holding it."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _preprocess(
    preprocess: Mapping[str, Any] | None, models: Sequence[str]
) -> ByName[tuple[tuple[str, Any], ...]]:
    """Override fields for all networks, or per network when keyed by a requested network."""
    if not preprocess:
        return ByName()
    per = {
        str(m): tuple((str(k), _frozen(v)) for k, v in dict(fields).items())
        for m, fields in preprocess.items()
        if m in models and isinstance(fields, Mapping)
    }
    shared = {k: _frozen(v) for k, v in preprocess.items() if k not in per}
    items = list(per.items())
    if shared:
        items.append((ALL, tuple(shared.items())))
    return ByName(tuple(items))
