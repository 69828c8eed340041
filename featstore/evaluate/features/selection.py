"""Which cached entries an evaluation reads.

Shared by every evaluation task: a :class:`FeatureSelector` names entries by their factors
(model, layer, stored pooling, view, weights, compute dtype) or by key; :func:`resolve_parts`
finds exactly one complete entry per selector (plus its flip-view twin when the transform
averages flips) and refuses, with a fix, when none, several, or an incomplete one match.
When several match, the message lists each candidate's key with only the factors that
differ between them, and the options that choose among them.

Entries are found by the dataset's images, not its name (see
:mod:`featstore.store.content`): an entry of exactly these images is read as it is, one
holding them among others through a row view in the dataset's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.errors import (
    EntryNotFoundError,
    EvaluationError,
    FeatstoreError,
    IncompleteEntryError,
    TransformError,
)
from featstore.evaluate.features.parts import ArraySource, Part
from featstore.evaluate.features.stored_pooling import pool_rows
from featstore.evaluate.features.transform_spec import Step, parse_spec
from featstore.specs import Pooling, View
from featstore.store.content import entries_for
from featstore.store.select import (
    CLI_CHOOSERS,
    Catalog,
    Selector,
    describe_selection,
    parse_weights,
)

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset
    from featstore.store.base import Store

__all__ = [
    "ArraySource",
    "FeatureSelector",
    "as_selectors",
    "entry_factors",
    "merge_factors",
    "resolve_dataset",
    "resolve_parts",
    "store_selector",
]

# attrs that make two entries of one dataset's images the same features up to the view
TWIN_ATTRS = (
    "model",
    "layer",
    "preprocess",
    "pooling",
    "dtype",
    "compute_dtype",
)
# entry attrs copied into a result record's factors
FACTOR_ATTRS = ("model_name", "layer", "pooling", "view", "preprocess", "compute_dtype", "dtype")


@dataclass(frozen=True)
class FeatureSelector:
    """Names one feature entry of a dataset: by key, or by factors (None = any)."""

    model: str | None = None
    layer: str | None = None
    pooling: str | None = None
    view: str | None = "plain"
    key: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)  # any other attr filters
    # "random", "pretrained" (the network's default source) or a weights file
    weights: str | None = None
    keys: tuple[str, ...] = ()  # entry keys (or prefixes) that choose among several matches

    def describe(self) -> str:
        factors = (
            ("model", self.model),
            ("layer", self.layer),
            ("pooling", self.pooling),
            ("view", self.view),
            ("weights", self.weights),
        )
        return describe_selection(self.key, factors, self.attrs)


def as_selectors(features: Any) -> list[FeatureSelector]:
    """One selector, a dict of factors, an entry key, or a list of those (a concatenation)."""
    items = features if isinstance(features, (list, tuple)) else [features]
    out = []
    for item in items:
        if isinstance(item, FeatureSelector):
            out.append(item)
        elif isinstance(item, str):
            out.append(FeatureSelector(key=item, view=None))
        elif isinstance(item, Mapping):
            names = ("model", "layer", "pooling", "view", "key", "weights")
            known = {k: item[k] for k in names if k in item}
            other = {k: v for k, v in item.items() if k not in names and k != "keys"}
            keys = tuple(str(k) for k in item.get("keys") or ())
            out.append(FeatureSelector(**known, attrs=other, keys=keys))
        else:
            raise EvaluationError(
                f"cannot select features with {item!r}: give an entry key, a dict of factors or a "
                "FeatureSelector"
            )
    if not out:
        raise EvaluationError("no features selected: give at least one entry key or selector")
    return out


def resolve_dataset(store: Store, dataset: str | Dataset) -> Dataset:
    """The Dataset for a name or id (or a Dataset itself)."""
    if (
        not isinstance(dataset, str)
        and hasattr(dataset, "fingerprint")
        and hasattr(dataset, "split_names")
    ):
        return dataset
    return store.get_dataset(str(dataset))


def _fits(entry: Any, pool: Step | None) -> bool:
    """Whether the transform's pool step (or its absence) can read this entry."""
    try:
        pool_rows(
            np.zeros((1, *entry.shape[1:]), dtype=np.float32),
            pool,
            str(entry.attrs.get("pooling", "none")),
        )
    except TransformError:
        return False
    return True


SELECTOR_FIELDS = ("compute_dtype", "dtype", "preprocess")


def store_selector(selector: FeatureSelector) -> Selector:
    """The store's :class:`~featstore.store.select.Selector` for an evaluation's selector."""
    attrs = dict(selector.attrs)
    pinned = {name: attrs.pop(name) for name in SELECTOR_FIELDS if attrs.get(name) is not None}
    return Selector(
        network=selector.model,
        layer=selector.layer,
        pooling=None if selector.pooling is None else Pooling.parse(selector.pooling),
        view=None if selector.view is None else View.parse(selector.view),
        weights=parse_weights(selector.weights),
        key=selector.key,
        keys=selector.keys,
        attrs=attrs,
        **pinned,
    )


