"""From a sweep spec to a plan: the cells, what is cached, what one pass per network must extract.

Extraction is grouped by (dataset, network): ONE extraction call per group covers every
layer, stored pooling and view the sweep needs from that network, so the network runs
once per image for all of them. An entry counts as cached when the store holds a complete
entry with those factors (the same lookup evaluation does). Bytes and time are estimates:
bytes from extraction's own planner when it gives them, else from the entries' shapes;
time from a table of measured CPU throughputs (DESIGN.md) unless the spec says otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from featstore.datasets import Dataset, dataset_from_source
from featstore.datasets.core import fingerprint
from featstore.datasets.registry import parse_source
from featstore.errors import DatasetError, EntryNotFoundError, SpecError, WeightsNotFoundError
from featstore.evaluate.results import collect_records
from featstore.keys import content_hash
from featstore.settings import cell_key, record_setting
from featstore.specs import Pooling, View
from featstore.store import trained
from featstore.store.content import entries_for
from featstore.store.listing import gc_paused
from featstore.store.select import SPEC_CHOOSERS, Catalog, Selector, parse_weights
from featstore.sweep.spec import Cell, DatasetSpec, NetworkSpec, SweepSpec

if TYPE_CHECKING:
    from featstore.store.base import Store

__all__ = [
    "EntryPlan",
    "ExtractionGroup",
    "SweepPlan",
    "entry_views",
    "make_plan",
    "resolve_datasets",
    "store_planner",
]

# images/s of a forward pass on this kind of CPU, 224 px, 2 threads (DESIGN.md); default 10
CPU_IMAGES_PER_S = {
    "alexnet": 45.0,
    "resnet18": 20.0,
    "efficientnet_lite0": 15.0,
    "resnet50": 5.0,
    "vgg16": 2.0,
}
DEFAULT_IMAGES_PER_S = 10.0
SUBSET_SEED = 0


def entry_views(view: str) -> tuple[str, ...]:
    """The stored views a sweep view reads: flipavg needs plain and flip."""
    return ("plain", "flip") if view == "flipavg" else (view,)


class GroupPlanJson(TypedDict):
    """One extraction pass (a network on a dataset) as ``featstore sweep --dry-run --json``
    prints it."""

    dataset: str
    network: str
    n_images: int
    layers: list[str]
    poolings: list[str]
    views: list[str]
    cached: list[dict[str, Any]]  # the fields of each cached EntryPlan
    to_extract: list[dict[str, Any]]  # ... and of each one to extract
    est_bytes: int | None
    est_seconds: float


class SweepPlanJson(TypedDict):
    """A sweep's plan as ``featstore sweep --dry-run --json`` prints it."""

    sweep: str
    n_cells: int
    cells_with_results: int
    n_entries: int
    n_entries_cached: int
    n_entries_to_extract: int
    extraction_passes: int
    est_bytes: int | None  # None while an entry's size is unknown
    est_seconds: float
    groups: list[GroupPlanJson]
    finetune: list[dict[str, Any]]  # featstore.sweep.finetune.FinetuneJob.to_json
    baseline: dict[str, str]
    notes: list[str]


@dataclass
class EntryPlan:
    layer: str
    pooling: str
    view: str
    cached: bool
    key: str | None = None
    missing_chunks: int | None = None
    nbytes: int | None = None
    exists: bool = False  # partly written (an interrupted run): extraction resumes it
    dim: int | None = None  # features per image (row size), when known
    rows_to_compute: int | None = None  # images still to run for this entry (None: all)


@dataclass
class ExtractionGroup:
    """One network on one dataset: all its layers, poolings and views in one pass."""

    dataset: str
    network: str
    n_images: int
    entries: list[EntryPlan]
    weights: str | None = None
    est_seconds: float = 0.0
    arch: str | None = None  # the registry network that computes a store-registered name

    @property
    def extraction_network(self) -> str:
        return self.arch or self.network

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(e.layer for e in self.entries))

    @property
    def poolings(self) -> list[str]:
        return list(dict.fromkeys(e.pooling for e in self.entries))

    @property
    def views(self) -> list[str]:
        return list(dict.fromkeys(e.view for e in self.entries))

    @property
    def missing(self) -> list[EntryPlan]:
        return [e for e in self.entries if not e.cached]

    @property
    def est_bytes(self) -> int | None:
        sizes = [e.nbytes for e in self.missing]
        return None if any(s is None for s in sizes) else int(sum(s or 0 for s in sizes))

    def to_json(self) -> GroupPlanJson:
        return {
            "dataset": self.dataset,
            "network": self.network,
            "n_images": self.n_images,
            "layers": self.layers,
            "poolings": self.poolings,
            "views": self.views,
            "cached": [e.__dict__ for e in self.entries if e.cached],
            "to_extract": [e.__dict__ for e in self.missing],
            "est_bytes": self.est_bytes,
            "est_seconds": round(self.est_seconds, 1),
        }


