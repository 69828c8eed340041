"""Transferability estimators: score a (features, target labels) pair without training.

Every estimator returns a float where **higher means more transferable**, so a ranking of
settings by any of them can be compared with the ranking by SVM accuracy via
:func:`kendall_tau`:

* :func:`logme` — mean per-sample log evidence (nats) of Bayesian linear regression onto
  each one-hot class column (You et al. 2021). Any real value.
* :func:`h_score` — ``tr(cov(f)^+ cov(E[f|y]))`` (Bao et al. 2019). Non-negative, at most
  the number of classes minus one.
* :func:`nce` — negative conditional entropy ``-H(Y|Z)`` in nats (Tran et al. 2019). In
  ``[-H(Y), 0]``: 0 when source labels determine target labels.
* :func:`leep` — log expected empirical prediction (Nguyen et al. 2020). At most 0.
* :func:`gbc` — minus the sum of Bhattacharyya coefficients between per-class diagonal
  Gaussians (Pandy et al. 2022). In ``[-K(K-1), 0]``: 0 when classes do not overlap.

Inputs are validated; problems raise :class:`~featstore.errors.EvaluationError`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from featstore.errors import EvaluationError

__all__ = ["gbc", "h_score", "kendall_tau", "leep", "logme", "nce"]


def _labels(labels: ArrayLike, n: int | None, name: str = "labels") -> tuple[np.ndarray, int]:
    """Class indices 0..C-1 of a 1-D label vector (any label values), and C."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise EvaluationError(f"{name} must be a 1-D vector, got shape {y.shape}")
    if n is not None and y.shape[0] != n:
        raise EvaluationError(f"{name} has {y.shape[0]} entries but there are {n} samples")
    if y.size == 0:
        raise EvaluationError(f"{name} is empty")
    classes, idx = np.unique(y, return_inverse=True)
    return idx.ravel(), classes.size


