"""Architecture vs transfer (Kornblith et al., "Do Better ImageNet Models Transfer Better?").

Each network of a study may carry its ImageNet top-1 accuracy (published with its weights:
the bundled EfficientNet-Lite0/1/2 declare theirs in
:data:`featstore.models.published.IMAGENET_TOP1`; a sweep spec may give or override one
per network). Per task column, each network's transfer score is its best score with the
other factors at their best (the factor-effect level of :mod:`featstore.report.effects`).

As in the paper, accuracies are compared on log-odds axes (``log(p / (1 - p))``): Pearson's
r of the log-odds, with a percentile bootstrap interval over networks (resampled with
replacement; resamples without spread in either variable are dropped), and Spearman's rank
correlation of the raw accuracies (does the ImageNet ranking carry over?).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from featstore.report.tables import Report

__all__ = [
    "architecture_transfer",
    "bootstrap_pearson",
    "imagenet_top1",
    "logit",
    "pearson",
    "spearman",
]

EPS = 1e-4  # a score of exactly 0 or 1 has infinite log-odds: clip it this far inside


def logit(p: float | np.ndarray) -> np.ndarray:
    """Log-odds of fractions, clipped to [EPS, 1 - EPS]."""
    q = np.clip(np.asarray(p, dtype=float), EPS, 1.0 - EPS)
    return np.asarray(np.log(q / (1.0 - q)))


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Pearson's r; NaN when either variable has no spread (or fewer than two points)."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.size < 2:
        return math.nan
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if den == 0.0:
        return math.nan
    return float(np.clip((a * b).sum() / den, -1.0, 1.0))


def bootstrap_pearson(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of Pearson's r over the (x, y) pairs; None when fewer
    than three pairs or no resample has spread."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    n = a.size
    if n < 3:
        return None
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    xa = a[idx]
    yb = b[idx]
    xa = xa - xa.mean(axis=1, keepdims=True)
    yb = yb - yb.mean(axis=1, keepdims=True)
    den = np.sqrt((xa * xa).sum(axis=1) * (yb * yb).sum(axis=1))
    ok = den > 1e-12 * max(1.0, float(np.abs(a).max()) * float(np.abs(b).max()))
    if not ok.any():
        return None
    r = np.clip((xa * yb).sum(axis=1)[ok] / den[ok], -1.0, 1.0)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(r, [tail, 100.0 - tail])
    return float(low), float(high)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=float)
    sorted_v = values[order]
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (Pearson's r of the average ranks)."""
    return pearson(_ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float)))


def imagenet_top1(
    networks: Sequence[str], overrides: Mapping[str, float] | None = None
) -> dict[str, float]:
    """ImageNet top-1 (%) of each network that has one: ``overrides`` (a spec's) first,
    else the value its weights' publisher reports (bundled networks)."""
    from featstore.models.published import IMAGENET_TOP1  # no torch: a report builds no network

    out = {}
    for net in networks:
        if overrides and net in overrides:
            out[net] = float(overrides[net])
        elif net in IMAGENET_TOP1:
            out[net] = IMAGENET_TOP1[net]
    return out


def architecture_transfer(
    report: Report,
    overrides: Mapping[str, float] | None = None,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per task column with at least two networks of known ImageNet accuracy: the points
    (network, ImageNet top-1 %, transfer score, best setting), Pearson's r of the log-odds
    with its bootstrap interval, and Spearman's rank correlation."""
    networks = list(dict.fromkeys(r.setting["network"] for r in report.rows))
    top1 = imagenet_top1(networks, overrides)
    out = []
    for col in report.columns:
        points: list[dict[str, Any]] = []
        for net in networks:
            if net not in top1:
                continue
            mine = [r for r in report.rows if r.setting["network"] == net and col in r.scores]
            if not mine:
                continue
            best = max(mine, key=lambda r: r.scores[col])
            points.append(
                {
                    "network": net,
                    "imagenet_top1": top1[net],
                    "score": best.scores[col],
                    "setting": dict(best.setting),
                }
            )
        if len(points) < 2:
            continue
        lx = logit(np.array([p["imagenet_top1"] / 100.0 for p in points]))
        ly = logit(np.array([p["score"] for p in points]))
        r = pearson(lx, ly)
        interval = bootstrap_pearson(lx, ly, n_resamples=n_resamples, seed=seed)
        rho = spearman([p["imagenet_top1"] for p in points], [p["score"] for p in points])
        out.append(
            {
                "task": col.label,
                "column": col,
                "points": points,
                "n": len(points),
                "pearson_r": None if math.isnan(r) else r,
                "pearson_ci": interval,
                "spearman_rho": None if math.isnan(rho) else rho,
                "missing": [n for n in networks if n not in top1],
            }
        )
    return out