@dataclass
class SweepPlan:
    spec: SweepSpec
    cells: list[Cell]
    groups: list[ExtractionGroup]
    datasets: dict[str, Dataset]
    results_cached: int = 0
    notes: list[str] = field(default_factory=list)
    finetunes: list[Any] = field(default_factory=list)  # featstore.sweep.finetune.FinetuneJob
    catalog: Catalog | None = None  # the store's entries as the plan read them (store planner)

    def entry_key(
        self, dataset: str, network: str, layer: str, pooling: str, view: str
    ) -> str | None:
        """The feature key of one entry of the sweep (None while unknown: not extracted yet)."""
        for g in self.groups:
            if g.dataset == dataset and g.network == network:
                for e in g.entries:
                    if (e.layer, e.pooling, e.view) == (layer, pooling, view):
                        return e.key
        return None

    @property
    def to_extract(self) -> list[ExtractionGroup]:
        return [g for g in self.groups if g.missing]

    def to_json(self) -> SweepPlanJson:
        est = [g.est_bytes for g in self.to_extract]
        return {
            "sweep": self.spec.name,
            "n_cells": len(self.cells),
            "cells_with_results": self.results_cached,
            "n_entries": sum(len(g.entries) for g in self.groups),
            "n_entries_cached": sum(len(g.entries) - len(g.missing) for g in self.groups),
            "n_entries_to_extract": sum(len(g.missing) for g in self.groups),
            "extraction_passes": len(self.to_extract),
            "est_bytes": None if any(e is None for e in est) else int(sum(e or 0 for e in est)),
            "est_seconds": round(sum(g.est_seconds for g in self.to_extract), 1),
            "groups": [g.to_json() for g in self.groups],
            "finetune": [j.to_json() for j in self.finetunes],
            "baseline": self.spec.baseline,
            "notes": self.notes,
        }


# --------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------


def subset_dataset(ds: Dataset, n: int, seed: int = SUBSET_SEED) -> Dataset:
    """``n`` images of ``ds`` (about), stratified by split and label, seeded: a smaller dataset.

    Its fingerprint is that of its own ids, labels, splits and image hashes (what reading it
    back checks), so the same subset of the same images is the same dataset everywhere; it keeps the chosen images' hashes, so it
    reads its rows from the parent's entries by index (no forward pass).
    """
    if n >= ds.n:
        return ds
    rng = np.random.default_rng(seed)
    labels = np.asarray(ds.labels)
    strata = labels if labels.ndim == 1 else np.zeros(ds.n, dtype=np.int64)
    keep: list[int] = []
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(ds.n):
        groups.setdefault((int(ds.splits[i]), int(strata[i])), []).append(i)
    for rows in groups.values():
        take = max(1, round(len(rows) * n / ds.n))
        keep.extend(rng.choice(rows, size=min(take, len(rows)), replace=False).tolist())
    rows = sorted(keep)
    ids = [ds.ids[i] for i in rows]
    splits = np.asarray(ds.splits)[rows]
    hashes = None if ds.image_hashes is None else [ds.image_hashes[i] for i in rows]
    if hashes is None:  # format 1: no hashes to bind, so named by the parent's rows
        fp = content_hash({"parent": ds.fingerprint, "rows": rows}, length=64)
    else:  # the fingerprint a registered dataset must prove when read back (store/proofs.py)
        names = [str(ds.split_names[int(s)]) for s in splits]
        fp = fingerprint(ids, labels[rows], names, hashes, {})
    return Dataset(
        name=ds.name,
        ids=ids,
        refs=[ds.refs[i] for i in rows],
        labels=labels[rows],
        splits=splits,
        split_names=list(ds.split_names),
        classes=list(ds.classes),
        fingerprint=fp,
        source={**ds.source, "subset_of": ds.id, "subset": n, "subset_seed": seed},
        extra={},
        image_hashes=hashes,
    )