def _features_labels(features: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, int]:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or 0 in f.shape:
        raise EvaluationError(f"features must be a non-empty (N, D) array, got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise EvaluationError("features contain NaN or infinity")
    y, n_classes = _labels(labels, f.shape[0])
    if n_classes < 2:
        raise EvaluationError(f"transferability needs at least 2 classes, got {n_classes}")
    return f, y, n_classes


# --------------------------------------------------------------------------------------
# LogME
# --------------------------------------------------------------------------------------


def _log_evidence(
    u: np.ndarray, sigma: np.ndarray, y: np.ndarray, max_iter: int, tol: float
) -> float:
    """Maximised log evidence / n of y ~ F w + noise, w ~ N(0, 1/alpha), noise ~ N(0, 1/beta).

    ``u``, ``sigma`` are F's left singular vectors and squared singular values. MacKay's
    fixed point (gamma = sum s/(lam + s), alpha = gamma/|m|^2, beta = (n - gamma)/|y - Fm|^2,
    m the posterior mean) is run on lam = alpha/beta, on which gamma, |m|^2 and the
    residual depend alone; the evidence is written so that no term overflows. lam is
    kept within 1e+-12 of the largest sigma: beyond, the evidence has reached its limit
    (alpha -> inf: features explain nothing; beta -> inf: labels fitted exactly).
    """
    n = y.shape[0]
    z2 = (u.T @ y) ** 2
    outside = max(float(y @ y - z2.sum()), 0.0)  # |y|^2 outside F's column space
    scale = float(sigma.max()) if sigma.size and sigma.max() > 0 else 1.0
    lam_lo, lam_hi = 1e-12 * scale, 1e12 * scale

    def stats(lam: float) -> tuple[float, float, float]:
        gamma = float(np.sum(sigma / (lam + sigma)))
        m2 = float(np.sum(sigma * z2 / (lam + sigma) ** 2))  # |m|^2
        res2 = outside + float(np.sum(lam**2 * z2 / (lam + sigma) ** 2))  # |y - F m|^2
        return gamma, m2, res2

    lam = 1.0  # alpha = beta = 1, as in the paper
    for _ in range(max_iter):
        gamma, m2, res2 = stats(lam)
        if m2 <= 0.0:
            new = lam_hi
        elif n - gamma <= 0.0 or res2 <= 0.0:
            new = lam_lo
        else:
            new = min(max(gamma * res2 / ((n - gamma) * m2), lam_lo), lam_hi)
        done = abs(new - lam) <= tol * lam
        lam = new
        if done:
            break
    gamma, m2, res2 = stats(lam)
    beta = max(n - gamma, np.finfo(np.float64).tiny) / max(res2, np.finfo(np.float64).tiny)
    evidence = (
        0.5 * n * np.log(beta)
        - 0.5 * n * np.log(2 * np.pi)
        - 0.5 * beta * res2
        - 0.5 * lam * beta * m2  # alpha |m|^2 / 2
        - 0.5 * float(np.sum(np.log1p(sigma / lam)))  # (d log alpha - log|A|) / 2
    )
    return float(evidence / n)


def logme(
    features: ArrayLike, labels: ArrayLike, *, max_iter: int = 1000, tol: float = 1e-10
) -> float:
    """LogME (You et al. 2021): mean over classes of the per-sample maximum log evidence.

    Each class's one-hot column is regressed on the features (used as given, no centring)
    with alpha and beta set by evidence maximisation; one SVD of the features serves every
    class. Higher = the features explain the labels linearly with less noise.
    """
    f, y, n_classes = _features_labels(features, labels)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    onehot = np.eye(n_classes)[y]
    return float(
        np.mean([_log_evidence(u, sigma, onehot[:, c], max_iter, tol) for c in range(n_classes)])
    )


# --------------------------------------------------------------------------------------
# H-score, GBC
# --------------------------------------------------------------------------------------


def _class_means(f: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    sums = np.zeros((n_classes, f.shape[1]))
    np.add.at(sums, y, f)
    return sums / counts[:, None], counts


def h_score(features: ArrayLike, labels: ArrayLike) -> float:
    """H-score (Bao et al. 2019): ``tr(pinv(cov(f)) @ cov(E[f | y]))``.

    The inter-class covariance of the class-conditional means, measured in the metric of
    the feature covariance; its pseudo-inverse (``scipy.linalg.pinvh`` with its default
    relative cut-off) copes with rank-deficient features. Higher = more discriminative.
    """
    f, y, n_classes = _features_labels(features, labels)
    f = f - f.mean(axis=0)
    means, _ = _class_means(f, y, n_classes)
    g = means[y]  # every sample replaced by its class mean
    n = f.shape[0]
    cov_f = f.T @ f / n
    cov_g = g.T @ g / n
    import scipy.linalg  # scipy on first use: a cached lookup never pays for it

    return float(np.sum(scipy.linalg.pinvh(cov_f) * cov_g))  # trace of a product of symmetrics


def gbc(features: ArrayLike, labels: ArrayLike) -> float:
    """GBC (Pandy et al. 2022): ``-sum_{i != j} BC(class i, class j)``.

    Each class is a Gaussian with the class mean and diagonal (maximum-likelihood)
    variance; BC = exp(-Bhattacharyya distance). As in the paper the sum runs over
    ordered pairs, so every unordered pair counts twice. Features are used as given (the
    paper projects with PCA first; do that in the transform). Variances are floored at
    1e-12 of the mean feature variance so constant dimensions stay finite. Every class
    needs at least two samples.
    """
    f, y, n_classes = _features_labels(features, labels)
    means, counts = _class_means(f, y, n_classes)
    if counts.min() < 2:
        raise EvaluationError("gbc needs at least 2 samples in every class")
    sq = np.zeros_like(means)
    np.add.at(sq, y, (f - means[y]) ** 2)
    overall = float(np.mean(np.var(f, axis=0)))
    var = np.maximum(sq / counts[:, None], 1e-12 * overall if overall > 0 else 1.0)
    log_var = np.log(var)
    total = 0.0
    for i in range(n_classes - 1):
        v = 0.5 * (var[i] + var[i + 1 :])  # (K-i-1, D) pooled variances
        dist = 0.125 * np.sum((means[i] - means[i + 1 :]) ** 2 / v, axis=1) + 0.5 * np.sum(
            np.log(v) - 0.5 * (log_var[i] + log_var[i + 1 :]), axis=1
        )
        total += float(np.sum(np.exp(-dist)))
    return -2.0 * total


# --------------------------------------------------------------------------------------
# label-based: NCE, LEEP
# --------------------------------------------------------------------------------------


def nce(source_labels: ArrayLike, target_labels: ArrayLike) -> float:
    """NCE (Tran et al. 2019): ``-H(Y | Z) = H(Z) - H(Z, Y)`` in nats, empirical joint.

    ``source_labels`` Z are the source model's predicted (hard) labels on the target
    images, ``target_labels`` Y the true target labels. 0 when Z determines Y; ``-H(Y)``
    when they are independent.
    """
    y, n_classes = _labels(target_labels, None, "target_labels")
    z, n_source = _labels(source_labels, y.shape[0], "source_labels")
    if n_classes < 2:
        raise EvaluationError(f"nce needs at least 2 target classes, got {n_classes}")
    joint = np.zeros((n_source, n_classes))
    np.add.at(joint, (z, y), 1.0)
    import scipy.stats

    return min(
        0.0, float(scipy.stats.entropy(joint.sum(axis=1)) - scipy.stats.entropy(joint.ravel()))
    )


def leep(source_probs: ArrayLike, target_labels: ArrayLike) -> float:
    """LEEP (Nguyen et al. 2020): mean log of the expected empirical prediction.

    ``source_probs`` (N, Z) are the source classifier's probabilities on the target
    images (rows must sum to 1 within 1e-3, then are renormalised). With the empirical
    joint P(y, z) = mean of probs over samples of class y, LEEP = mean_i log sum_z
    P(y_i | z) probs[i, z]. At most 0; 0 when the source classes map onto target classes.
    """
    p = np.asarray(source_probs, dtype=np.float64)
    if p.ndim != 2 or 0 in p.shape:
        raise EvaluationError(f"source_probs must be a non-empty (N, Z) array, got {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise EvaluationError("source_probs must be finite and non-negative")
    row_sums = p.sum(axis=1)
    if np.any(np.abs(row_sums - 1.0) > 1e-3):
        worst = int(np.argmax(np.abs(row_sums - 1.0)))
        raise EvaluationError(
            f"source_probs rows must sum to 1 (row {worst} sums to {row_sums[worst]:.6g}); "
            "pass softmax probabilities, not logits"
        )
    p = p / row_sums[:, None]
    y, n_classes = _labels(target_labels, p.shape[0], "target_labels")
    if n_classes < 2:
        raise EvaluationError(f"leep needs at least 2 target classes, got {n_classes}")
    joint = np.zeros((n_classes, p.shape[1]))
    np.add.at(joint, y, p)
    pz = joint.sum(axis=0)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P(y | z)
    eep = np.sum(p * cond[y], axis=1)
    return float(np.mean(np.log(eep)))


# --------------------------------------------------------------------------------------
# comparing rankings
# --------------------------------------------------------------------------------------


# Up to this many settings kendall_tau counts pairs itself (numpy, n x n signs): the report
# ranks a few dozen settings, and importing scipy.stats for them costs ~0.8 s of a cached
# sweep's 1.5 s (issue 22 item 5). Beyond it, scipy's O(n log n) kendalltau, the reference
# the pair count is tested against.
_PAIRWISE_MAX = 2000


def kendall_tau(a: ArrayLike, b: ArrayLike) -> float:
    """Kendall's tau-b between two score vectors over the same settings.

    1 = same order, -1 = reversed. NaN when either vector is constant (no ranking). Equal
    to ``scipy.stats.kendalltau(a, b).statistic`` (tau-b: ties in either vector shrink the
    denominator), computed by counting pairs for up to ``_PAIRWISE_MAX`` settings.
    """
    x, w = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != w.shape:
        raise EvaluationError(f"a and b must be 1-D of equal length, got {x.shape} and {w.shape}")
    if x.size < 2:
        raise EvaluationError("kendall_tau needs at least 2 settings to rank")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(w))):
        raise EvaluationError("kendall_tau inputs contain NaN or infinity")
    if x.size > _PAIRWISE_MAX:
        import scipy.stats

        return float(scipy.stats.kendalltau(x, w).statistic)
    upper = np.triu_indices(x.size, k=1)  # each pair once
    sx = np.sign(x[:, None] - x[None, :])[upper]
    sw = np.sign(w[:, None] - w[None, :])[upper]
    untied_x, untied_w = np.count_nonzero(sx), np.count_nonzero(sw)
    if untied_x == 0 or untied_w == 0:
        return float("nan")
    concordance = float(np.dot(sx, sw))  # concordant minus discordant pairs
    return concordance / math.sqrt(float(untied_x) * float(untied_w))
