"""Evaluation metrics for classification and instance retrieval (pure numpy).

Conventions shared by the AP functions:

* Binary labels are ``+1`` (positive), ``-1`` (negative) and ``0`` (ignored, e.g. VOC
  "difficult"); ignored samples are dropped before ranking, exactly as if absent. Boolean
  labels are refused because ``False`` would silently mean "ignored", not "negative".
* Ranking is by decreasing score with a *stable* sort: tied scores keep their input order
  (the VOC devkit's MATLAB ``sort`` does the same), so results are deterministic.
* A vector with no positive has no AP: it raises :class:`EvaluationError`.

Retrieval functions take ranked lists of ids (any hashable: str, int) and sets of
positive and junk ids. Every function validates its input and raises
:class:`~featstore.errors.EvaluationError` with the offending value in the message.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from featstore.errors import EvaluationError

__all__ = [
    "accuracy",
    "average_precision",
    "holidays_map",
    "mean_ap",
    "mean_class_accuracy",
    "per_class_accuracy",
    "precision_at_k",
    "recall_at_k",
    "retrieval_ap",
    "revisited_map",
    "single_label_report",
    "subpatch_distance",
    "subpatch_distances",
    "ukbench_score",
    "voc07_ap",
]

# --------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------


def _pair_1d(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise EvaluationError(
            f"y_true and y_pred must be 1-D label vectors, got shapes {t.shape} and {p.shape}"
        )
    if t.shape != p.shape:
        raise EvaluationError(f"y_true and y_pred differ in length: {t.shape[0]} != {p.shape[0]}")
    if t.size == 0:
        raise EvaluationError("cannot score an empty set of predictions")
    return t, p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of samples whose predicted label equals the true label."""
    t, p = _pair_1d(y_true, y_pred)
    return float(np.mean(t == p))


def mean_class_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean over the classes present in ``y_true`` of per-class recall.

    Unlike :func:`accuracy` it weighs every class equally, which is what fine-grained
    benchmarks (Flowers, Pets, ...) report. Classes only predicted, never true, are ignored.
    """
    t, p = _pair_1d(y_true, y_pred)
    _, inverse, counts = np.unique(t, return_inverse=True, return_counts=True)
    correct = np.bincount(inverse, weights=(t == p).astype(np.float64), minlength=counts.size)
    return float(np.mean(correct / counts))


def per_class_accuracy(
    y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None = None
) -> np.ndarray:
    """Recall of every class ``0 .. n_classes-1``; NaN for a class absent from ``y_true``.

    Labels must be non-negative integers (class indices). ``n_classes`` defaults to one
    more than the largest label seen in either vector.
    """
    t, p = _pair_1d(y_true, y_pred)
    for name, v in (("y_true", t), ("y_pred", p)):
        if not np.issubdtype(v.dtype, np.integer) or v.min() < 0:
            raise EvaluationError(
                f"per_class_accuracy needs non-negative integer class indices in {name}"
            )
    seen = int(max(t.max(), p.max())) + 1
    if n_classes is None:
        n_classes = seen
    elif n_classes < seen:
        raise EvaluationError(f"n_classes={n_classes} but labels go up to {seen - 1}")
    counts = np.bincount(t, minlength=n_classes).astype(np.float64)
    correct = np.bincount(t, weights=(t == p).astype(np.float64), minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, correct / counts, np.nan)


# --------------------------------------------------------------------------------------
# detection-style average precision (PASCAL VOC)
# --------------------------------------------------------------------------------------


def _scores_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s, lab = np.asarray(scores), np.asarray(labels)
    if s.ndim != 1 or lab.ndim != 1 or s.shape != lab.shape:
        raise EvaluationError(
            f"scores and labels must be 1-D of equal length, got {s.shape} and {lab.shape}"
        )
    if lab.dtype == bool:
        raise EvaluationError(
            "boolean labels are ambiguous (0 means 'ignored'): pass +1 / -1 / 0 integers"
        )
    if not np.issubdtype(s.dtype, np.number):
        raise EvaluationError(f"scores must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise EvaluationError("scores contain NaN or infinity")
    bad = ~np.isin(lab, (-1, 0, 1))
    if bad.any():
        raise EvaluationError(
            f"labels must be +1, -1 or 0 (ignored); found {lab[bad][:5].tolist()}"
        )
    return s, lab.astype(np.int8)


def _precision_recall(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each retained item, ranked by decreasing score."""
    s, lab = _scores_labels(scores, labels)
    keep = lab != 0
    s, lab = s[keep], lab[keep]
    n_pos = int(np.count_nonzero(lab == 1))
    if n_pos == 0:
        raise EvaluationError(
            "AP is undefined without a positive (+1) label; all labels were -1 or 0 (ignored)"
        )
    hits = lab[np.argsort(-s, kind="stable")] == 1
    tp = np.cumsum(hits)
    return tp / np.arange(1, hits.size + 1), tp / n_pos


