"""Evaluation speed: featstore's torch solvers over the scikit-learn loop, same features and grid.

Prints, in one run, both solvers IN FULL (no extrapolation) on:

(a) flowers12 penultimate features of the bundled efficientnet_lite0 (720 train incl. val,
    1280-d, 12 classes): SVM with C by 5-fold CV over 4 values, logreg on the 45-lambda
    path. The store is built on first use (``--store``; ~1 min of extraction).
(b) a generated 15,000 x 512, 100-class problem (12,000 train, 3,000 test) with a common
    offset before L2 normalisation (as ReLU features have) and overlapping classes
    (~60% accuracy, so the SVM's active sets and the small lambdas are genuinely hard).
    The scikit-learn SVM loop takes ~30 minutes here on this 2-core machine.
(c) exact retrieval search: FAISS flat inner product vs a numpy matmul + argsort on a
    20,000 x 512 database with 200 queries.

The scikit-learn reference runs to the same convergence rule as the torch solvers
(``featstore evaluate --solver sklearn``): LinearSVC at liblinear's own tolerance, whose
primal rule ``||g|| <= 1e-4 min(pos, neg)/n ||g0||`` is the torch SVM's 1e-6 for 100
classes; L-BFGS at ``max|g| <= 1e-4 max|g0|``. For logistic regression the loop at
scikit-learn's default ``tol=1e-4`` (absolute: what featstore ran before) is printed too,
with its accuracy: it stops early on the small lambdas.

Threads for both solvers are set by ``featstore.evaluate.threads.evaluation_threads``,
1 by default: with 2, torch's OpenMP pool (which spins for a while after each call) and
scikit-learn's BLAS / OpenMP pools compete inside this one process, and the reference
suffers for it (measured: the flowers12 L-BFGS loop 18.4 s with 2 threads, 1.8 s with 1),
which would flatter the ratio. liblinear is single-threaded either way.
Run: ``python benchmarks/evaluate.py [--threads 2] [--skip-sklearn-svm-b]``;
``--smoke`` runs every part in seconds on tiny data (generated images and a tiny network for (a), a
600 x 64, 10-class problem for (b), a 2,000 x 64 database for (c)): it checks the script
runs, it measures nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from featstore.evaluate.probes.arrays import classify_arrays
from featstore.evaluate.probes.protocol import ClassifierSpec, Splits, lambda_grid
from featstore.evaluate.threads import evaluation_threads

FLOWERS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flowers12"


def flowers(
    store_url: str,
    images: Path = FLOWERS,
    model: str = "efficientnet_lite0",
    layer: str = "penultimate",
) -> tuple[np.ndarray, np.ndarray, Splits]:
    """L2-normalised features of ``model``'s ``layer`` on the folder ``images`` (flowers12's
    efficientnet_lite0 penultimate by default), extracted into ``store_url`` if missing."""
    from featstore.datasets import add_dataset
    from featstore.evaluate.features.selection import resolve_parts
    from featstore.evaluate.features.transforms import FeatureTransform
    from featstore.evaluate.probes.protocol import split_rows
    from featstore.extract.pipeline import extract
    from featstore.extract.request import ExtractionRequest
    from featstore.store import open_store

    store = open_store(store_url)
    if "flowers" not in {d["name"] for d in store.list_datasets()}:
        add_dataset(store, "flowers", str(images))
    ds = store.get_dataset("flowers")
    extract(store, ExtractionRequest.parse(ds, [model], [layer], ["avg"]))
    splits = split_rows(ds)
    sel = {"model": model, "layer": layer}
    parts = resolve_parts(store, ds, sel, "l2")
    X = FeatureTransform("l2").fit_transform(parts, splits.train)
    return X, np.asarray(ds.labels), splits


def generated(n: int = 15000, d: int = 512, k: int = 100, seed: int = 0):
    """Gaussian classes with overlapping means around a common offset, L2-normalised."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = (rng.normal(size=(k, d))[y] * 0.15 + rng.normal(size=(n, d))).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X += 0.05  # the shared mean direction of post-ReLU features: the hard direction for CG
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    idx = rng.permutation(n)
    n_test = n // 5
    empty = np.zeros(0, dtype=np.int64)
    return X, y, Splits(np.sort(idx[n_test:]), empty, np.sort(idx[:n_test]), "train", None)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def grid_relation(name: str, a: float, b: float, spec: ClassifierSpec) -> str:
    """'same', 'adjacent' or 'k apart' on the classifier's grid."""
    grid = (
        sorted(float(v) for v in lambda_grid(*spec.lambda_range))
        if name == "logreg"
        else sorted(float(c) for c in spec.c_grid)
    )
    i, j = (int(np.argmin([abs(np.log(g / v)) for g in grid])) for v in (a, b))
    return "same" if i == j else "adjacent" if abs(i - j) == 1 else f"{abs(i - j)} apart"


