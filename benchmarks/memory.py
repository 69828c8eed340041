"""Peak memory of the evaluation read path against the feature matrix it returns.

Builds (once, through featstore's store API) a local Zarr store holding one entry of
unpooled conv maps, ReLU-like float16, ``--n`` x ``--channels`` x ``--size`` x ``--size``
(default 4,000 x 256 x 7 x 7 = 100 MB), chunked as a new entry is by default. Then, in a
fresh process per case, runs ``FeatureTransform(spec).fit_transform`` on it (the call
``featstore evaluate --task classify`` makes, with an 80% training split) and prints:

- the final matrix (rows x dims, float32) and its size;
- the peak of numpy/Python allocations during the call (tracemalloc) and the increase of
  the process's peak RSS (``ru_maxrss`` after the call minus the RSS before it);
- each as a ratio to the final matrix (the goal: about 2x or less), and the traced peak
  beyond the fixed cost of reading one chunk (zarr decodes a chunk through ~2.6x its size
  in buffers), which is what grows with the number of rows;
- the seconds spent reading and transforming (``FeatureTransform.timings_``).

The last case reads the whole entry at once and pools it (what a read without chunking
costs), for comparison. Run: ``PYTHONPATH=. python benchmarks/memory.py [--n 16000]``;
``--smoke`` (seconds: 256 x 16 x 4 x 4, two cases) checks that it runs.

Measured here (2 cores; traced peak / final matrix; 4 MB chunks, one of which costs
~10.5 MB traced to decode and pool, zarr's buffers included):

- 4,000 rows: pool=avg,l2 3.8x (1.1x beyond one chunk), pool=avg,pca=128 9.4x (final
  only 2 MB), whole read 41x;
- 16,000 rows: pool=avg,l2 1.8x, pool=avg,pca=128 2.7x (1.3x beyond one chunk), whole
  read 29x. Peak RSS runs 2-3x the traced peak (allocator arenas of zarr's threads).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

KEY = "feat-" + "0" * 40
CASES = ("pool=avg,l2", "pool=avg,pca=128", "pool=avg,l2,pca=128:whiten,l2", "whole-read")
ONE_CHUNK = "one-chunk"  # the fixed term: decoding, checking and pooling a single chunk


def build(path: Path, n: int, channels: int, size: int) -> None:
    """The store with one complete entry of unpooled maps (skipped when it exists)."""
    from featstore.store import open_store

    store = open_store(str(path), mode="a")
    if store.has_entry(KEY) and store.get_entry(KEY).is_complete:
        return
    entry = store.create_entry(
        KEY,
        {"kind": "features", "pooling": "none", "view": "plain", "layer": "conv"},
        (n, channels, size, size),
        dtype="float16",
    )
    rng = np.random.default_rng(0)
    scale = rng.gamma(2.0, 1.0, size=(1, channels, 1, 1)).astype(np.float32)
    for i in entry.missing_chunks():
        a, b = entry.chunk_bounds(i)
        x = rng.standard_normal((b - a, channels, size, size), dtype=np.float32) * scale
        entry.write_chunk(i, np.maximum(x, 0.0))  # ReLU-like: about half zeros


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(path: Path, case: str) -> dict:
    """One case in this process: peak allocations and peak RSS increase of the call."""
    from featstore.evaluate.features.stored_pooling import pool_rows
    from featstore.evaluate.features.transform_spec import parse_spec
    from featstore.evaluate.features.transforms import FeatureTransform, Part
    from featstore.store import open_store

    entry = open_store(str(path), mode="r").get_entry(KEY)
    train = np.arange(int(entry.n_rows * 0.8))
    rss_before = rss_bytes()
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    t0 = time.perf_counter()
    timings = {}
    if case == "whole-read":
        x = pool_rows(entry.read(), parse_spec("pool=avg")[0], "none")
    elif case == ONE_CHUNK:
        _, block = next(iter(entry.read_blocks()))
        x = pool_rows(block, parse_spec("pool=avg")[0], "none")
        del block
    else:
        ft = FeatureTransform(case)
        x = ft.fit_transform([Part(entry)], train)
        timings = ft.timings_
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    max_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    chunk = entry.chunk_rows * int(np.prod(entry.row_shape)) * 2
    return {
        "shape": list(x.shape),
        "final": int(x.nbytes),
        "traced_peak": int(peak),
        "rss_increase": int(max_after - rss_before),
        "rss_peak_before_above_rss": int(max(0, max_before - rss_before)),
        "maps": int(entry.n_rows * np.prod(entry.row_shape) * 2),
        "chunk_rows": int(entry.chunk_rows),
        "chunk": int(chunk),
        "seconds": seconds,
        "timings": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", default=None, help="where to build the store (default: a temp dir)"
    )
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=7)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # the child process
    parser.add_argument(
        "--smoke", action="store_true", help="256 x 16 x 4 x 4 maps, two cases (seconds)"
    )
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(measure(Path(args.store), args.case)))
        return
    cases = CASES
    if args.smoke:
        args.n, args.channels, args.size = 256, 16, 4
        cases = ("pool=avg,l2", "whole-read")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.store) if args.store else Path(tmp) / "memory.zarr"
        t0 = time.perf_counter()
        build(path, args.n, args.channels, args.size)
        print(
            f"entry {args.n} x {args.channels} x {args.size} x {args.size} float16 at {path} "
            f"(built in {time.perf_counter() - t0:.1f} s)"
        )
        mb = 1024 * 1024
        one = child(path, ONE_CHUNK)
        print(
            f"stored maps {one['maps'] / mb:.1f} MB uncompressed, chunks of {one['chunk_rows']} "
            f"rows = {one['chunk'] / mb:.2f} MB; reading and pooling one chunk peaks at "
            f"{one['traced_peak'] / mb:.2f} MB traced (the fixed term below)"
        )
        for case in cases:
            r = child(path, case)
            t = r["timings"]
            spent = f" (read {t['read_s']:.2f} s, transform {t['transform_s']:.2f} s)" if t else ""
            beyond = (r["traced_peak"] - one["traced_peak"]) / r["final"]
            print(
                f"  {case:30s} -> {r['shape'][0]} x {r['shape'][1]} float32 = {r['final'] / mb:5.2f} MB"
                f" | traced peak {r['traced_peak'] / mb:6.2f} MB = {r['traced_peak'] / r['final']:5.2f}x"
                f" final, {beyond:5.2f}x beyond one chunk"
                f" | peak RSS +{r['rss_increase'] / mb:6.2f} MB = {r['rss_increase'] / r['final']:5.2f}x"
                f" | {r['seconds']:.2f} s{spent}"
            )


def child(path: Path, case: str) -> dict:
    """Run one case in a fresh interpreter (its peak RSS is its own) and return its figures."""
    out = subprocess.run(
        [sys.executable, __file__, "--store", str(path), "--case", case],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