def _envelope(precision: np.ndarray) -> np.ndarray:
    """Monotone (non-increasing) envelope: max precision at this or any later rank."""
    return np.maximum.accumulate(precision[::-1])[::-1]


def voc07_ap(scores: ArrayLike, labels: ArrayLike) -> float:
    """VOC2007 11-point interpolated AP.

    Mean over recall thresholds t = 0, 0.1, ..., 1.0 of the maximum precision at recall
    >= t (0 when recall never reaches t). The thresholds are computed as ``i / 10``, not by
    accumulating 0.1 (which gives 0.30000000000000004 and misses recall exactly 0.3).
    """
    precision, recall = _precision_recall(scores, labels)
    env = _envelope(precision)
    thresholds = np.arange(11) / 10.0
    first = np.searchsorted(recall, thresholds, side="left")  # recall is non-decreasing
    at_t = np.where(first < recall.size, env[np.minimum(first, recall.size - 1)], 0.0)
    return float(np.mean(at_t))


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """All-point interpolated AP (VOC2010 onwards): area under the precision envelope.

    Recall rises by 1/n_pos at each positive, so the area is the mean over positives of
    the envelope precision at that positive's rank.
    """
    precision, recall = _precision_recall(scores, labels)
    steps = np.diff(recall, prepend=0.0)
    return float(np.sum(steps * _envelope(precision)))


def mean_ap(scores: ArrayLike, labels: ArrayLike, kind: str = "voc07") -> tuple[float, np.ndarray]:
    """Mean AP over the columns (classes) of ``(N, K)`` scores and labels.

    ``kind`` is ``"voc07"`` (11-point) or ``"all"`` (all-point). Classes without any
    positive (+1) label have no AP: their entry in the returned per-class array is NaN
    and they are left out of the mean. Raises if no class has a positive.
    """
    funcs = {"voc07": voc07_ap, "all": average_precision}
    if kind not in funcs:
        raise EvaluationError(f"unknown AP kind {kind!r}; use one of {sorted(funcs)}")
    s, lab = np.asarray(scores), np.asarray(labels)
    if s.ndim != 2 or s.shape != lab.shape:
        raise EvaluationError(
            f"scores and labels must both be (N, K) arrays, got {s.shape} and {lab.shape}"
        )
    per_class = np.full(s.shape[1], np.nan)
    for k in range(s.shape[1]):
        if np.any(lab[:, k] == 1):
            per_class[k] = funcs[kind](s[:, k], lab[:, k])
        else:
            _scores_labels(s[:, k], lab[:, k])  # still validate the skipped column
    if np.all(np.isnan(per_class)):
        raise EvaluationError("no class has a positive (+1) label, so mean AP is undefined")
    return float(np.nanmean(per_class)), per_class


# --------------------------------------------------------------------------------------
# instance retrieval
# --------------------------------------------------------------------------------------


def _id_list(ranked_ids: Iterable[Hashable], what: str = "ranked_ids") -> list[Any]:
    ids = ranked_ids.tolist() if isinstance(ranked_ids, np.ndarray) else list(ranked_ids)
    if len(set(ids)) != len(ids):
        seen: set[Any] = set()
        for i in ids:
            if i in seen:
                raise EvaluationError(f"{what} lists id {i!r} more than once")
            seen.add(i)
    return ids


