"""`featstore evaluate` choosing among several cached entries of one layer (issue 12, item 3).

Entries that differ only in stored pooling, compute dtype or weights are told apart by
``--pool LAYER=SPEC`` (extract's parser), ``--compute-dtype``, ``--weights`` and ``--key``;
when several match, the message lists each key with only the factors that differ.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from eval_helpers import add_dataset, add_features, blobs, interleave_splits
from featstore.cli.main import cli

from featstore.models.weights import file_sha256
from featstore.store import open_store


@pytest.fixture
def store_path(tmp_path):
    return str(tmp_path / "s.zarr")


@pytest.fixture
def data(store_path):
    store = open_store(store_path)
    X, y = blobs([12, 12, 12])
    ds = add_dataset(store, "blobs", y, interleave_splits(y))
    return store, ds, X


def run(store_path, *args):
    return CliRunner().invoke(cli, ["evaluate", "--store", store_path, *args])


def rows_of(output):
    """Table rows after the head and the header rule, split on whitespace."""
    return [line.split() for line in output.splitlines()[3:] if line.strip()]


def test_two_poolings_list_keys_with_the_differing_factor_and_the_options(store_path, data):
    store, ds, X = data
    avg = add_features(store, ds, X, layer="stage5", pooling="avg")
    mx = add_features(store, ds, 2 * X, layer="stage5", pooling="max")
    result = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "stage5")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    first, second = sorted([avg, mx], key=lambda e: e.key)
    pool = {avg.key: "avg", mx.key: "max"}
    assert result.output == (
        "Error: 2 cached entries match features with model=toynet, layer=stage5, view=plain "
        f"for dataset 'blobs': {first.key} (pooling={pool[first.key]}); {second.key} "
        f"(pooling={pool[second.key]}); choose one with --pool LAYER=SPEC or --key KEY\n"
    )

    chosen = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "stage5", "--pool", "max")
    assert chosen.exit_code == 0, chosen.output
    assert [r[0] for r in rows_of(chosen.output)] == ["stage5"]
    by_layer = run(
        store_path, "-d", "blobs", "-m", "toynet", "-l", "stage5", "--pool", "stage5=avg", "--json"
    )
    assert by_layer.exit_code == 0, by_layer.output
    (record,) = json.loads(by_layer.output)
    assert record["factors"]["pooling"] == "avg"
    picked = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "stage5", "--key", mx.key[:14])
    assert picked.exit_code == 0, picked.output
    assert "Traceback" not in picked.output


def test_pool_layer_spec_with_two_poolings_gives_a_row_each(store_path, data):
    store, ds, X = data
    add_features(store, ds, X, layer="stage5", pooling="avg")
    add_features(store, ds, X, layer="stage5", pooling="max")
    add_features(store, ds, X, layer="fc", pooling="avg")
    result = run(
        store_path, "-d", "blobs", "-m", "toynet", "-l", "stage5,fc", "--pool", "stage5=avg,max"
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].split()[:3] == ["setting", "pooling", "dim"]
    assert [r[:2] for r in rows_of(result.output)] == [
        ["stage5", "avg"],
        ["stage5", "max"],
        ["fc", "avg"],
    ]


def test_pool_naming_a_layer_not_evaluated_is_refused(store_path, data):
    store, ds, X = data
    add_features(store, ds, X, layer="fc")
    result = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "fc", "--pool", "fc7=avg")
    assert result.exit_code == 1
    assert result.output == (
        "Error: --pool names layer(s) fc7 that are not evaluated (-l fc); give LAYER=SPEC for "
        "one of those layers\n"
    )


def test_fp32_and_bf16_entries_are_told_apart_in_evaluate_and_ls(store_path, data):
    store, ds, X = data
    fp32 = add_features(store, ds, X, layer="fc", compute_dtype="float32")
    bf16 = add_features(store, ds, X + 0.01, layer="fc", compute_dtype="bfloat16")
    result = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "fc")
    assert result.exit_code == 1
    first, second = sorted([fp32, bf16], key=lambda e: e.key)
    dtype = {fp32.key: "float32", bf16.key: "bfloat16"}
    assert result.output == (
        "Error: 2 cached entries match features with model=toynet, layer=fc, view=plain for "
        f"dataset 'blobs': {first.key} (compute_dtype={dtype[first.key]}); {second.key} "
        f"(compute_dtype={dtype[second.key]}); choose one with --compute-dtype or --key KEY\n"
    )
    chosen = run(
        store_path, "-d", "blobs", "-m", "toynet", "-l", "fc", "--compute-dtype", "bf16", "--json"
    )
    assert chosen.exit_code == 0, chosen.output
    assert json.loads(chosen.output)[0]["factors"]["compute_dtype"] == "bfloat16"
    bad = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "fc", "--compute-dtype", "fp8")
    assert bad.exit_code == 1
    assert bad.output == (
        "Error: unknown compute dtype 'fp8'; use one of float32, float16-amp, bfloat16\n"
    )

    listing = CliRunner().invoke(cli, ["ls", "--store", store_path])
    assert listing.exit_code == 0, listing.output
    header = listing.output.splitlines()[0].split()
    assert header[6:8] == ["weights", "compute"]
    compute = {line.split()[0]: line.split()[7] for line in listing.output.splitlines()[2:]}
    assert compute == {fp32.key: "float32", bf16.key: "bfloat16"}
    as_json = json.loads(CliRunner().invoke(cli, ["ls", "--store", store_path, "--json"]).output)
    assert {e["compute_dtype"] for e in as_json["entries"]} == {"float32", "bfloat16"}


def test_weights_choose_random_or_a_files_state_dict(store_path, data, tmp_path):
    store, ds, X = data
    path = tmp_path / "ft.pt"
    torch.save({"w": torch.arange(6.0).reshape(2, 3)}, path)
    sha = file_sha256(path)
    rand = add_features(store, ds, X, layer="fc")
    tuned = add_features(store, ds, 3 * X, layer="fc", weights_source="file", weights_sha256=sha)
    result = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "fc")
    assert result.exit_code == 1
    first, second = sorted([rand, tuned], key=lambda e: e.key)
    shown = {rand.key: "random:000000000000", tuned.key: f"file:{sha[:12]}"}
    assert result.output == (
        "Error: 2 cached entries match features with model=toynet, layer=fc, view=plain for "
        f"dataset 'blobs': {first.key} (weights={shown[first.key]}); {second.key} "
        f"(weights={shown[second.key]}); choose one with --weights random|pretrained|FILE or "
        "--key KEY\n"
    )
    for weights, key in ((str(path), tuned.key), ("random", rand.key)):
        chosen = run(
            store_path, "-d", "blobs", "-m", "toynet", "-l", "fc", "--weights", weights, "--json"
        )
        assert chosen.exit_code == 0, chosen.output
        record = json.loads(chosen.output)[0]
        assert record["factors"]["model_source"] == ("file" if key == tuned.key else "random")
    other = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(2, 3)}, other)
    missing = run(store_path, "-d", "blobs", "-m", "toynet", "-l", "fc", "--weights", str(other))
    assert missing.exit_code == 1
    assert "Traceback" not in missing.output
    assert missing.output.startswith(
        f"Error: no cached features with model=toynet, layer=fc, view=plain, weights={other} "
        "for dataset 'blobs'"
    )
    pretrained = run(
        store_path, "-d", "blobs", "-m", "toynet", "-l", "fc", "--weights", "pretrained"
    )
    assert pretrained.exit_code == 1
    assert pretrained.output == (
        "Error: --weights pretrained needs a registered network, and 'toynet' is not one; give "
        "--weights random or a weights FILE, or choose the entry with --key\n"
    )


def test_readme_evaluate_example_after_a_sweep_with_two_poolings(store_path, data):
    """flowers_sweep.yaml stores stage5/stage7/last_conv with avg and max; penultimate came
    from `featstore extract` (a vector, stored unpooled). The README's evaluate line with --pool avg reads them."""
    store, ds, X = data
    noise = np.random.default_rng(1).normal(size=X.shape)
    for layer in ("stage5", "stage7", "last_conv"):
        add_features(store, ds, X, model="efficientnet_lite0", layer=layer, pooling="avg")
        add_features(store, ds, noise, model="efficientnet_lite0", layer=layer, pooling="max")
    # a vector layer is stored unpooled ("none") whatever --pool extract was given
    add_features(store, ds, X, model="efficientnet_lite0", layer="penultimate", pooling="none")
    args = ["-d", "blobs", "-m", "efficientnet_lite0", "-l", "stage5,last_conv,penultimate"]
    result = run(store_path, *args, "--task", "classify", "--pool", "avg")
    assert result.exit_code == 0, result.output
    rows = rows_of(result.output)
    assert [r[:2] for r in rows] == [
        ["stage5", "avg"],
        ["last_conv", "avg"],
        ["penultimate", "none"],
    ]
    assert all(r[3] == "1.0000" for r in rows)  # the separable (avg) entries were read
    ambiguous = run(store_path, *args, "--task", "classify")
    assert ambiguous.exit_code == 1
    assert "choose one with --pool LAYER=SPEC or --key KEY" in ambiguous.output
