"""Retrieval indexes as scikit-learn-style estimators over FAISS.

Every index follows the estimator habits of STYLE.md: ``__init__`` stores parameters,
``fit(database)`` builds the index and returns ``self``, learned state ends in ``_``, and
``search(queries, k)`` returns ``(scores, ids)`` best first with ``-1`` ids where fewer than
``k`` results exist. Global descriptors are compared by inner product (cosine once they
are L2-normalised); sub-patch sets by the Razavian et al. spatial-search distance, where
smaller is better.

- :class:`L2PCAWhitening`: L2 -> PCA-whitening -> L2, the standard retrieval
  post-processing (Jegou & Chum 2012; Razavian et al. 2014), fitted on any set of vectors.
- :class:`FlatIPIndex`: exact inner-product search (``faiss.IndexFlatIP``), moved to all
  GPUs when faiss sees any.
- :class:`IVFPQIndex`: ``faiss.IndexIVFPQ`` for large databases, its shortlist re-ranked by
  exact inner products (``faiss.IndexRefineFlat``).
- :class:`SubpatchIndex`: spatial sub-patch matching over ``(N, P, D)`` patch arrays.
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np

from featstore.errors import EvaluationError
from featstore.evaluate.features.pca import CovariancePCA
from featstore.evaluate.threads import gpu_count

__all__ = [
    "FlatIPIndex",
    "IVFPQIndex",
    "L2PCAWhitening",
    "SubpatchIndex",
    "l2_normalize",
]

_EPS = 1e-12


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=axis, keepdims=True)
    out: np.ndarray = x / np.maximum(norms, _EPS)
    return out


def _as_matrix(x: np.ndarray, what: str) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if array.ndim != 2:
        raise EvaluationError(f"{what} must be a 2-D array (rows, dims), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise EvaluationError(f"{what} holds NaN or infinite values; check the feature entry")
    return array


def _check_fitted(estimator: Any, attr: str) -> None:
    if not hasattr(estimator, attr):
        raise EvaluationError(f"{type(estimator).__name__} is not fitted; call fit(database) first")


class L2PCAWhitening:
    """L2-normalise, PCA-whiten, L2-normalise again.

    ``n_components=None`` keeps every direction with non-negligible variance (at most
    ``n_samples - 1``), since whitening a zero-variance direction would only amplify
    noise. ``whiten=False`` gives plain PCA projection between the two L2 steps.
    """

    def __init__(
        self, n_components: int | None = None, whiten: bool = True, variance_floor: float = 1e-6
    ) -> None:
        self.n_components = n_components
        self.whiten = whiten
        self.variance_floor = variance_floor

    def fit(self, x: np.ndarray, y: Any = None) -> L2PCAWhitening:
        data = l2_normalize(_as_matrix(x, "whitening training set"))
        n, d = data.shape
        if n < 2:
            raise EvaluationError(f"PCA-whitening needs at least 2 training vectors, got {n}")
        limit = min(n - 1, d)
        if self.n_components is not None and not 1 <= self.n_components <= limit:
            raise EvaluationError(
                f"cannot whiten to {self.n_components} dims: the training set of {n} vectors "
                f"in {d} dims supports 1 to {limit}"
            )
        pca = CovariancePCA(limit if self.n_components is None else self.n_components)
        pca.fit(data)  # from the covariance: d x d memory, not an SVD of the training set
        keep = pca.explained_variance_ > self.variance_floor * max(pca.explained_variance_[0], _EPS)
        if self.n_components is None:
            n_keep = int(keep.sum())
            if n_keep == 0:
                raise EvaluationError(
                    "the whitening training set has no variance (all vectors equal)"
                )
        else:
            n_keep = self.n_components
        self.mean_ = pca.mean_.astype(np.float32)
        scale = np.sqrt(np.maximum(pca.explained_variance_[:n_keep], _EPS)) if self.whiten else 1.0
        self.projection_ = (pca.components_[:n_keep].T / scale).astype(np.float32)  # (d, k)
        self.n_components_ = n_keep
        self.n_features_in_ = d
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        _check_fitted(self, "projection_")
        data = l2_normalize(_as_matrix(x, "vectors to whiten"))
        if data.shape[1] != self.n_features_in_:
            raise EvaluationError(
                f"whitening was learned on {self.n_features_in_}-dim vectors, got {data.shape[1]}-dim"
            )
        return l2_normalize((data - self.mean_) @ self.projection_)

    def fit_transform(self, x: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(x).transform(x)


class FlatIPIndex:
    """Exact inner-product search; on all GPUs when ``use_gpu`` ("auto") finds any."""

    def __init__(self, use_gpu: bool | str = "auto") -> None:
        self.use_gpu = use_gpu

    def fit(self, x: np.ndarray, y: Any = None) -> FlatIPIndex:
        data = _as_matrix(x, "database")
        index: Any = faiss.IndexFlatIP(data.shape[1])
        n_gpu = gpu_count()
        want_gpu = n_gpu > 0 if self.use_gpu == "auto" else bool(self.use_gpu)
        if want_gpu and n_gpu == 0:
            raise EvaluationError(
                "a GPU index was asked for, but faiss sees no GPU (install faiss-gpu)"
            )
        if want_gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(data)
        self.index_ = index
        self.on_gpu_ = want_gpu
        self.n_features_in_ = data.shape[1]
        self.data_ = None if want_gpu else data  # CPU search: one BLAS matmul (see search)
        return self

    @property
    def ntotal(self) -> int:
        _check_fitted(self, "index_")
        return int(self.index_.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` database rows per query by inner product, best first."""
        _check_fitted(self, "index_")
        q = _check_dims(_as_matrix(queries, "queries"), self.n_features_in_)
        k = _clip_k(k, self.ntotal)
        data = getattr(self, "data_", None)
        if data is not None:
            return _matmul_top_k(q, data, k)
        scores, ids = self.index_.search(q, k)
        return scores, ids.astype(np.int64)