def _id_set(ids: Iterable[Hashable]) -> set[Any]:
    return set(ids.tolist() if isinstance(ids, np.ndarray) else ids)


def _hits(ranked: list[Any], positives: set[Any], junk: set[Any]) -> np.ndarray:
    """Boolean positive mask of the ranking with junk ids removed."""
    return np.array([i in positives for i in ranked if i not in junk], dtype=bool)


def _trapezoid_ap(hits: np.ndarray, n_pos: int) -> float:
    """Oxford ``compute_ap``: trapezoids between consecutive precisions at each recall step.

    For the k-th positive (k from 0) at 0-based rank r, precision before is k / r (1.0 at
    r = 0, the curve's start at recall 0) and after is (k + 1) / (r + 1).
    """
    ranks = np.flatnonzero(hits)
    k = np.arange(ranks.size)
    before = np.where(ranks == 0, 1.0, k / np.maximum(ranks, 1))
    after = (k + 1) / (ranks + 1)
    return float(np.sum((before + after) / 2.0) / n_pos)


def retrieval_ap(
    ranked_ids: Sequence[Hashable],
    positives: Collection[Hashable],
    junk: Collection[Hashable] = (),
) -> float:
    """AP of one query under the Oxford buildings protocol.

    Junk ids are removed from the ranking (neither rewarded nor penalised); AP is the
    trapezoidal area of Oxford's ``compute_ap``. Positives missing from the ranking count
    as never retrieved. An id may not be both positive and junk.
    """
    ranked = _id_list(ranked_ids)
    pos, jnk = _id_set(positives), _id_set(junk)
    if not pos:
        raise EvaluationError("retrieval AP is undefined for a query without positives")
    both = pos & jnk
    if both:
        raise EvaluationError(f"ids are both positive and junk: {sorted(map(repr, both))[:5]}")
    return _trapezoid_ap(_hits(ranked, pos, jnk), len(pos))


def precision_at_k(
    ranked_ids: Sequence[Hashable],
    positives: Collection[Hashable],
    k: int,
    junk: Collection[Hashable] = (),
) -> float:
    """Fraction of the top ``k`` (after removing junk) that are positives.

    Always divides by ``k``, so a ranking shorter than ``k`` is counted as padded with
    non-positives.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise EvaluationError(f"k must be a positive integer, got {k!r}")
    hits = _hits(_id_list(ranked_ids), _id_set(positives), _id_set(junk))
    return float(np.count_nonzero(hits[:k]) / k)


def recall_at_k(
    ranked_ids: Sequence[Hashable],
    positives: Collection[Hashable],
    k: int,
    junk: Collection[Hashable] = (),
) -> float:
    """Fraction of all positives found in the top ``k`` (after removing junk)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise EvaluationError(f"k must be a positive integer, got {k!r}")
    pos = _id_set(positives)
    if not pos:
        raise EvaluationError("recall@k is undefined for a query without positives")
    hits = _hits(_id_list(ranked_ids), pos, _id_set(junk))
    return float(np.count_nonzero(hits[:k]) / len(pos))


_PROTOCOLS = {  # name -> (positive groups, junk groups), Radenovic et al. 2018
    "easy": (("easy",), ("junk", "hard")),
    "medium": (("easy", "hard"), ("junk",)),
    "hard": (("hard",), ("junk", "easy")),
}


