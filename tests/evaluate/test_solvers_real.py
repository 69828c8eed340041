"""The torch solvers against the scikit-learn reference on real and on many-class features.

flowers12 penultimate features of the bundled efficientnet_lite0 (fewer rows than
dimensions: the thin eigenbasis), and a generated 100-class problem: accuracy within
0.5 points, the chosen C / lambda the same or adjacent on the grid, both converged.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from featstore.evaluate import classify_arrays
from featstore.evaluate.probes.protocol import ClassifierSpec, Splits, lambda_grid
from tests.conftest import FLOWERS12


def _grid_index(value: float, grid) -> int:
    return int(np.argmin(np.abs(np.log(np.asarray(grid, dtype=float)) - np.log(value))))


def _compare(X, y, splits, spec: ClassifierSpec) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = classify_arrays(
            X, y, splits, ClassifierSpec(**{**spec.__dict__, "solver": "sklearn"})
        )
    new = classify_arrays(X, y, splits, spec)
    assert abs(new["metrics"]["accuracy"] - ref["metrics"]["accuracy"]) <= 0.005 + 1e-9, (new, ref)
    if spec.name == "logreg":
        grid, what = lambda_grid(*spec.lambda_range), "lambda"
    else:
        grid, what = spec.c_grid, "C"
    positions = [_grid_index(r["chosen"][what], grid) for r in (ref, new)]
    assert abs(positions[0] - positions[1]) <= 1, (new["chosen"], ref["chosen"])
    assert new["chosen"]["convergence_warnings"] == 0


@pytest.fixture(scope="module")
def flowers_features(tmp_path_factory: pytest.TempPathFactory):
    """L2-normalised penultimate features of 15 train + 8 test images per flowers12 class."""
    assert FLOWERS12.exists(), f"the flowers12 images must be at {FLOWERS12}"
    from featstore.datasets import add_dataset
    from featstore.evaluate.features.selection import resolve_parts
    from featstore.evaluate.features.transforms import FeatureTransform
    from featstore.evaluate.probes.protocol import split_rows
    from featstore.extract import ExtractionRequest, extract
    from featstore.store import open_store

    base = tmp_path_factory.mktemp("flowers-subset")
    root = base / "images"
    for split, count in (("train", 15), ("test", 8)):
        for folder in sorted((FLOWERS12 / split).iterdir()):
            target = root / split / folder.name
            target.mkdir(parents=True)
            for image in sorted(folder.iterdir())[:count]:
                (target / image.name).symlink_to(image)
    store = open_store(str(base / "s.zarr"))
    add_dataset(store, "flowers", str(root))
    ds = store.get_dataset("flowers")
    extract(
        store,
        ExtractionRequest.parse(ds, ["efficientnet_lite0"], ["penultimate"], ["avg"]),
        batch_size=32,
    )
    splits = split_rows(ds)
    parts = resolve_parts(store, ds, {"model": "efficientnet_lite0", "layer": "penultimate"}, "l2")
    X = FeatureTransform("l2").fit_transform(parts, splits.train)
    return X, np.asarray(ds.labels), splits


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["svm", "logreg"])
def test_flowers12_bundled_network_torch_matches_sklearn(flowers_features, name: str) -> None:
    X, y, splits = flowers_features
    assert X.shape == (276, 1280)
    assert len(splits.train) == 180
    spec = ClassifierSpec(name=name)
    if name == "logreg":  # the lambdas that matter for these features; the full 45 is slow here
        spec = ClassifierSpec(name=name, lambda_range=(1e-4, 1e2, 13))
    _compare(X, y, splits, spec)


def _many_classes(n: int = 2400, d: int = 32, k: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = (rng.normal(size=(k, d))[y] * 0.6 + rng.normal(size=(n, d))).astype(np.float32)
    X += 0.3  # a shared mean direction, as post-ReLU features have
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    idx = rng.permutation(n)
    test = np.sort(idx[: n // 4])
    return X, y, Splits(np.sort(idx[n // 4 :]), np.zeros(0, dtype=np.int64), test, "train", None)


@pytest.mark.parametrize(
    "spec",
    [ClassifierSpec("svm"), ClassifierSpec("logreg", lambda_range=(1e-5, 1e1, 13))],
    ids=["svm", "logreg"],
)
def test_generated_100_classes_torch_matches_sklearn(spec: ClassifierSpec) -> None:
    X, y, splits = _many_classes()
    _compare(X, y, splits, spec)


def test_wide_design_uses_a_thin_basis_and_solves_the_same_problem(tmp_path: Path) -> None:
    """Fewer rows than dimensions: the eigenbasis is the rows' span, the weights unchanged."""
    import torch
    from sklearn.svm import LinearSVC

    from featstore.evaluate.probes.torch_linear import Design, svm_newton
    from featstore.evaluate.probes.torch_solver import _svm_costs, _svm_targets

    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 40)
    X = (rng.normal(size=(3, 90))[y] + rng.normal(size=(40, 90))).astype(np.float32)
    design = Design(X, dtype=torch.float64)
    assert design.r == 40 < design.d1 == 91
    classes = np.unique(y)
    cost = torch.as_tensor(_svm_costs(y, classes, np.arange(40), None))[None] * 0.5
    W, info = svm_newton(design, torch.as_tensor(_svm_targets(y, classes)), cost, tol=1e-10)
    assert info.unconverged == 0
    ref = LinearSVC(C=0.5, tol=1e-10, max_iter=100000).fit(X, y)
    expect = np.vstack([ref.coef_.T, ref.intercept_[None]])
    np.testing.assert_allclose(W[0].numpy(), expect, atol=1e-4 * np.abs(expect).max())