def report(name, new, t_new, ref, t_ref, how) -> None:
    value = "lambda" if name == "logreg" else "C"
    spec = ClassifierSpec(name=name)
    acc_new, acc_ref = new["metrics"]["accuracy"], ref["metrics"]["accuracy"]
    print(
        f"  {name:6s} torch {t_new:7.1f} s  acc {acc_new:.4f}  {value}={new['chosen'][value]:.3g}"
        f"  unconverged={new['chosen']['convergence_warnings']} | sklearn ({how}) {t_ref:7.1f} s"
        f"  acc {acc_ref:.4f}  {value}={ref['chosen'][value]:.3g}"
        f"  unconverged={ref['chosen']['convergence_warnings']} | speed-up {t_ref / t_new:5.1f}x,"
        f" accuracy diff {100 * (acc_new - acc_ref):+.2f} points,"
        f" {value} {grid_relation(name, new['chosen'][value], ref['chosen'][value], spec)}",
        flush=True,
    )


def run_both(X, y, splits, name: str, threads: int, reference: bool = True) -> None:
    new, t_new = timed(lambda: classify_arrays(X, y, splits, ClassifierSpec(name), threads=threads))
    if not reference:
        print(
            f"  {name:6s} torch {t_new:7.1f} s  acc {new['metrics']['accuracy']:.4f} (reference skipped)"
        )
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, t_ref = timed(
            lambda: classify_arrays(
                X, y, splits, ClassifierSpec(name, solver="sklearn"), threads=threads
            )
        )
    report(name, new, t_new, ref, t_ref, "same tolerance")
    if name == "logreg":
        default, t_default = timed(lambda: sklearn_default_logreg(X, y, splits, threads))
        report(name, new, t_new, default, t_default, "its default tol=1e-4")


def sklearn_default_logreg(X, y, splits, threads: int) -> dict:
    """The logreg loop at scikit-learn's default tolerance (featstore's loop before 2026-12)."""
    from unittest import mock

    from featstore.evaluate.probes import sklearn_solver

    with (
        warnings.catch_warnings(),
        mock.patch.object(sklearn_solver, "_lbfgs_tol", return_value=1e-4),
    ):
        warnings.simplefilter("ignore")
        return classify_arrays(
            X, y, splits, ClassifierSpec("logreg", solver="sklearn"), threads=threads
        )


def retrieval(n: int = 20000, d: int = 512, q: int = 200, k: int = 100) -> None:
    from featstore.evaluate.retrieval.index import FlatIPIndex

    rng = np.random.default_rng(0)
    db = rng.normal(size=(n, d)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    queries = db[rng.choice(n, q, replace=False)] + 0.01 * rng.normal(size=(q, d)).astype(
        np.float32
    )
    index = FlatIPIndex().fit(db)
    index.search(queries, k)
    (_, ids), t_faiss = timed(lambda: index.search(queries, k))
    order, t_np = timed(lambda: np.argsort(-(queries @ db.T), axis=1)[:, :k])
    same = float(np.mean(ids[:, 0] == order[:, 0]))
    print(
        f"  flat search {n}x{d}, {q} queries, top-{k}: FlatIPIndex {t_faiss:.3f} s, numpy matmul+argsort "
        f"{t_np:.3f} s: index/numpy = {t_faiss / t_np:.2f} (top-1 agree {same:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="/tmp/featstore-bench-flowers.zarr")
    parser.add_argument("--n", type=int, default=15000, help="rows of the generated problem")
    parser.add_argument(
        "--skip-sklearn-svm-b",
        action="store_true",
        help="time only the torch SVM on (b) (the scikit-learn loop takes ~30 minutes)",
    )
    parser.add_argument("--threads", type=int, default=1, help="solver threads (see above)")
    parser.add_argument("--smoke", action="store_true", help="every part on tiny data (seconds)")
    args = parser.parse_args()
    if args.smoke:
        from _smoke import TINY_NET, image_folder

        with tempfile.TemporaryDirectory() as tmp:
            images = image_folder(Path(tmp) / "images", train=10, test=4, size=32)
            net = (TINY_NET, "conv")
            run(args, f"{tmp}/store.zarr", images, net, d=64, k=10, n=600, db=2000)
        return
    net = ("efficientnet_lite0", "penultimate")
    run(args, args.store, FLOWERS, net, d=512, k=100, n=args.n, db=20000)


def run(args, store, images: Path, net, *, d: int, k: int, n: int, db: int) -> None:
    with evaluation_threads(args.threads) as threads:
        print(f"threads: {threads}", flush=True)
        print(f"(a) {images.name} {net[0]} {net[1]}, l2", flush=True)
        X, y, splits = flowers(store, images, *net)
        for name in ("svm", "logreg"):
            run_both(X, y, splits, name, threads)
        print(f"(b) generated {n} x {d}, {k} classes, 80/20 split", flush=True)
        X, y, splits = generated(n, d, k)
        for name in ("logreg", "svm"):
            run_both(X, y, splits, name, threads, not (name == "svm" and args.skip_sklearn_svm_b))
        print("(c) exact retrieval search", flush=True)
        retrieval(db, d, q=min(200, db // 100), k=min(100, db // 20))


if __name__ == "__main__":
    main()
