"""The report's similarity matrices, CKA heatmap and layer-wise transfer curve (headless Chromium).

Chromium comes from Debian's ``chromium`` package (``apt-get install -y chromium``); without it
the browser test is skipped with that reason, or fails where FEATSTORE_REQUIRE_CHROMIUM=1 (CI),
as in tests/report/test_report_html.py (tests/browser_check.py).
"""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from browser_check import chromium_or_skip
from click.testing import CliRunner
from eval_helpers import add_dataset, add_features, blobs, interleave_splits
from featstore.cli.main import cli
from PIL import Image

from featstore.evaluate.results import build_record, make_result_key, save_result
from featstore.evaluate.similarity.task import evaluate_similarity
from featstore.report import build_report, collect_records, to_markdown
from featstore.report.depth import depth_order
from featstore.report.plots import layer_curves
from featstore.similarity import linear_cka
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
# resnet18 is in the registry: its module table gives the depth (layer1 < layer4 < fc),
# which natural sorting of the names would get wrong (fc < layer1 < layer4)
LAYERS = ("fc", "layer4", "layer1")
ACCURACY = {"layer1": 0.55, "layer4": 0.8, "fc": 0.7}


def _chromium() -> str:
    return chromium_or_skip()


@pytest.fixture
def study(tmp_path):
    """resnet18 layers (given out of depth order) and a toynet layer, with CKA and accuracies."""
    store = open_store(str(tmp_path / "r.zarr"))
    X, y = blobs([10, 10, 10], dim=6)
    ds = add_dataset(store, "toy", y, interleave_splits(y))
    rng = np.random.default_rng(0)
    arrays = {
        "layer1": rng.normal(size=X.shape),
        "layer4": X + 0.5 * rng.normal(size=X.shape),
        "fc": X,
    }
    for layer in LAYERS:
        entry = add_features(store, ds, arrays[layer], model="resnet18", layer=layer)
        feats = [entry.key]
        key = make_result_key(feats, "l2", "classify", {"name": "svm"}, {}, 0)
        save_result(
            store,
            build_record(
                key=key,
                task="classify",
                dataset_id=ds.id,
                dataset_name=ds.name,
                features=feats,
                factors={"model": "resnet18", "layer": layer, "pooling": "avg", "view": "plain"},
                transform="l2",
                classifier={"name": "svm"},
                protocol={},
                seed=0,
                metrics={"accuracy": ACCURACY[layer]},
            ),
        )
    add_features(store, ds, 2 * X, model="toynet", layer="fc")
    settings = [{"model": "resnet18", "layer": la} for la in LAYERS]
    settings.append({"model": "toynet", "layer": "fc"})
    result = evaluate_similarity(store, "toy", settings)
    return store, arrays, result


def test_matrix_is_rebuilt_from_pair_records_in_depth_order(study):
    store, arrays, result = study
    assert depth_order("resnet18", list(LAYERS)) == ["layer1", "layer4", "fc"]
    rep = build_report(collect_records(store))
    assert [c.task for c in rep.columns] == ["classify"]  # similarity is no score column
    (m,) = rep.similarity
    assert m["labels"] == ["resnet18:layer1", "resnet18:layer4", "resnet18:fc", "toynet:fc"]
    mat = np.array(m["matrix"], dtype=float)
    assert np.allclose(mat, mat.T)
    assert np.allclose(np.diag(mat), 1.0)
    assert mat[1, 2] == pytest.approx(linear_cka(arrays["layer4"], arrays["fc"]), abs=1e-5)
    assert mat[2, 3] == pytest.approx(1.0, abs=1e-5)  # toynet:fc is resnet18:fc scaled
    # the evaluation's own matrix (asked order) agrees with the report's (depth order)
    asked = {lb: i for i, lb in enumerate(result["labels"])}
    assert mat[1, 2] == pytest.approx(
        result["matrix"][asked["resnet18:layer4"]][asked["resnet18:fc"]]
    )
    layers, lines = layer_curves(rep)["resnet18"]
    assert layers == ["layer1", "layer4", "fc"]
    assert lines == {"toy classify": {la: ACCURACY[la] for la in LAYERS}}  # fractions, as shown
    md = to_markdown(rep)
    assert "### Representational similarity: toy: linear CKA, transform none, rows all (n=30)" in md
    assert "| resnet18:layer1 | 1.000 |" in md


def _png_of(html: str, ident: str) -> Image.Image:
    found = re.search(rf'<img id="{ident}"[^>]*src="data:image/png;base64,([^"]+)"', html)
    assert found, f"no image {ident}"
    return Image.open(io.BytesIO(base64.b64decode(found.group(1)))).convert("RGB")


def test_html_report_shows_cka_heatmap_and_layer_curve_in_chromium(study, tmp_path: Path):
    browser = _chromium()
    store, _, _ = study
    page = tmp_path / "report.html"
    res = CliRunner().invoke(
        cli, ["report", "--store", store.url, "--format", "html", "--out", str(page)]
    )
    assert res.exit_code == 0, res.output
    profile = tmp_path / "profile"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=tmp_path,
            env={**os.environ, "HOME": str(tmp_path)},
        )

    dom = run("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    ids = re.findall(r'<img id="(plot-[a-z0-9-]+)"[^>]*src="data:image/png;base64,', html)
    assert ids == ["plot-effects-1", "plot-layers", "plot-heatmap", "plot-similarity-1"]
    table = html.split('<table class="similarity" id="similarity-1">')[1].split("</table>")[0]
    assert len(re.findall(r"<tr>", table)) == 5  # header + 4 representations
    assert re.findall(r"<th>([^<]+)</th>", table)[:4] == [
        "resnet18:layer1",
        "resnet18:layer4",
        "resnet18:fc",
        "toynet:fc",
    ]
    for ident in ("plot-layers", "plot-similarity-1"):
        img = _png_of(html, ident)
        pixels = np.asarray(img, dtype=float)
        assert img.width > 300
        assert img.height > 250
        assert pixels.std() > 20

    shot = tmp_path / "shot.png"
    cap = run(f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri())
    assert cap.returncode == 0, cap.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
