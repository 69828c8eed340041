"""Read-path benchmark: cached commands against their limits, beside the old code path.

Builds (once) two stores, then times each cached command in a fresh process (the real
``featstore`` CLI, or ``python -c`` for the Python read) so imports count as a user pays them:

  a. the fully cached ``featstore sweep examples/quick_sweep.yaml`` (600 digits,
     EfficientNet-Lite0/1, 3 layers)                                          <= 1.5 s
  b. a fully cached sweep of 480 cells: a random-init 40-layer conv network
     (``_deep_net:deep_net``, a team network on PYTHONPATH) x 3 poolings (avg, max, gem)
     x 4 transforms (none, l2, std, pca=8,l2), kNN, on all 1,797 digits        <= 3 s
  c. ``featstore report`` of those 480 records                              <= 1 s
  d. reading one cached entry (1,797 x 16) with ``featstore.open(...)``     <= 0.5 s + the read

The old path of (a, b, d) is the plan-based lookup (every cell re-planned by extraction's
planner: networks loaded, weights hashed, this machine's device and compute dtype in the
keys; ``featstore.extract.plan`` then the entry). (c) has no old path left: the figure
measured in issue 22 is printed, labelled as such. Ratios are printed, never asserted.

The sweeps are timed as a user types them (``featstore sweep SPEC --store S``: the summary
and the study table). Each figure prints best and median of --repeat fresh processes, the
old path's, the limit and whether the median meets it ((d): the median less the read).

Usage:
  python benchmarks/readpath.py [--store DIR] [--repeat 5] [--json]
  python benchmarks/readpath.py --smoke      # seconds: (b, c, d) at 12 cells on 60 digits
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
HERE = Path(__file__).resolve().parent
QUICK_SPEC = str(ROOT / "examples" / "quick_sweep.yaml")
DEEP = "_deep_net:deep_net"
ISSUE_S = {"quick": 6.9, "sweep480": 10.5, "report480": 1.7, "read": 4.6}  # issue 22, before
LIMIT_S = {"quick": 1.5, "sweep480": 3.0, "report480": 1.0, "read": 0.5}

SWEEP_OLD = """
from featstore.store import open_store
from featstore.sweep.plan import extract_planner
from featstore.sweep.run import run_sweep
from featstore.sweep.spec import load_spec
s = run_sweep(open_store({store!r}), load_spec({spec!r}), planner=extract_planner)
assert s["forward_batches"] == 0 and not s["failed"] and not s["evaluated"], s
"""
READ_NEW = """
import sys, time, featstore
f = featstore.open({store!r}, mode="r").features({dataset!r}, {network!r}, {layer!r})
t0 = time.perf_counter()
x = f.X
print("read_s", time.perf_counter() - t0)
print("torch imported:", "torch" in sys.modules, x.shape)
"""
READ_OLD = """
import sys, time
from featstore.store import open_store
from featstore.extract import ExtractionRequest, plan
s = open_store({store!r}, mode="r")
p = plan(s, ExtractionRequest.parse({dataset!r}, [{network!r}], [{layer!r}], "avg", ["plain"]))
t0 = time.perf_counter()
x = s.get_entry(p.entries[0].key).read()
print("read_s", time.perf_counter() - t0)
print("torch imported:", "torch" in sys.modules, x.shape)
"""


def featstore_cli() -> list[str]:
    """The installed ``featstore`` command (the one a user runs), else the module."""
    exe = Path(sys.executable).parent / "featstore"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from featstore.cli.main import main; main()"]


def env() -> dict[str, str]:
    """The team network ``_deep_net`` importable, as a team's PYTHONPATH would make it."""
    paths = [str(HERE), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def deep_spec(work: str, depth: int, subset: int | None, transforms: list[str]) -> str:
    """The 480-cell sweep: DEPTH layers x 3 poolings x the transforms, one classifier."""
    layers = ", ".join(f"b{i:02d}" for i in range(1, depth + 1))
    spec = Path(work) / f"deep{depth}.yaml"
    sub = f", subset: {subset}" if subset else ""
    spec.write_text(
        f"name: readpath-deep{depth}\n"
        f"datasets: [{{name: digits{subset or ''}, source: 'builtin:digits'{sub}, "
        "tasks: [classify]}]\n"
        f'networks: [{{name: "{DEEP}", layers: [{layers}]}}]\n'
        "pooling: [avg, max, gem]\n"
        f"transforms: [{', '.join(repr(t) for t in transforms)}]\n"
        "classifiers: [knn]\noptions: {knn: {knn_k: [10]}}\n"
        f"baseline: {{layer: b{depth:02d}, pooling: avg, transform: l2}}\nseed: 0\n"
    )
    return str(spec)


def run(argv: list[str], what: str, extra_env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall seconds of one fresh process, and its stdout; a failure stops the benchmark."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env={**env(), **(extra_env or {})})
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stdout[-1000:]}\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def timed(argv: list[str], what: str, repeat: int, extra_env: dict[str, str]) -> dict[str, object]:
    """Best and median wall seconds of ``repeat`` fresh processes; the read time and the
    torch line when the process prints them."""
    times, reads, note = [], [], ""
    for _ in range(repeat):
        seconds, out = run(argv, what, extra_env)
        times.append(seconds)
        for line in out.splitlines():
            if line.startswith("read_s "):
                reads.append(float(line.split()[1]))
            elif line.startswith("torch imported"):
                note = line
    row: dict[str, object] = {"best": min(times), "median": statistics.median(times), "note": note}
    if reads:
        row["read_s"] = statistics.median(reads)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None, help="Folder for the two stores (default: temporary).")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny networks on few images")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="readpath-")
    where = Path(args.store or work)
    where.mkdir(parents=True, exist_ok=True)
    quick_store, deep_store = str(where / "quick.zarr"), str(where / "deep480.zarr")
    cli = featstore_cli()
    dataset, depth, subset = "digits", 40, None
    transforms = ["none", "l2", "std", "pca=8,l2"]
    deep_env = {"READPATH_DEPTH": "40"}
    if args.smoke:  # the 480-cell figures at 12 cells on 60 digits; (a) needs the bundled nets
        args.repeat = 1
        depth, subset, dataset, transforms = 2, 60, "digits60", ["l2", "pca=4,l2"]
        deep_env = {"READPATH_DEPTH": "2"}
    deep = deep_spec(work, depth, subset, transforms)
    stores = {"deep": (deep_store, deep)}
    if not args.smoke:
        stores = {"quick": (quick_store, QUICK_SPEC), **stores}
    sweep = [*cli, "sweep", "--store"]  # as a user types it: the summary and the study table
    built = {}
    for name, (store, spec) in stores.items():
        t0 = time.perf_counter()  # the first run extracts and evaluates: not a read
        run([*sweep, store, spec, "--json", "--workers", "2"], f"building {store}", deep_env)
        built[name] = round(time.perf_counter() - t0, 1)
    n_cells = depth * 3 * len(transforms)
    layer = f"b{depth:02d}"
    py = [sys.executable, "-c"]
    read = {"store": deep_store, "dataset": dataset, "network": DEEP, "layer": layer}
    steps = (
        ("quick", "a. cached sweep quick_sweep.yaml", [*sweep, quick_store, QUICK_SPEC],
         [*py, SWEEP_OLD.format(store=quick_store, spec=QUICK_SPEC)]),
        ("sweep480", f"b. cached sweep {n_cells} cells", [*sweep, deep_store, deep],
         [*py, SWEEP_OLD.format(store=deep_store, spec=deep)]),
        ("report480", f"c. report {n_cells} records",
         [*cli, "report", "--store", deep_store, "--spec", deep], None),
        ("read", f"d. read one cached entry ({'1,797' if not subset else f'subset {subset}'} x 16)",
         [*py, READ_NEW.format(**read)], [*py, READ_OLD.format(**read)]),
    )  # fmt: skip
    steps = tuple(step for step in steps if step[0] != "quick" or "quick" in stores)
    rows = []
    for key, label, new, old in steps:
        row = {"figure": label, "limit_s": LIMIT_S[key], **timed(new, label, args.repeat, deep_env)}
        if old is not None:
            row["old"] = timed(old, f"{label} (old path)", args.repeat, deep_env)
        else:
            row["old"] = {"best": ISSUE_S[key], "median": ISSUE_S[key], "issue": True}
        rows.append(row)
    if args.json:
        print(json.dumps({"stores": str(where), "build_s": built, "rows": rows}, indent=1))
        return
    made = ", ".join(f"{name} in {seconds} s" for name, seconds in built.items())
    print(f"stores in {where} (built: {made}); best / median of {args.repeat} fresh processes")
    print(f"{'figure':<36} {'best':>6} {'median':>6} {'limit':>6}  {'old best':>8} {'median':>6}")
    for r in rows:
        old = r["old"]
        measured = float(r["median"]) - float(r.get("read_s", 0.0))  # (d): "0.5 s plus the read"
        verdict = "meets" if measured <= float(r["limit_s"]) else "OVER"
        tail = " (issue 22's figure; no old path left)" if old.get("issue") else ""
        print(f"{r['figure']:<36} {r['best']:>6.2f} {r['median']:>6.2f} {r['limit_s']:>6.2f}  "
              f"{old['best']:>8.2f} {old['median']:>6.2f}  {verdict}{tail}")  # fmt: skip
        if "read_s" in r:
            print(f"  the read itself: {r['read_s']:.3f} s; {r['note']}; old: {old.get('note')}")
        print(f"  {r['figure'][3:]}: old / new = {old['median'] / max(r['median'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
