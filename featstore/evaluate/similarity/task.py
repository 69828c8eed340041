"""`--task similarity`: CKA or RSA between every pair of cached representations, no forward pass.

A *representation* is one setting of classification (a network's layer with its stored
pooling and view, or a concatenation), read through the same selection and transform
machinery (:func:`~featstore.evaluate.features.selection.resolve_parts`,
:class:`~featstore.evaluate.features.transforms.FeatureTransform`), so any pooling / token view / transform
chain works. The rows compared are one split (or every image); a fitted step (PCA,
standardisation) is fitted on those rows: the analysis uses no labels, so nothing leaks.

Each unordered pair of representations is one result record (task "similarity") under a
content key of both feature-key lists, the transform, the measure and the rows, so adding a
layer to a study computes only the new pairs, and the matrix is read back from the store.
The diagonal is 1 by definition and is not stored.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.errors import EvaluationError
from featstore.evaluate.features.selection import merge_factors, resolve_dataset, resolve_parts
from featstore.evaluate.features.stored_pooling import pool_rows
from featstore.evaluate.features.transform_spec import canonical_spec, parse_spec
from featstore.evaluate.features.transforms import FeatureTransform, Part
from featstore.evaluate.results import (
    ResultRecord,
    bind_record,
    build_record,
    load_current_result,
    make_result_key,
    save_result,
)
from featstore.evaluate.similarity import measures as sim
from featstore.keys import content_hash
from featstore.progress import Progress

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset
    from featstore.store.base import Store

__all__ = [
    "TASK",
    "PairPlan",
    "Representation",
    "SimilarityPlan",
    "evaluate_similarity",
    "measure_spec",
    "plan_similarity",
    "run_similarity",
]

TASK = "similarity"
ALL_ROWS = "all"


def measure_spec(
    measure: str = "cka",
    *,
    debiased: bool = False,
    sigma: float = sim.DEFAULT_SIGMA,
    distance: str = "correlation",
    compare: str = "spearman",
) -> dict[str, Any]:
    """The measure and exactly the parameters that change its value (part of the key)."""
    if measure not in sim.MEASURES:
        raise EvaluationError(
            f"unknown similarity measure {measure!r}; choose from {list(sim.MEASURES)}"
        )
    if measure == "cka":
        return {"name": "cka", "kernel": "linear", "debiased": bool(debiased)}
    if measure == "rbf_cka":
        if not (isinstance(sigma, (int, float)) and sigma > 0):
            raise EvaluationError(
                f"sigma must be a positive fraction of the median distance (e.g. 0.8), got {sigma!r}"
            )
        return {
            "name": "rbf_cka",
            "kernel": "rbf",
            "sigma": float(sigma),
            "debiased": bool(debiased),
        }
    if distance not in sim.DISTANCES:
        raise EvaluationError(
            f"unknown RDM distance {distance!r}; choose from {list(sim.DISTANCES)}"
        )
    if compare not in sim.COMPARES:
        raise EvaluationError(
            f"unknown RDM comparison {compare!r}; choose from {list(sim.COMPARES)}"
        )
    return {"name": "rsa", "distance": distance, "compare": compare}


@dataclass(frozen=True)
class Representation:
    """One side of a comparison: its label, the entries it reads, and their factors."""

    label: str
    parts: list[Part]
    factors: dict[str, Any]

    @property
    def keys(self) -> list[str]:
        return [k for p in self.parts for k in p.keys]


@dataclass(frozen=True)
class PairPlan:
    """One stored record: representations ``i`` < ``j`` (plan order) and its result key."""

    i: int
    j: int
    key: str
    first: int  # which of i, j comes first in the record (canonical order: by feature keys)
    protocol: dict[str, Any]


@dataclass(frozen=True)
class SimilarityPlan:
    """A checked similarity setting: what to read, which rows, the key of every pair."""

    dataset: Dataset
    representations: list[Representation]
    measure: dict[str, Any]
    transform: str
    split: str
    rows: np.ndarray
    seed: int
    pairs: list[PairPlan]

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.representations]

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.pairs]


def _label(setting: Any, with_model: bool) -> str:
    items = setting if isinstance(setting, (list, tuple)) else [setting]
    names = []
    for item in items:
        if isinstance(item, Mapping):
            layer = str(item.get("layer") or item.get("key") or "?")
            names.append(f"{item.get('model')}:{layer}" if with_model else layer)
        else:
            names.append(str(getattr(item, "layer", None) or getattr(item, "key", None) or item))
    return "+".join(names)


def _rows(ds: Dataset, split: str | None) -> tuple[str, np.ndarray]:
    if split in (None, "", ALL_ROWS):
        return ALL_ROWS, np.arange(ds.n, dtype=np.int64)
    names = list(ds.split_names)
    if split not in names or not (np.asarray(ds.splits) == names.index(split)).any():
        raise EvaluationError(
            f"dataset {ds.name!r} has no images in split {split!r} (its splits: "
            f"{', '.join(names) or 'none'}); give one of them or --split all"
        )
    return str(split), np.asarray(ds.split_indices(split), dtype=np.int64)


def plan_similarity(
    store: Store,
    dataset: str | Dataset,
    settings: Sequence[Any],
    *,
    labels: Sequence[str] | None = None,
    transform: str = "",
    measure: str = "cka",
    split: str | None = None,
    debiased: bool = False,
    sigma: float = sim.DEFAULT_SIGMA,
    distance: str = "correlation",
    compare: str = "spearman",
    seed: int = 0,
) -> SimilarityPlan:
    """Check a similarity study without reading features: entries, rows, measure, pair keys.

    ``settings`` lists the representations: each is what classification accepts (an entry
    key, a dict of factors such as ``{"model": m, "layer": l}``, or a list of those for a
    concatenation). Raises before anything is read or written.
    """
    ds = resolve_dataset(store, dataset)
    spec = measure_spec(measure, debiased=debiased, sigma=sigma, distance=distance, compare=compare)
    settings = list(settings)
    if len(settings) < 2:
        raise EvaluationError(
            f"similarity compares representations: give at least two (network, layer) settings, "
            f"got {len(settings)} (drop --concat, or name more layers or networks)"
        )
    if labels is not None and len(labels) != len(settings):
        raise EvaluationError(f"{len(labels)} labels given for {len(settings)} settings")
    models = {
        item.get("model")
        for s in settings
        for item in (s if isinstance(s, (list, tuple)) else [s])
        if isinstance(item, Mapping)
    }
    tspec = canonical_spec(transform)
    steps = parse_spec(tspec)
    pool = steps[0] if steps and steps[0].name == "pool" else None
    reps = []
    for n, setting in enumerate(settings):
        parts = resolve_parts(store, ds, setting, tspec)
        for part in parts:  # the stored form must give vectors under this transform: check now
            entry = part.plain
            pool_rows(
                np.zeros((1, *entry.shape[1:]), np.float32),
                pool,
                str(entry.attrs.get("pooling", "none")),
            )
        label = labels[n] if labels is not None else _label(setting, len(models) > 1)
        reps.append(Representation(str(label), parts, merge_factors(parts)))
    seen: dict[tuple[str, ...], str] = {}
    for r in reps:
        if tuple(r.keys) in seen:
            raise EvaluationError(
                f"settings {seen[tuple(r.keys)]!r} and {r.label!r} read the same cached entries; "
                "list each representation once"
            )
        seen[tuple(r.keys)] = r.label
    split_name, rows = _rows(ds, split)
    need = 3 if spec["name"] == "rsa" else (4 if spec.get("debiased") else 2)
    if len(rows) < need:
        raise EvaluationError(
            f"{spec['name']} needs at least {need} images; split {split_name!r} of {ds.name!r} "
            f"has {len(rows)}"
        )
    rows_id = content_hash([int(r) for r in rows])  # which images: a re-split changes the key
    pairs = []
    for i in range(len(reps)):
        for j in range(i + 1, len(reps)):
            a, b = sorted((i, j), key=lambda k: reps[k].keys)  # (A, B) and (B, A): one record
            protocol = {
                "rows": split_name,
                "rows_id": rows_id,
                "n_rows": len(rows),
                "pair_sizes": [len(reps[a].keys), len(reps[b].keys)],
            }
            key = make_result_key(
                reps[a].keys + reps[b].keys, tspec, TASK, spec, protocol, seed,
                dataset=ds.fingerprint,
            )  # fmt: skip
            pairs.append(PairPlan(i, j, key, a, protocol))
    return SimilarityPlan(ds, reps, spec, tspec, split_name, rows, int(seed), pairs)


def _read(
    rep: Representation, plan: SimilarityPlan, progress: Progress | None
) -> tuple[np.ndarray, dict[str, float]]:
    """The representation's rows after the transform (fitted on the compared rows), and
    the seconds spent reading and transforming them."""
    tr = FeatureTransform("" if plan.transform == "none" else plan.transform, seed=plan.seed)
    if len(plan.rows) == plan.dataset.n:
        x = tr.fit_transform(rep.parts, plan.rows, progress=progress)
    else:
        x = tr.fit(rep.parts, plan.rows, progress=progress).transform(rep.parts, plan.rows)
    return x, tr.timings_


def _compute(
    plan: SimilarityPlan, todo: list[PairPlan], progress: Progress | None
) -> tuple[dict[str, float], dict[int, int], dict[str, float]]:
    needed = sorted({k for p in todo for k in (p.i, p.j)})
    t0 = time.perf_counter()
    xs, dims = [], {}
    stages: dict[str, float] = {}  # read_s, transform_s over every representation
    for n, k in enumerate(needed):
        x, spent = _read(plan.representations[k], plan, None)
        for stage, seconds in spent.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
        xs.append(x)
        dims[k] = int(x.shape[1])
        if progress:
            progress(n + 1, len(needed) + 1, {"stage": "read", "setting": plan.labels[k]})
    t1 = time.perf_counter()
    where = {k: n for n, k in enumerate(needed)}
    m = plan.measure
    mat = sim.similarity_matrix(
        xs,
        m["name"],
        debiased=bool(m.get("debiased", False)),
        sigma=float(m.get("sigma", sim.DEFAULT_SIGMA)),
        distance=str(m.get("distance", "correlation")),
        compare=str(m.get("compare", "spearman")),
        pairs=[(where[p.i], where[p.j]) for p in todo],
    )
    t2 = time.perf_counter()
    if progress:
        progress(len(needed) + 1, len(needed) + 1, {"stage": "similarity"})
    values = {p.key: float(mat[where[p.i], where[p.j]]) for p in todo}
    timings = {**stages, "features_s": t1 - t0, "similarity_s": t2 - t1, "total_s": t2 - t0}
    return values, dims, timings


def _record(
    plan: SimilarityPlan,
    pair: PairPlan,
    value: float,
    dims: dict[int, int],
    timings: dict[str, Any],
) -> ResultRecord:
    a = pair.first
    b = pair.j if a == pair.i else pair.i
    ra, rb = plan.representations[a], plan.representations[b]
    fa, fb = ra.factors, rb.factors
    factors = {name: [fa.get(name), fb.get(name)] for name in ("model", "layer", "pooling", "view")}
    factors["pair"] = [fa, fb]
    return build_record(
        key=pair.key,
        task=TASK,
        dataset_id=plan.dataset.id,
        dataset_name=plan.dataset.name,
        features=ra.keys + rb.keys,
        factors=factors,
        transform=plan.transform,
        classifier=plan.measure,
        protocol=pair.protocol,
        seed=plan.seed,
        metrics={plan.measure["name"]: value},
        chosen={},
        timings=timings,  # of the whole run that computed this pair
        sizes={"n_rows": len(plan.rows), "dims": [dims.get(a), dims.get(b)]},
        pair_labels=[ra.label, rb.label],
    )


def run_similarity(
    store: Store, plan: SimilarityPlan, force: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Compute the pairs not stored yet (all with ``force``), store them, return the matrix.

    The result holds ``labels``, ``matrix`` (M x M, plan order, diagonal 1), ``records``
    (one per pair), and how many pairs were ``computed`` and ``cached``.
    """
    stored: dict[str, ResultRecord] = {}
    stale: dict[str, str] = {}  # pairs whose entries changed since they were stored
    if not force:
        for p in plan.pairs:
            rec, why = load_current_result(store, p.key)
            if rec is not None:
                stored[p.key] = rec
            elif why:
                stale[p.key] = why
    todo = [p for p in plan.pairs if p.key not in stored]
    timings: dict[str, float] = {"features_s": 0.0, "similarity_s": 0.0, "total_s": 0.0}
    records = dict(stored)
    if todo:
        values, dims, timings = _compute(plan, todo, progress)
        for p in todo:
            rec = bind_record(store, _record(plan, p, values[p.key], dims, timings))
            if not getattr(store, "read_only", False):
                save_result(store, rec)
            records[p.key] = {**rec, "cached": False}
            if p.key in stale:
                records[p.key]["recomputed_because"] = stale[p.key]
    for key in stored:
        records[key] = {**stored[key], "cached": True}
    m = len(plan.representations)
    matrix = np.eye(m)
    name = plan.measure["name"]
    for p in plan.pairs:
        value = records[p.key]["metrics"].get(name)
        matrix[p.i, p.j] = matrix[p.j, p.i] = np.nan if value is None else float(value)
    return {
        "task": TASK,
        "dataset_name": plan.dataset.name,
        "dataset_id": plan.dataset.id,
        "measure": plan.measure,
        "transform": plan.transform,
        "split": plan.split,
        "n_rows": len(plan.rows),
        "labels": plan.labels,
        "matrix": [[None if np.isnan(v) else float(v) for v in row] for row in matrix],
        "computed": len(todo),
        "cached": len(stored),
        "timings": timings,
        "records": [records[p.key] for p in plan.pairs],
    }


def evaluate_similarity(
    store: Store,
    dataset: str | Dataset,
    settings: Sequence[Any],
    *,
    force: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Plan and run a similarity study (see :func:`plan_similarity` for ``options``)."""
    plan = plan_similarity(store, dataset, settings, **options)
    return run_similarity(store, plan, force=force, progress=progress)
