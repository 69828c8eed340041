"""Cost of checking each image against its registered hash during extraction (issue 11, item 4).

Extraction reads each image's bytes once, hashes them (sha256) and decodes them; the
check is the hash and one string comparison. Prints, over a folder of real images
(flowers12 by default), per image:
  read      reading the file's bytes
  hash      sha256 of those bytes (the added cost)
  prepare   decode + resize + centre crop to the network input (what the loader does)
and the ratio hash / (read + prepare): the share the check adds to the loader's work
(the forward pass, 50-70 ms per image for efficientnet_lite0 on 2 CPU threads, is not
counted, so the share of a whole run is smaller still).

Usage:
  python benchmarks/image_check.py --smoke     # seconds: 12 generated images, once
  python benchmarks/image_check.py
  python benchmarks/image_check.py --root /work/shared/data/flowers12 --repeat 3 --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from featstore.datasets.images import decode, is_image_file
from featstore.extract.loader import prepare
from featstore.specs import Preprocess

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers12"


def measure(root: Path, repeat: int) -> dict[str, float]:
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p.name))
    pre = Preprocess()  # 256 resize, 224 centre crop, as efficientnet_lite0 and resnets
    best = {"read": float("inf"), "hash": float("inf"), "prepare": float("inf")}
    for _ in range(repeat):
        t = {"read": 0.0, "hash": 0.0, "prepare": 0.0}
        for path in paths:
            t0 = time.perf_counter()
            payload = path.read_bytes()
            t1 = time.perf_counter()
            hashlib.sha256(payload).hexdigest()
            t2 = time.perf_counter()
            prepare(decode(payload, str(path)), pre)
            t3 = time.perf_counter()
            t["read"] += t1 - t0
            t["hash"] += t2 - t1
            t["prepare"] += t3 - t2
        best = {k: min(best[k], t[k]) for k in best}
    n = len(paths)
    ms = {f"{k}_ms_per_image": 1000 * v / n for k, v in best.items()}
    return {
        "images": n,
        "mean_bytes": sum(p.stat().st_size for p in paths) / n,
        **ms,
        "hash_share_of_loader": best["hash"] / (best["read"] + best["prepare"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="12 generated images (seconds)")
    args = parser.parse_args()
    if args.smoke:
        import tempfile

        from _smoke import image_folder

        with tempfile.TemporaryDirectory() as tmp:
            out = measure(image_folder(tmp, train=3, test=1), 1)
    else:
        out = measure(args.root, args.repeat)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"{out['images']} images ({out['mean_bytes'] / 1024:.1f} KiB mean): read "
        f"{out['read_ms_per_image']:.3f} ms, sha256 {out['hash_ms_per_image']:.3f} ms, "
        f"decode+resize+crop {out['prepare_ms_per_image']:.3f} ms per image"
    )
    print(f"hash check / loader work = {out['hash_share_of_loader']:.3%}")


if __name__ == "__main__":
    main()
