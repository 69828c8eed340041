"""How fast a large HTML report loads in headless Chromium (printed, not a test).

Builds the page of a synthetic study (5,000 result records by default: 2 datasets x 5
networks x 25 layers x 4 poolings x 5 transforms, with plots), opens it in headless
Chromium several times and prints the page's own ``data-load-ms`` (navigation start to a
laid-out page after its script ran) and the wall time of each Chromium run.

Usage:
  python benchmarks/report_page.py [--networks 5 --layers 25 --runs 3 --no-plots]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from featstore.report import build_report
from featstore.report.html import to_html
from featstore.report.synthetic import synthetic_records

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _load(browser: str, page: Path, profile: Path, tries: int = 3) -> str:
    """The page's DOM after load, from headless Chromium (a start that fails under a loaded
    machine is tried again; the last failure is raised with Chromium's own words)."""
    for attempt in range(tries):
        done = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}-{attempt}", "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "TMPDIR": str(profile.parent)},  # its socket path must be short
        )
        if done.returncode == 0 and "data-load-ms" in done.stdout:
            return done.stdout
    raise SystemExit(f"chromium failed (exit {done.returncode}):\n{done.stderr[-1500:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, default=5)
    ap.add_argument("--layers", type=int, default=25)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="2 networks x 3 layers, one load")
    args = ap.parse_args()
    if args.smoke:
        args.networks, args.layers, args.runs = 2, 3, 1
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is not on PATH (apt-get install -y chromium)")
    records = synthetic_records(
        networks=[f"net{i}" for i in range(args.networks)],
        layers=[f"l{i}" for i in range(args.layers)],
        poolings=("avg", "max", "gem:3", "none"),
        transforms=("l2", "none", "pca=32,l2", "pca=64,l2", "pca=128,l2"),
    )
    t0 = time.perf_counter()
    page_text = to_html(build_report(records, baseline={"layer": "l0"}), plots=not args.no_plots)
    build_s = time.perf_counter() - t0
    # a short folder: Chromium refuses a profile whose socket path is over ~100 characters
    with tempfile.TemporaryDirectory(dir="/tmp" if os.path.isdir("/tmp") else None) as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(page_text, encoding="utf-8")
        print(
            f"{len(records)} records, page {len(page_text) / 1e6:.2f} MB, built in {build_s:.1f} s"
        )
        loads = []
        for run in range(args.runs):
            t0 = time.perf_counter()
            dom = _load(browser, page, Path(tmp) / f"profile-{run}")
            wall = time.perf_counter() - t0
            found = re.search(r'data-load-ms="(\d+)"', dom)
            ms = int(found.group(1)) if found else -1
            loads.append(ms)
            print(
                f"run {run + 1}: page loaded and laid out in {ms} ms (chromium wall {wall:.1f} s)"
            )
        print(f"median load: {statistics.median(loads):.0f} ms (target: under 2000 ms)")


if __name__ == "__main__":
    main()
