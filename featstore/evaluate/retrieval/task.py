"""`--task retrieve`: instance retrieval from cached features.

Two matching methods read the same cache as classification:

- ``global``: one descriptor per image (optionally derived by a transform spec, e.g.
  ``pool=max`` from a stored grid), L2 -> PCA-whitening -> L2, then inner-product search
  with FAISS: exact (``IndexFlatIP``, on GPUs when faiss has them) or IVF-PQ with exact
  re-ranking of the shortlist for large databases;
- ``subpatch``: spatial search of Razavian et al. over the multi-scale sub-patches that
  extraction stored (view ``crops:...``, rows ``(P, D)``): each patch L2 -> whitening ->
  L2, and distance(query, image) = mean over query patches of the minimum L2 distance
  to the image's patches.

Whitening is learned on the database (``whiten="database"``), on another registered
dataset with features of the same factors (``whiten=<name>``, e.g. Paris for Oxford, as
in the literature), or skipped (``"none"``). Metrics follow the dataset's protocol
(``extra["retrieval"]["protocol"]``): mAP and P@k/R@k for Oxford, Holidays and generic
sets; Easy/Medium/Hard mAP and mP@k for revisited Oxford/Paris; the N-S score for UKBench.
Queries are described by their whole image (query bounding boxes are recorded in the
dataset, not cropped here). The result is stored via :mod:`featstore.evaluate.results`; asking
again for the same setting is a lookup unless ``force``.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.datasets.retrieval import retrieval_info
from featstore.errors import EntryNotFoundError, EvaluationError, TransformError
from featstore.evaluate import metrics as M
from featstore.evaluate.features.selection import (
    TWIN_ATTRS,
    FeatureSelector,
    as_selectors,
    merge_factors,
    resolve_dataset,
    resolve_parts,
)
from featstore.evaluate.features.transform_spec import canonical_spec, parse_spec
from featstore.evaluate.features.transforms import FeatureTransform, Part
from featstore.evaluate.results import ResultRecord, build_record, make_result_key
from featstore.evaluate.retrieval.index import (
    FlatIPIndex,
    IVFPQIndex,
    L2PCAWhitening,
    SubpatchIndex,
    l2_normalize,
)
from featstore.evaluate.tasks import run
from featstore.progress import Progress
from featstore.store.content import entries_for

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset
    from featstore.store.base import Store

__all__ = [
    "INDEXES",
    "METHODS",
    "TASK",
    "RetrievalPlan",
    "compute_retrieval",
    "evaluate_retrieval",
    "plan_retrieval",
    "rank_database",
    "retrieval_metrics",
]

TASK = "retrieve"
METHODS = ("global", "subpatch")
INDEXES = ("flat", "ivfpq")
DEFAULT_KS = (1, 5, 10)
# PCA-whitening estimates the smallest variances badly from few vectors and then
# amplifies their noise: by default keep one whitened dimension per 8 training vectors
SAMPLES_PER_WHITENED_DIM = 8
DEFAULT_SHORTLIST = 1000  # IVF-PQ: ranked list length scored (positives beyond it count as missed)
# protocols whose AP and P@k leave the query out of its own ranking (UKBench's N-S score
# alone counts it); Oxford lists the query image among its own positives, so keeps it
SELF_EXCLUDED = ("holidays", "generic", "ukbench")


# --------------------------------------------------------------------------------------
# metrics per protocol
# --------------------------------------------------------------------------------------


def retrieval_metrics(
    info: Mapping[str, Any], rankings: Sequence[Sequence[int]], ks: Sequence[int] = DEFAULT_KS
) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics, per-query AP) of ``rankings`` (database rows, best first, one per query).

    ``info`` is a dataset's ``extra["retrieval"]``. AP and P@k of Holidays, UKBench and
    generic sets leave the query out of its own ranking; Oxford keeps it (the query image
    is one of its positives), and so does UKBench's N-S score (top 4, query included).
    """
    protocol = info["protocol"]
    queries, names, gnd = list(info["queries"]), list(info["query_names"]), list(info["gnd"])
    if len(rankings) != len(queries):
        raise EvaluationError(f"{len(rankings)} rankings for {len(queries)} queries")
    ranked = full = [[int(r) for r in ranking] for ranking in rankings]
    if protocol in SELF_EXCLUDED:
        ranked = [
            [r for r in ranking if r != q] for ranking, q in zip(ranked, queries, strict=True)
        ]
    out: dict[str, float] = {}
    per_query: dict[str, float] = {}
    if protocol == "revisited":
        scores = M.revisited_map(
            ranked, [{k: g[k] for k in ("easy", "hard", "junk")} for g in gnd], ks
        )
        for level in ("easy", "medium", "hard"):
            out[f"mAP_{level}"] = scores[level]["mAP"]
            for k, v in scores[level]["mP@k"].items():
                out[f"mP@{k}_{level}"] = v
        for name, ranking, g in zip(names, ranked, gnd, strict=True):  # Medium AP per query
            per_query[name] = M.retrieval_ap(ranking, set(g["easy"]) | set(g["hard"]), g["junk"])
        out["mAP"] = out["mAP_medium"]
        return out, per_query
    for name, ranking, g in zip(names, ranked, gnd, strict=True):
        per_query[name] = M.retrieval_ap(ranking, g["positives"], g["junk"])
    out["mAP"] = float(np.mean(list(per_query.values())))
    if protocol == "holidays":
        out["mAP"] = M.holidays_map(ranked, [g["positives"] for g in gnd], queries)
    if protocol == "ukbench":
        group_of: dict[Hashable, Hashable] = {}
        for q, g in zip(queries, gnd, strict=True):  # a group is the query with its positives
            members = {q, *g["positives"]}
            for m in members:
                group_of[m] = min(members)
        for ranking in full:  # images of skipped queries form groups of their own
            for r in ranking[:4]:
                group_of.setdefault(r, -1 - r)
        out["ukbench_score"] = M.ukbench_score(full, group_of, queries)
    for k in ks:
        out[f"P@{k}"] = float(
            np.mean(
                [
                    M.precision_at_k(r, g["positives"], k, g["junk"])
                    for r, g in zip(ranked, gnd, strict=True)
                ]
            )
        )
        out[f"R@{k}"] = float(
            np.mean(
                [
                    M.recall_at_k(r, g["positives"], k, g["junk"])
                    for r, g in zip(ranked, gnd, strict=True)
                ]
            )
        )
    return out, per_query


