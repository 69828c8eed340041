"""Evaluation speed: featstore's torch solvers over the scikit-learn loop, same features and grid.

Prints, in one run:

(a) flowers12 penultimate features of the bundled efficientnet_lite0 (720 train incl. val,
    1280-d, 12 classes): SVM with C by 5-fold CV over 4 values, logreg on the 45-lambda
    path; both solvers run in full.
(b) a generated 15,000 x 512, 100-class problem (12,000 train, 3,000 test): the torch
    solvers run in full; the scikit-learn loop would take ~10 minutes for the SVM alone,
    so by default it is TIMED ON A SUBSET OF ITS FITS and extrapolated (the script says
    which): for the SVM one fit on the full training rows at the C the torch CV chose
    (the loop does 20 fold fits on 80% of the rows plus this refit); for logreg a few
    lambdas of the path. Its accuracy is that of this refit at the torch solver's chosen
    value, side by side. ``--full-reference`` runs the whole scikit-learn loop instead.
(c) exact retrieval search: FAISS flat inner product vs a numpy matmul + argsort on a
    20,000 x 512 database with 200 queries.

Threads for both solvers are set by ``featstore.evaluate.threads.evaluation_threads``.
Run: ``PYTHONPATH=. python benchmarks/evaluate.py [--store /tmp/solver-flowers.zarr]``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from featstore.evaluate.classifiers import ClassifierSpec, _fit_logreg, classify_arrays
from featstore.evaluate.selection import Splits
from featstore.evaluate.threads import evaluation_threads

FLOWERS_CACHE = Path("/tmp/solver-flowers-features.npz")


def flowers(store_url: str) -> tuple[np.ndarray, np.ndarray, Splits]:
    """L2-normalised flowers12 penultimate features (cached in /tmp after the first read)."""
    from featstore.evaluate.selection import resolve_parts, split_rows
    from featstore.evaluate.transforms import FeatureTransform
    from featstore.store import open_store

    store = open_store(store_url, mode="r")
    ds = store.get_dataset("flowers")
    splits = split_rows(ds)
    if FLOWERS_CACHE.exists():
        X = np.load(FLOWERS_CACHE)["X"]
    else:
        sel = {"model": "efficientnet_lite0", "layer": "penultimate"}
        parts = resolve_parts(store, ds, sel, "l2")
        X = FeatureTransform("l2").fit_transform(parts, splits.train)
        np.savez(FLOWERS_CACHE, X=X)
    return X, np.asarray(ds.labels), splits


def generated(n: int = 15000, d: int = 512, k: int = 100, seed: int = 0):
    """Gaussian classes with overlapping means (a hard problem, ~60-70% accuracy), L2-normalised."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = (rng.normal(size=(k, d))[y] * 0.35 + rng.normal(size=(n, d))).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    idx = rng.permutation(n)
    n_test = n // 5
    empty = np.zeros(0, dtype=np.int64)
    return X, y, Splits(np.sort(idx[n_test:]), empty, np.sort(idx[:n_test]), "train", None)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_both(X, y, splits, name: str) -> None:
    spec = ClassifierSpec(name=name)
    new, t_new = timed(lambda: classify_arrays(X, y, splits, spec))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, t_ref = timed(
            lambda: classify_arrays(X, y, splits, ClassifierSpec(name, solver="sklearn"))
        )
    report(name, new, t_new, ref, t_ref, "full loop")


def report(name, new, t_new, ref, t_ref, how) -> None:
    value = "lambda" if name == "logreg" else "C"
    print(
        f"  {name:6s} torch {t_new:7.1f} s  acc {new['metrics']['accuracy']:.4f}  "
        f"{value}={new['chosen'][value]:.3g}  unconverged={new['chosen']['convergence_warnings']} | "
        f"sklearn {t_ref:7.1f} s  acc {ref['metrics']['accuracy']:.4f}  "
        f"{value}={ref['chosen'][value]:.3g} ({how}) | speed-up {t_ref / t_new:5.1f}x"
    )


