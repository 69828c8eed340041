"""Similarity benchmark: linear CKA in feature space vs the N x N Gram form, and minibatch CKA.

Prints wall times and values on random ReLU-like features (same value from both forms):
  (a) feature-space linear CKA (X^T Y) at N x D1 / N x D2;
  (b) the Gram form tr(K H L H) at a smaller N (memory N^2), to show the scaling;
  (c) minibatch CKA (Nguyen et al.) over batches of 512, memory one batch.

and the ratio of the Gram form's time to the feature form's at the Gram form's N.

Usage:
  python benchmarks/similarity.py --n 20000 --d1 2048 --d2 2048 --gram-n 4000
  python benchmarks/similarity.py --smoke      # seconds: 1,000 x 64, Gram form at N=300
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from featstore.similarity import hsic_gram, linear_cka, minibatch_cka


def _features(n: int, d: int, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    w = rng.normal(size=(base.shape[1], d)).astype(np.float32) / np.sqrt(base.shape[1])
    return np.maximum(base @ w + 0.5 * rng.normal(size=(n, d)).astype(np.float32), 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d1", type=int, default=2048)
    ap.add_argument("--d2", type=int, default=2048)
    ap.add_argument("--gram-n", type=int, default=4000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="1,000 x 64 features (seconds)")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.d1, args.d2, args.gram_n = 1000, 64, 64, 300
    rng = np.random.default_rng(0)
    base = rng.normal(size=(args.n, 64)).astype(np.float32)
    x, y = _features(args.n, args.d1, base, rng), _features(args.n, args.d2, base, rng)
    out = {"n": args.n, "d1": args.d1, "d2": args.d2}

    t = time.perf_counter()
    out["feature_cka"] = linear_cka(x, y)
    out["feature_s"] = time.perf_counter() - t

    m = args.gram_n
    t = time.perf_counter()
    xs, ys = x[:m].astype(np.float64), y[:m].astype(np.float64)
    k, l_ = xs @ xs.T, ys @ ys.T
    gram = hsic_gram(k, l_) / np.sqrt(hsic_gram(k, k) * hsic_gram(l_, l_))
    out.update(gram_n=m, gram_cka=gram, gram_s=time.perf_counter() - t)
    t = time.perf_counter()
    out["feature_cka_at_gram_n"] = linear_cka(x[:m], y[:m])
    out["feature_s_at_gram_n"] = time.perf_counter() - t

    t = time.perf_counter()
    out["minibatch_cka"] = minibatch_cka(x, y, batch_size=512)
    out["minibatch_s"] = time.perf_counter() - t
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"feature-space linear CKA, {args.n} x {args.d1} vs {args.d2}: "
        f"{out['feature_cka']:.4f} in {out['feature_s']:.1f} s"
    )
    print(
        f"Gram form at N={m}: {gram:.4f} in {out['gram_s']:.1f} s "
        f"(feature form at the same N: {out['feature_cka_at_gram_n']:.4f}); "
        f"memory ~{3 * m * m * 8 / 2**30:.2f} GiB, growing as N^2"
    )
    print(
        f"Gram form / feature form wall time at N={m} = "
        f"{out['gram_s'] / max(out['feature_s_at_gram_n'], 1e-9):.1f}"
    )
    print(
        f"minibatch CKA (batches of 512): {out['minibatch_cka']:.4f} in {out['minibatch_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
