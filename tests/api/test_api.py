"""featstore from Python: every line of the public API, through the public names only, on
Zarr (disk and memory) and HDF5; reads without torch; X equals what evaluation scores."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from featstore.cli.main import cli

import featstore

NET = "resnet18"  # random weights (no download), tiny images: a forward pass in well under a second
SMALL = {"resize": 40, "crop": 32}
WEIGHTS = "random"


@pytest.fixture(scope="module", params=["zarr", "memory", "hdf5"])
def made(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with 60 digits and two layers extracted, made through the public API."""
    root = tmp_path_factory.mktemp(f"api-{request.param}")
    url = {
        "zarr": str(root / "s.zarr"),
        "memory": f"memory://featstore-api-{root.name}/s.zarr",
        "hdf5": str(root / "s.h5"),
    }[request.param]
    with featstore.open(url, create=True) as store:
        store.add_dataset("digits", "builtin:digits", subset=60)
        summary = featstore.extract_features(
            store,
            "digits",
            [NET],
            ["layer2", "layer3"],
            weights=WEIGHTS,
            preprocess=SMALL,
            batch_size=64,
        )
        assert summary["entries"] == 2
        assert summary["forward_batches"] >= 1
    return url


def test_public_names_are_listed_and_resolve() -> None:
    expected = {
        "Block",
        "DatasetInfo",
        "EntryRow",
        "FeatstoreError",
        "FeatureStore",
        "Features",
        "add_dataset",
        "evaluate_features",
        "extract_features",
        "lookup",
        "open",
        "open_store",
        "run_sweep",
    }
    missing = expected - set(featstore.__all__)
    assert not missing, f"public names disappeared: {sorted(missing)}"
    for name in featstore.__all__:
        assert getattr(featstore, name) is not None
    # the subpackages keep their names: the API functions do not shadow them
    for name in ("extract", "evaluate", "sweep", "report", "store"):
        module = importlib.import_module(f"featstore.{name}")
        assert module.__name__ == f"featstore.{name}"
    from featstore.extract import plan

    assert callable(plan)
    assert callable(featstore.extract_features)


def test_py_typed_ships() -> None:
    assert (Path(featstore.__file__).parent / "py.typed").is_file()


def test_each_line_of_the_api(made: str) -> None:
    store = featstore.open(made)
    info = store.datasets["digits"]
    assert 55 <= info.n <= 65
    assert info.classes == tuple(str(i) for i in range(10))
    assert sum(info.splits.values()) == info.n
    assert set(info.splits) == {"train", "test"}

    rows = store.entries(dataset="digits", network=NET)
    assert sorted(r.layer for r in rows) == ["layer2", "layer3"]
    assert all(r.complete and r.dataset == "digits" and r.shape[0] == info.n for r in rows)
    assert [r.layer for r in store.entries(dataset="digits", layer="layer3")] == ["layer3"]
    assert {r.key for r in store.entries(network=NET)} == {r.key for r in rows}  # all datasets

    by_layer = {r.layer: r for r in rows}
    f = store.features("digits", NET, "layer3", pooling="avg", split="train")
    ds = store.dataset("digits")
    train = ds.split_indices("train")
    assert f.X.dtype == np.float32
    assert f.X.shape == (len(train), by_layer["layer3"].shape[1])
    assert np.array_equal(f.y, ds.labels[train])
    assert f.ids == [ds.ids[i] for i in train]
    assert f.classes == list(info.classes)
    assert f.key == by_layer["layer3"].key

    raw = store.features("digits", NET, "layer3", split="train", dtype=None)
    assert raw.X.dtype == np.float16
    assert np.array_equal(raw.X.astype(np.float32), f.X)

    # row ranges and streamed blocks read the same rows as X
    part = store.features("digits", NET, "layer3", split="train", rows=slice(5, 17))
    assert np.array_equal(part.X, f.X[5:17])
    assert part.ids == f.ids[5:17]
    streamed = np.zeros_like(f.X)
    seen = 0
    for block in f.blocks():
        streamed[block.positions] = block.X
        assert np.array_equal(block.y, f.y[block.positions])
        seen += len(block.positions)
    assert seen == len(f)
    assert np.array_equal(streamed, f.X)
    assert np.array_equal(np.concatenate([b.X for b in f.blocks(rows_per_block=7)]), f.X)

    X, y = f.torch()
    assert tuple(X.shape) == f.X.shape
    assert np.array_equal(y.numpy(), f.y)
    data = f.torch_dataset(rows_per_block=8)
    assert len(data) == len(f)
    x9, y9 = data[9]
    assert np.array_equal(x9.numpy(), f.X[9])
    assert int(y9) == int(f.y[9])

    records = featstore.evaluate_features(store, "digits", NET, ["layer2", "layer3"], cv=2)
    assert [r["factors"]["layer"] for r in records] == ["layer2", "layer3"]
    table = store.results(dataset="digits", task="classify")
    assert set(table["key"]) >= {r["key"] for r in records}
    for r in records:
        row = table[table["key"] == r["key"]].iloc[0]
        assert row["layer"] == r["factors"]["layer"]
        assert row["network"] == NET
        assert row["score"] == pytest.approx(r["metrics"]["accuracy"])
        assert row["metric"] == "accuracy"
        assert row["classifier"] == "svm"
        assert row["transform"] == "l2"
        assert row["weights"] == "random"
    assert list(store.results(layer="layer2")["layer"]) == ["layer2"]
    store.close()