# --------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------


def _subpatch_selectors(store: Store, ds: Dataset, features: Any) -> list[FeatureSelector]:
    """Selectors pinned to the one crops view cached for each selected setting."""
    out = []
    for sel in as_selectors(features):
        if sel.key or (sel.view or "").startswith("crops:"):
            out.append(sel)
            continue
        factors = {"model": sel.model, "pooling": sel.pooling, **dict(sel.attrs)}
        views: list[str] = []
        # by layer name, then (as selection does) by the module an alias names
        for by_layer in ({"layer": sel.layer}, {"layer_target": sel.layer}):
            found = entries_for(store, ds, **factors, **by_layer)
            views = sorted({str(e.attrs.get("view")) for e in found} - {"plain", "flip", "None"})
            views = [v for v in views if v.startswith("crops:")]
            if views or not sel.layer:
                break
        if not views:
            raise EntryNotFoundError(
                f"sub-patch matching needs a crops view of {sel.describe()} for dataset {ds.name!r}; "
                f"extract it first, e.g. featstore extract -d {ds.name} -m {sel.model or 'MODEL'} "
                f"-l {sel.layer or 'LAYER'} --view crops:1x1,2x2,3x3"
            )
        if len(views) > 1:
            raise EvaluationError(
                f"several crops views are cached for {sel.describe()}: {views}; choose one with --view"
            )
        out.append(
            FeatureSelector(
                model=sel.model,
                layer=sel.layer,
                pooling=sel.pooling,
                view=views[0],
                attrs=sel.attrs,
            )
        )
    return out


def _patch_steps(spec: str) -> list[Any]:
    steps = list(parse_spec(spec))
    bad = [s.text for s in steps if s.name not in ("power", "l2")]
    if bad:
        raise TransformError(
            f"sub-patch matching compares every stored patch; only power= and l2 apply per patch, not {bad}"
        )
    return steps


def _read_patches(
    parts: Sequence[Part], steps: Sequence[Any], clock: dict[str, float]
) -> np.ndarray:
    """The (N, P, D) patch vectors of one crops entry after ``steps``; the seconds spent
    reading are added to ``clock["read_s"]``."""
    if len(parts) != 1:
        raise EvaluationError(
            "sub-patch matching reads one crops entry; concatenations are not supported"
        )
    t0 = time.perf_counter()
    x = np.asarray(parts[0].plain.read(), dtype=np.float32)
    clock["read_s"] += time.perf_counter() - t0
    if x.ndim != 3:
        raise EvaluationError(
            f"entry {parts[0].plain.key} has rows of shape {x.shape[1:]}, not (patches, dims); "
            "sub-patch matching needs a crops view stored with a vector pooling (avg, max, gem)"
        )
    for step in steps:
        if step.name == "power":
            x = (np.sign(x) * np.abs(x) ** float(step.value)).astype(np.float32)
        else:
            x = l2_normalize(x)
    return x