def _matmul_top_k(
    q: np.ndarray, data: np.ndarray, k: int, block: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products by a BLAS matmul and a partial sort, in query blocks.

    Measured (benchmarks/evaluate.py, 20k x 512, 200 queries, top-100): faiss-cpu's
    IndexFlatIP took 5x as long as numpy's matmul + argsort; this is the matmul. Ties keep
    the lower row id first, like a stable sort.
    """
    n = data.shape[0]
    out_s = np.empty((len(q), k), dtype=np.float32)
    out_i = np.empty((len(q), k), dtype=np.int64)
    for start in range(0, len(q), block):
        sims = q[start : start + block] @ data.T
        top = (
            np.argpartition(-sims, k - 1, axis=1)[:, :k]
            if k < n
            else np.tile(np.arange(n), (len(sims), 1))
        )
        part = np.take_along_axis(sims, top, axis=1)
        order = np.lexsort((top, -part), axis=1)
        out_i[start : start + len(sims)] = np.take_along_axis(top, order, axis=1)
        out_s[start : start + len(sims)] = np.take_along_axis(part, order, axis=1)
    return out_s, out_i


class IVFPQIndex:
    """Inverted file with product quantisation; the shortlist is re-ranked exactly.

    For each query the IVF-PQ index proposes ``max(k, rerank)`` candidates from ``nprobe``
    inverted lists; their exact inner products (with the original vectors, kept by
    ``faiss.IndexRefineFlat``) decide the returned top ``k``. Parameters left as None are
    chosen from the database size: ``nlist`` about ``4 sqrt(N)`` lists, ``m`` the largest
    divisor of the dimension not above 64 that leaves at least 2 dims per sub-quantizer,
    ``nbits`` lowered when there are fewer than ``2**nbits`` training vectors.
    """

    def __init__(
        self,
        nlist: int | None = None,
        m: int | None = None,
        nbits: int = 8,
        nprobe: int | None = None,
        rerank: int = 100,
        seed: int = 0,
    ) -> None:
        self.nlist = nlist
        self.m = m
        self.nbits = nbits
        self.nprobe = nprobe
        self.rerank = rerank
        self.seed = seed

    def _params(self, n: int, d: int) -> dict[str, int]:
        nlist = (
            self.nlist if self.nlist is not None else max(1, min(n // 8, round(4 * math.sqrt(n))))
        )
        if not 1 <= nlist <= n:
            raise EvaluationError(
                f"IVF-PQ with {nlist} lists needs at least {nlist} database vectors, got {n}"
            )
        if self.m is None:
            m = max([c for c in range(1, min(64, d) + 1) if d % c == 0 and (d // c >= 2 or d == 1)])
        else:
            m = self.m
        if d % m:
            raise EvaluationError(
                f"IVF-PQ needs m to divide the dimension: {m} does not divide {d}"
            )
        nbits = min(self.nbits, math.floor(math.log2(n))) if n > 1 else 1
        if nbits < 1:
            raise EvaluationError(f"IVF-PQ needs at least 2 database vectors, got {n}")
        nprobe = (
            self.nprobe if self.nprobe is not None else min(nlist, max(16, math.ceil(nlist / 4)))
        )
        return {"nlist": nlist, "m": m, "nbits": nbits, "nprobe": min(nprobe, nlist)}

    def fit(self, x: np.ndarray, y: Any = None) -> IVFPQIndex:
        data = _as_matrix(x, "database")
        n, d = data.shape
        params = self._params(n, d)
        quantizer = faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFPQ(
            quantizer, d, params["nlist"], params["m"], params["nbits"], faiss.METRIC_INNER_PRODUCT
        )
        # small databases: train anyway, quietly (faiss otherwise warns on stderr)
        for cp in (ivf.cp, ivf.pq.cp):
            cp.min_points_per_centroid = 1
            cp.seed = int(self.seed)
        ivf.train(data)
        ivf.nprobe = params["nprobe"]
        refined = faiss.IndexRefineFlat(ivf)
        refined.add(data)
        self.ivf_ = ivf
        self.quantizer_ = quantizer  # keep the Python object alive as long as the index
        self.index_ = refined
        self.params_ = params
        self.n_features_in_ = d
        return self

    @property
    def ntotal(self) -> int:
        _check_fitted(self, "index_")
        return int(self.index_.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows per query: IVF-PQ shortlist of ``max(k, rerank)``, exact re-rank."""
        _check_fitted(self, "index_")
        q = _check_dims(_as_matrix(queries, "queries"), self.n_features_in_)
        k = _clip_k(k, self.ntotal)
        shortlist = min(self.ntotal, max(k, int(self.rerank)))
        self.index_.k_factor = shortlist / k
        scores, ids = self.index_.search(q, k)
        return scores, ids.astype(np.int64)


class SubpatchIndex:
    """Spatial sub-patch matching (Razavian et al.): smaller distance is a better match.

    ``distance(query, image)`` is the mean over the query's sub-patches of the smallest
    L2 distance to any of the image's sub-patches. ``fit`` takes the database patches
    ``(N, P, D)``; ``search`` takes query patches ``(Q, P', D)`` and returns
    ``(distances, ids)`` ascending. Work is done in blocks of ``block_queries`` queries so
    memory stays at ``block_queries * P' * N * P`` floats.
    """

    def __init__(self, block_queries: int = 16) -> None:
        self.block_queries = block_queries

    def fit(self, patches: np.ndarray, y: Any = None) -> SubpatchIndex:
        data = np.asarray(patches, dtype=np.float32)
        if data.ndim != 3:
            raise EvaluationError(
                f"sub-patch matching needs (N, P, D) patches, got shape {data.shape}"
            )
        if not np.all(np.isfinite(data)):
            raise EvaluationError(
                "database patches hold NaN or infinite values; check the feature entry"
            )
        self.patches_ = np.ascontiguousarray(data)
        self.n_features_in_ = data.shape[2]
        return self

    @property
    def ntotal(self) -> int:
        _check_fitted(self, "patches_")
        return int(self.patches_.shape[0])

    def distances(self, query_patches: np.ndarray) -> np.ndarray:
        """``(Q, N)`` sub-patch distances from every query to every database image."""
        _check_fitted(self, "patches_")
        q = np.asarray(query_patches, dtype=np.float32)
        if q.ndim != 3 or q.shape[2] != self.n_features_in_:
            raise EvaluationError(
                f"query patches must be (Q, P, {self.n_features_in_}), got shape {q.shape}"
            )
        n, p, d = self.patches_.shape
        flat_db = self.patches_.reshape(n * p, d)
        out = np.empty((q.shape[0], n), dtype=np.float32)
        step = max(1, int(self.block_queries))
        for start in range(0, q.shape[0], step):
            block = q[start : start + step]
            b, pq, _ = block.shape
            sq = faiss.pairwise_distances(np.ascontiguousarray(block.reshape(b * pq, d)), flat_db)
            dist = np.sqrt(np.maximum(sq, 0.0)).reshape(b, pq, n, p)
            out[start : start + b] = dist.min(axis=3).mean(axis=1)
        return out

    def search(self, query_patches: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` database rows per query by ascending sub-patch distance."""
        dist = self.distances(query_patches)
        k = _clip_k(k, dist.shape[1])
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(dist, order, axis=1), order.astype(np.int64)


def _clip_k(k: int, ntotal: int) -> int:
    if k < 1:
        raise EvaluationError(f"k must be at least 1, got {k}")
    if ntotal == 0:
        raise EvaluationError("the index is empty: the database has no vectors")
    return min(int(k), ntotal)


def _check_dims(q: np.ndarray, d: int) -> np.ndarray:
    if q.shape[1] != d:
        raise EvaluationError(f"queries have {q.shape[1]} dims but the index holds {d}-dim vectors")
    return q
