"""A teammate's cache read where it was not written (issue 22).

The store is written with ``--compute-dtype bfloat16`` and ``--weights FILE``; the file is
then removed. ``featstore sweep`` over those settings reruns with no forward pass and the
numbers of ``featstore evaluate``; evaluate, the sweep and the Python read pick one entry
key; and in a fresh process where CUDA looks present, the cached sweep and the Python read
import no torch and find the same key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
import torchvision
from click.testing import CliRunner
from featstore.cli.main import cli

import featstore
from featstore.store import open_store
from featstore.sweep.plan import make_plan
from featstore.sweep.spec import load_spec

FAKE_TORCH = '''"""Stands in for torch: CUDA looks present; importing it at all is what the test catches."""
class cuda:
    @staticmethod
    def is_available():
        return True
    @staticmethod
    def device_count():
        return 1
__version__ = "0.0-fake"
'''

CHILD = """
import io, json, sys, contextlib
sys.path.insert(0, {fake!r})
import featstore
entry = featstore.lookup({store!r}, "tiny", "squeezenet1_1", "fire7", weights={weights!r})
rows = entry.read().shape
from featstore.cli.main import cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    cli.main(["sweep", {spec!r}, "--store", {store!r}, "--json"], standalone_mode=False)
summary = json.loads(out.getvalue())
heavy = sorted(m for m in ("torchvision", "sklearn", "scipy", "pandas") if m in sys.modules)
print(json.dumps({{"torch": "torch" in sys.modules, "heavy": heavy, "key": entry.key, "rows": list(rows),
                  "forward_batches": summary["forward_batches"], "results": summary["results"]}}))
"""


def test_a_teammates_bf16_file_weights_cache_reruns_here_without_network(
    image_folder: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "team" / "sq.pth"
    weights.parent.mkdir()
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), weights)
    store = str(tmp_path / "s.zarr")
    runner = CliRunner()
    res = runner.invoke(cli, ["datasets", "add", "tiny", str(image_folder), "--store", store])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        cli,
        ["extract", "-d", "tiny", "-m", "squeezenet1_1", "-l", "fire7", "--weights",
         str(weights), "--compute-dtype", "bfloat16", "--resize", "72", "--crop", "64",
         "--batch-size", "8", "--store", store],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    os.remove(weights)  # the teammate's file is not on this machine

    spec = tmp_path / "study.yaml"
    spec.write_text(
        "name: team\ndatasets: [{name: tiny, tasks: [classify]}]\n"
        f"networks: [{{name: squeezenet1_1, weights: {weights}, layers: [fire7]}}]\n"
        "pooling: [avg]\nviews: [plain]\ntransforms: [l2]\nbaseline: {layer: fire7}\n"
    )
    res = runner.invoke(cli, ["sweep", str(spec), "--store", store, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["forward_batches"] == 0
    assert summary["extractions"] == []
    assert summary["failed"] == []

    res = runner.invoke(
        cli,
        ["evaluate", "-d", "tiny", "-m", "squeezenet1_1", "-l", "fire7", "--pool", "avg",
         "--weights", str(weights), "--store", store, "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (record,) = json.loads(res.output)
    assert record["metrics"] == summary["results"][0]["metrics"]
    assert record["factors"]["compute_dtype"] == "bfloat16"

    s = open_store(store, mode="r")
    (key,) = s.entry_keys()
    assert record["features"] == [key]
    plan = make_plan(s, load_spec(spec))
    assert plan.entry_key("tiny", "squeezenet1_1", "fire7", "avg", "plain") == key
    assert featstore.lookup(s, "tiny", "squeezenet1_1", "fire7", weights=str(weights)).key == key

    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(FAKE_TORCH)
    code = CHILD.format(fake=str(fake), store=store, weights=str(weights), spec=str(spec))
    env = {k: v for k, v in os.environ.items() if k != "FEATSTORE_STORE"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["torch"] is False
    assert child["heavy"] == []  # a cached read scores nothing: no scikit-learn, scipy, pandas
    assert child["key"] == key
    assert child["rows"][0] == 18
    assert child["forward_batches"] == 0
    assert [r["metrics"] for r in child["results"]] == [r["metrics"] for r in summary["results"]]
