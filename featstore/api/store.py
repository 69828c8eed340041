"""``featstore.open``: a store from Python, in the words of the CLI.

>>> import featstore
>>> store = featstore.open("stores/default.zarr")
>>> store.datasets                      # name -> DatasetInfo (classes, splits, n)
>>> f = store.features("digits600", "efficientnet_lite0", "stage7", split="train")
>>> f.X, f.y, f.ids, f.classes, f.key
>>> store.results(sweep="examples/quick_sweep.yaml")   # a pandas DataFrame

Reads ask the store what it holds (:mod:`featstore.store.select`): no network is built, no
weights file is read, torch is not imported, and every chunk is checked when read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from featstore.api.features import Features
from featstore.errors import DatasetError, EvaluationError
from featstore.specs import DEFAULT_POOLING, DEFAULT_VIEW, Pooling, View
from featstore.store import Store, open_store

if TYPE_CHECKING:
    import pandas as pd

    from featstore.datasets.core import Dataset
    from featstore.sweep.run import SweepSummary
    from featstore.sweep.spec import SweepSpec

__all__ = ["DatasetInfo", "EntryRow", "FeatureStore", "open"]


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset as ``featstore datasets list`` shows it (metadata only)."""

    name: str
    id: str
    n: int
    classes: tuple[str, ...]
    splits: dict[str, int]
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EntryRow:
    """One cached feature entry as ``featstore ls`` shows it; ``pandas.DataFrame(rows)``
    makes a table of a list of them."""

    key: str
    dataset: str
    network: str
    weights: str
    layer: str
    layer_target: str
    pooling: str
    view: str
    compute_dtype: str
    dtype: str
    shape: tuple[int, ...]
    complete: bool


def _entry_row(entry: Any, dataset: str) -> EntryRow:
    a = entry.attrs
    model = a.get("model") if isinstance(a.get("model"), Mapping) else {}
    sha = str(model.get("weights_sha256") or "")
    source = str(model.get("source"))
    return EntryRow(
        key=str(entry.key),
        dataset=dataset,
        network=str(a.get("model_name") or model.get("name")),
        weights=f"{source}:{sha[:12]}" if sha else source,
        layer=str(a.get("layer")),
        layer_target=str(a.get("layer_target")),
        pooling=str(a.get("pooling")),
        view=str(a.get("view")),
        compute_dtype=str(a.get("compute_dtype")),
        dtype=str(a.get("dtype") or entry.dtype),
        shape=tuple(int(s) for s in entry.shape),
        complete=bool(entry.is_complete),
    )


