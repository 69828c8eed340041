"""kNN and few-shot probes: the protocol never lets a test row train, vote or select."""

from __future__ import annotations

import numpy as np
import pytest

from featstore.errors import EvaluationError
from featstore.evaluate import classify_arrays
from featstore.evaluate.probes import knn
from featstore.evaluate.probes.fewshot import draw_shots, few_shot
from featstore.evaluate.probes.protocol import ClassifierSpec, Splits


def blobs(n=300, k=4, d=8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = (rng.normal(size=(k, d))[y] * 2 + rng.normal(size=(n, d))).astype(np.float32)
    idx = rng.permutation(n)
    empty = np.zeros(0, dtype=np.int64)
    return X, y, Splits(np.sort(idx[100:]), empty, np.sort(idx[:100]), "train", None)


def test_knn_vote_weights_neighbours_by_exp_similarity_over_t():
    sims = np.array([[0.9, 0.8, 0.79]])
    labels = np.array([[0, 1, 1]])
    assert knn.knn_vote(sims, labels, 1, 2, 0.07)[0] == 0
    # two close runners-up outvote the best: exp(0.9/T) < exp(0.8/T) + exp(0.79/T) at T=1
    assert knn.knn_vote(sims, labels, 3, 2, 1.0)[0] == 1
    # at a small temperature the best neighbour dominates
    assert knn.knn_vote(sims, labels, 3, 2, 0.01)[0] == 0


def test_knn_never_searches_or_selects_with_test_rows(monkeypatch):
    X, y, splits = blobs()
    calls = []
    real = knn._neighbours

    def spy(db, queries, k):
        calls.append((db.copy(), queries.copy()))
        return real(db, queries, k)

    monkeypatch.setattr(knn, "_neighbours", spy)
    out = classify_arrays(X, y, splits, ClassifierSpec(name="knn", knn_k=(1, 5, 15)))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    test_rows = {r.tobytes() for r in Xn[splits.test].astype(np.float32)}
    selection_db, selection_q = calls[0]
    assert not test_rows & {r.tobytes() for r in selection_db}
    assert not test_rows & {r.tobytes() for r in selection_q}
    final_db, final_q = calls[1]
    assert not test_rows & {r.tobytes() for r in final_db}
    assert len(final_q) == len(splits.test)
    assert out["chosen"]["k"] in (1, 5, 15)
    assert out["metrics"]["accuracy"] > 0.8


def test_knn_refuses_multilabel():
    X, _, splits = blobs()
    Y = np.zeros((len(X), 3), dtype=np.int8)
    with pytest.raises(EvaluationError, match="multi-label"):
        classify_arrays(X, Y, splits, ClassifierSpec(name="knn"))


def test_shots_come_from_the_training_rows_and_are_seeded():
    _, y, splits = blobs()
    a = draw_shots(y, splits.train, 5, seed=0, draw=0)
    assert np.all(np.isin(a, splits.train))
    assert np.all(np.bincount(y[a]) == 5)
    assert np.array_equal(a, draw_shots(y, splits.train, 5, seed=0, draw=0))
    assert not np.array_equal(a, draw_shots(y, splits.train, 5, seed=0, draw=1))


def test_few_shot_trains_and_selects_on_shots_only_and_reports_mean_and_std():
    X, y, splits = blobs()
    seen = []

    def spy(X, labels, drawn, **kwargs):
        seen.append(drawn)
        return classify_arrays(X, labels, drawn, **kwargs)

    out = few_shot(spy, X, y, splits, shots=[2, 5], draws=3, spec=ClassifierSpec(name="svm", cv=2))
    assert len(seen) == 6
    for drawn in seen:
        assert not np.intersect1d(drawn.train, splits.test).size
        assert drawn.val.size == 0
        assert np.array_equal(drawn.test, splits.test)
    for k in (2, 5):
        runs = [r["metrics"]["accuracy"] for r in out["chosen"]["draws"][f"{k}shot"]]
        assert out["metrics"][f"accuracy@{k}shot"] == pytest.approx(np.mean(runs))
        assert out["metrics"][f"accuracy@{k}shot_std"] == pytest.approx(np.std(runs))
    assert out["metrics"]["accuracy@5shot"] >= out["metrics"]["accuracy@2shot"] - 0.1


def test_knn_refuses_in_words_a_validation_split_too_small_to_stratify():
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    y = np.repeat(np.arange(5), 4)  # 5 classes, 2 training rows each: 2 validation rows
    train, test = np.flatnonzero(np.arange(20) % 4 < 2), np.flatnonzero(np.arange(20) % 4 >= 2)
    splits = Splits(train, np.zeros(0, dtype=np.int64), test, "train", None)
    with pytest.raises(EvaluationError, match=r"kNN probe chooses k .* give one k"):
        classify_arrays(X, y, splits, ClassifierSpec("knn", knn_k=(1, 2)))
    # the default grid keeps only what 10 training rows hold: one k, no validation split
    assert classify_arrays(X, y, splits, ClassifierSpec("knn"))["chosen"]["k"] == 10
    one_k = classify_arrays(X, y, splits, ClassifierSpec("knn", knn_k=(3,)))
    assert one_k["chosen"]["k"] == 3
