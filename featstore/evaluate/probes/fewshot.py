"""Few-shot probes: K training images per class, seeded repeated draws, mean +- std.

Each draw keeps ``K`` rows of every class of the training split, chosen with ``numpy.random.default_rng([seed, K, draw])`` so a draw is
reproducible and independent of the other shot counts. The drawn rows become the whole
training split of that draw: the dataset's validation rows are not used, so the
classifier's own selection (SVM cross-validation, the logreg / kNN validation share)
happens inside the K shots. Test rows are never drawn, searched or used for selection.
Rows come from the features already read from the cache (no new extraction).
A ``K`` larger than the smallest class's training rows is refused (ProtocolLimitError),
never clamped: ``accuracy@1000shot`` is never an 8-shot score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from featstore.errors import EvaluationError
from featstore.evaluate.probes.limits import check_shots
from featstore.evaluate.probes.protocol import Splits

__all__ = ["draw_shots", "few_shot", "fewshot_protocol"]


def draw_shots(y: np.ndarray, train: np.ndarray, shots: int, seed: int, draw: int) -> np.ndarray:
    """Sorted row ids: ``shots`` random training rows of each class present in ``train``
    (ProtocolLimitError when a class has fewer)."""
    check_shots(y, train, [shots], [], "the training rows")
    rng = np.random.default_rng([int(seed), int(shots), int(draw)])
    labels = y[train]
    picked = []
    for c in np.unique(labels[labels >= 0]):
        rows = train[labels == c]
        picked.append(rng.choice(rows, size=int(shots), replace=False))
    return np.sort(np.concatenate(picked))


def fewshot_protocol(
    shots: Sequence[int], draws: int, cv_folds: dict[str, int] | None = None
) -> dict[str, Any]:
    """The few-shot part of a result key's protocol (``cv_folds``: the SVM's folds per K)."""
    return {
        **({"cv_folds": cv_folds} if cv_folds else {}),
        "shots": sorted({int(k) for k in shots}),
        "draws": int(draws),
        "draw_rng": "numpy default_rng([seed, shots, draw]) per class, from the train split",
        "val": "from the drawn shots only",
        "report": "mean and std (ddof=0) over draws",
    }


def check_fewshot(shots: Sequence[int] | None, draws: int) -> None:
    """EvaluationError unless every shot count and the number of draws are positive."""
    if shots is None:
        return
    if not shots or any(int(k) < 1 for k in shots) or int(draws) < 1:
        raise EvaluationError(
            f"few-shot needs shot counts >= 1 and draws >= 1, got shots={list(shots)}, "
            f"draws={draws}; e.g. --shots 1,5,10 --draws 5"
        )


def few_shot(
    classify: Callable[..., dict[str, Any]],
    X: np.ndarray,
    labels: np.ndarray,
    splits: Splits,
    shots: Sequence[int],
    draws: int,
    seed: int = 0,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run ``classify(X, labels, splits_of_draw, seed=..., **kwargs)`` per shot count and draw.

    Returns record parts: ``metrics`` ``{name}@{K}shot`` (mean) and ``..._std``, ``chosen``
    with every draw's metrics and chosen values, ``sizes`` and summed ``timings``.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise EvaluationError(
            "few-shot draws K images per class; this dataset is multi-label: evaluate it without "
            "--shots"
        )
    check_fewshot(shots, draws)
    check_shots(
        y, splits.train, shots, kwargs.get("classes") or [], f"the {splits.train_name} split"
    )
    out_metrics: dict[str, float] = {}
    per_draw: dict[str, list[dict[str, Any]]] = {}
    timings = {"fit_s": 0.0, "predict_s": 0.0}
    test = splits.test
    for k in sorted({int(s) for s in shots}):
        runs = []
        for d in range(int(draws)):
            rows = draw_shots(y, splits.train, k, seed, d)
            if np.intersect1d(rows, test).size:  # cannot happen with disjoint splits
                raise EvaluationError("a few-shot draw picked a test row; the splits overlap")
            drawn = Splits(rows, np.zeros(0, dtype=np.int64), test, splits.train_name, None)
            try:
                res = classify(X, y, drawn, seed=seed, **kwargs)
            except EvaluationError as exc:
                raise EvaluationError(
                    f"{k}-shot draw {d}: {exc}" + ("" if k > 1 else " (with 1 shot per class)")
                ) from exc
            runs.append({"metrics": res["metrics"], "chosen": res["chosen"]})
            for t in timings:
                timings[t] += float(res["timings"].get(t, 0.0))
        for name in runs[0]["metrics"]:
            values = np.array([r["metrics"][name] for r in runs], dtype=np.float64)
            out_metrics[f"{name}@{k}shot"] = float(values.mean())
            out_metrics[f"{name}@{k}shot_std"] = float(values.std())
        per_draw[f"{k}shot"] = runs
    return {
        "metrics": out_metrics,
        "per_class": {},
        "chosen": {"draws": per_draw},
        "sizes": {"n_train": len(splits.train), "n_val": 0, "n_test": len(test)},
        "timings": timings,
    }
