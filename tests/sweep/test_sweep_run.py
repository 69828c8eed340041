"""Running sweeps: one extraction per network x dataset, parallel cells, resume, cached reruns.

A fake extractor writes deterministic features (class centre + noise that shrinks with
depth) so these tests need no network; the real extraction has its own tests.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.datasets import build_dataset
from featstore.keys import make_key
from featstore.store import open_store
from featstore.sweep import plan as plan_mod
from featstore.sweep import run as run_mod
from featstore.sweep.plan import factor_planner, make_plan
from featstore.sweep.run import run_sweep
from featstore.sweep.spec import load_spec, parse_spec

BATCH = 8
NOISE = {"l1": 3.0, "l2": 1.0, "l3": 0.3}


def _dataset():
    labels, splits, ids = [], [], []
    for c in range(3):
        for i in range(15):
            labels.append(c)
            splits.append("train" if i < 10 else "test")
            ids.append(f"c{c}_{i}")
    n = len(ids)
    return build_dataset(
        "toy",
        ids,
        [f"builtin:digits/{i}" for i in range(n)],
        np.asarray(labels, np.int32),
        splits,
        ["a", "b", "c"],
        [f"h{i}" for i in range(n)],
        source={"kind": "test"},
    )


class FakeExtractor:
    """Writes every missing entry of a group; one 'pass' = ceil(n / BATCH) forward batches."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[tuple[str, str, str]]]] = []

    def __call__(self, store, ds, group, options, progress):
        self.calls.append(
            (group.dataset, group.network, [(e.layer, e.pooling, e.view) for e in group.missing])
        )
        y = np.asarray(ds.labels)
        for e in group.missing:
            rng = np.random.default_rng(zlib.crc32(f"{group.network}/{e.layer}/{e.view}".encode()))
            centres = np.random.default_rng(7).normal(size=(3, 8)) * 2
            x = centres[y] + NOISE[e.layer] * rng.normal(size=(ds.n, 8))
            if e.pooling == "max":
                x = x + 0.5
            attrs = {
                "kind": "features",
                "dataset_id": ds.id,
                "dataset_name": ds.name,
                "dataset_fingerprint": ds.fingerprint,
                "model": {"name": group.network, "source": "random", "weights_sha256": "0" * 64},
                "model_name": group.network,
                "layer": e.layer,
                "preprocess": {},
                "view": e.view,
                "pooling": e.pooling,
                "dtype": "float32",
                "compute_dtype": "float32",
            }
            key = make_key(
                "feat",
                {k: v for k, v in attrs.items() if k not in ("kind", "dataset_name", "model_name")},
            )
            entry = store.create_entry(key, attrs, x.shape, dtype="float32", chunk_rows=16)
            for i in entry.missing_chunks():
                a, b = entry.chunk_bounds(i)
                entry.write_chunk(i, x[a:b].astype(np.float32))
        return {"forward_batches": math.ceil(ds.n / BATCH)}


def _spec(**over):
    raw = {
        "name": "toy-sweep",
        "datasets": [{"name": "toy", "tasks": ["classify", "transferability"]}],
        "networks": [
            {"name": "netA", "layers": ["l1", "l2", "l3"]},
            {"name": "netB", "layers": ["l3"]},
        ],
        "pooling": ["avg", "max"],
        "transforms": ["l2", "pca=4,l2"],
        "classifiers": ["svm"],
        "estimators": ["logme", "h_score"],
        "baseline": {"network": "netA", "layer": "l1", "pooling": "avg", "transform": "l2"},
    }
    raw.update(over)
    return parse_spec(raw)


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(str(tmp_path / "sweep.zarr"))
    s.put_dataset(_dataset())
    return s


def _metrics(summary):
    return {
        (r["task"], json.dumps(r["setting"], sort_keys=True)): r["metrics"]
        for r in summary["results"]
    }