def revisited_map(
    ranks_per_query: Sequence[Sequence[Hashable]],
    gnd: Sequence[Mapping[str, Collection[Hashable]]],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, dict[str, Any]]:
    """mAP and mP@k of revisited Oxford/Paris under the Easy, Medium and Hard protocols.

    ``ranks_per_query[i]`` is query i's ranking (one row per query; revisitop's ``ranks``
    array has one *column* per query, so pass its transpose); ``gnd[i]`` has "easy",
    "hard" and "junk" id lists. Easy: positives easy, junk junk+hard; Medium: positives
    easy+hard, junk junk; Hard: positives hard, junk junk+easy.

    mP@k follows the revisitop code: after junk removal, k is capped at the rank of the
    last retrieved positive, so a query with fewer than k positives is not penalised.
    Queries without positives under a protocol are skipped for it; the count is returned
    as ``"skipped"``, and a protocol with every query skipped has NaN scores.
    """
    if len(ranks_per_query) != len(gnd):
        raise EvaluationError(
            f"{len(ranks_per_query)} rankings but {len(gnd)} ground-truth entries"
        )
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise EvaluationError(f"every k must be a positive integer, got {ks}")
    aps: dict[str, list[float]] = {p: [] for p in _PROTOCOLS}
    precs: dict[str, list[list[float]]] = {p: [] for p in _PROTOCOLS}
    for q, (ranking, g) in enumerate(zip(ranks_per_query, gnd, strict=True)):
        missing = {"easy", "hard", "junk"} - set(g)
        if missing:
            raise EvaluationError(f"ground truth of query {q} lacks {sorted(missing)}")
        ranked = _id_list(ranking, f"ranking of query {q}")
        groups = {name: _id_set(g[name]) for name in ("easy", "hard", "junk")}
        for proto, (pos_names, junk_names) in _PROTOCOLS.items():
            pos = set().union(*(groups[n] for n in pos_names))
            jnk = set().union(*(groups[n] for n in junk_names)) - pos
            if not pos:
                continue
            hits = _hits(ranked, pos, jnk)
            aps[proto].append(_trapezoid_ap(hits, len(pos)))
            found = np.flatnonzero(hits) + 1  # 1-based ranks of retrieved positives
            row = []
            for k in ks:
                kq = min(int(found.max()), k) if found.size else k
                row.append(float(np.count_nonzero(found <= kq) / kq))
            precs[proto].append(row)
    out: dict[str, dict[str, Any]] = {}
    for proto in _PROTOCOLS:
        n = len(aps[proto])
        mp = np.mean(precs[proto], axis=0) if n else np.full(len(ks), np.nan)
        out[proto] = {
            "mAP": float(np.mean(aps[proto])) if n else float("nan"),
            "mP@k": {k: float(v) for k, v in zip(ks, mp, strict=True)},
            "skipped": len(gnd) - n,
        }
    return out


def holidays_map(
    ranked_lists: Sequence[Sequence[Hashable]],
    positives: Sequence[Collection[Hashable]],
    query_ids: Sequence[Hashable],
) -> float:
    """INRIA Holidays mAP: mean trapezoidal AP with each query removed from its ranking.

    The query is also dropped from its positives if listed there (it is never counted).
    A query left without positives raises, since Holidays groups have at least two images.
    """
    if not (len(ranked_lists) == len(positives) == len(query_ids)):
        raise EvaluationError(
            f"lengths differ: {len(ranked_lists)} rankings, {len(positives)} positive sets, "
            f"{len(query_ids)} query ids"
        )
    if len(query_ids) == 0:
        raise EvaluationError("holidays_map needs at least one query")
    aps = []
    for ranking, pos, qid in zip(ranked_lists, positives, query_ids, strict=True):
        ranked = _id_list(ranking, f"ranking of query {qid!r}")
        pos_set = _id_set(pos) - {qid}
        if not pos_set:
            raise EvaluationError(f"query {qid!r} has no positives besides itself")
        aps.append(_trapezoid_ap(_hits(ranked, pos_set, {qid}), len(pos_set)))
    return float(np.mean(aps))


def ukbench_score(
    ranked_lists: Mapping[Hashable, Sequence[Hashable]] | Sequence[Sequence[Hashable]],
    group_of: Mapping[Hashable, Hashable],
    query_ids: Sequence[Hashable] | None = None,
) -> float:
    """UKBench N-S score: mean number of same-group images among each query's top 4.

    The query itself counts when it is ranked (it normally is, first), so the maximum is
    4. ``ranked_lists`` maps query id -> ranking, or is a sequence of rankings with
    ``query_ids`` giving each one's query. Every id in a top 4 must be in ``group_of``.
    """
    if isinstance(ranked_lists, Mapping):
        if query_ids is not None:
            raise EvaluationError("pass query_ids only with a sequence of rankings")
        items = list(ranked_lists.items())
    else:
        if query_ids is None or len(query_ids) != len(ranked_lists):
            raise EvaluationError("a sequence of rankings needs query_ids of the same length")
        items = list(zip(query_ids, ranked_lists, strict=True))
    if not items:
        raise EvaluationError("ukbench_score needs at least one query")
    counts = []
    for qid, ranking in items:
        top = _id_list(ranking, f"ranking of query {qid!r}")[:4]
        unknown = [i for i in [qid, *top] if i not in group_of]
        if unknown:
            raise EvaluationError(f"ids without a group in group_of: {unknown[:5]!r}")
        counts.append(sum(group_of[i] == group_of[qid] for i in top))
    return float(np.mean(counts))


