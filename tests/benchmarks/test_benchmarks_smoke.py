"""Every benchmark runs: each script in benchmarks/ at its ``--smoke`` size, in a subprocess.

A benchmark that no longer runs against the library (an API or store format change) fails
here instead of on the day someone wants its figures. Each run must exit 0 and print its
ratio line(s); the values of a smoke run are not checked (tiny data measures nothing).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

# script -> the ratio lines it must print (regular expressions, each matched per line)
RATIO_LINES: dict[str, tuple[str, ...]] = {
    "evaluate.py": (
        r"^  svm +torch .* speed-up +[\d.]+x",
        r"^  logreg +torch .* speed-up +[\d.]+x",
        r"index/numpy = [\d.]+",
    ),
    "extract.py": (
        r"^\(a\) pipeline efficiency = [\d.]+",
        r"^\(b\) 2 layers in one pass / one layer = [\d.]+",
        r"^\(c\) 2 separate passes / one pass = [\d.]+",
    ),
    "image_check.py": (r"^hash check / loader work = [\d.]+%",),
    "listing.py": (
        r"^  s3 ls: requests = \d+, seconds = [\d.]+",
        r"^  s3 sweep plan \(cached\): requests = \d+, seconds = [\d.]+",
        r"^  s3 report: requests = \d+, seconds = [\d.]+",
    ),
    "memory.py": (
        r"^  pool=avg,l2 .* = +[\d.]+x final",
        r"^  whole-read .* = +[\d.]+x final",
    ),
    "readpath.py": (
        r"^  cached sweep .*: old / new = [\d.]+",
        r"^  read one cached entry .*: old / new = [\d.]+",
    ),
    "report_page.py": (r"^median load: \d+ ms",),
    "similarity.py": (r"^Gram form / feature form wall time at N=300 = [\d.]+",),
    "verify.py": (r"verified-read ratio \(unverified / verified\) = [\d.]+",),
}


def scripts() -> list[str]:
    return sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def test_every_benchmark_has_its_ratio_lines_listed() -> None:
    assert scripts() == sorted(RATIO_LINES)


@pytest.mark.parametrize("script", scripts())
def test_benchmark_runs_at_smoke_size(script: str, tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "FEATSTORE_EVAL_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stdout}\n{done.stderr}"
    lines = done.stdout.splitlines()
    for pattern in RATIO_LINES[script]:
        assert any(re.search(pattern, line) for line in lines), (
            f"{script} --smoke printed no line matching {pattern!r}:\n{done.stdout}"
        )