def _describe(source: Mapping[str, Any]) -> str:
    """A registered dataset's source in the words of a spec's ``source:`` (and its subset)."""
    kind = source.get("kind")
    if kind == "builtin":
        text = f"builtin:{source.get('builtin')}"
    elif kind == "benchmark":
        text = f"{source.get('scheme')}:{source.get('root')}"
    else:
        text = str(source.get("root") or source.get("path") or kind or "an unknown source")
    return text + (f" (subset {source['subset']})" if source.get("subset") is not None else "")


def source_matches(source: Mapping[str, Any], text: str) -> bool | None:
    """Whether a spec's ``source:`` names the source a dataset was registered from.

    None when it cannot be told from the recorded description (retrieval sets): such a
    dataset is used as registered.
    """
    kind = source.get("kind")
    if text.startswith("builtin:"):
        return kind == "builtin" and source.get("builtin") == text.removeprefix("builtin:")
    ref = parse_source(text)
    if ref is not None:
        if kind == "retrieval":
            return None
        if kind != "benchmark" or source.get("scheme") != ref.scheme.name:
            return False
        same_root = os.path.abspath(ref.path) == os.path.abspath(str(source.get("root")))
        same_options = all(str(source[k]) == str(v) for k, v in ref.options.items() if k in source)
        return same_root and same_options
    if kind == "folder":
        return os.path.abspath(text) == source.get("root")
    if kind == "manifest":
        return os.path.abspath(text) == source.get("path")
    return False if kind in ("builtin", "benchmark") else None


def check_registered_source(d: DatasetSpec, stored: Dataset) -> None:
    """A spec naming a registered dataset with another ``source:`` or ``subset:`` is refused:
    silently using the old dataset would score other images than the spec says."""
    source = dict(stored.source or {})
    have = source.get("subset")
    subset_differs = (d.source is not None or d.subset is not None) and have != d.subset
    if subset_differs and have is None and d.subset is not None and d.subset >= stored.n:
        subset_differs = False  # a subset as large as the dataset is the dataset
    source_differs = d.source is not None and source_matches(source, d.source) is False
    if not (subset_differs or source_differs):
        return
    asked = f"source {d.source}" if d.source is not None else "no source"
    asked += f", subset {d.subset}" if d.subset is not None else ", no subset"
    raise SpecError(
        f"sweep spec: dataset {d.name!r} is registered from {_describe(source)} ({stored.n} "
        f"images), but the spec gives {asked}; that is another dataset: give it a new name in "
        f"the spec, or remove the registered one first (featstore datasets rm {d.name})"
    )


def resolve_datasets(
    store: Store, spec: SweepSpec, *, register: bool
) -> tuple[dict[str, Dataset], list[str]]:
    """The spec's datasets from the store; registered from ``source`` when missing and ``register``.

    Returns the datasets and notes (what would be registered in a dry run).
    """
    out: dict[str, Dataset] = {}
    notes: list[str] = []
    for d in spec.datasets:
        try:
            stored = store.get_dataset(d.name)
        except (EntryNotFoundError, DatasetError, LookupError):
            stored = None
        if stored is not None:
            check_registered_source(d, stored)
            out[d.name] = stored
            continue
        if d.source is None:
            raise SpecError(
                f"sweep spec: dataset {d.name!r} is not registered in the store and has no 'source'; "
                f"register it (featstore datasets add {d.name} SOURCE) or give datasets[].source"
            )
        ds = dataset_from_source(d.name, d.source)
        if d.subset is not None:
            ds = subset_dataset(ds, d.subset)
        if register:
            store.put_dataset(ds)
        else:
            notes.append(f"dataset {d.name!r} will be registered from {d.source} ({ds.n} images)")
        out[d.name] = ds
    return out, notes


# --------------------------------------------------------------------------------------
# entries
# --------------------------------------------------------------------------------------

