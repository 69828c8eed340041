"""CovariancePCA against scikit-learn's SVD-based PCA: same projection, fitted in blocks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from featstore.errors import TransformError
from featstore.evaluate.features.pca import CovariancePCA


def _data(n: int = 300, d: int = 12, offset: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spread = np.linspace(3.0, 0.2, d)  # distinct variances: well-defined components
    mixing = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return ((rng.standard_normal((n, d)) * spread) @ mixing + offset).astype(np.float32)


@pytest.mark.parametrize("whiten", [False, True])
def test_equals_sklearn_svd_pca_including_the_sign_of_each_component(whiten):
    x = _data()
    ours = CovariancePCA(n_components=5, whiten=whiten).fit(x)
    ref = PCA(n_components=5, whiten=whiten, svd_solver="full").fit(x)
    np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-5)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(ours.transform(x), ref.transform(x), rtol=1e-4, atol=1e-4)
    assert ours.transform(x).dtype == np.float32


def test_blocks_of_any_size_give_the_fit_of_the_whole_matrix_even_far_from_the_origin():
    x = _data(offset=1e4)  # the pairwise merge of block moments stays exact off-centre
    whole = PCA(n_components=4, svd_solver="full").fit(x.astype(np.float64))
    blocks = CovariancePCA(n_components=4).fit_blocks(
        x[a:b] for a, b in [(0, 1), (1, 50), (50, 51), (51, 300)]
    )
    np.testing.assert_allclose(blocks.components_, whole.components_, atol=1e-4)
    np.testing.assert_allclose(blocks.mean_, whole.mean_, rtol=1e-6)
    assert blocks.n_samples_ == 300


def test_too_many_components_and_unfitted_use_are_refused():
    with pytest.raises(TransformError, match="PCA to 5 dimensions needs"):
        CovariancePCA(n_components=5).fit(np.ones((4, 3)))
    with pytest.raises(TransformError, match="not fitted yet"):
        CovariancePCA(n_components=1).transform(np.ones((2, 3)))
    fitted = CovariancePCA(n_components=1).fit(_data(d=3))
    with pytest.raises(TransformError, match="fitted on 3-dim rows"):
        fitted.transform(np.ones((2, 4)))
