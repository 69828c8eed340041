"""The HTML report in headless Chromium: sorting, filtering, a 5,000-record page, escaping.

Sorting and filtering run the page's own script; its state is read from the address's
fragment (``#sort=TABLE:COL:desc``, ``#filter=TABLE:words``), the same functions a click or
a keystroke calls, so ``--dump-dom`` shows the sorted / filtered table. Skipped with a
reason without Chromium, required in CI (tests/browser_check.py).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from browser_check import chromium_or_skip

from featstore.report import build_report
from featstore.report.html import to_html
from featstore.report.synthetic import synthetic_records

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

EVIL_DS = "flowers<script>alert(1)</script> \"q\" 'a' & b"
EVIL_NET = "net</td><img src=x onerror=alert(2)>"


def _dom(tmp_path: Path, page: Path, fragment: str = "") -> str:
    browser = chromium_or_skip()
    res = subprocess.run(
        [
            browser,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "data-load-ms=" in res.stdout  # the page's script ran to the end
    return res.stdout


def _page(tmp_path: Path, records: list[dict], plots: bool = False, **kw) -> Path:
    page = tmp_path / "report.html"
    page.write_text(to_html(build_report(records, **kw), plots=plots), encoding="utf-8")
    return page


def _table(dom: str, ident: str) -> str:
    return dom.split(f'<table id="{ident}" class="sortable">')[1].split("</table>")[0]


def _rows(table: str) -> list[str]:
    return re.findall(r"<tr[^>]*>.*?</tr>", table.split("<tbody>")[1], flags=re.S)


def _score(row: str, col: int) -> float:
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
    return float(re.sub(r"<[^>]+>|\(.*\)", "", cells[col]).strip())


def test_sorting_orders_the_rows_by_a_column(tmp_path: Path) -> None:
    page = _page(tmp_path, synthetic_records(datasets=("flowers",)))
    col = 7  # setting + 6 factors, then the first task column
    dom = _dom(tmp_path, page, f"#sort=results:{col}:desc")
    table = _table(dom, "results")
    scores = [_score(r, col) for r in _rows(table)]
    assert len(scores) == 3 * 4 * 2 * 2
    assert scores == sorted(scores, reverse=True)
    assert scores != sorted(scores)
    assert 'aria-sort="descending"' in table
    dom = _dom(tmp_path, page, "#sort=results:1:asc")  # text column (network), ascending
    nets = [re.findall(r"<td>([^<]*)</td>", r)[0] for r in _rows(_table(dom, "results"))]
    assert nets == sorted(nets)


def test_filtering_hides_the_rows_without_every_word(tmp_path: Path) -> None:
    page = _page(tmp_path, synthetic_records(datasets=("flowers",)))
    dom = _dom(tmp_path, page, "#filter=results:lite1%20stage7")
    rows = _rows(_table(dom, "results"))
    shown = [r for r in rows if 'style="display: none;"' not in r]
    assert len(rows) == 48
    assert len(shown) == 4
    assert all("efficientnet_lite1" in r and "stage7" in r for r in shown)
    assert "4 of 48 rows" in dom
    assert re.search(r'<input class="filter"[^>]*data-table="results"', dom)


def test_user_given_names_stay_text(tmp_path: Path) -> None:
    records = synthetic_records(datasets=(EVIL_DS,), networks=(EVIL_NET, "efficientnet_lite0"))
    for r in records:
        r["factors"]["layer"] = r["factors"]["layer"] + "&amp;'\""
    page = _page(tmp_path, records, plots=True)
    text = page.read_text(encoding="utf-8")
    assert "<script>alert" not in text
    assert "<img src=x" not in text
    assert (
        "flowers&lt;script&gt;alert(1)&lt;/script&gt; &quot;q&quot; &#x27;a&#x27; &amp; b" in text
    )
    assert "stage7&amp;amp;&#x27;&quot;" in text
    dom = _dom(tmp_path, page, "#filter=results:onerror")
    assert dom.count("<script>") == 1  # the page's own script only
    assert "<img src=" not in dom.replace('<img id="plot-', "")  # only the report's plots
    assert "alert(1)" in dom  # shown as text
    shown = [r for r in _rows(_table(dom, "results")) if "display: none" not in r]
    assert len(shown) == 16
    assert all("onerror=alert(2)" in r for r in shown)


def test_a_5000_record_page_renders(tmp_path: Path) -> None:
    records = synthetic_records(
        networks=[f"net{i}" for i in range(5)],
        layers=[f"l{i}" for i in range(25)],
        poolings=("avg", "max", "gem:3", "none"),
        transforms=("l2", "none", "pca=32,l2", "pca=64,l2", "pca=128,l2"),
    )
    assert len(records) == 5000
    page = _page(tmp_path, records, baseline={"layer": "l24"})
    dom = _dom(tmp_path, page, "#sort=results:7:desc")
    assert len(_rows(_table(dom, "results"))) == 2500
    assert dom.index("<h2>Findings</h2>") < dom.index('<table id="results"')
    assert '<details id="results-details">' in dom  # long: starts collapsed
    load_ms = int(re.search(r'data-load-ms="(\d+)"', dom).group(1))
    assert load_ms > 0  # timed by benchmarks/report_page.py, not asserted here