# --------------------------------------------------------------------------------------
# spatial sub-patch matching (Razavian et al.)
# --------------------------------------------------------------------------------------


def _patches(x: ArrayLike, ndim: int, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # ragged lists, non-numbers
        raise EvaluationError(f"{name} is not a numeric array: {exc}") from None
    if a.ndim != ndim or 0 in a.shape:
        raise EvaluationError(f"{name} must be a non-empty {ndim}-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise EvaluationError(f"{name} contains NaN or infinity")
    return a


def subpatch_distance(query_patches: ArrayLike, image_patches: ArrayLike) -> float:
    """Mean over the query's patches (P, D) of the min L2 distance to the image's (Q, D)."""
    q = _patches(query_patches, 2, "query_patches")
    x = _patches(image_patches, 2, "image_patches")
    if q.shape[1] != x.shape[1]:
        raise EvaluationError(f"patch dimensions differ: {q.shape[1]} != {x.shape[1]}")
    diff = q[:, None, :] - x[None, :, :]
    return float(np.mean(np.sqrt(np.min(np.sum(diff * diff, axis=2), axis=1))))


def subpatch_distances(
    query_patches: ArrayLike, images_patches: ArrayLike, chunk_bytes: int = 64 << 20
) -> np.ndarray:
    """:func:`subpatch_distance` of one query (P, D) against M images (M, Q, D) -> (M,).

    Nearest patches are found with one matrix product per chunk of images (about
    ``chunk_bytes`` of distances at a time); the chosen distances are then recomputed
    directly, so cancellation in ``|a|^2 + |b|^2 - 2ab`` does not leak into the result.
    """
    q = _patches(query_patches, 2, "query_patches")
    x = _patches(images_patches, 3, "images_patches")
    if q.shape[1] != x.shape[2]:
        raise EvaluationError(f"patch dimensions differ: {q.shape[1]} != {x.shape[2]}")
    m, n_img_patches, _ = x.shape
    step = max(1, chunk_bytes // (8 * q.shape[0] * n_img_patches))
    q_sq = np.sum(q * q, axis=1)
    out = np.empty(m)
    for start in range(0, m, step):
        xs = x[start : start + step]  # (m', Q, D)
        sq = np.sum(xs * xs, axis=2)[:, :, None] + q_sq[None, None, :] - 2.0 * xs @ q.T
        nearest = np.argmin(sq, axis=1)  # (m', P) index of the closest image patch
        picked = np.take_along_axis(xs, nearest[:, :, None], axis=1)  # (m', P, D)
        out[start : start + step] = np.mean(np.linalg.norm(picked - q[None], axis=2), axis=1)
    return out


def single_label_report(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], n_classes: int
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """(metrics, per_class) of a single-label test split, as every classifier reports them:
    accuracy and mean per-class accuracy; per class its accuracy (recall) and test count."""
    recall = per_class_accuracy(y_true, y_pred, n_classes=n_classes)
    names = [classes[i] if i < len(classes) else str(i) for i in range(n_classes)]
    scores = {
        "accuracy": accuracy(y_true, y_pred),
        "mean_class_accuracy": mean_class_accuracy(y_true, y_pred),
    }
    per_class = {
        "accuracy": dict(zip(names, recall.tolist(), strict=True)),
        "n_test": dict(zip(names, np.bincount(y_true, minlength=n_classes).tolist(), strict=True)),
    }
    return scores, per_class