# planner(store, dataset, network, wanted [(layer, pooling, view)], options) -> [EntryPlan] in order
Planner = Callable[
    [Any, Dataset, Any, list[tuple[str, str, str]], Mapping[str, Any]], list[EntryPlan]
]


def extract_planner(
    store: Store,
    ds: Dataset,
    network: Any,
    wanted: list[tuple[str, str, str]],
    options: Mapping[str, Any],
) -> list[EntryPlan]:
    """Exact entries (keys, effective pooling, missing chunks) from extraction's own planner.

    A pooling asked for a layer without spatial extent is stored as "none" by extraction;
    the sweep keeps the asked name for the row but points at that entry.
    """
    from featstore.extract.plan import plan as extract_plan
    from featstore.extract.pooling import effective_pooling
    from featstore.extract.request import GROUP_OPTIONS, ExtractionRequest

    request = ExtractionRequest.parse(
        ds,
        [network.name],
        list(dict.fromkeys(w[0] for w in wanted)),
        list(dict.fromkeys(w[1] for w in wanted)),
        list(dict.fromkeys(w[2] for w in wanted)),
        weights=network.weights,
        **{k: options[k] for k in GROUP_OPTIONS if k in options},
    )
    xp = extract_plan(store, request)
    by = {(e.layer, e.pooling, e.view): e for e in xp.entries}
    infos = xp.models[0].layers
    out = []
    for layer, pooling, view in wanted:
        shape = tuple(infos[layer].shape or ())
        eff = effective_pooling(Pooling.parse(pooling), shape)
        e = by[(layer, eff, View.parse(view))]
        out.append(
            EntryPlan(
                layer,
                pooling,
                view,
                cached=e.complete,
                key=e.key,
                missing_chunks=len(e.missing_chunks),
                exists=e.exists,
                rows_to_compute=int(e.missing_rows().size),
                dim=int(np.prod(e.row_shape, dtype=np.int64)),
                nbytes=e.missing_bytes,
            )
        )
    return out


def _spec_selector(
    network: Any,
    layer: str,
    pooling: str,
    view: str,
    options: Mapping[str, Any],
    *,
    default_weights: bool = True,
) -> Selector:
    """The store selector of one entry a sweep needs: what the spec pins, nothing else.
    Weights the spec leaves unset are the network's default (pretrained) weights, the ones
    the sweep computes missing entries with: a teammate's random-weights or weights-file
    entries never stand in for them (name those with ``weights:``). A network registered in
    the store by name (``models add``) is its weights: no default is added for it."""
    return Selector(
        network=network.name,
        layer=layer,
        pooling=Pooling.parse(pooling),
        view=View.parse(view),
        weights=parse_weights(
            getattr(network, "weights", None) or ("pretrained" if default_weights else None)
        ),
        compute_dtype=options.get("compute_dtype"),
        dtype=options.get("dtype"),
    )


def extraction_network(catalog: Catalog, network: Any, n_missing: int = 1) -> Any:
    """The network to compute with: a store-registered name becomes its architecture and
    weights file (the one given, else where it was added), checked against its identity."""
    named = catalog.named(network.name)
    if named is None:
        return network
    given = parse_weights(network.weights)
    path = given.value if given is not None and given.kind == "file" else None
    path = path or str(named.weights_file.get("path") or "")
    if not path or not os.path.isfile(path):
        raise WeightsNotFoundError(
            f"{n_missing} entries of network {named.name} are not cached, and computing them "
            f"needs its weights ({named.arch}, sha256 {named.weights_sha256[:16]}), which are not "
            f"at {path or 'the path they were added from'}; put the file there or give "
            "weights: FILE for the network in the spec"
        )
    if named.weights_sha256 not in catalog.file_identity(path, None):
        raise SpecError(
            f"weights file {path} is not the weights of network {named.name} (sha256 "
            f"{named.weights_sha256[:16]}); give the right file"
        )
    return NetworkSpec(named.arch, tuple(network.layers), weights=path)