def _not_found(catalog: Catalog, ds: Dataset, selector: FeatureSelector) -> FeatstoreError:
    choice = parse_weights(selector.weights)
    if choice is not None and choice.kind == "pretrained" and not _registered(selector.model):
        return EvaluationError(
            f"--weights {choice.value} needs a registered network, and {selector.model!r} is not "
            "one; give --weights random or a weights FILE, or choose the entry with --key"
        )
    same_model = entries_for(catalog.store, ds, catalog.entries(), model=selector.model)
    same_layer = [e for e in same_model if e.attrs.get("layer") == selector.layer]
    hint = ""
    if same_layer and selector.model:
        stored = sorted(
            {f"pooling={e.attrs.get('pooling')} view={e.attrs.get('view')}" for e in same_layer}
        )
        hint = f" (this layer is cached with {'; '.join(stored)})"
    elif same_model and selector.model:
        layers = sorted({str(e.attrs.get("layer")) for e in same_model})
        hint = f" (cached layers of this model: {', '.join(layers)})"
    return EntryNotFoundError(
        f"no cached {selector.describe()} for dataset {ds.name!r}{hint}; extract them first, e.g. "
        f"featstore extract -d {ds.name} -m {selector.model or 'MODEL'} -l {selector.layer or 'LAYER'}"
    )


def _registered(model: str | None) -> bool:
    """Whether ``model`` names a registered network (imports the registry: failure path only)."""
    if not model:
        return False
    from featstore.models import get_spec

    try:
        get_spec(model)
    except FeatstoreError:
        return False
    return True


def _find_one(
    store: Store,
    ds: Dataset,
    selector: FeatureSelector,
    pool: Step | None,
    catalog: Catalog | None = None,
) -> Any:
    catalog = catalog or Catalog(store)
    found = catalog.find(
        ds,
        store_selector(selector),
        prefer=lambda e: _fits(e, pool),
        choosers=CLI_CHOOSERS,
    )
    if found is None:
        raise _not_found(catalog, ds, selector)
    return found


def _twin(store: Store, ds: Dataset, entry: Any, view: str) -> Any | None:
    wanted = {a: entry.attrs[a] for a in TWIN_ATTRS if a in entry.attrs}
    found = [e for e in entries_for(store, ds, view=view, **wanted) if e.key != entry.key]
    return found[0] if found else None


def _check_complete(entry: Any) -> None:
    missing = entry.missing_chunks()
    if missing:
        a = entry.attrs
        raise IncompleteEntryError(
            f"entry {entry.key} (model={a.get('model_name')}, layer={a.get('layer')}, view={a.get('view')}) "
            f"is incomplete: {len(missing)} of {entry.n_chunks} chunks are missing; rerun the "
            "extraction to finish it (it resumes where it stopped)"
        )


def resolve_parts(
    store: Store, dataset: str | Dataset, features: Any, transform: str | Sequence[Step] = ""
) -> list[Part]:
    """One complete :class:`Part` per selector, with the flip twin when ``transform`` has flipavg."""
    ds = resolve_dataset(store, dataset)
    steps = parse_spec(transform)
    pool = steps[0] if steps and steps[0].name == "pool" else None
    need_flip = any(s.name == "flipavg" for s in steps)
    parts = []
    catalog = Catalog(store)
    for selector in as_selectors(features):
        entry = _find_one(store, ds, selector, pool, catalog)
        if entry.shape[0] != ds.n:
            raise EvaluationError(
                f"entry {entry.key} has {entry.shape[0]} rows but dataset {ds.name!r} has {ds.n} images"
            )
        _check_complete(entry)
        flip = None
        if need_flip:
            flip = _twin(store, ds, entry, "flip")
            if flip is None:
                raise TransformError(
                    f"flipavg needs the flip view of entry {entry.key}; extract the layer with the "
                    "flip view (featstore extract ... --view plain,flip) or drop flipavg"
                )
            _check_complete(flip)
        parts.append(Part(entry, flip))
    return parts


def entry_factors(entry: Any) -> dict[str, Any]:
    """The factors of one entry as a result record shows them."""
    a = entry.attrs
    model = a.get("model") if isinstance(a.get("model"), Mapping) else {}
    out = {
        "model": a.get("model_name") or model.get("name"),
        "model_source": model.get("source"),
        "weights_sha256": model.get("weights_sha256"),
    }
    out.update({k: a.get(k) for k in FACTOR_ATTRS if k != "model_name"})
    return out


def merge_factors(parts: Sequence[Part]) -> dict[str, Any]:
    """Factors of a setting: a value when all parts agree, else the list of values."""
    per = [entry_factors(p.plain) for p in parts]
    merged: dict[str, Any] = {}
    for name in per[0]:
        values = [f.get(name) for f in per]
        merged[name] = values[0] if all(v == values[0] for v in values) else values
    merged["concat"] = len(parts) > 1
    if len(parts) > 1:
        merged["parts"] = per
    return merged
