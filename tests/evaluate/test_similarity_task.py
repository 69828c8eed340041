"""`featstore evaluate --task similarity` on tiny cached entries: matrix, records, lookups, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from eval_helpers import add_dataset, add_features, blobs, interleave_splits
from featstore.cli.main import cli

from featstore.errors import EvaluationError, TransformError
from featstore.evaluate.results import find_results
from featstore.evaluate.similarity.task import evaluate_similarity, plan_similarity
from featstore.similarity import linear_cka, rbf_cka, rsa
from featstore.store import open_store


@pytest.fixture
def store_path(tmp_path):
    return str(tmp_path / "sim.zarr")


@pytest.fixture
def arrays():
    X, y = blobs([12, 12, 12], dim=8)
    rng = np.random.default_rng(7)
    Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    return {
        "y": y,
        "l1": X,
        "l2": (X @ Q).astype(np.float32),  # a rotation of l1: CKA 1
        "l3": rng.normal(size=X.shape).astype(np.float32),  # unrelated
        "grid": rng.normal(size=(len(X), 4, 2, 2)).astype(np.float32),  # a stored max grid
    }


@pytest.fixture
def cached(store_path, arrays):
    store = open_store(store_path)
    ds = add_dataset(store, "blobs", arrays["y"], interleave_splits(arrays["y"]))
    for layer in ("l1", "l2", "l3"):
        add_features(store, ds, arrays[layer], layer=layer)
    add_features(store, ds, 3.0 * arrays["l1"], model="othernet", layer="l1")
    add_features(store, ds, arrays["l3"] + arrays["l1"], model="othernet", layer="l2")
    add_features(store, ds, arrays["grid"], layer="conv", pooling="grid:max:2")
    add_features(store, ds, arrays["grid"] ** 2, layer="conv2", pooling="grid:max:2")
    return store


def run(store_path, *args):
    return CliRunner().invoke(
        cli, ["evaluate", "--store", store_path, "--task", "similarity", *args]
    )


def _matrix(output: str) -> dict[str, list[str]]:
    lines = output.splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines[3:] if not line[0].isdigit()}


def test_cli_prints_the_cka_matrix_and_stores_one_record_per_pair(store_path, cached, arrays):
    result = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "l1,l2,l3")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "blobs: task similarity, cka (kernel=linear, debiased=False), transform none, rows all "
        f"(n=36); store {store_path}"
    )
    assert lines[1].split() == ["l1", "l2", "l3"]
    rows = _matrix(result.output)
    assert list(rows) == ["l1", "l2", "l3"]
    assert rows["l1"][:2] == ["1.000", "1.000"]  # l2 is l1 rotated
    want = linear_cka(arrays["l1"], arrays["l3"])
    assert float(rows["l1"][2]) == pytest.approx(want, abs=5e-4)
    assert float(rows["l3"][0]) < 0.6
    assert lines[-1].startswith("3 pair(s) computed, 0 read from the store")
    records = find_results(cached, task="similarity")
    assert len(records) == 3
    assert all(set(r["metrics"]) == {"cka"} for r in records)
    assert all(r["protocol"]["n_rows"] == 36 for r in records)

    again = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "l3,l2,l1")  # any order: lookups
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[-1].startswith("0 pair(s) computed, 3 read from the store")
    assert _matrix(again.output)["l3"][2] == rows["l1"][2]

    more = run(store_path, "-d", "blobs", "-m", "toynet,othernet", "-l", "l1,l2", "--json")
    assert more.exit_code == 0, more.output
    data = json.loads(more.output)
    assert data["labels"] == ["toynet:l1", "toynet:l2", "othernet:l1", "othernet:l2"]
    assert data["computed"] == 5
    assert data["cached"] == 1
    mat = np.array(data["matrix"], dtype=float)
    assert np.allclose(mat, mat.T)
    assert np.allclose(np.diag(mat), 1.0)
    assert mat[0, 2] == pytest.approx(1.0, abs=1e-5)  # isotropic scaling across networks
    rec = data["records"][1]  # toynet:l1 vs othernet:l1
    assert rec["task"] == "similarity"
    assert rec["key"] in cached.result_keys()
    assert rec["factors"]["model"]
    assert len(rec["features"]) == 2


def test_split_measure_and_transform_chain_change_the_key(store_path, cached, arrays):
    test_rows = cached.get_dataset("blobs").split_indices("test")
    res = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "l1,l3", "--split", "test", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["n_rows"] == len(test_rows) == 9
    want = linear_cka(arrays["l1"][test_rows], arrays["l3"][test_rows])
    assert data["matrix"][0][1] == pytest.approx(want, abs=1e-5)

    rsa_res = run(
        store_path, "-d", "blobs", "-m", "toynet", "-l", "l1,l3", "--measure", "rsa", "--json"
    )
    value = json.loads(rsa_res.output)["matrix"][0][1]
    assert value == pytest.approx(rsa(arrays["l1"], arrays["l3"]), abs=1e-5)

    assert run(store_path, "-d", "blobs", "-m", "toynet", "-l", "l1,l3").exit_code == 0
    before = {r["key"] for r in find_results(cached, task="similarity")}
    assert len(before) == 3  # test rows, rsa, all rows: three keys for one pair
    chain = run(
        store_path,
        "-d",
        "blobs",
        "-m",
        "toynet",
        "-l",
        "l1,l3",
        "--transform",
        "pca=4,l2",
        "--json",
    )
    assert chain.exit_code == 0, chain.output
    cdata = json.loads(chain.output)
    assert cdata["transform"] == "pca=4,l2"
    assert cdata["records"][0]["sizes"]["dims"] == [4, 4]
    assert cdata["records"][0]["key"] not in before
    assert cdata["computed"] == 1


def test_stored_grids_are_pooled_by_the_transform(cached, arrays):
    grids = [{"model": "toynet", "layer": layer} for layer in ("conv", "conv2")]
    res = evaluate_similarity(cached, "blobs", grids, transform="pool=max", measure="rbf_cka")
    g = arrays["grid"]
    want = rbf_cka(g.max(axis=(2, 3)), (g**2).max(axis=(2, 3)))
    assert res["matrix"][0][1] == pytest.approx(want, abs=1e-5)
    assert res["records"][0]["classifier"] == {
        "name": "rbf_cka",
        "kernel": "rbf",
        "sigma": 0.8,
        "debiased": False,
    }
    # a map without a pool step, or a pool step on vectors, is refused before reading anything
    with pytest.raises(TransformError, match="spatial map"):
        plan_similarity(cached, "blobs", grids)
    with pytest.raises(TransformError, match="needs a spatial map"):
        plan_similarity(
            cached, "blobs", [grids[0], {"model": "toynet", "layer": "l1"}], transform="pool=max"
        )
    assert len(find_results(cached, task="similarity")) == 1  # the refused plans wrote nothing


def test_bad_requests_exit_with_a_one_line_fix(store_path, cached):
    one = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "l1")
    assert one.exit_code != 0
    assert "at least two" in one.output
    missing = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "l1,nope")
    assert missing.exit_code != 0
    assert "cached layers of this model" in missing.output
    split = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "l1,l2", "--split", "val")
    assert split.exit_code != 0
    assert "no images in split 'val'" in split.output
    assert find_results(cached, task="similarity") == []  # nothing written by a refused request
    with pytest.raises(EvaluationError, match="same cached entries"):
        plan_similarity(cached, "blobs", [{"model": "toynet", "layer": "l1"}] * 2)
