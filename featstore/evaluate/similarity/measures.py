"""Representational similarity of two feature matrices: CKA (linear, RBF, minibatch) and RSA.

Rows of ``X`` (N x D1) and ``Y`` (N x D2) are the same N images seen by two layers or
networks; the measures say how alike the two representations are, 1 meaning identical up
to the invariances of the measure.

- :func:`linear_cka` (Kornblith et al. 2019) in the feature-space form
  ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``: cost N * D1 * D2 and no N x N Gram
  matrix, so 20k x 2048 pairs take seconds (the Gram form is used instead when it is cheaper,
  i.e. when N is small next to the widths; both give the same number). ``debiased=True``
  uses the unbiased HSIC estimator of Song et al. (2012), also computed from features.
- :func:`rbf_cka`: Gaussian kernels whose bandwidth is ``sigma`` times the median pairwise
  distance (Kornblith's convention); needs the N x N Gram matrices.
- :func:`minibatch_cka` / :class:`MinibatchCKA` (Nguyen et al. 2021): unbiased HSIC averaged
  over minibatches, so N is unbounded and memory stays at one batch of each representation.
- :func:`rsa`: representational similarity analysis: the rank (or linear) correlation of the
  two representational dissimilarity matrices (:func:`rdm`).

:func:`similarity_matrix` computes a measure over many representations at once, preparing
each one only once (centring, Gram matrix, RDM). Everything is numpy (float64 sums).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from featstore.errors import EvaluationError

__all__ = [
    "COMPARES",
    "DISTANCES",
    "MEASURES",
    "MinibatchCKA",
    "compare_rdms",
    "hsic_gram",
    "linear_cka",
    "minibatch_cka",
    "rbf_cka",
    "rbf_gram",
    "rdm",
    "rsa",
    "similarity_matrix",
]

MEASURES = ("cka", "rbf_cka", "rsa")
DISTANCES = ("correlation", "euclidean", "sqeuclidean", "cosine")
COMPARES = ("spearman", "pearson", "kendall")
DEFAULT_SIGMA = 0.8  # RBF bandwidth as a fraction of the median distance (Kornblith et al.)


# --------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------


def _matrix(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise EvaluationError(
            f"{name} must be an (images x features) matrix, got shape {a.shape}; flatten or pool "
            "each image's features first"
        )
    if not np.all(np.isfinite(a)):
        raise EvaluationError(f"{name} holds NaN or infinite values; check the cached features")
    return a


def _pair(x: Any, y: Any, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a, b = _matrix(x, "X"), _matrix(y, "Y")
    if a.shape[0] != b.shape[0]:
        raise EvaluationError(
            f"X and Y must describe the same images: they have {a.shape[0]} and {b.shape[0]} "
            "rows; select the same rows of both"
        )
    if a.shape[0] < min_rows:
        raise EvaluationError(
            f"this similarity needs at least {min_rows} images, got {a.shape[0]}; select more rows"
        )
    return a, b


def _ratio(xy: float, xx: float, yy: float) -> float:
    """xy / sqrt(xx yy); NaN when a representation is constant (no variance to compare)."""
    den = xx * yy
    if not den > 0:
        return float("nan")
    return float(xy / np.sqrt(den))


# --------------------------------------------------------------------------------------
# linear CKA in feature space
# --------------------------------------------------------------------------------------


class _Linear:
    """One representation prepared for linear HSIC: centred features and their summaries.

    ``debiased`` keeps what the unbiased estimator needs besides ``Xc``: the squared row
    norms (diagonal of K = Xc Xc^T) and the row sums of K with its diagonal zeroed.
    """

    def __init__(self, x: np.ndarray, debiased: bool) -> None:
        self.x = x - x.mean(axis=0, keepdims=True)
        self.n = x.shape[0]
        self.debiased = debiased
        self.diag = np.einsum("ij,ij->i", self.x, self.x)  # K_ii
        # K~ 1 = Xc (Xc^T 1) - diag; Xc^T 1 = 0 after centring, kept for clarity
        self.rowsum = self.x @ self.x.sum(axis=0) - self.diag
        self.gram: np.ndarray | None = None

    def cross(self, other: _Linear) -> float:
        """||Y^T X||_F^2 = tr(K L), from whichever of the two forms is cheaper."""
        d1, d2 = self.x.shape[1], other.x.shape[1]
        if self.n * (d1 + d2) < d1 * d2:  # Gram form: N^2 (D1 + D2) < N D1 D2
            if self.gram is None:
                self.gram = self.x @ self.x.T
            if other.gram is None:
                other.gram = other.x @ other.x.T
            return float(np.einsum("ij,ij->", self.gram, other.gram))
        c = self.x.T @ other.x
        return float(np.einsum("ij,ij->", c, c))

    def hsic(self, other: _Linear) -> float:
        """Biased HSIC (up to 1/(n-1)^2, which cancels) or the unbiased estimator."""
        tr = self.cross(other)
        if not self.debiased:
            return tr
        n = self.n
        tr_tilde = tr - float(self.diag @ other.diag)  # tr(K~ L~): diagonals removed
        sum_k = float(self.rowsum.sum())  # 1^T K~ 1
        sum_l = float(other.rowsum.sum())
        cross = float(self.rowsum @ other.rowsum)  # 1^T K~ L~ 1
        hsic: float = (tr_tilde + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (
            n * (n - 3)
        )
        return hsic


def linear_cka(X: Any, Y: Any, *, debiased: bool = False) -> float:
    """Linear CKA of two representations of the same images (1 = equal up to rotation/scale).

    ``debiased`` uses the unbiased HSIC estimator (needs at least 4 images); it corrects the
    upward bias of CKA when features are wide compared with the number of images.
    """
    a, b = _pair(X, Y, 4 if debiased else 2)
    pa, pb = _Linear(a, debiased), _Linear(b, debiased)
    return _ratio(pa.hsic(pb), pa.hsic(pa), pb.hsic(pb))


# --------------------------------------------------------------------------------------
# kernels: RBF CKA, HSIC of Gram matrices
# --------------------------------------------------------------------------------------


def _sq_distances(x: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", x, x)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    out: np.ndarray = d
    return out


def rbf_gram(X: Any, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """Gaussian Gram matrix, bandwidth ``sigma`` x the median pairwise distance.

    ``exp(-d_ij^2 / (2 (sigma m)^2))`` with ``m^2`` the median of all squared distances
    (Kornblith et al.), so the kernel, and RBF CKA, are unchanged by isotropic scaling.
    """
    if not (isinstance(sigma, (int, float)) and np.isfinite(sigma) and sigma > 0):
        raise EvaluationError(
            f"sigma must be a positive fraction of the median distance (e.g. 0.8), got {sigma!r}"
        )
    x = _matrix(X, "X")
    d = _sq_distances(x)
    med = float(np.median(d))
    if not med > 0:
        raise EvaluationError(
            "RBF CKA needs distinct images: the median pairwise distance of these features is 0; "
            "use linear CKA or check the features"
        )
    return np.exp(-d / (2.0 * sigma**2 * med))


def _centre(k: np.ndarray) -> np.ndarray:
    """H K H with H = I - 11^T / n."""
    k = k - k.mean(axis=0, keepdims=True)
    out: np.ndarray = k - k.mean(axis=1, keepdims=True)
    return out


def hsic_gram(K: Any, L: Any, *, debiased: bool = False) -> float:
    """HSIC of two N x N Gram matrices: tr(HKH HLH) (biased, unscaled) or the unbiased estimator."""
    k, l_ = np.asarray(K, dtype=np.float64), np.asarray(L, dtype=np.float64)
    if k.shape != l_.shape or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise EvaluationError(
            f"Gram matrices must be square and of one size, got {k.shape} and {l_.shape}"
        )
    n = k.shape[0]
    if not debiased:
        return float(np.einsum("ij,ij->", _centre(k), _centre(l_)))
    if n < 4:
        raise EvaluationError(f"the unbiased HSIC estimator needs at least 4 images, got {n}")
    kt, lt = k.copy(), l_.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    rk, rl = kt.sum(axis=1), lt.sum(axis=1)
    term = float(np.einsum("ij,ij->", kt, lt)) + rk.sum() * rl.sum() / ((n - 1) * (n - 2))
    hsic: float = (term - 2.0 * float(rk @ rl) / (n - 2)) / (n * (n - 3))
    return hsic


def _gram_cka(k: np.ndarray, l_: np.ndarray, debiased: bool) -> float:
    return _ratio(
        hsic_gram(k, l_, debiased=debiased),
        hsic_gram(k, k, debiased=debiased),
        hsic_gram(l_, l_, debiased=debiased),
    )


def rbf_cka(X: Any, Y: Any, *, sigma: float = DEFAULT_SIGMA, debiased: bool = False) -> float:
    """CKA with Gaussian kernels (``sigma`` = fraction of the median distance); O(N^2) memory."""
    a, b = _pair(X, Y, 4 if debiased else 2)
    return _gram_cka(rbf_gram(a, sigma), rbf_gram(b, sigma), debiased)


# --------------------------------------------------------------------------------------
# minibatch CKA (Nguyen et al. 2021)
# --------------------------------------------------------------------------------------


class MinibatchCKA:
    """Linear CKA of M representations accumulated over minibatches of the same images.

    Each :meth:`update` takes one batch of every representation (same rows, same order)
    and adds the unbiased HSIC of every pair on that batch; :meth:`matrix` is
    ``mean HSIC(i, j) / sqrt(mean HSIC(i, i) mean HSIC(j, j))``. Memory is one batch of
    each representation plus an M x M table, whatever the number of images. Batches need
    at least 4 rows (the estimator's minimum).
    """

    def __init__(self, n_representations: int = 2) -> None:
        if n_representations < 1:
            raise EvaluationError("MinibatchCKA needs at least one representation")
        self.n_representations = int(n_representations)
        self.hsic_ = np.zeros((self.n_representations, self.n_representations))
        self.n_batches_ = 0
        self.n_rows_ = 0

    def update(self, batches: Sequence[Any]) -> MinibatchCKA:
        if len(batches) != self.n_representations:
            raise EvaluationError(
                f"update needs one batch per representation ({self.n_representations}), "
                f"got {len(batches)}"
            )
        mats = [_matrix(b, f"batch {i}") for i, b in enumerate(batches)]
        rows = {m.shape[0] for m in mats}
        if len(rows) != 1:
            raise EvaluationError(
                f"the batches of one update must hold the same images; got row counts {sorted(rows)}"
            )
        n = rows.pop()
        if n < 4:
            raise EvaluationError(
                f"a minibatch needs at least 4 images for the unbiased HSIC, got {n}; use larger "
                "batches (or drop a short last batch)"
            )
        grams = [m @ m.T for m in mats]
        for i in range(self.n_representations):
            for j in range(i, self.n_representations):
                h = hsic_gram(grams[i], grams[j], debiased=True)
                self.hsic_[i, j] += h
                if i != j:
                    self.hsic_[j, i] += h
        self.n_batches_ += 1
        self.n_rows_ += n
        return self

    def matrix(self) -> np.ndarray:
        if self.n_batches_ == 0:
            raise EvaluationError("MinibatchCKA has seen no batch yet; call update first")
        d = np.sqrt(np.clip(np.diag(self.hsic_), 0.0, None))
        den = np.outer(d, d)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, self.hsic_ / np.where(den > 0, den, 1.0), np.nan)

    @property
    def value(self) -> float:
        """CKA of the first two representations (or 1.0 with one)."""
        m = self.matrix()
        return float(m[0, 1] if self.n_representations > 1 else m[0, 0])


def _batches(n: int, batch_size: int, rng: np.random.Generator | None) -> Iterable[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch_size if n % batch_size and n % batch_size < 4 else n
    for start in range(0, stop, batch_size):
        yield order[start : min(start + batch_size, stop)]


def minibatch_cka(
    X: Any,
    Y: Any,
    *,
    batch_size: int = 256,
    epochs: int = 1,
    seed: int | None = 0,
) -> float:
    """Minibatch linear CKA of two representations (Nguyen et al. 2021).

    Rows are shuffled (``seed``; None keeps their order) and cut into batches of
    ``batch_size`` (a short last batch under 4 rows is dropped); ``epochs`` > 1 passes over
    the data again with fresh shuffles. For data that does not fit in memory, feed batches
    to :class:`MinibatchCKA` directly.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 4:
        raise EvaluationError(f"batch_size must be an integer >= 4, got {batch_size!r}")
    a, b = _pair(X, Y, 4)
    rng = np.random.default_rng(seed) if seed is not None else None
    acc = MinibatchCKA(2)
    for _ in range(max(1, int(epochs))):
        for rows in _batches(a.shape[0], batch_size, rng):
            acc.update([a[rows], b[rows]])
    return acc.value


# --------------------------------------------------------------------------------------
# RSA
# --------------------------------------------------------------------------------------


def rdm(X: Any, distance: str = "correlation", *, square: bool = False) -> np.ndarray:
    """Representational dissimilarity matrix: distances between the images' feature vectors.

    Returned condensed (the N (N - 1) / 2 upper-triangle entries, as scipy's ``pdist``)
    unless ``square``. ``correlation`` is 1 - Pearson r between two images' features.
    """
    from scipy.spatial.distance import pdist, squareform

    if distance not in DISTANCES:
        raise EvaluationError(f"unknown RDM distance {distance!r}; choose from {list(DISTANCES)}")
    x = _matrix(X, "X")
    if x.shape[0] < 3:
        raise EvaluationError(f"an RDM for RSA needs at least 3 images, got {x.shape[0]}")
    if distance in ("correlation", "cosine"):
        centred = x - x.mean(axis=1, keepdims=True) if distance == "correlation" else x
        norms = np.linalg.norm(centred, axis=1)
        if np.any(norms == 0):
            raise EvaluationError(
                f"{distance} distance is undefined for an image whose features are constant; "
                "use distance='euclidean'"
            )
    d: np.ndarray = pdist(x, metric=distance)
    out: np.ndarray = squareform(d) if square else d
    return out


def compare_rdms(a: Any, b: Any, compare: str = "spearman") -> float:
    """Correlation of two condensed RDMs (Spearman's rho by default, as in RSA practice)."""
    from scipy import stats

    if compare not in COMPARES:
        raise EvaluationError(f"unknown RDM comparison {compare!r}; choose from {list(COMPARES)}")
    u, v = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if u.shape != v.shape:
        raise EvaluationError(
            f"RDMs of different sizes ({u.size} and {v.size} entries): build both from the same images"
        )
    if np.ptp(u) == 0 or np.ptp(v) == 0:
        return float("nan")
    if compare == "spearman":
        return float(stats.spearmanr(u, v)[0])
    if compare == "kendall":
        return float(stats.kendalltau(u, v)[0])
    return float(stats.pearsonr(u, v)[0])


def rsa(X: Any, Y: Any, *, distance: str = "correlation", compare: str = "spearman") -> float:
    """RSA: how alike the two representations' dissimilarity structures are (1 = same order)."""
    a, b = _pair(X, Y, 3)
    return compare_rdms(rdm(a, distance), rdm(b, distance), compare)


# --------------------------------------------------------------------------------------
# many representations at once
# --------------------------------------------------------------------------------------


def similarity_matrix(
    representations: Sequence[Any],
    measure: str = "cka",
    *,
    debiased: bool = False,
    sigma: float = DEFAULT_SIGMA,
    distance: str = "correlation",
    compare: str = "spearman",
    pairs: Iterable[tuple[int, int]] | None = None,
) -> np.ndarray:
    """The M x M matrix of ``measure`` over representations of the same images.

    Each representation is prepared once (centred features, Gram matrix or RDM). ``pairs``
    limits the work to some (i, j) entries (the others are NaN; the diagonal is 1 by
    definition); the matrix is symmetric.
    """
    if measure not in MEASURES:
        raise EvaluationError(
            f"unknown similarity measure {measure!r}; choose from {list(MEASURES)}"
        )
    m = len(representations)
    if m == 0:
        raise EvaluationError("give at least one representation to compare")
    mats = [np.asarray(r) for r in representations]  # float64 copies made one at a time below
    rows = {x.shape[0] if x.ndim else 0 for x in mats}
    if len(rows) != 1:
        raise EvaluationError(
            f"representations must describe the same images; got row counts {sorted(rows)}"
        )
    n = rows.pop()
    need = {"cka": 4 if debiased else 2, "rbf_cka": 4 if debiased else 2, "rsa": 3}[measure]
    if n < need:
        raise EvaluationError(f"{measure} needs at least {need} images, got {n}; select more rows")
    if pairs is None:
        pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    todo = sorted({(min(i, j), max(i, j)) for i, j in pairs if i != j})
    bad = [p for p in todo if p[1] >= m or p[0] < 0]
    if bad:
        raise EvaluationError(f"pairs {bad} name representations outside 0..{m - 1}")
    out = np.full((m, m), np.nan)
    np.fill_diagonal(out, 1.0)
    cache: dict[int, Any] = {}
    self_h: dict[int, float] = {}

    def prep(k: int) -> Any:  # each representation prepared once, only when a pair needs it
        if k not in cache:
            x = _matrix(mats[k], f"representation {k}")
            if measure == "cka":
                cache[k] = _Linear(x, debiased)
                self_h[k] = cache[k].hsic(cache[k])
            elif measure == "rbf_cka":
                cache[k] = rbf_gram(x, sigma)
            else:
                cache[k] = rdm(x, distance)
        return cache[k]

    for i, j in todo:
        a, b = prep(i), prep(j)
        if measure == "cka":
            value = _ratio(a.hsic(b), self_h[i], self_h[j])
        elif measure == "rbf_cka":
            value = _gram_cka(a, b, debiased)
        else:
            value = compare_rdms(a, b, compare)
        out[i, j] = out[j, i] = value
    return out
