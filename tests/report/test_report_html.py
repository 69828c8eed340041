"""The HTML report is one self-contained page: checked in headless Chromium.

Chromium comes from Debian's ``chromium`` package (``apt-get install -y chromium``, done by
.ci/run, which also sets FEATSTORE_REQUIRE_CHROMIUM=1). Without it this test is skipped with
that reason, or fails where it is required (tests/browser_check.py).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from browser_check import chromium_or_skip
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.evaluate.results import build_record, make_result_key, save_result
from featstore.store import open_store

BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    return chromium_or_skip()


def _store(tmp_path: Path):
    store = open_store(str(tmp_path / "h.zarr"))
    for layer, acc, logme in (("blocks.3", 0.6, 1.0), ("blocks.6", 0.7, 2.0), ("head", 0.9, 3.0)):
        for task, metrics in (
            ("classify", {"accuracy": acc}),
            ("transferability", {"logme": logme}),
        ):
            feats = [f"feat-{layer}"]
            clf = {"name": "svm"} if task == "classify" else {"name": "estimators"}
            key = make_result_key(feats, "l2", task, clf, {}, 0)
            save_result(
                store,
                build_record(
                    key=key,
                    task=task,
                    dataset_id="toy-0",
                    dataset_name="toy<&>",
                    features=feats,
                    factors={"model": "net", "layer": layer, "pooling": "avg", "view": "plain"},
                    transform="l2",
                    classifier=clf,
                    protocol={},
                    seed=0,
                    metrics=metrics,
                ),
            )
    return store


def _run(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
    )


def test_html_report_renders_table_and_embedded_plots_in_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    store = _store(tmp_path)
    page = tmp_path / "report.html"
    res = CliRunner().invoke(
        cli,
        [
            "report",
            "--store",
            store.url,
            "--format",
            "html",
            "--out",
            str(page),
            "--baseline",
            "layer=blocks.3",
        ],
    )
    assert res.exit_code == 0, res.output
    text = page.read_text()
    assert "http://" not in text
    assert "https://" not in text
    assert "toy&lt;&amp;&gt;" in text  # names are escaped

    profile = tmp_path / "profile"
    dom = _run(
        [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        tmp_path,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert '<table id="results" class="sortable">' in html
    table = html.split('<table id="results" class="sortable">')[1].split("</table>")[0]
    assert len(re.findall(r"<tr[^>]*>", table)) == 4
    assert html.index("<h2>Findings</h2>") < html.index("<h2>Results</h2>")  # findings first
    assert 'class="num best"' in html
    assert "(+75.0%)" in html
    images = re.findall(r'<img id="(plot-[a-z0-9-]+)"[^>]*src="data:image/png;base64,', html)
    assert images == ["plot-effects-1", "plot-layers", "plot-heatmap"]
    assert "Kendall" in html
    assert "+1.000" in html

    shot = tmp_path / "shot.png"
    cap = _run(
        [
            browser,
            *BROWSER_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        tmp_path,
    )
    assert cap.returncode == 0, cap.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
