"""Architecture vs transfer: Pearson r, its bootstrap interval and Spearman's rho against
scipy; ImageNet accuracies from the bundled networks or a spec's override."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from featstore.models.bundled_lite import IMAGENET_TOP1
from featstore.report import build_report
from featstore.report.kornblith import (
    architecture_transfer,
    bootstrap_pearson,
    logit,
    pearson,
    spearman,
)


def _xy(n: int = 14, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, 0.7 * x + rng.normal(scale=0.6, size=n)


def test_pearson_matches_scipy() -> None:
    x, y = _xy()
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert np.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_spearman_matches_scipy_with_ties() -> None:
    x = [1.0, 2.0, 2.0, 3.0, 5.0, 4.0]
    y = [0.2, 0.1, 0.4, 0.4, 0.9, 0.3]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


def _r(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson's r along ``axis`` (scipy's bootstrap calls it on stacks of resamples)."""
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    return (a * b).sum(axis) / np.sqrt((a * a).sum(axis) * (b * b).sum(axis))


def test_bootstrap_interval_matches_scipy_percentile_bootstrap() -> None:
    x, y = _xy()
    low, high = bootstrap_pearson(x, y, n_resamples=20000, seed=1)
    ref = stats.bootstrap(
        (x, y),
        _r,
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=20000,
        confidence_level=0.95,
        random_state=np.random.default_rng(2),
    ).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.02)
    assert high == pytest.approx(ref.high, abs=0.02)
    assert low < pearson(x, y) < high
    assert bootstrap_pearson([1.0, 2.0], [2.0, 1.0]) is None  # two points: no interval


def _records(scores: dict[str, float]) -> list[dict]:
    out = []
    for net, acc in scores.items():
        for layer, drop in (("stage5", 0.1), ("last_conv", 0.0)):
            out.append(
                {
                    "key": f"res-{net}-{layer}",
                    "task": "classify",
                    "dataset_name": "flowers",
                    "factors": {"model": net, "layer": layer, "pooling": "avg", "view": "plain"},
                    "transform": "l2",
                    "classifier": {"name": "svm"},
                    "metrics": {"accuracy": acc - drop},
                }
            )
    return out


def test_architecture_transfer_uses_the_published_accuracies_on_log_odds() -> None:
    scores = {
        "efficientnet_lite0": 0.80,
        "efficientnet_lite1": 0.85,
        "efficientnet_lite2": 0.84,
        "teamnet": 0.9,
    }
    (a,) = architecture_transfer(build_report(_records(scores)), seed=0)
    assert [p["network"] for p in a["points"]] == list(scores)[:3]
    assert a["missing"] == ["teamnet"]
    assert [p["imagenet_top1"] for p in a["points"]] == [75.1, 76.7, 77.6]
    assert IMAGENET_TOP1["efficientnet_lite1"] == 76.7
    assert a["points"][0]["setting"]["layer"] == "last_conv"  # the network at its best
    lx = np.log([0.751 / 0.249, 0.767 / 0.233, 0.776 / 0.224])
    ly = np.log([0.80 / 0.20, 0.85 / 0.15, 0.84 / 0.16])
    assert a["pearson_r"] == pytest.approx(stats.pearsonr(lx, ly)[0], abs=1e-9)
    assert a["spearman_rho"] == pytest.approx(0.5)
    low, high = a["pearson_ci"]
    assert -1.0 <= low <= high <= 1.0


def test_a_spec_override_replaces_or_adds_an_accuracy() -> None:
    scores = {"efficientnet_lite0": 0.80, "efficientnet_lite1": 0.85, "teamnet": 0.9}
    (a,) = architecture_transfer(
        build_report(_records(scores)), {"teamnet": 80.0, "efficientnet_lite0": 70.0}
    )
    assert {p["network"]: p["imagenet_top1"] for p in a["points"]} == {
        "efficientnet_lite0": 70.0,
        "efficientnet_lite1": 76.7,
        "teamnet": 80.0,
    }
    assert a["spearman_rho"] == pytest.approx(1.0)
    assert logit(1.0) > 9
    assert np.isfinite(logit(0.0))