class FeatureStore:
    """A featstore store from Python: datasets, cached entries, features, results.

    Made by :func:`open`. The computing calls (:meth:`add_dataset`, :meth:`extract`,
    :meth:`evaluate`, :meth:`sweep`) are :func:`featstore.add_dataset`,
    :func:`featstore.extract_features`, :func:`featstore.evaluate_features` and
    :func:`featstore.run_sweep`, the functions the CLI commands call.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"FeatureStore({self.store.location!r})"

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    @property
    def location(self) -> str:
        return str(self.store.location)

    # --- what the store holds ------------------------------------------------------
    @property
    def datasets(self) -> dict[str, DatasetInfo]:
        """Registered datasets by name (a damaged registration is left out; see `verify`)."""
        out = {}
        for info in self.store.list_datasets():
            if info.get("damaged") or not info.get("name"):
                continue
            out[str(info["name"])] = DatasetInfo(
                name=str(info["name"]),
                id=str(info["id"]),
                n=int(info.get("n") or 0),
                classes=tuple(str(c) for c in info.get("classes") or ()),
                splits={str(k): int(v) for k, v in (info.get("split_counts") or {}).items()},
                source=dict(info.get("source") or {}),
            )
        return out

    def dataset(self, name: str) -> Dataset:
        """The registered dataset (ids, labels, splits, classes, refs), fingerprint checked."""
        return self.store.get_dataset(name)

    def entries(
        self,
        dataset: str | None = None,
        network: str | None = None,
        layer: str | None = None,
        pooling: str | None = None,
        view: str | None = None,
        *,
        weights: str | None = None,
    ) -> list[EntryRow]:
        """The cached feature entries (of ``dataset``'s images when given) matching the
        factors given, found as every command finds them (layer aliases, stored pooling)."""
        from featstore.store.select import Catalog, Selector, parse_weights

        catalog = Catalog(self.store)
        sel = catalog.expand(
            Selector(
                network=network,
                layer=layer,
                pooling=None if pooling is None else Pooling.parse(pooling),
                view=None if view is None else View.parse(view),
                weights=parse_weights(weights),
            )
        )
        if dataset is not None:
            ds = self.store.get_dataset(dataset)
            found = catalog.narrow(catalog.candidates(ds, sel), sel)
            return sorted((_entry_row(e, ds.name) for e in found), key=lambda r: r.key)
        table = catalog.layer_table(sel.network) if sel.network else {}
        weights_ok = catalog._weights_filter(sel.weights, sel.network)
        rows = [
            _entry_row(e, str(e.attrs.get("dataset_name") or ""))
            for e in catalog.entries()
            if catalog.matches(sel, e, table) and weights_ok(e.attrs)
        ]
        return sorted(rows, key=lambda r: r.key)

    # --- reading features ------------------------------------------------------------
    def features(
        self,
        dataset: str,
        network: str | Sequence[str] | None = None,
        layer: str | Sequence[str] | None = None,
        pooling: str | None = str(DEFAULT_POOLING),
        split: str | None = None,
        *,
        view: str = str(DEFAULT_VIEW),
        weights: str | None = None,
        transform: str | None = None,
        rows: slice | Sequence[int] | np.ndarray | None = None,
        key: str | None = None,
        keys: Sequence[str] = (),
        compute_dtype: str | None = None,
        dtype: str | None = "float32",
        seed: int = 0,
    ) -> Features:
        """The cached features of ``dataset`` for one (network, layer, pooling, view), or
        the entry ``key``; found as ``featstore evaluate`` finds them (and refused with the
        same one-line errors, the missing ones with the `featstore extract` command).

        ``split`` keeps that split's rows (all rows when None) and ``rows`` positions
        within them (a slice or indices). ``transform`` (``"l2,pca=128"``, evaluate's
        syntax) is fitted on the training split as evaluation fits it. ``dtype=None``
        keeps the stored dtype (float16 by default); else X is cast (float32 by default).
        Several layers (or networks) need a transform with ``concat``.
        """
        from featstore.evaluate.features.selection import resolve_parts
        from featstore.evaluate.features.transform_spec import canonical_spec

        ds = self.store.get_dataset(dataset)
        spec = canonical_spec(transform or "")
        if key is not None:
            features: Any = [key]
        else:
            if network is None or layer is None:
                raise EvaluationError(
                    "name the features by network and layer (as `featstore ls` shows them), "
                    "or give key=KEY"
                )
            networks = [network] if isinstance(network, str) else list(network)
            layers = [layer] if isinstance(layer, str) else list(layer)
            extra: dict[str, Any] = {}
            if weights:
                extra["weights"] = weights
            if compute_dtype:
                extra["compute_dtype"] = compute_dtype
            if keys:
                extra["keys"] = list(keys)
            features = [
                {"model": n, "layer": lyr, "pooling": pooling, "view": view, **extra}
                for n in networks
                for lyr in layers
            ]
        parts = resolve_parts(self.store, ds, features, spec)
        chosen = np.arange(ds.n, dtype=np.int64) if split is None else ds.split_indices(split)
        if rows is not None:
            try:
                chosen = chosen[rows]
            except IndexError as exc:
                raise DatasetError(
                    f"rows {rows!r} are out of range for the {len(chosen)} rows of dataset "
                    f"{ds.name!r}{f' split {split}' if split else ''}"
                ) from exc
        return Features(ds, parts, chosen, split=split, transform=spec, dtype=dtype, seed=seed)

    # --- results -----------------------------------------------------------------------
    def results(
        self,
        sweep: SweepSpec | str | os.PathLike[str] | None = None,
        *,
        dataset: str | Sequence[str] | None = None,
        task: str | Sequence[str] | None = None,
        **factors: Any,
    ) -> pd.DataFrame:
        """The result records as a pandas DataFrame, one row per record (see
        :func:`featstore.api.results.records_frame` for the columns): of a sweep's settings
        (``sweep``: its spec file) or every record, of some datasets and tasks, and rows
        whose factor columns (network, weights, layer, pooling, view, transform,
        classifier) equal the values given. Needs pandas."""
        from featstore.api.results import records_frame, select_records

        datasets = [dataset] if isinstance(dataset, str) else dataset
        tasks = [task] if isinstance(task, str) else task
        records = select_records(self.store, sweep=sweep, datasets=datasets, tasks=tasks)
        return records_frame(records, factors)

    # --- computing (the CLI's functions) ---------------------------------------------------
    def add_dataset(self, name: str, source: str, **options: Any) -> DatasetInfo:
        """:func:`featstore.add_dataset` on this store."""
        from featstore.api.run import add_dataset

        add_dataset(self, name, source, **options)
        return self.datasets[name]

    def extract(
        self, dataset: str, models: str | Sequence[str], **options: Any
    ) -> Mapping[str, Any]:
        """:func:`featstore.extract_features` on this store."""
        from featstore.api.run import extract_features

        return extract_features(self, dataset, models, **options)

    def evaluate(
        self, dataset: str, network: Any, layers: Any, **options: Any
    ) -> list[dict[str, Any]]:
        """:func:`featstore.evaluate_features` on this store."""
        from featstore.api.run import evaluate_features

        return evaluate_features(self, dataset, network, layers, **options)

    def sweep(self, spec: SweepSpec | str | os.PathLike[str], **options: Any) -> SweepSummary:
        """:func:`featstore.run_sweep` on this store."""
        from featstore.api.run import run_sweep

        return run_sweep(self, spec, **options)


def open(  # featstore.open, as the issue and README name it
    location: str | os.PathLike[str] | Store | None = None,
    mode: str = "a",
    *,
    create: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> FeatureStore:
    """Open the store at ``location`` (a path, ``.h5`` file, fsspec URL such as
    ``s3://bucket/feats.zarr``; default ``FEATSTORE_STORE`` or ``stores/default.zarr``).

    ``mode="r"`` opens it read-only (evaluations are then computed, not saved); ``"a"``
    (default) reads and writes. A store that does not exist is refused
    (StoreNotFoundError) unless ``create=True``, as the CLI's reading commands refuse it.
    """
    if isinstance(location, Store):
        return FeatureStore(location)
    where = None if location is None else os.fspath(location)
    if mode == "a" and not create:
        open_store(where, mode="r", storage_options=storage_options).close()  # raises when missing
    return FeatureStore(open_store(where, mode=mode, storage_options=storage_options))


# What the API's functions take as a store: a FeatureStore, a backend Store, a path or URL
StoreLike: TypeAlias = "FeatureStore | Store | str | os.PathLike[str]"


def as_store(store: StoreLike) -> Store:
    """The backend Store of a FeatureStore, Store, path or URL (opened read/write)."""
    if isinstance(store, FeatureStore):
        return store.store
    if isinstance(store, Store):
        return store
    return open(store).store
