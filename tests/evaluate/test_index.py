"""FAISS index wrappers: exact search equals brute force, IVF-PQ re-ranking, sub-patch matching."""

from __future__ import annotations

import numpy as np
import pytest

from featstore.errors import EvaluationError, FeatstoreError
from featstore.evaluate.metrics import subpatch_distance
from featstore.evaluate.retrieval.index import (
    FlatIPIndex,
    IVFPQIndex,
    L2PCAWhitening,
    SubpatchIndex,
    l2_normalize,
)


def _clustered(seed: int = 0, n: int = 1500, d: int = 16, k: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)).astype(np.float32) * 3
    return (centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(np.float32)


def test_flat_ip_ranking_equals_numpy_brute_force() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 16)).astype(np.float32)
    q = rng.standard_normal((40, 16)).astype(np.float32)
    scores, ids = FlatIPIndex().fit(x).search(q, 10)
    brute = q @ x.T
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(
        scores, np.take_along_axis(brute, expected, axis=1), rtol=1e-5, atol=1e-5
    )


def test_flat_ip_hand_worked_and_k_clipped() -> None:
    x = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    scores, ids = FlatIPIndex().fit(x).search(np.array([[1, 0]], dtype=np.float32), 10)
    assert ids.tolist() == [[0, 2, 1]]  # cosines 1, 0.6, 0
    np.testing.assert_allclose(scores, [[1.0, 0.6, 0.0]], atol=1e-6)


def test_flat_ip_refuses_bad_input() -> None:
    index = FlatIPIndex()
    with pytest.raises(EvaluationError, match="not fitted"):
        index.search(np.zeros((1, 2)), 1)
    index.fit(np.eye(3))
    with pytest.raises(EvaluationError, match="queries have 2 dims but the index holds 3-dim"):
        index.search(np.zeros((1, 2)), 1)
    with pytest.raises(EvaluationError, match="NaN"):
        index.search(np.full((1, 3), np.nan), 1)
    with pytest.raises(FeatstoreError, match="faiss sees no GPU"):
        FlatIPIndex(use_gpu=True).fit(np.eye(3))


def test_ivfpq_with_rerank_finds_the_exact_top_results() -> None:
    x = _clustered()
    rng = np.random.default_rng(2)
    q = x[:100] + 0.1 * rng.standard_normal((100, x.shape[1])).astype(np.float32)
    _, exact = FlatIPIndex().fit(x).search(q, 10)
    index = IVFPQIndex(rerank=100).fit(x)
    scores, ids = index.search(q, 10)
    np.testing.assert_array_equal(ids, exact)
    # the returned scores are exact inner products, not PQ approximations
    np.testing.assert_allclose(
        scores, np.take_along_axis(q @ x.T, ids, axis=1), rtol=1e-4, atol=1e-3
    )
    # without a longer shortlist, PQ alone misses some of the exact top 10
    _, pq_only = IVFPQIndex(rerank=10).fit(x).search(q, 10)
    assert (pq_only == exact).mean() < 0.9


def test_ivfpq_small_database_adapts_its_parameters() -> None:
    x = _clustered(n=60, d=8, k=4)
    index = IVFPQIndex(rerank=60).fit(x)
    assert index.params_["nbits"] == 5  # floor(log2(60)): 2**8 centroids need 256 vectors
    assert 8 % index.params_["m"] == 0
    assert 8 // index.params_["m"] >= 2
    _, ids = index.search(x[:5], 60)  # shortlist covers the database: exact ranking
    _, exact = FlatIPIndex().fit(x).search(x[:5], 60)
    np.testing.assert_array_equal(ids, exact)
    with pytest.raises(EvaluationError, match="m to divide the dimension: 3 does not divide 8"):
        IVFPQIndex(m=3).fit(x)


def test_subpatch_ranking_on_constructed_patches() -> None:
    query = np.array([[[0, 0], [1, 0]]], dtype=np.float32)  # 1 query, 2 patches
    database = np.array(
        [
            [[3, 4], [3, 4]],  # C: patches 5 and sqrt(20) away -> (5 + 4.4721) / 2 = 4.7361
            [[0, 0], [5, 5]],  # A: 0 and 1 away              -> 0.5
            [[2, 0], [0, 2]],  # B: min(2, 2)=2 and min(1, sqrt 5)=1 -> 1.5
        ],
        dtype=np.float32,
    )
    index = SubpatchIndex().fit(database)
    np.testing.assert_allclose(index.distances(query), [[4.7360680, 0.5, 1.5]], rtol=1e-6)
    dist, ids = index.search(query, 3)
    assert ids.tolist() == [[1, 2, 0]]
    np.testing.assert_allclose(dist, [[0.5, 1.5, 4.7360680]], rtol=1e-6)
    # the distance is not symmetric: A's patch (5, 5) is far from both query patches
    back = SubpatchIndex().fit(query).distances(database[1:2])
    np.testing.assert_allclose(back, [[(0 + np.sqrt(41)) / 2]], rtol=1e-6)


def test_subpatch_distances_match_the_metric() -> None:
    rng = np.random.default_rng(3)
    db = rng.standard_normal((30, 5, 8)).astype(np.float32)
    q = rng.standard_normal((7, 3, 8)).astype(np.float32)
    got = SubpatchIndex(block_queries=2).fit(db).distances(q)
    want = np.array([[subpatch_distance(qi, xi) for xi in db] for qi in q])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(EvaluationError, match=r"\(N, P, D\)"):
        SubpatchIndex().fit(db[0])


def test_whitening_gives_unit_covariance_and_unit_norms() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((400, 6)) * np.array([10, 5, 2, 1, 0.5, 0.1]) + 3
    w = L2PCAWhitening().fit(x)
    z = (l2_normalize(x) - w.mean_) @ w.projection_  # before the final L2
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(w.n_components_), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(w.transform(x), axis=1), 1.0, rtol=1e-5)


def test_whitening_drops_directions_without_variance() -> None:
    rng = np.random.default_rng(5)
    plane = rng.standard_normal((50, 2)) @ np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    w = L2PCAWhitening().fit(plane + np.array([0, 0, 2.0, 0]))
    # L2-normalised rows of a 3-D affine plane span 3 directions, the 4th has none
    assert w.n_components_ == 3
    with pytest.raises(EvaluationError, match="supports 1 to 3"):
        L2PCAWhitening(n_components=5).fit(rng.standard_normal((4, 6)))


def test_flat_index_moves_to_gpus_only_when_faiss_has_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import featstore.evaluate.retrieval.index as fi

    x = np.eye(4, dtype=np.float32)
    assert FlatIPIndex().fit(x).on_gpu_ is (fi.gpu_count() > 0)
    moved = []

    def fake_all_gpus(index: object) -> object:  # stands in for faiss-gpu's cloner
        moved.append(index)
        return index

    monkeypatch.setattr(fi, "gpu_count", lambda: 2)
    monkeypatch.setattr(fi.faiss, "index_cpu_to_all_gpus", fake_all_gpus, raising=False)
    index = FlatIPIndex().fit(x)
    assert index.on_gpu_
    assert len(moved) == 1
    assert index.search(x[:1], 1)[1].tolist() == [[0]]
    assert FlatIPIndex(use_gpu=False).fit(x).on_gpu_ is False
    assert len(moved) == 1
