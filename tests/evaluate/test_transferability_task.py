"""`--task transferability`: estimators on cached features of the train split, stored as records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featstore.datasets import build_dataset
from featstore.errors import EvaluationError
from featstore.evaluate.transferability.estimators import h_score, logme
from featstore.evaluate.transferability.task import evaluate_transferability, transferability_scores
from featstore.keys import make_key
from featstore.store import open_store


def _dataset(n_per_class: int = 12):
    labels, splits, ids = [], [], []
    for c in range(3):
        for i in range(n_per_class):
            labels.append(c)
            splits.append("train" if i < n_per_class * 2 // 3 else "test")
            ids.append(f"c{c}_{i}")
    n = len(ids)
    return build_dataset(
        "toy",
        ids,
        [f"builtin:digits/{i}" for i in range(n)],
        np.asarray(labels, np.int32),
        splits,
        ["a", "b", "c"],
        [f"h{i}" for i in range(n)],
        source={"kind": "test"},
    )


def _entry(store, ds, layer: str, x: np.ndarray, view: str = "plain"):
    attrs = {
        "kind": "features",
        "dataset_id": ds.id,
        "dataset_name": ds.name,
        "dataset_fingerprint": ds.fingerprint,
        "model": {"name": "toy", "source": "random", "weights_sha256": "0" * 64},
        "model_name": "toy",
        "layer": layer,
        "preprocess": {"resize": 8},
        "view": view,
        "pooling": "avg",
        "dtype": "float32",
        "compute_dtype": "float32",
    }
    key = make_key(
        "feat", {k: v for k, v in attrs.items() if k not in ("kind", "dataset_name", "model_name")}
    )
    entry = store.create_entry(key, attrs, x.shape, dtype="float32", chunk_rows=10)
    for i in range(entry.n_chunks):
        a, b = entry.chunk_bounds(i)
        entry.write_chunk(i, x[a:b])
    return entry


@pytest.fixture
def toy(tmp_path: Path):
    store = open_store(str(tmp_path / "s.zarr"))
    ds = _dataset()
    store.put_dataset(ds)
    rng = np.random.default_rng(0)
    y = np.asarray(ds.labels)
    centers = rng.normal(size=(3, 6)) * 3
    clean = centers[y] + 0.1 * rng.normal(size=(ds.n, 6))
    noisy = rng.normal(size=(ds.n, 6))  # no class information at all
    return (
        store,
        ds,
        _entry(store, ds, "clean", clean.astype(np.float32)),
        _entry(store, ds, "noisy", noisy.astype(np.float32)),
    )


def test_scores_equal_the_estimators_on_the_train_rows_and_are_stored(toy) -> None:
    store, ds, clean, _ = toy
    rec = evaluate_transferability(
        store,
        ds.name,
        {"model": "toy", "layer": "clean"},
        transform="l2",
        estimators=["logme", "h_score"],
    )
    assert rec["task"] == "transferability"
    assert rec["cached"] is False
    train = ds.split_indices("train")
    x = clean.read()[train].astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.asarray(ds.labels)[train]
    assert rec["metrics"]["logme"] == pytest.approx(logme(x, y), rel=1e-4)
    assert rec["metrics"]["h_score"] == pytest.approx(h_score(x, y), rel=1e-4)
    assert rec["chosen"]["n_train"] == len(train) == 24
    assert rec["features"] == [clean.key]
    assert rec["factors"]["layer"] == "clean"
    assert store.has_result(rec["key"])
    again = evaluate_transferability(
        store,
        ds.name,
        {"model": "toy", "layer": "clean"},
        transform="l2",
        estimators=["h_score", "logme"],
    )
    assert again["cached"] is True
    assert again["key"] == rec["key"]


def test_informative_features_score_higher_on_every_estimator(toy) -> None:
    store, ds, _, _ = toy
    good = evaluate_transferability(store, ds, {"model": "toy", "layer": "clean"})
    bad = evaluate_transferability(store, ds, {"model": "toy", "layer": "noisy"})
    assert set(good["metrics"]) == {"logme", "h_score", "gbc"}
    for name in good["metrics"]:
        assert good["metrics"][name] > bad["metrics"][name], name


def test_unknown_estimator_and_multilabel_are_refused(toy) -> None:
    store, ds, _, _ = toy
    with pytest.raises(EvaluationError, match=r"unknown transferability estimator.*'leep'"):
        evaluate_transferability(store, ds, {"model": "toy", "layer": "clean"}, estimators=["leep"])
    assert store.result_keys() == []
    with pytest.raises(EvaluationError, match="multi-label"):
        transferability_scores(np.zeros((4, 2)), np.zeros((4, 3), dtype=np.int8))


def test_cli_evaluate_task_transferability(toy) -> None:
    from click.testing import CliRunner
    from featstore.cli.main import cli

    store, _ds, _, _ = toy
    args = ["evaluate", "--store", store.url, "-d", "toy", "-m", "toy", "-l", "clean,noisy"]
    res = CliRunner().invoke(
        cli, [*args, "--task", "transferability", "--estimators", "h_score", "--json"]
    )
    assert res.exit_code == 0, res.output
    import json

    records = json.loads(res.output)
    assert [r["task"] for r in records] == ["transferability"] * 2
    assert records[0]["metrics"]["h_score"] > records[1]["metrics"]["h_score"]
    assert records[0]["sizes"]["dim"] == 6
    res = CliRunner().invoke(cli, [*args, "--task", "transferability", "--estimators", "nce"])
    assert res.exit_code == 1
    assert "Error: unknown transferability estimator(s) ['nce']" in res.output
