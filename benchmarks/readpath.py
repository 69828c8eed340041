"""Read-path benchmark: cached commands with the store's selection beside the old path.

Builds (once) the store of ``examples/quick_sweep.yaml`` (600 digits, EfficientNet-Lite0,
3 layers), then times, each in a fresh Python process so imports count as a user pays them:

  - the fully cached sweep: the store's selection (today's default) beside the old path
    (every cell re-planned by extraction's planner: networks loaded, weights hashed,
    this machine's device and compute dtype in the keys);
  - reading one cached entry (600 x C): ``featstore.lookup`` beside the old lookup
    (``featstore.extract.plan`` then the entry), with whether torch was imported;
  - ``featstore report`` of the sweep's records.

Usage:
  python benchmarks/readpath.py [--store DIR] [--repeat 3] [--json]
  python benchmarks/readpath.py --smoke      # seconds: generated images, a tiny network
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "examples" / "quick_sweep.yaml")

SWEEP_NEW = """
from featstore.cli.main import cli
cli.main(["sweep", {spec!r}, "--store", {store!r}, "--json", "--no-report"], standalone_mode=False)
"""
SWEEP_OLD = """
from featstore.store import open_store
from featstore.sweep.plan import extract_planner
from featstore.sweep.run import run_sweep
from featstore.sweep.spec import load_spec
s = run_sweep(open_store({store!r}), load_spec({spec!r}), planner=extract_planner)
assert s["forward_batches"] == 0, s
"""
READ_NEW = """
import sys, featstore
x = featstore.lookup({store!r}, {dataset!r}, {network!r}, {layer!r}).read()
print("torch imported:", "torch" in sys.modules, x.shape)
"""
READ_OLD = """
import sys
from featstore.store import open_store
from featstore.extract import ExtractionRequest, plan
s = open_store({store!r}, mode="r")
p = plan(s, ExtractionRequest.parse({dataset!r}, [{network!r}], [{layer!r}], "avg", ["plain"]))
x = s.get_entry(p.entries[0].key).read()
print("torch imported:", "torch" in sys.modules, x.shape)
"""
REPORT = """
from featstore.cli.main import cli
cli.main(["report", "--store", {store!r}, "--spec", {spec!r}, "--json"], standalone_mode=False)
"""


TINY = "_smoke:tiny_net"


def smoke_spec(work: str) -> str:
    """A one-network, two-layer sweep over generated images (for ``--smoke``)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _smoke import image_folder

    folder = image_folder(Path(work) / "imgs", train=6, test=3, size=40)
    spec = Path(work) / "smoke.yaml"
    spec.write_text(
        f"name: readpath-smoke\ndatasets: [{{name: shapes, source: {folder}, tasks: [classify]}}]\n"
        f'networks: [{{name: "{TINY}", layers: [flat, conv]}}]\npooling: [avg]\n'
        "transforms: [l2]\nclassifiers: [logreg]\nbaseline: {layer: flat}\nseed: 0\n"
    )
    return str(spec)


def timed(code: str, repeat: int, **values: str) -> tuple[float, str]:
    """Median wall seconds of ``code`` in a fresh interpreter, and its last output line."""
    times, last = [], ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code.format(**values)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        )
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"benchmark step failed:\n{done.stderr[-2000:]}")
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("torch imported")]
        last = lines[-1] if lines else ""
    return statistics.median(times), last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None, help="Store folder (default: a temporary one).")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="a tiny network on generated images")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="readpath-")
    store = args.store or os.path.join(work, "s.zarr")
    values = {"store": store, "spec": SPEC, "dataset": "digits600",
              "network": "efficientnet_lite0", "layer": "stage7"}  # fmt: skip
    if args.smoke:
        args.repeat = 1
        values.update(spec=smoke_spec(work), dataset="shapes", network=TINY, layer="flat")
    t0 = time.perf_counter()
    built = subprocess.run(  # first run: extraction and evaluation (not timed as a read)
        [sys.executable, "-c", SWEEP_NEW.format(**values)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )
    if built.returncode != 0:
        raise SystemExit(f"building the store failed:\n{built.stderr[-2000:]}")
    build_s = time.perf_counter() - t0
    rows = []
    for name, new, old in (
        ("cached sweep quick_sweep.yaml", SWEEP_NEW, SWEEP_OLD),
        ("read one cached entry (fresh process)", READ_NEW, READ_OLD),
    ):
        t_new, out_new = timed(new, args.repeat, **values)
        t_old, out_old = timed(old, args.repeat, **values)
        rows.append({"figure": name, "new_s": round(t_new, 2), "old_s": round(t_old, 2),
                     "new_note": out_new, "old_note": out_old})  # fmt: skip
    t_rep, _ = timed(REPORT, args.repeat, **values)
    rows.append({"figure": "report --spec quick_sweep.yaml", "new_s": round(t_rep, 2),
                 "old_s": None, "new_note": "", "old_note": ""})  # fmt: skip
    if args.json:
        print(json.dumps({"store": store, "build_s": round(build_s, 1), "rows": rows}, indent=1))
        return
    print(f"store {store} (built in {build_s:.1f} s); median of {args.repeat} fresh processes")
    print(f"{'figure':<40} {'new s':>7} {'old s':>7}  notes")
    for r in rows:
        old = "-" if r["old_s"] is None else f"{r['old_s']:.2f}"
        note = "; ".join(x for x in (r["new_note"], r["old_note"] and "old " + r["old_note"]) if x)
        print(f"{r['figure']:<40} {r['new_s']:>7.2f} {old:>7}  {note}")
        if r["old_s"]:
            print(f"  {r['figure']}: old / new = {r['old_s'] / max(r['new_s'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