def _whitening_parts(store: Store, parts: Sequence[Part], other: Any, spec: str) -> list[Part]:
    """The entries of dataset ``other`` with exactly the factors of ``parts``."""
    out = []
    for part in parts:
        attrs = part.plain.attrs
        wanted = {a: attrs[a] for a in TWIN_ATTRS if a in attrs}
        found = entries_for(store, other, view=attrs.get("view"), **wanted)
        if not found:
            raise EntryNotFoundError(
                f"whitening on dataset {other.name!r} needs its features with the same factors as entry "
                f"{part.plain.key} (model={attrs.get('model_name')}, layer={attrs.get('layer')}, "
                f"view={attrs.get('view')}); extract them for {other.name!r} first"
            )
        selector = FeatureSelector(key=found[0].key, view=None)
        out.extend(resolve_parts(store, other, [selector], spec))
    return out


# --------------------------------------------------------------------------------------
# ranking
# --------------------------------------------------------------------------------------


def rank_database(
    queries: np.ndarray,
    database: np.ndarray,
    *,
    method: str = "global",
    index: str = "flat",
    k: int | None = None,
    index_params: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Database positions ranked best first for each query, ``(Q, k)`` (-1 where unranked).

    Global vectors (already normalised/whitened) are ranked by inner product; sub-patch
    arrays ``(Q, P, D)`` / ``(N, P, D)`` by ascending sub-patch distance.
    """
    n = len(database)
    if method == "subpatch":
        sub = SubpatchIndex().fit(database)
        dist = np.empty((len(queries), n), dtype=np.float32)
        step = 8
        for start in range(0, len(queries), step):
            dist[start : start + step] = sub.distances(queries[start : start + step])
            if progress:
                progress(min(start + step, len(queries)), len(queries), {"stage": "match"})
        order = np.argsort(dist, axis=1, kind="stable")
        return order[:, : (k or n)]
    if index == "flat":
        estimator: Any = FlatIPIndex()
    else:
        estimator = IVFPQIndex(**dict(index_params or {}))
    estimator.fit(database)
    ids: np.ndarray
    _, ids = estimator.search(queries, min(n, k or n))
    if progress:
        progress(len(queries), len(queries), {"stage": "search"})
    return ids


def _clean(ranking: np.ndarray, db_rows: np.ndarray) -> list[int]:
    return [int(db_rows[i]) for i in ranking if i >= 0]


# --------------------------------------------------------------------------------------
# the evaluation
# --------------------------------------------------------------------------------------


def _check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise EvaluationError(
            f"unknown retrieval {what} {value!r}; use one of {', '.join(allowed)}"
        )
    return value


def _check_index_params(params: Mapping[str, Any]) -> dict[str, Any]:
    allowed = ("nlist", "m", "nbits", "nprobe", "rerank")
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise EvaluationError(
            f"unknown IVF-PQ parameter(s) {unknown}; they are {', '.join(allowed)}"
        )
    out = {}
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise EvaluationError(
                f"IVF-PQ parameter {name} must be a positive integer, got {value!r}"
            )
        out[name] = int(value)
    return out


@dataclass(frozen=True)
class RetrievalPlan:
    """A checked retrieval setting: what will be read, how it is matched, and its result key."""

    dataset: Dataset
    info: dict[str, Any]
    parts: list[Part]
    method: str
    whiten: str  # "database" | "none" | "other"
    whiten_dim: int | None
    whiten_parts: list[Part]
    index: str
    index_params: dict[str, Any]
    transform: str
    shortlist: int
    ks: tuple[int, ...]
    seed: int
    classifier: dict[str, Any]
    protocol: dict[str, Any]
    key: str

    @property
    def feature_keys(self) -> list[str]:
        return [k for p in self.parts for k in p.keys]


def plan_retrieval(
    store: Store,
    dataset: str | Dataset,
    features: Any,
    *,
    method: str = "global",
    whiten: str = "database",
    whiten_dim: int | None = None,
    index: str = "flat",
    transform: str = "",
    shortlist: int | None = None,
    index_params: Mapping[str, Any] | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    seed: int = 0,
) -> RetrievalPlan:
    """Check a retrieval setting without computing; raises what evaluation would raise.

    Lets a command check every setting of a table before it evaluates (and writes) any.
    """
    _check_choice(method, METHODS, "method")
    _check_choice(index, INDEXES, "index")
    if method == "subpatch" and index != "flat":
        raise EvaluationError(
            "sub-patch matching compares all patches exhaustively; use index='flat'"
        )
    params = _check_index_params(dict(index_params or {})) if index == "ivfpq" else {}
    if index != "ivfpq" and index_params:
        raise EvaluationError("index_params apply to index='ivfpq' only")
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise EvaluationError(f"every k of P@k must be a positive integer, got {ks}")
    if whiten_dim is not None and (whiten == "none" or int(whiten_dim) < 1):
        raise EvaluationError(
            f"whiten_dim={whiten_dim} needs whitening and a positive number of dimensions"
        )
    if shortlist is not None and int(shortlist) < 1:
        raise EvaluationError(f"shortlist must be a positive number of images, got {shortlist}")
    ds = resolve_dataset(store, dataset)
    info = retrieval_info(ds)
    spec = canonical_spec(transform)
    if method == "subpatch":
        _patch_steps(spec)
        parts = resolve_parts(store, ds, _subpatch_selectors(store, ds, features), "")
    else:
        parts = resolve_parts(store, ds, features, spec)
    whiten_desc: dict[str, Any] = {"on": whiten, "dim": whiten_dim}
    if whiten_dim is None:
        whiten_desc["samples_per_dim"] = SAMPLES_PER_WHITENED_DIM
    whiten_parts: list[Part] = []
    mode = whiten
    if whiten == "none":
        whiten_desc = {"on": "none"}
    elif whiten != "database":
        other = resolve_dataset(store, whiten)
        if other.fingerprint == ds.fingerprint:
            mode, whiten_desc["on"] = "database", "database"
        else:
            mode = "other"
            whiten_parts = _whitening_parts(
                store, parts, other, "" if method == "subpatch" else spec
            )
            whiten_desc.update(
                {"on": other.id, "features": [k for p in whiten_parts for k in p.keys]}
            )
    n_db = len(info["database"])
    default_cut = DEFAULT_SHORTLIST if index == "ivfpq" else n_db
    cut = min(n_db, int(shortlist) if shortlist is not None else default_cut)
    classifier = {"name": method, "index": index, "whiten": whiten_desc, "index_params": params}
    protocol = {
        "name": info["protocol"],
        "queries": len(info["queries"]),
        "database": n_db,
        "ks": list(ks),
        "shortlist": cut,
        "query_region": "full image",
    }
    feature_keys = [k for p in parts for k in p.keys]
    key = make_result_key(
        feature_keys, spec, TASK, classifier, protocol, seed, dataset=ds.fingerprint
    )
    return RetrievalPlan(
        dataset=ds, info=info, parts=parts, method=method, whiten=mode,
        whiten_dim=None if whiten_dim is None else int(whiten_dim), whiten_parts=whiten_parts,
        index=index, index_params=params, transform=spec, shortlist=cut, ks=ks, seed=int(seed),
        classifier=classifier, protocol=protocol, key=key,
    )  # fmt: skip


def _descriptors(
    plan: RetrievalPlan, progress: Progress | None
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(descriptors of every row, whitening training vectors) before normalisation, and
    the seconds spent reading entries and transforming (``read_s``, ``transform_s``)."""
    db_rows = np.asarray(plan.info["database"], dtype=np.int64)
    if plan.method == "subpatch":
        t0 = time.perf_counter()
        clock = {"read_s": 0.0}
        steps = _patch_steps(plan.transform)
        x = _read_patches(plan.parts, steps, clock)
        if plan.whiten != "other":
            train = x[db_rows]
        else:
            train = _read_patches(plan.whiten_parts, steps, clock)
        clock["transform_s"] = time.perf_counter() - t0 - clock["read_s"]
        return x, train.reshape(-1, x.shape[-1]), clock
    ft = FeatureTransform("" if plan.transform == "none" else plan.transform, seed=plan.seed)
    x = ft.fit_transform(plan.parts, db_rows, progress=progress)
    train = x[db_rows] if plan.whiten != "other" else ft.transform(plan.whiten_parts, None)
    return x, train, dict(ft.timings_)


def compute_retrieval(
    store: Store, plan: RetrievalPlan, progress: Progress | None = None
) -> ResultRecord:
    """The record of a planned setting (not saved: :func:`featstore.evaluate.tasks.run` does)."""
    info = plan.info
    db_rows = np.asarray(info["database"], dtype=np.int64)
    q_rows = np.asarray(info["queries"], dtype=np.int64)
    t0 = time.perf_counter()
    x, train, stages = _descriptors(plan, progress)
    t1 = time.perf_counter()
    flat = x.reshape(-1, x.shape[-1])
    chosen: dict[str, Any] = {}
    if plan.whiten == "none":
        flat = l2_normalize(flat)
    else:
        n_components = plan.whiten_dim
        if n_components is None:
            limit = min(train.shape[1], len(train) - 1)
            n_components = max(1, min(limit, len(train) // SAMPLES_PER_WHITENED_DIM))
        wh = L2PCAWhitening(n_components=n_components).fit(train)
        flat = wh.transform(flat)
        chosen["whiten_train_vectors"] = len(train)
    chosen["dims"] = int(flat.shape[1])
    x = flat.reshape(*x.shape[:-1], flat.shape[1])
    t2 = time.perf_counter()
    params = {**plan.index_params, "seed": plan.seed} if plan.index == "ivfpq" else {}
    order = rank_database(
        x[q_rows], x[db_rows], method=plan.method, index=plan.index, k=plan.shortlist,
        index_params=params, progress=progress,
    )  # fmt: skip
    rankings = [_clean(row, db_rows) for row in order]
    t3 = time.perf_counter()
    scores, per_query = retrieval_metrics(info, rankings, plan.ks)
    if plan.shortlist < len(db_rows):  # ranked only within a shortlist: never a full-ranking mAP
        scores = {(f"{m}@shortlist" if m.startswith("mAP") else m): v for m, v in scores.items()}
        chosen["map_over"] = f"the top {plan.shortlist} of {len(db_rows)} database images"
    t4 = time.perf_counter()
    if plan.index == "ivfpq":
        chosen["ivfpq"] = IVFPQIndex(**params)._params(len(db_rows), x.shape[-1])
    ds = plan.dataset
    return build_record(
        key=plan.key, task=TASK, dataset_id=ds.id, dataset_name=ds.name,
        features=plan.feature_keys, factors=merge_factors(plan.parts), transform=plan.transform,
        classifier=plan.classifier, protocol=plan.protocol, seed=plan.seed, metrics=scores,
        per_class=per_query, chosen=chosen,
        timings={**stages, "features_s": t1 - t0, "whiten_s": t2 - t1, "search_s": t3 - t2,
                 "metrics_s": t4 - t3, "total_s": t4 - t0},
        extra_packages=("faiss-cpu",),
        queries={"evaluated": len(q_rows), "skipped": list(info.get("skipped_queries", []))},
        sizes={"dim": chosen["dims"], "queries": len(q_rows), "database": len(db_rows)},
    )  # fmt: skip


def evaluate_retrieval(
    store: Store,
    dataset: str | Dataset,
    features: Any,
    *,
    method: str = "global",
    whiten: str = "database",
    whiten_dim: int | None = None,
    index: str = "flat",
    transform: str = "",
    shortlist: int | None = None,
    index_params: Mapping[str, Any] | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    seed: int = 0,
    force: bool = False,
    progress: Progress | None = None,
) -> ResultRecord:
    """Rank the database for every query of a retrieval dataset; returns the stored record.

    ``features`` selects cached entries as for classification (a key, a dict of factors
    such as ``{"model": "efficientnet_lite0", "layer": "penultimate"}``, or a
    FeatureSelector). ``method`` is "global" or "subpatch"; ``whiten`` is "database",
    "none" or the name/id of another dataset to learn the whitening on (``whiten_dim``
    keeps that many whitened dimensions; by default one per 8 training vectors, at most
    all); ``index`` is "flat" (exact) or "ivfpq"
    (approximate, shortlist re-ranked exactly; ``index_params`` nlist, m, nbits, nprobe,
    rerank; rankings cut at ``shortlist``, default 1000). ``transform`` derives global
    descriptors from the stored entry (e.g. ``pool=max``). A second call with the same
    setting returns the stored record (``cached`` True) unless ``force``; nothing is
    written when any input is refused.
    """
    plan = plan_retrieval(
        store, dataset, features, method=method, whiten=whiten, whiten_dim=whiten_dim,
        index=index, transform=transform, shortlist=shortlist, index_params=index_params,
        ks=ks, seed=seed,
    )  # fmt: skip
    return run(store, plan, compute_retrieval, force=force, progress=progress)