def store_planner(
    store: Store,
    ds: Dataset,
    network: Any,
    wanted: list[tuple[str, str, str]],
    options: Mapping[str, Any],
    *,
    catalog: Catalog | None = None,
) -> list[EntryPlan]:
    """Ask the store first (no network, no weights file, no torch); plan extraction (with
    this machine's defaults for what the spec leaves unpinned) only for what is missing."""
    catalog = catalog or Catalog(store)
    found: dict[tuple[str, str, str], Any] = {}
    for item in wanted:
        named = catalog.named(network.name) is not None  # its weights are its identity
        selector = _spec_selector(network, *item, options, default_weights=not named)
        entry = catalog.find(ds, selector, choosers=SPEC_CHOOSERS)
        if entry is not None and entry.is_complete:
            found[item] = entry
    missing = [w for w in wanted if w not in found]
    if missing:
        network = extraction_network(catalog, network, len(missing))
    computed = (
        dict(zip(missing, extract_planner(store, ds, network, missing, options), strict=True))
        if missing
        else {}
    )
    out = []
    for item in wanted:
        entry = found.get(item)
        if entry is None:
            out.append(computed[item])
            continue
        out.append(
            EntryPlan(
                *item,
                cached=True,
                key=entry.key,
                missing_chunks=0,
                exists=True,
                rows_to_compute=0,
                dim=int(np.prod(entry.shape[1:], dtype=np.int64)),
                nbytes=0,
            )
        )
    return out


def pending_entries(
    store: Store, ds: Dataset, network: NetworkSpec, wanted: list[tuple[str, str, str]],
    options: Mapping[str, Any],
) -> list[EntryPlan]:  # fmt: skip
    """The entries of a network the sweep has yet to fine-tune: all to extract, sized by its
    parent's (same layers), with no key until its weights exist."""
    entry = network.finetuned
    parent = network if entry is None else NetworkSpec(entry.network, network.layers, entry.weights)
    return [
        dataclasses.replace(
            e, cached=False, key=None, exists=False, missing_chunks=None, rows_to_compute=None
        )
        for e in extract_planner(store, ds, parent, wanted, options)
    ]


def factor_planner(
    store: Store,
    ds: Dataset,
    network: Any,
    wanted: list[tuple[str, str, str]],
    options: Mapping[str, Any],
    *,
    catalog: Catalog | None = None,
) -> list[EntryPlan]:
    """Entries found by their factors only (network by name): for networks outside the
    registry. The store's entries are read once per call (or once per ``catalog``), not
    once per wanted entry."""
    entries = (catalog or Catalog(store)).entries()
    out = []
    for layer, pooling, view in wanted:
        found = entries_for(
            store, ds, entries, model=network.name, layer=layer, pooling=pooling, view=view
        )
        entry = next((e for e in found if e.is_complete), found[0] if found else None)
        if entry is None:
            out.append(EntryPlan(layer, pooling, view, cached=False))
            continue
        chunks = entry.missing_chunks()
        missing = len(chunks)
        rows = sum(b - a for a, b in (entry.chunk_bounds(i) for i in chunks))
        row = int(np.prod(entry.shape[1:], dtype=np.int64)) * np.dtype(entry.dtype).itemsize
        out.append(
            EntryPlan(
                layer,
                pooling,
                view,
                cached=missing == 0,
                key=entry.key,
                missing_chunks=missing,
                exists=True,
                dim=int(np.prod(entry.shape[1:], dtype=np.int64)),
                rows_to_compute=rows,
                nbytes=int(row * ds.n * missing / max(1, entry.n_chunks)),
            )
        )
    return out


