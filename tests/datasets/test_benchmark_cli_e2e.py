"""Benchmarks end to end through the CLI: register a replica, show it, extract with a tiny
random network, evaluate (VOC07: multi-label SVM scored by 11-point mAP), and a sweep
spec naming a scheme source.
"""

from __future__ import annotations

import json
from pathlib import Path

import benchmark_replicas as rep
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore.datasets.benchmarks import VOC_CLASSES
from featstore.store import open_store

EXTRACT = ["-m", "resnet18", "-l", "penultimate", "--weights", "random", "--resize", "40"]
EXTRACT += ["--crop", "32", "--batch-size", "16"]


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_voc2007_register_extract_multilabel_svm_map(tmp_path: Path) -> None:
    voc = rep.voc2007(tmp_path, n_trainval=16, n_test=8)
    store = str(tmp_path / "s.zarr")
    added = invoke("datasets", "add", "voc07", f"voc2007:{voc}", "--store", store)
    lines = added.output.splitlines()
    assert "dataset voc07: 24 images, 20 classes (trainval 16, test 8)" in lines
    assert "classes: aeroplane, bicycle, bird, boat, bottle, bus, car, cat, chair, cow, " \
        "diningtable, dog ... (8 more)" in lines  # fmt: skip
    shown = invoke("datasets", "show", "voc07", "--store", store).output.splitlines()
    assert f"source: voc2007:{voc}" in shown
    assert (
        "protocol: VOC2007 classification: trainval / test, 20 classes, difficult objects ignored"
        in shown
    )

    extracted = invoke("extract", "--store", store, "-d", "voc07", *EXTRACT)
    assert "done: 1 entries complete" in extracted.output
    out = invoke("evaluate", "--store", store, "-d", "voc07", "-m", "resnet18", "-l", "penultimate",
                 "--task", "classify", "--json").output  # fmt: skip
    (record,) = json.loads(out)
    assert record["sizes"] == {"n_train": 16, "n_val": 0, "n_test": 8, "dim": 512}
    ap07 = record["per_class"]["ap_voc07"]
    assert list(ap07) == list(VOC_CLASSES)
    # bottle's only test occurrence (image 000004) is difficult: it has no positive test image
    assert ap07["bottle"] is None
    assert record["chosen"]["skipped_classes"]["bottle"] == "no positive test sample"
    scored = [v for v in ap07.values() if v is not None]
    assert len(scored) >= 10
    assert all(0.0 <= v <= 1.0 for v in scored)
    assert abs(record["metrics"]["map_voc07"] - sum(scored) / len(scored)) < 1e-9
    # 11-point AP takes values k/11 * precision: each class is a real ranking, not a constant
    assert len({round(v, 6) for v in scored}) > 1


def test_cifar10_register_and_extract_from_pickle_batches(tmp_path: Path) -> None:
    folder = rep.cifar10(tmp_path)
    store = str(tmp_path / "s.zarr")
    added = invoke("datasets", "add", "c10", f"cifar10:{folder}", "--store", store).output
    assert "dataset c10: 23 images, 3 classes (train 20, test 3)" in added
    assert "classes: airplane, automobile, bird" in added
    extracted = invoke("extract", "--store", store, "-d", "c10", *EXTRACT)
    assert "plan: 1 entries for dataset c10 (23 images), 0 cached" in extracted.output
    s = open_store(store, mode="r")
    (key,) = s.entry_keys()
    features = s.get_entry(key).read()
    assert features.shape[0] == 23
    # every row came from its own array image (no row repeats another, none is empty)
    assert len({row.tobytes() for row in features}) == 23
    assert float(abs(features).sum()) > 0


def test_sweep_spec_names_a_scheme_source_relative_to_the_spec(tmp_path: Path) -> None:
    rep.sun397(tmp_path / "data" / "sun")
    spec = tmp_path / "sun.yaml"
    spec.write_text(
        "name: sun\ndatasets: [{name: sun2, source: 'sun397:data/sun?fold=2', tasks: [classify]}]\n"
        "networks: [{name: resnet18, weights: random, layers: [penultimate]}]\n"
        "baseline: {layer: penultimate}\n"
    )
    out = invoke("sweep", str(spec), "--store", str(tmp_path / "s.zarr"), "--dry-run", "--json")
    plan = json.loads(out.output)
    note = f"dataset 'sun2' will be registered from sun397:{tmp_path / 'data' / 'sun'}?fold=2 (12 images)"
    assert note in plan["notes"]
