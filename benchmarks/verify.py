"""Verified-read benchmark: what checking every chunk against its done marker costs.

Prints, on one realistic entry (default 20k x 2048 float16 ReLU-like rows, zstd-1, a local
Zarr store, extraction's 256-row chunks), the median wall time of

  - an unverified full read (the bare zarr read featstore did before: ``entry._read_rows``),
  - a verified full read (``entry.read()``: markers read, every chunk hashed and compared),

and their ratio (unverified / verified, goal >= 0.8), for the checksum featstore writes
(xxh3_128 bound to the entry key and chunk index) and, for contrast, for unbound xxh3_128,
sha256 and crc32c markers on the same data.

Usage:
  python benchmarks/verify.py --smoke          # seconds: 512 x 64 rows, once
  python benchmarks/verify.py
  python benchmarks/verify.py --rows 20000 --dim 2048 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from featstore.store import checksum as checksum_mod
from featstore.store import open_store


class _Crc32c:
    """A hasher (update/hexdigest) over crc32c, for the contrast row."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: Any) -> None:
        import google_crc32c  # a zarr dependency; needs a read-only buffer

        view = np.frombuffer(bytes(data), dtype=np.uint8)
        self.value = google_crc32c.extend(self.value, view)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"


def _median_time(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(rows: int, dim: int, chunk_rows: int, repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    data = np.maximum(rng.standard_normal((rows, dim), dtype=np.float32), 0).astype(np.float16)
    out: dict[str, Any] = {"rows": rows, "dim": dim, "chunk_rows": chunk_rows, "bytes": data.nbytes}
    checksum_mod.HASHERS.setdefault("crc32c", _Crc32c)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"{tmp}/bench.zarr")
        entry = store.create_entry("feat-bench", {}, data.shape, "float16", chunk_rows=chunk_rows)
        for i in range(entry.n_chunks):
            start, stop = entry.chunk_bounds(i)
            entry.write_chunk(i, data[start:stop])
        assert np.array_equal(entry.read(), data)  # benchmark sanity, not user input
        unverified = _median_time(lambda: entry._read_rows(slice(0, rows)), repeat)
        out["unverified_s"] = unverified
        out["algorithms"] = {}
        default = checksum_mod.DEFAULT_ALGORITHM
        for algorithm in (default, "xxh3_128", "crc32c", "sha256"):
            if algorithm != default:  # rewrite the markers with this algorithm
                for i in range(entry.n_chunks):
                    start, stop = entry.chunk_bounds(i)
                    digest = checksum_mod.chunk_checksum(
                        data[start:stop], algorithm, key=entry.key, index=i
                    )
                    entry._write_marker(i, {"rows": [start, stop], "checksum": digest})
            verified = _median_time(entry.read, repeat)
            out["algorithms"][algorithm] = {
                "verified_s": verified,
                "ratio": unverified / verified,
            }
        store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--chunk-rows", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="512 x 64 rows, once (seconds)")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.dim, args.chunk_rows, args.repeat = 512, 64, 64, 1
    result = run(args.rows, args.dim, args.chunk_rows, args.repeat)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    mb = result["bytes"] / 1e6
    print(
        f"entry {result['rows']} x {result['dim']} float16 ({mb:.0f} MB), zstd-1, local Zarr, "
        f"{result['chunk_rows']}-row chunks; median of {args.repeat}"
    )
    print(
        f"unverified full read: {result['unverified_s']:.3f} s ({mb / result['unverified_s']:.0f} MB/s)"
    )
    for name, r in result["algorithms"].items():
        mark = " (featstore's)" if name == checksum_mod.DEFAULT_ALGORITHM else ""
        print(
            f"verified full read, {name}{mark}: {r['verified_s']:.3f} s; "
            f"verified-read ratio (unverified / verified) = {r['ratio']:.2f}"
        )


if __name__ == "__main__":
    main()
