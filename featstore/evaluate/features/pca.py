"""PCA (and PCA-whitening) fitted from the covariance, accumulated block by block.

scikit-learn's ``PCA(svd_solver="full")`` takes an SVD of the whole centred training
matrix: it needs the matrix in memory and as much again for the factors. Here the
training rows only feed a float64 mean and scatter matrix (d x d), one block at a time,
so the rows can come straight from a store chunk by chunk (see
:mod:`featstore.evaluate.features.transforms`) and the fit costs d x d memory, never n x d. The
projection equals scikit-learn's within float error, with the same conventions: the
components are the covariance's leading eigenvectors, the entry of largest magnitude of
each is positive (scikit-learn's ``svd_flip``), and whitening divides by the square root
of the explained variance (ddof=1), never by less than float32's eps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from featstore.errors import TransformError

__all__ = ["BLOCK_ROWS", "CovariancePCA"]

BLOCK_ROWS = 4096  # rows per block when fitting or projecting a matrix already in memory


class CovariancePCA(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn has no types
    """PCA to ``n_components`` dimensions, optionally whitened, from the training covariance.

    ``fit(X)`` takes a matrix; ``fit_blocks(blocks)`` takes any iterable of row blocks
    (all with the same columns) and never holds more than one. Learned state: ``mean_``,
    ``components_`` (n_components, d), ``explained_variance_``, ``n_samples_``,
    ``n_features_in_``.
    """

    def __init__(self, n_components: int = 1, whiten: bool = False) -> None:
        self.n_components = n_components
        self.whiten = whiten

    def fit(self, X: Any, y: Any = None) -> CovariancePCA:
        X = np.asarray(X)
        return self.fit_blocks(X[i : i + BLOCK_ROWS] for i in range(0, len(X), BLOCK_ROWS))

    def fit_blocks(self, blocks: Iterable[np.ndarray]) -> CovariancePCA:
        """Fit from row blocks: the mean and scatter of each block are merged into the
        running ones by the pairwise update (Chan, Golub and LeVeque), which stays exact
        when the rows are far from the origin, unlike a plain sum of x x^T."""
        n, mean, scatter = 0, np.zeros(0), np.zeros((0, 0))
        for block in blocks:
            x = np.asarray(block, dtype=np.float64)
            if not len(x):
                continue
            m = x.mean(axis=0)
            centred = x - m
            s = centred.T @ centred
            if n == 0:
                n, mean, scatter = len(x), m, s
                continue
            total = n + len(x)
            delta = m - mean
            scatter += s + np.outer(delta, delta) * (n * len(x) / total)
            mean += delta * (len(x) / total)
            n = total
        d = len(mean)
        if not 1 <= self.n_components <= min(n, d):
            raise TransformError(
                f"PCA to {self.n_components} dimensions needs at least that many rows and "
                f"columns; got {n} rows of {d} dims"
            )
        values, vectors = np.linalg.eigh(scatter / max(n - 1, 1))  # ascending
        values, vectors = (
            values[::-1][: self.n_components],
            vectors[:, ::-1][:, : self.n_components],
        )
        components = vectors.T
        largest = np.abs(components).argmax(axis=1)
        components *= np.sign(components[np.arange(len(components)), largest])[:, None]
        self.mean_ = mean.astype(np.float32)
        self.components_ = components.astype(np.float32)
        self.explained_variance_ = np.maximum(values, 0.0)
        self.n_samples_ = int(n)
        self.n_features_in_ = int(d)
        return self

    def transform(self, X: Any) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise TransformError("this PCA is not fitted yet; call fit first")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise TransformError(
                f"this PCA was fitted on {self.n_features_in_}-dim rows, got shape {X.shape}"
            )
        out: np.ndarray = (X - self.mean_) @ self.components_.T
        if self.whiten:
            eps = np.finfo(np.float32).eps
            out /= np.maximum(np.sqrt(self.explained_variance_), eps).astype(np.float32)
        return out