def sklearn_svm_estimate(X, y, splits, C: float, folds: int = 5):
    """One LinearSVC fit on all training rows at C, timed; the loop does folds*grid+1 fits."""
    from sklearn.svm import LinearSVC

    train = splits.train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, t = timed(
            lambda: LinearSVC(C=C, max_iter=10000, random_state=0).fit(X[train], y[train])
        )
    acc = float((model.predict(X[splits.test]) == y[splits.test]).mean())
    n_fits = folds * len(ClassifierSpec().c_grid)
    estimate = t * (1 + n_fits * (folds - 1) / folds)  # fold fits see (folds-1)/folds of the rows
    return {"metrics": {"accuracy": acc}, "chosen": {"C": C}}, estimate, t


def sklearn_logreg_estimate(X, y, splits, lam: float, n_path: int = 5, seed: int = 0):
    """The scikit-learn loop on every 9th lambda of the 45 (warm-started), + refit at ``lam``."""
    from sklearn.model_selection import train_test_split

    spec = ClassifierSpec(name="logreg", solver="sklearn")
    tr, val = train_test_split(
        splits.train, test_size=0.2, stratify=y[splits.train], random_state=seed
    )
    sub = ClassifierSpec(name="logreg", solver="sklearn", lambda_range=(1e-6, 1e5, n_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, t_path = timed(
            lambda: _fit_logreg(X[tr], y[tr], X[val], y[val], sub, seed, lambda: None)
        )
        from sklearn.linear_model import LogisticRegression

        rows = splits.train
        model, t_refit = timed(
            lambda: LogisticRegression(C=1 / (lam * len(rows)), max_iter=1000).fit(X[rows], y[rows])
        )
    acc = float((model.predict(X[splits.test]) == y[splits.test]).mean())
    per_fit = t_path / (n_path + 1)
    estimate = per_fit * 45 + t_refit
    del spec
    return {"metrics": {"accuracy": acc}, "chosen": {"lambda": lam}}, estimate, n_path


def retrieval(n: int = 20000, d: int = 512, q: int = 200, k: int = 100) -> None:
    from featstore.evaluate.index import FlatIPIndex

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
    parser.add_argument("--store", default="/tmp/solver-flowers.zarr")
    parser.add_argument("--n", type=int, default=15000, help="rows of the generated problem")
    parser.add_argument(
        "--full-reference", action="store_true", help="run the whole sklearn loop on (b)"
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    with evaluation_threads(args.threads) as threads:
        print(f"threads: {threads}")
        print("(a) flowers12 efficientnet_lite0 penultimate, l2")
        try:
            X, y, splits = flowers(args.store)
            for name in ("svm", "logreg"):
                run_both(X, y, splits, name)
        except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
            print(f"  skipped: {exc}")
        print(f"(b) generated {args.n} x 512, 100 classes, 80/20 split")
        X, y, splits = generated(args.n)
        for name in ("svm", "logreg"):
            spec = ClassifierSpec(name=name)
            new, t_new = timed(lambda spec=spec: classify_arrays(X, y, splits, spec))
            if args.full_reference:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ref, t_ref = timed(
                        lambda spec=spec: classify_arrays(
                            X, y, splits, ClassifierSpec(spec.name, solver="sklearn")
                        )
                    )
                report(name, new, t_new, ref, t_ref, "full loop")
            elif name == "svm":
                ref, est, t_one = sklearn_svm_estimate(X, y, splits, new["chosen"]["C"])
                report(
                    name,
                    new,
                    t_new,
                    ref,
                    est,
                    f"ESTIMATE: 1 fit timed {t_one:.1f} s x 17 fit-equivalents; acc of the refit at torch's C",
                )
            else:
                ref, est, n_path = sklearn_logreg_estimate(X, y, splits, new["chosen"]["lambda"])
                report(
                    name,
                    new,
                    t_new,
                    ref,
                    est,
                    f"ESTIMATE: {n_path} of 45 lambdas + refit timed; acc of the refit at torch's lambda",
                )
        print("(c) exact retrieval search")
        retrieval()


if __name__ == "__main__":
    main()