def test_x_with_a_transform_is_the_matrix_evaluation_scores(
    made: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import featstore.evaluate.probes.task as classify

    seen: list[np.ndarray] = []
    real = classify.classify_arrays

    def spy(X, *args, **kwargs):  # the matrix the classifier is fitted and scored on
        seen.append(np.array(X))
        return real(X, *args, **kwargs)

    monkeypatch.setattr(classify, "classify_arrays", spy)
    store = featstore.open(made)
    featstore.evaluate_features(
        store, "digits", NET, "layer3", transform="power=0.5,l2,pca=8", cv=2, force=True
    )
    assert len(seen) == 1
    ds = store.dataset("digits")
    for split in ("train", "test"):
        f = store.features("digits", NET, "layer3", split=split, transform="power=0.5,l2,pca=8")
        assert f.X.shape == (len(ds.split_indices(split)), 8)
        np.testing.assert_allclose(f.X, seen[0][ds.split_indices(split)], rtol=1e-5, atol=1e-6)
    store.close()


def test_missing_features_are_the_cli_error_with_the_command_to_create_them(made: str) -> None:
    store = featstore.open(made)
    with pytest.raises(featstore.FeatstoreError) as caught:
        store.features("digits", NET, "layer4")
    message = str(caught.value)
    assert "featstore extract -d digits -m resnet18 -l layer4" in message
    assert isinstance(caught.value, LookupError)  # EntryNotFoundError: also a builtin
    store.close()
    out = CliRunner().invoke(
        cli,
        ["evaluate", "-d", "digits", "-m", NET, "-l", "layer4", "--pool", "avg", "--store", made],
    )
    assert out.exit_code == 1
    assert message in out.output.replace("\n", " ")


def test_a_store_that_does_not_exist_is_refused_not_created(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist|no featstore store"):
        featstore.open(tmp_path / "typo.zarr")
    assert not (tmp_path / "typo.zarr").exists()


def test_reads_import_no_torch_and_a_plain_read_no_pil_or_scikit_learn(tmp_path: Path) -> None:
    url = str(tmp_path / "s.zarr")
    with featstore.open(url, create=True) as store:
        store.add_dataset("digits", "builtin:digits", subset=40)
        featstore.extract_features(
            store, "digits", NET, "layer2", weights=WEIGHTS, preprocess=SMALL
        )
        featstore.evaluate_features(store, "digits", NET, "layer2", cv=2)
    code = textwrap.dedent(
        f"""
        import sys
        import featstore
        store = featstore.open({url!r}, mode="r")
        assert store.datasets["digits"].n > 30
        assert len(store.entries(dataset="digits")) == 1
        f = store.features("digits", "{NET}", "layer2", split="test", transform="l2,pca=4")
        assert f.X.shape[1] == 4 and len(f.y) == len(f.ids)
        assert sum(len(b.positions) for b in f.blocks()) == len(f)
        table = store.results()
        assert len(table) == 1, table
        print("torch" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"

    plain = textwrap.dedent(  # the read benchmarks/readpath.py times as figure (d)
        f"""
        import json, sys
        import featstore
        f = featstore.open({url!r}, mode="r").features("digits", "{NET}", "layer2")
        rows = f.X.shape[0]
        heavy = ("PIL", "torch", "torchvision", "sklearn", "scipy", "pandas")
        print(json.dumps({{"rows": rows, "imported": [m for m in heavy if m in sys.modules]}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", plain], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"rows": 40, "imported": []}


def test_every_read_is_verified_a_damaged_chunk_is_refused(tmp_path: Path) -> None:
    url = str(tmp_path / "s.zarr")
    with featstore.open(url, create=True) as store:
        store.add_dataset("digits", "builtin:digits", subset=40)
        featstore.extract_features(
            store, "digits", NET, "layer2", weights=WEIGHTS, preprocess=SMALL
        )
        key = store.entries(dataset="digits")[0].key
        chunk = tmp_path / "s.zarr" / "features" / key / "data" / "c" / "0" / "0"
        chunk.unlink()  # rows 0.. of the entry are gone: never read as zeros
        reads = {
            "X": lambda: store.features("digits", NET, "layer2").X,
            "blocks": lambda: list(store.features("digits", NET, "layer2").blocks()),
            "transform": lambda: store.features("digits", NET, "layer2", transform="l2").X,
            "rows": lambda: store.features("digits", NET, "layer2", rows=[0]).X,
        }
        for what, read in reads.items():
            with pytest.raises(featstore.FeatstoreError, match=f"featstore repair {key}") as err:
                read()
            assert type(err.value).__name__ == "DamagedChunkError", what