def test_plan_groups_one_pass_per_network_and_counts_cells(store) -> None:
    plan = make_plan(store, _spec(), planner=factor_planner).to_json()
    # (3 + 1 layers) x 2 poolings x 2 transforms = 16 settings; classify + transferability
    assert plan["n_cells"] == 32
    assert plan["cells_with_results"] == 0
    assert plan["extraction_passes"] == 2
    assert plan["n_entries_to_extract"] == 8
    a, b = plan["groups"]
    assert (a["network"], a["layers"], a["poolings"], a["views"]) == (
        "netA",
        ["l1", "l2", "l3"],
        ["avg", "max"],
        ["plain"],
    )
    assert (b["network"], b["layers"]) == ("netB", ["l3"])
    assert a["est_seconds"] == pytest.approx(45 / 10.0)  # 45 images, 1 view, default 10 images/s


def test_run_then_rerun_is_all_lookups_with_the_same_numbers(store) -> None:
    fake = FakeExtractor()
    first = run_sweep(store, _spec(), extract_fn=fake, planner=factor_planner)
    assert first["failed"] == []
    assert [(d, n, len(m)) for d, n, m in fake.calls] == [("toy", "netA", 6), ("toy", "netB", 2)]
    assert first["forward_batches"] == 2 * math.ceil(45 / BATCH)
    assert first["evaluated"] == 32
    assert first["cached_results"] == 0
    by = _metrics(first)
    deep = by[
        (
            "classify",
            json.dumps(
                {
                    "classifier": "svm",
                    "layer": "l3",
                    "network": "netA",
                    "pooling": "avg",
                    "transform": "l2",
                    "view": "plain",
                },
                sort_keys=True,
            ),
        )
    ]
    shallow = by[
        (
            "classify",
            json.dumps(
                {
                    "classifier": "svm",
                    "layer": "l1",
                    "network": "netA",
                    "pooling": "avg",
                    "transform": "l2",
                    "view": "plain",
                },
                sort_keys=True,
            ),
        )
    ]
    assert deep["accuracy"] > shallow["accuracy"]

    fake2 = FakeExtractor()
    second = run_sweep(store, _spec(), extract_fn=fake2, planner=factor_planner)
    assert fake2.calls == []
    assert second["forward_batches"] == 0
    assert second["evaluated"] == 0
    assert second["cached_results"] == 32
    assert _metrics(second) == by


def test_interrupted_run_resumes_where_it_stopped(store) -> None:
    class Crash(FakeExtractor):
        def __call__(self, store, ds, group, options, progress):
            if group.network == "netB":
                raise KeyboardInterrupt  # killed during the second network's pass
            return super().__call__(store, ds, group, options, progress)

    with pytest.raises(KeyboardInterrupt):
        run_sweep(store, _spec(), extract_fn=Crash(), planner=factor_planner)
    # one chunk of a netA entry lost too (a write that never got its done marker)
    entry = next(
        store.get_entry(k) for k in store.entry_keys() if store.get_entry(k).attrs["layer"] == "l2"
    )
    entry.invalidate_chunk(1)
    plan = make_plan(store, _spec(), planner=factor_planner).to_json()
    assert plan["n_entries_cached"] == 5
    assert plan["n_entries_to_extract"] == 3
    # time left: netA resumes 16 rows (one chunk), netB runs all 45 images, at 10 images/s
    assert [g["est_seconds"] for g in plan["groups"]] == [1.6, 4.5]
    fake = FakeExtractor()
    summary = run_sweep(store, _spec(), extract_fn=fake, planner=factor_planner)
    assert [(n, sorted(m)) for _, n, m in fake.calls] == [
        ("netA", [("l2", entry.attrs["pooling"], "plain")]),
        ("netB", [("l3", "avg", "plain"), ("l3", "max", "plain")]),
    ]
    assert summary["failed"] == []
    assert summary["evaluated"] == 32


def test_parallel_workers_give_the_same_records_as_one_process(store, tmp_path: Path) -> None:
    spec = _spec(
        networks=[{"name": "netA", "layers": ["l1", "l3"]}],
        pooling=["avg"],
        baseline={"layer": "l1"},
    )
    par = run_sweep(store, spec, workers=2, extract_fn=FakeExtractor(), planner=factor_planner)
    assert par["workers"] == 2
    assert par["failed"] == []
    assert par["evaluated"] == 8
    solo_store = open_store(str(tmp_path / "solo.zarr"))
    solo_store.put_dataset(_dataset())
    solo = run_sweep(
        solo_store, spec, workers=1, extract_fn=FakeExtractor(), planner=factor_planner
    )
    assert _metrics(par) == _metrics(solo)
    assert sorted(store.result_keys()) == sorted(solo_store.result_keys())


