"""CKA and RSA against values worked out independently (N x N Gram forms, hand sums, loops)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from featstore.errors import EvaluationError, FeatstoreError
from featstore.similarity import (
    MinibatchCKA,
    linear_cka,
    minibatch_cka,
    rbf_cka,
    rdm,
    rsa,
    similarity_matrix,
)


def _centring(n: int) -> np.ndarray:
    return np.eye(n) - np.ones((n, n)) / n


def gram_cka(K: np.ndarray, L: np.ndarray) -> float:
    """Reference CKA from Gram matrices: tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)), H explicit."""
    H = _centring(len(K))

    def h(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.trace(a @ H @ b @ H))

    return h(K, L) / np.sqrt(h(K, K) * h(L, L))


def u_statistic_hsic(K: np.ndarray, L: np.ndarray) -> float:
    """The unbiased HSIC as its defining U-statistic: a mean over distinct index 4-tuples."""
    n = len(K)
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2.0 * K[i, j] * L[i, q]
        count += 1
    return total / count


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 12))
    Y = np.tanh(X @ rng.normal(size=(12, 9))) + 0.3 * rng.normal(size=(40, 9))
    return X, Y


def test_one_feature_linear_cka_is_squared_correlation_by_hand():
    # xc = [-1, 0, 1], yc = [-1, 1, 0]: r = 1 / 2, so CKA = r^2 = 1/4
    assert linear_cka([[1.0], [2.0], [3.0]], [[1.0], [3.0], [2.0]]) == pytest.approx(0.25)


def test_linear_cka_equals_the_gram_matrix_form(xy):
    X, Y = xy
    assert linear_cka(X, Y) == pytest.approx(gram_cka(X @ X.T, Y @ Y.T), rel=1e-10)
    wide = np.random.default_rng(1).normal(size=(10, 300))  # N < D: the Gram path inside
    assert linear_cka(wide, X[:10]) == pytest.approx(
        gram_cka(wide @ wide.T, X[:10] @ X[:10].T), rel=1e-10
    )


def test_debiased_cka_matches_the_u_statistic_closed_form():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(7, 3)), rng.normal(size=(7, 5))
    X[:, 0] += 4.0  # the estimator is shift invariant; the raw kernel is used below
    K, L = X @ X.T, Y @ Y.T
    want = u_statistic_hsic(K, L) / np.sqrt(u_statistic_hsic(K, K) * u_statistic_hsic(L, L))
    assert linear_cka(X, Y, debiased=True) == pytest.approx(want, rel=1e-9)
    assert linear_cka(X, Y, debiased=True) != pytest.approx(linear_cka(X, Y), rel=1e-3)


def test_debiased_cka_removes_the_bias_of_wide_unrelated_features():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(60, 500)), rng.normal(size=(60, 500))  # independent
    assert linear_cka(X, Y) > 0.8  # the biased estimate is high for wide noise
    assert abs(linear_cka(X, Y, debiased=True)) < 0.05


def test_rbf_cka_equals_an_explicit_gaussian_kernel_reference(xy):
    X, Y = xy

    def kernel(A: np.ndarray, sigma: float) -> np.ndarray:
        d2 = np.array([[np.sum((a - b) ** 2) for b in A] for a in A])
        return np.exp(-d2 / (2 * sigma**2 * np.median(d2)))

    for sigma in (0.2, 0.8):
        want = gram_cka(kernel(X, sigma), kernel(Y, sigma))
        assert rbf_cka(X, Y, sigma=sigma) == pytest.approx(want, rel=1e-8)
    # wide kernels tend to the linear kernel (Kornblith et al.)
    assert rbf_cka(X, Y, sigma=200.0) == pytest.approx(linear_cka(X, Y), abs=1e-3)


@pytest.mark.parametrize(
    "measure",
    [
        lambda a, b: linear_cka(a, b),
        lambda a, b: linear_cka(a, b, debiased=True),
        lambda a, b: rbf_cka(a, b, sigma=0.5),
    ],
    ids=["linear", "debiased", "rbf"],
)
def test_cka_invariances(xy, measure):
    X, Y = xy
    base = measure(X, Y)
    Q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(X.shape[1], X.shape[1])))
    assert measure(X @ Q, Y) == pytest.approx(base, rel=1e-9)  # orthogonal transform of X
    assert measure(X, 7.5 * Y) == pytest.approx(base, rel=1e-9)  # isotropic scaling of Y
    assert measure(0.01 * X @ Q, 3.0 * Y + 2.0) == pytest.approx(base, rel=1e-9)
    assert measure(X, X) == pytest.approx(1.0)
    stretch = np.ones(X.shape[1])
    stretch[0] = 30.0  # an anisotropic scaling is not an invariance
    assert abs(measure(X * stretch, Y) - base) > 1e-3


def test_rsa_by_hand_loops_and_symmetry(xy):
    X, Y = xy

    def ranks(v: np.ndarray) -> np.ndarray:
        out = np.empty(len(v))
        out[np.argsort(v)] = np.arange(len(v))
        return out

    def euclid_rdm(A: np.ndarray) -> np.ndarray:
        n = len(A)
        return np.array(
            [np.sqrt(np.sum((A[i] - A[j]) ** 2)) for i in range(n) for j in range(i + 1, n)]
        )

    want = np.corrcoef(ranks(euclid_rdm(X)), ranks(euclid_rdm(Y)))[0, 1]
    assert rsa(X, Y, distance="euclidean") == pytest.approx(want, rel=1e-9)
    assert rsa(X, Y) == pytest.approx(rsa(Y, X))
    assert rsa(X, X) == pytest.approx(1.0)
    # correlation distance: 1 - r between two images; unchanged by per-image scale and shift
    r01 = np.corrcoef(X[0], X[1])[0, 1]
    assert rdm(X, square=True)[0, 1] == pytest.approx(1.0 - r01)
    scaled = X * np.linspace(1, 5, len(X))[:, None] + 3.0
    assert rsa(scaled, Y) == pytest.approx(rsa(X, Y), rel=1e-9)
    assert rsa(X, Y, compare="pearson") != pytest.approx(rsa(X, Y), rel=1e-4)


def test_minibatch_cka_of_one_full_batch_is_the_debiased_cka(xy):
    X, Y = xy
    acc = MinibatchCKA(2).update([X, Y])
    assert acc.value == pytest.approx(linear_cka(X, Y, debiased=True), rel=1e-10)


def test_minibatch_cka_converges_to_the_full_value():
    rng = np.random.default_rng(5)
    n = 6000
    X = rng.normal(size=(n, 20))
    Y = X[:, :10] @ rng.normal(size=(10, 15)) + 1.5 * rng.normal(size=(n, 15))
    full = linear_cka(X, Y)
    errors = [abs(minibatch_cka(X[:m], Y[:m], batch_size=200) - full) for m in (400, 6000)]
    assert errors[1] < 0.01
    assert errors[1] < errors[0]
    # streaming through the accumulator gives the same as the convenience function
    acc = MinibatchCKA(3)
    for start in range(0, n, 200):
        acc.update([X[start : start + 200], Y[start : start + 200], 2 * X[start : start + 200]])
    mat = acc.matrix()
    assert mat[0, 1] == pytest.approx(minibatch_cka(X, Y, batch_size=200, seed=None), rel=1e-10)
    assert mat[0, 2] == pytest.approx(1.0)
    assert np.allclose(mat, mat.T)


def test_similarity_matrix_matches_the_pairwise_functions(xy):
    X, Y = xy
    Z = X[:, :4] ** 2
    reps = [X, Y, Z]
    for measure, fn in (
        ("cka", lambda a, b: linear_cka(a, b)),
        ("rbf_cka", lambda a, b: rbf_cka(a, b)),
        ("rsa", lambda a, b: rsa(a, b)),
    ):
        mat = similarity_matrix(reps, measure)
        assert np.allclose(mat, mat.T)
        assert np.allclose(np.diag(mat), 1.0)
        for i, j in ((0, 1), (0, 2), (1, 2)):
            assert mat[i, j] == pytest.approx(fn(reps[i], reps[j]), rel=1e-10)
    only = similarity_matrix(reps, "cka", pairs=[(2, 0)])
    assert only[0, 2] == pytest.approx(linear_cka(X, Z))
    assert np.isnan(only[0, 1])


def test_bad_input_raises_featstore_errors(xy):
    X, Y = xy
    with pytest.raises(EvaluationError, match="same images"):
        linear_cka(X, Y[:-1])
    with pytest.raises(EvaluationError, match="unknown similarity measure"):
        similarity_matrix([X, Y], "cca")
    with pytest.raises(EvaluationError, match="at least 4"):
        linear_cka(X[:3], Y[:3], debiased=True)
    with pytest.raises(FeatstoreError, match="sigma"):
        rbf_cka(X, Y, sigma=-1)
    with pytest.raises(ValueError, match="NaN"):
        linear_cka(np.full((5, 2), np.nan), Y[:5])
