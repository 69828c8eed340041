"""Tests of featstore.evaluate.transferability.estimators on cases whose answer is known or worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from featstore.errors import EvaluationError
from featstore.evaluate.transferability import estimators as T


def _blobs(separation: float, n: int = 240, d: int = 6, k: int = 3, seed: int = 0):
    """k Gaussian classes in d dims whose means sit ``separation`` apart along axes."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    means = np.zeros((k, d))
    means[np.arange(k), np.arange(k)] = separation
    return means[y] + rng.normal(size=(n, d)), y


# --------------------------------------------------------------------------------------
# NCE
# --------------------------------------------------------------------------------------


def test_nce_perfectly_informative_source_is_zero():
    # Y is a function of Z (z 0 -> a, 1 -> b, 2 -> b): H(Y | Z) = 0
    assert T.nce([0, 0, 1, 1, 2, 2], ["a", "a", "b", "b", "b", "b"]) == pytest.approx(0.0)


def test_nce_independent_is_minus_entropy_of_y():
    # Z and Y independent, Y uniform on 2 classes: -H(Y) = -ln 2
    assert T.nce([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-math.log(2))
    # a single source class carries no information either: -H(1/3, 2/3)
    h = -(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3)
    assert T.nce([5, 5, 5], [0, 1, 1]) == pytest.approx(-h)


def test_nce_hand_worked():
    # z = 0 0 0 1, y = 0 0 1 1: P(z=0) = 3/4 with Y|z=0 = (2/3, 1/3); Y|z=1 certain
    # H(Y|Z) = 3/4 * (ln 3 - 2/3 ln 2) = 0.47739 -> NCE = -0.47739
    want = -0.75 * (math.log(3) - (2 / 3) * math.log(2))
    assert T.nce([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(want)


def test_nce_bad_input():
    with pytest.raises(EvaluationError, match="2 target classes"):
        T.nce([0, 1], [1, 1])
    with pytest.raises(EvaluationError, match="entries"):
        T.nce([0, 1, 2], [0, 1])


# --------------------------------------------------------------------------------------
# LEEP
# --------------------------------------------------------------------------------------


def test_leep_hand_worked():
    # theta = [[.75, .25], [.25, .75]], y = [0, 1]
    # P(y, z) = theta_row / 2: P(0, .) = [.375, .125], P(1, .) = [.125, .375]; P(z) = [.5, .5]
    # P(y | z): P(0|0) = .75, P(0|1) = .25, P(1|0) = .25, P(1|1) = .75
    # EEP(x1, y=0) = .75*.75 + .25*.25 = .625 ; EEP(x2, y=1) = .25*.25 + .75*.75 = .625
    # LEEP = ln .625
    assert T.leep([[0.75, 0.25], [0.25, 0.75]], [0, 1]) == pytest.approx(math.log(0.625))


def test_leep_one_hot_matching_source_is_zero_and_uniform_is_minus_entropy():
    y = np.array([0, 0, 1, 2, 2, 2])
    # one-hot source predictions with a source class per target class (permuted): 0
    assert T.leep(np.eye(4)[[3, 3, 0, 1, 1, 1]], y) == pytest.approx(0.0, abs=1e-12)
    # uniform predictions: P(y | z) = P(y), LEEP = mean log P(y_i) = -H(Y) for the
    # empirical distribution (2/6, 1/6, 3/6)
    want = (2 * math.log(2 / 6) + math.log(1 / 6) + 3 * math.log(3 / 6)) / 6
    assert T.leep(np.full((6, 5), 0.2), y) == pytest.approx(want)


def test_leep_prefers_informative_source():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    informative = 0.7 * np.eye(3)[y] + 0.3 * rng.dirichlet(np.ones(3), 300)
    noise = rng.dirichlet(np.ones(3), 300)
    assert T.leep(informative, y) > T.leep(noise, y)


def test_leep_bad_input():
    with pytest.raises(EvaluationError, match="logits"):
        T.leep([[2.0, 1.0], [0.5, 0.5]], [0, 1])
    with pytest.raises(EvaluationError, match="non-negative"):
        T.leep([[1.5, -0.5], [0.5, 0.5]], [0, 1])
    with pytest.raises(EvaluationError):
        T.leep([[0.5, 0.5]], [0, 1])
    with pytest.raises(EvaluationError, match="2 target classes"):
        T.leep([[0.5, 0.5], [0.5, 0.5]], [1, 1])


# --------------------------------------------------------------------------------------
# H-score, LogME, GBC
# --------------------------------------------------------------------------------------


def test_h_score_hand_worked():
    # f = 0 2 4 6, y = 0 0 1 1. Centred f: -3 -1 1 3 -> var = 20/4 = 5
    # class means -2, 2 -> E[f|y] per sample: -2 -2 2 2 -> var 16/4 = 4 ; H = 4/5
    assert T.h_score([[0.0], [2.0], [4.0], [6.0]], [0, 0, 1, 1]) == pytest.approx(0.8)


def test_h_score_rank_deficient_features_use_pseudo_inverse():
    # a duplicated column makes cov(f) singular; pinv gives the same answer as 1 column
    f = np.array([[0.0, 0.0], [2.0, 2.0], [4.0, 4.0], [6.0, 6.0]])
    assert T.h_score(f, [0, 0, 1, 1]) == pytest.approx(0.8)


def _dense_logme(f: np.ndarray, y: np.ndarray) -> float:
    """Independent LogME: maximise log N(t; 0, I/beta + F F^T/alpha) numerically."""
    n = f.shape[0]
    out = []
    for c in np.unique(y):
        t = (y == c).astype(float)

        def neg(log_ab, t=t):
            a, b = np.exp(log_ab)
            cov = np.eye(n) / b + f @ f.T / a
            return -scipy.stats.multivariate_normal.logpdf(t, cov=cov)

        best = scipy.optimize.minimize(
            neg,
            x0=[0.0, 0.0],
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
        )
        out.append(-best.fun / n)
    return float(np.mean(out))


def test_logme_equals_maximised_evidence():
    # The SVD fixed point must land on the maximum of the Bayesian-regression evidence,
    # computed here with a dense covariance and a generic optimiser.
    rng = np.random.default_rng(3)
    f = rng.normal(size=(40, 4))
    y = (f[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int) + (f[:, 1] > 1)
    assert T.logme(f, y) == pytest.approx(_dense_logme(f, y), rel=1e-6)


def test_logme_more_dims_than_samples_is_finite():
    rng = np.random.default_rng(4)
    f = rng.normal(size=(12, 30))
    y = np.arange(12) % 3
    assert np.isfinite(T.logme(f, y))
    assert T.logme(f, y) == pytest.approx(_dense_logme(f, y), rel=1e-5)


@pytest.mark.parametrize("estimator", [T.logme, T.h_score, T.gbc])
def test_discriminative_features_beat_noise(estimator):
    good, y = _blobs(separation=4.0)
    noise = np.random.default_rng(9).normal(size=good.shape)
    assert estimator(good, y) > estimator(noise, y)


@pytest.mark.parametrize("estimator", [T.logme, T.h_score, T.gbc])
def test_more_separation_ranks_higher(estimator):
    scores = [estimator(*_blobs(separation=s)) for s in (0.5, 2.0, 6.0)]
    assert scores[0] < scores[1] < scores[2]


def test_gbc_hand_worked():
    # class a: -1, 1 (mean 0, ML variance 1); class b: 1, 3 (mean 2, variance 1)
    # Bhattacharyya distance = 1/8 * (2 - 0)^2 / 1 + 1/2 ln(1 / sqrt(1 * 1)) = 1/2
    # GBC = -(BC(a,b) + BC(b,a)) = -2 exp(-1/2)
    assert T.gbc([[-1.0], [1.0], [1.0], [3.0]], [0, 0, 1, 1]) == pytest.approx(-2 * math.exp(-0.5))


def test_gbc_unequal_variances_hand_worked():
    # a: -1, 1 (var 1) ; b: -2, 2 (var 4), equal means
    # D_B = 1/2 ln( ((1 + 4)/2) / sqrt(1 * 4) ) = 1/2 ln(5/4)  -> GBC = -2 (4/5)^(1/2)
    got = T.gbc([[-1.0], [1.0], [-2.0], [2.0]], ["a", "a", "b", "b"])
    assert got == pytest.approx(-2 * math.sqrt(0.8))


def test_gbc_identical_and_separated_classes():
    # identical class distributions: BC = 1 for each of the K(K-1) = 6 ordered pairs
    f = np.tile(np.array([[0.0, 1.0], [1.0, 0.0]]), (3, 1))
    assert T.gbc(f, [0, 0, 1, 1, 2, 2]) == pytest.approx(-6.0)
    # a constant dimension must not produce NaN
    f2 = np.column_stack([np.zeros(4), [0.0, 0.1, 9.0, 9.1]])
    assert T.gbc(f2, [0, 0, 1, 1]) == pytest.approx(0.0, abs=1e-12)


def test_estimators_bad_input():
    f = np.zeros((4, 2))
    for estimator in (T.logme, T.h_score, T.gbc):
        with pytest.raises(EvaluationError, match="2 classes"):
            estimator(f, [1, 1, 1, 1])
        with pytest.raises(EvaluationError, match="entries"):
            estimator(f, [0, 1, 0])
        with pytest.raises(EvaluationError):
            estimator(np.zeros(4), [0, 1, 0, 1])
        with pytest.raises(EvaluationError, match="NaN"):
            estimator(np.full((4, 2), np.nan), [0, 1, 0, 1])
    with pytest.raises(EvaluationError, match="at least 2 samples"):
        T.gbc(np.arange(6.0).reshape(3, 2), [0, 0, 1])


# --------------------------------------------------------------------------------------
# Kendall's tau
# --------------------------------------------------------------------------------------


def test_kendall_tau_hand_worked():
    # pairs of (1,2,3) vs (1,3,2): (1,2) C, (1,3) C, (2,3) D -> (2 - 1) / 3
    assert T.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert T.kendall_tau([0.1, 0.5, 0.9], [10, 20, 30]) == pytest.approx(1.0)
    assert T.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


@pytest.mark.parametrize("n", [2, 3, 12, 60, 401])
def test_kendall_tau_counts_pairs_as_scipy_computes_tau_b(n: int) -> None:
    """The pair count equals scipy's tau-b, ties in either vector included (the reference)."""
    import scipy.stats

    rng = np.random.default_rng(n)
    for ties in (False, True):
        a = rng.normal(size=n)
        b = a + rng.normal(scale=0.7, size=n)
        if ties:  # scores on a coarse grid: many tied pairs in both vectors
            a, b = np.round(a * 2) / 2, np.round(b)
        want = scipy.stats.kendalltau(a, b).statistic
        got = T.kendall_tau(a, b)
        if np.isnan(want):
            assert np.isnan(got)
        else:
            assert got == pytest.approx(want, abs=1e-12)


def test_kendall_tau_constant_vector_is_nan_and_large_inputs_use_scipy(monkeypatch) -> None:
    import scipy.stats

    assert np.isnan(T.kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(T.kendall_tau([3.0, 1.0, 2.0], [5.0, 5.0, 5.0]))
    monkeypatch.setattr(T, "_PAIRWISE_MAX", 10)  # above it: scipy's O(n log n) path
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert T.kendall_tau(a, b) == pytest.approx(scipy.stats.kendalltau(a, b).statistic)


def test_kendall_tau_of_a_report_imports_no_scipy() -> None:
    """The study table ranks settings by kendall_tau on every cached sweep: importing
    scipy.stats for it was most of a cached quick_sweep's time (issue 22 item 5)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from featstore.evaluate.transferability.estimators import kendall_tau\n"
        "print(round(kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]), 6), 'scipy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.666667", "False"]


def test_kendall_tau_bad_input():
    with pytest.raises(EvaluationError):
        T.kendall_tau([1], [1])
    with pytest.raises(EvaluationError):
        T.kendall_tau([1, 2], [1, 2, 3])