def test_cli_dry_run_and_run(store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_path = tmp_path / "sweep.yaml"
    spec_path.write_text(
        "name: cli-sweep\ndatasets: [{name: toy, tasks: [classify, transferability]}]\n"
        "networks: [{name: netA, layers: [l1, l3]}]\npooling: [avg]\ntransforms: [l2]\n"
        "estimators: [logme]\nbaseline: {layer: l1}\n"
    )
    runner = CliRunner()
    monkeypatch.setattr(plan_mod, "extract_planner", factor_planner)  # netA is not in the registry
    res = runner.invoke(cli, ["sweep", str(spec_path), "--store", store.url, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "sweep cli-sweep: 4 cells (0 already have results)" in res.output
    assert "2 to extract in 1 pass(es)" in res.output
    assert "toy x netA: 45 images; layers l1, l3" in res.output
    monkeypatch.setattr(run_mod, "_call_extract", FakeExtractor())
    res = runner.invoke(cli, ["sweep", str(spec_path), "--store", store.url, "--json"])
    assert res.exit_code == 0, res.output
    first = json.loads(res.output)
    assert first["forward_batches"] == math.ceil(45 / BATCH)
    assert first["evaluated"] == 4
    res = runner.invoke(cli, ["sweep", str(spec_path), "--store", store.url])
    assert res.exit_code == 0, res.output
    assert "forward_batches=0" in res.output
    assert "0 evaluated, 4 cached" in res.output
    assert "| S1 (baseline) | netA | l1 | avg | plain | l2 | svm |" in res.output
    assert "Kendall's tau against the SVM ranking (2 settings): logme:" in res.output
    res = runner.invoke(cli, ["sweep", str(spec_path), "--store", store.url, "--dry-run", "--json"])
    plan = json.loads(res.output)
    assert plan["cells_with_results"] == 4
    assert plan["n_entries_to_extract"] == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndatasets: [toy]\nnetworks: [netA]\nbaseline: {layer: l1}\n")
    res = runner.invoke(cli, ["sweep", str(bad), "--store", store.url, "--dry-run"])
    assert res.exit_code == 1
    assert "Error: sweep spec: networks[0] (netA) has no layers" in res.output
    assert load_spec(spec_path).name == "cli-sweep"


def test_pca_larger_than_a_layer_is_refused_before_extraction(store) -> None:
    fake = FakeExtractor()
    run_sweep(
        store, _spec(transforms=["l2"]), extract_fn=fake, planner=factor_planner
    )  # 8-dim features
    with pytest.raises(
        ValueError,
        match=r"transforms\[1\] 'pca=16,l2' asks for 16 PCA dimensions but "
        r"layer 'l1' of netA gives 8 features per image",
    ):
        make_plan(store, _spec(transforms=["l2", "pca=16,l2"]), planner=factor_planner)


def test_a_parallel_worker_evaluates_with_its_share_of_the_cores() -> None:
    """Two workers on two cores: each worker's evaluations use 1 thread, not every free core."""
    import subprocess
    import sys

    code = (
        "from featstore.sweep.run import _init_worker\n"
        "_init_worker(1)\n"
        "from featstore.evaluate.threads import evaluation_threads\n"
        "import torch\n"
        "with evaluation_threads() as n:\n"
        "    print(n, torch.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_on_a_cuda_device_cells_share_it_from_one_process(
    store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--workers N with the solvers on CUDA: one process evaluates, and the summary says why."""
    import featstore.sweep.run as sweep_run

    monkeypatch.setattr(sweep_run, "_solvers_on_cuda", lambda: True)
    spec = _spec(networks=[{"name": "netA", "layers": ["l1", "l3"]}], pooling=["avg"])
    out = run_sweep(store, spec, workers=2, extract_fn=FakeExtractor(), planner=factor_planner)
    assert out["workers"] == 1
    assert out["failed"] == []
    assert any("CUDA" in n and "--workers 2" in n for n in out["notes"])
    from featstore.cli.sweep_cmd import render_summary

    assert "note: --workers 2" in render_summary(out)
