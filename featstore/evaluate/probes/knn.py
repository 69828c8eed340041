"""k-nearest-neighbour probe: cosine similarity, DINO's temperature-weighted vote, on FAISS.

The protocol of Caron et al. (DINO, 2021) / Wu et al. (2018): features are L2-normalised,
each test image retrieves its ``k`` most similar training images by inner product, and
each neighbour votes for its class with weight ``exp(similarity / T)`` (``T = 0.07``).
``k`` is chosen on the validation rows (the dataset's val split, or a stratified, seeded
share of the training rows) from a small grid, searching the training rows only; the
test rows are then classified against train+val. No test row is ever searched against
or used to choose ``k``.

A given ``k`` larger than the images searched is refused (:func:`knn_grid`); the default
grid keeps the values the data holds, and the record's ``k_grid`` says which. A back end
of :mod:`featstore.evaluate.probes.protocol` with its own selection rule (k on val).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from featstore.errors import ProtocolLimitError
from featstore.evaluate import metrics
from featstore.evaluate.probes.limits import knn_grid
from featstore.evaluate.probes.protocol import carve_validation
from featstore.evaluate.threads import gpu_count

__all__ = ["KNN_TEMPERATURE", "knn_vote", "single_label"]

KNN_TEMPERATURE = 0.07


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def _neighbours(db: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine similarities and row ids (FAISS flat inner product, GPUs when present)."""
    import faiss

    index: Any = faiss.IndexFlatIP(db.shape[1])
    if gpu_count() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(db)
    if k > db.shape[0]:  # knn_grid refuses this first; never vote with fewer than asked
        raise ProtocolLimitError(
            f"k={k} neighbours asked of {db.shape[0]} images",
            option="knn_k",
            value=k,
            limit=db.shape[0],
        )
    sims, ids = index.search(queries, k)
    return sims, ids.astype(np.int64)


def knn_vote(
    sims: np.ndarray, neighbour_labels: np.ndarray, k: int, n_classes: int, temperature: float
) -> np.ndarray:
    """Class of each query from its first ``k`` neighbours' ``exp(sim / T)``-weighted votes."""
    s, lab = sims[:, :k].astype(np.float64), neighbour_labels[:, :k]
    weights = np.exp((s - s[:, :1]) / temperature)  # shifted by the best: same argmax, no overflow
    votes = np.zeros((s.shape[0], n_classes))
    np.add.at(votes, (np.repeat(np.arange(s.shape[0]), lab.shape[1]), lab.ravel()), weights.ravel())
    best: np.ndarray = np.argmax(votes, axis=1)
    return best


def single_label(
    X: np.ndarray,
    y: np.ndarray,
    splits: Any,
    spec: Any,
    seed: int,
    classes: Sequence[str],
    tick: Callable[[], None],
) -> dict[str, Any]:
    """Score the kNN probe on one-label-per-image data (record parts like the linear probes)."""

    def labelled(rows: np.ndarray) -> np.ndarray:
        out: np.ndarray = rows[y[rows] >= 0]
        return out

    train, val, test = labelled(splits.train), labelled(splits.val), labelled(splits.test)
    n_select = len(train) if len(val) else len(train) - math.ceil(spec.val_fraction * len(train))
    grid = list(knn_grid(spec.knn_k, len(train) + len(val), n_select))
    t0 = time.perf_counter()
    Xn = _normalise(X)
    n_classes = max(len(classes), int(y.max()) + 1)
    chosen: dict[str, Any] = {"temperature": float(spec.temperature)}
    if len(grid) == 1:
        k = grid[0]
    else:
        if len(val) == 0:
            train, val = carve_validation(
                y,
                train,
                spec.val_fraction,
                seed,
                chooses="the kNN probe chooses k",
                single=" to choose k",
                remedy="give one k (e.g. --knn-k 20)",
            )
        sims, ids = _neighbours(Xn[train], Xn[val], max(grid))
        nb = y[train][ids]
        scores = [
            metrics.accuracy(y[val], knn_vote(sims, nb, k, n_classes, spec.temperature))
            for k in grid
        ]
        best = int(np.argmax(scores))  # first maximum: the smallest k among ties
        k = grid[best]
        chosen["val_scores"] = {str(g): float(s) for g, s in zip(grid, scores, strict=True)}
        chosen["val_accuracy"] = float(scores[best])
    chosen["k"] = k
    chosen["k_grid"] = grid
    tick()
    db = np.concatenate([train, val])
    t1 = time.perf_counter()
    sims, ids = _neighbours(Xn[db], Xn[test], k)
    pred = knn_vote(sims, y[db][ids], k, n_classes, spec.temperature)
    t2 = time.perf_counter()
    test_scores, per_class = metrics.single_label_report(y[test], pred, classes, n_classes)
    return {
        "metrics": test_scores,
        "per_class": per_class,
        "chosen": chosen,
        "sizes": {"n_train": len(train), "n_val": len(val), "n_test": len(test)},
        "timings": {"fit_s": t1 - t0, "predict_s": t2 - t1},
    }
