"""Synthetic result records of a factor study: for the report's page tests and benchmark.

:func:`synthetic_records` makes the records a sweep of ``networks x layers x poolings x
transforms`` on some datasets would leave (classification, one SVM score each), with scores
that depend on every factor so that the findings have something to find. No store, no
features: the report reads only records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from featstore.evaluate.results import make_result_key

__all__ = ["synthetic_records"]


def synthetic_records(
    *,
    datasets: Sequence[str] = ("flowers", "birds"),
    networks: Sequence[str] = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"),
    layers: Sequence[str] = ("stage5", "stage6", "stage7", "last_conv"),
    poolings: Sequence[str] = ("avg", "max"),
    transforms: Sequence[str] = ("l2", "pca=64,l2"),
    classifier: str = "svm",
) -> list[dict[str, Any]]:
    """One classification record per (dataset, network, layer, pooling, transform)."""
    out = []
    for d, ds in enumerate(datasets):
        for n, net in enumerate(networks):
            for i, layer in enumerate(layers):
                for p, pool in enumerate(poolings):
                    for t, tr in enumerate(transforms):
                        depth = (i + 1) / len(layers)
                        score = (
                            0.55
                            + 0.25 * math.sin(math.pi * depth * (0.9 - 0.15 * d))
                            + 0.03 * n
                            - 0.04 * p
                            - 0.01 * t
                        )
                        score = min(0.99, max(0.01, score))
                        features = [f"feat-{d}-{n}-{i}-{p}"]
                        clf = {"name": classifier}
                        out.append(
                            {
                                "key": make_result_key(features, tr, "classify", clf, {}, 0),
                                "kind": "result",
                                "task": "classify",
                                "dataset_id": f"{ds}-id",
                                "dataset_name": ds,
                                "features": features,
                                "factors": {
                                    "model": net,
                                    "layer": layer,
                                    "pooling": pool,
                                    "view": "plain",
                                },
                                "transform": tr,
                                "classifier": clf,
                                "protocol": {},
                                "seed": 0,
                                "metrics": {"accuracy": round(score, 4)},
                            }
                        )
    return out