def make_plan(
    store: Store,
    spec: SweepSpec,
    *,
    register: bool = False,
    images_per_s: Mapping[str, float] | None = None,
    planner: Planner | None = None,
    datasets: Mapping[str, Dataset] | None = None,
    count_results: bool = True,
) -> SweepPlan:
    """What the sweep needs, what the store already has, and what one pass per network adds.

    ``planner`` finds the entries of one network on one dataset (default:
    :func:`store_planner`, the store's selection, then extraction's planner for what is
    missing; :func:`factor_planner` for networks outside the registry).
    ``datasets`` (by spec name) replaces resolving them from the store or their sources.
    ``count_results=False`` leaves ``results_cached`` at 0 instead of reading every result
    record of the datasets (a sweep and a report look up their cells' records themselves).
    """
    if datasets is None:
        datasets, notes = resolve_datasets(store, spec, register=register)
    else:
        datasets, notes = dict(datasets), []
    catalog = Catalog(store)
    find = planner or functools.partial(store_planner, catalog=catalog)
    speeds = {**CPU_IMAGES_PER_S, **dict(images_per_s or {})}
    cells = spec.cells()
    groups: list[ExtractionGroup] = []
    for d in spec.datasets:
        ds = datasets[d.name]
        needed: dict[str, set[tuple[str, str, str]]] = {}
        for cell in cells:
            if cell.dataset != d.name:
                continue
            s = cell.setting
            for v in entry_views(s.view):
                needed.setdefault(s.network, set()).add((s.layer, s.pooling, v))
        for net in spec.networks_for(d.name):
            if net.name not in needed:
                continue
            order = {la: i for i, la in enumerate(net.layers)}
            wanted = sorted(needed[net.name], key=lambda t: (order.get(t[0], 0), t[1], t[2]))
            pending = planner is None and net.finetuned is not None
            pending = pending and not trained.has_network(store, net.name)
            if pending:  # to be fine-tuned first (a dry run): planned from its parent
                entries = pending_entries(store, ds, net, wanted, spec.extract)
            else:
                entries = find(store, ds, net, wanted, spec.extract)
            group = ExtractionGroup(d.name, net.name, ds.n, entries, weights=net.weights)
            if group.missing and planner is None and not net.finetuned:  # a registered name
                computed_by = extraction_network(catalog, net, len(group.missing))
                group.arch, group.weights = computed_by.name, computed_by.weights
            if group.missing:  # images left per view (a resumed entry needs only its missing rows)
                per_view: dict[str, int] = {}
                for e in group.missing:
                    left = ds.n if e.rows_to_compute is None else e.rows_to_compute
                    per_view[e.view] = max(per_view.get(e.view, 0), left)
                arch = net.finetuned.network if net.finetuned else net.name
                speed = speeds.get(arch, DEFAULT_IMAGES_PER_S)
                group.est_seconds = sum(per_view.values()) / speed
            groups.append(group)
    _check_pca(spec, groups)
    plan = SweepPlan(spec=spec, cells=cells, groups=groups, datasets=datasets, notes=notes)
    if planner is None:  # its one scan of the store serves the cells' lookups too
        plan.catalog = catalog
    if spec.finetune and planner is None:
        from featstore.sweep.finetune import plan_finetunes

        plan.finetunes = plan_finetunes(store, spec, datasets)
    if count_results:
        plan.results_cached = _cells_with_results(store, plan)
    return plan


def _check_pca(spec: SweepSpec, groups: list[ExtractionGroup]) -> None:
    """Refuse, before any extraction, a PCA larger than a layer's feature size."""
    from featstore.evaluate.features.transform_spec import parse_spec as parse_transform

    for i, text in enumerate(spec.transforms):
        steps = parse_transform("" if text == "none" else text)
        if steps and steps[0].name in ("pool", "concat"):
            continue  # pooled grids or concatenations change the size: checked at evaluation
        wanted = max((st.n for st in steps if st.name == "pca"), default=0)
        if not wanted:
            continue
        for g in groups:
            for e in g.entries:
                if e.dim is not None and e.dim < wanted:
                    raise SpecError(
                        f"sweep spec: transforms[{i}] {text!r} asks for {wanted} PCA dimensions but "
                        f"layer {e.layer!r} of {g.network} gives {e.dim} features per image "
                        f"(pooling {e.pooling}); use pca=N with N <= {e.dim}, or drop that layer"
                    )


def _cells_with_results(store: Store, plan: SweepPlan) -> int:
    """How many cells already have a result record (matched by dataset, task and factors).

    The records are read, counted and dropped with the cyclic GC held off (gc_paused):
    nothing of them outlives this function, so no collection ever walks them.
    """
    with gc_paused():
        try:
            records = collect_records(store, datasets=[d.name for d in plan.spec.datasets])
        except Exception:  # counting is informative only
            return 0
        have = set()
        fps = {ds.fingerprint[:12] for ds in plan.datasets.values()}  # any name of the same data
        for r in records:
            if str(r.get("dataset_id") or "").rpartition("-")[2] not in fps:
                continue
            setting = record_setting(r)
            have.add(cell_key(str(r.get("dataset_name")), str(r.get("task")), setting))
        del records
    return sum(1 for c in plan.cells if cell_key(c.dataset, c.task, c.setting.as_dict()) in have)
