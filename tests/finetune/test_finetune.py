"""Fine-tuning: stored, named networks with provenance; never trained twice; a killed run
resumes to the same weights; frozen layers keep theirs; the test split is never read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_nets import NET, make_images

from featstore.datasets import dataset_from_source
from featstore.datasets.core import Dataset
from featstore.errors import DamagedEntryError, FinetuneError, StoreError
from featstore.extract import ExtractionRequest, extract
from featstore.finetune import Recipe, finetune, plan_run, training_rows
from featstore.finetune import train as train_mod
from featstore.models import load_model
from featstore.models.weights import state_dict_sha256
from featstore.store import open_store
from featstore.store import trained as nets

HERE = Path(__file__).resolve().parent
FAST = {"epochs": 2, "batch_size": 8}


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))
    monkeypatch.syspath_prepend(str(HERE))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("ft") / "imgs")


def new_store(path: Path, images: Path):  # type: ignore[no-untyped-def]
    store = open_store(str(path))
    store.put_dataset(dataset_from_source("tiny", str(images)))
    return store


def blob_tensors(store, name: str) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    return nets.load_tensors(nets.read_blob(store, nets.get_network(store, name).blob))


def test_finetune_registers_named_networks_with_provenance(tmp_path: Path, images: Path) -> None:
    store = new_store(tmp_path / "s.zarr", images)
    seen: list[dict] = []
    out = finetune(
        store, "tiny", NET, "tiny-ft", keep_every=1, progress=lambda d, t, i: seen.append(i), **FAST
    )
    assert out["trained"] is True
    assert out["networks"] == ["tiny-ft", "tiny-ft@epoch1", "tiny-ft@epoch2"]
    assert [i["epoch"] for i in seen] == [1, 2]
    assert all(np.isfinite(i["train_loss"]) and 0 <= i["val_accuracy"] <= 1 for i in seen)
    assert sorted(nets.list_networks(store)) == ["tiny-ft", "tiny-ft@epoch1", "tiny-ft@epoch2"]

    rec = nets.get_network(store, "tiny-ft")
    parent = load_model(NET)
    prov = rec.provenance
    assert rec.parent == NET
    assert rec.head == {"module": "fc", "in_features": 16, "out_features": 3}
    assert prov["parent"]["weights_sha256"] == parent.identity.weights_sha256
    ds = store.get_dataset("tiny")
    assert prov["dataset"]["id"] == ds.id
    assert prov["dataset"]["test_rows_read"] == 0
    assert prov["recipe"] == out["recipe"]
    assert prov["recipe"]["compute_dtype"] == "float32"
    assert prov["seed"] == 0
    assert prov["torch"] == torch.__version__
    assert prov["featstore"]
    assert [p["epoch"] for p in prov["curve"]] == [1, 2]
    assert prov["epoch"] == out["best"]["epoch"]
    assert prov["selected"] == "best"
    # the blob holds the weights its record names, with the new 3-class head
    tensors = blob_tensors(store, "tiny-ft")
    assert state_dict_sha256(tensors) == rec.weights_sha256
    assert tensors["fc.weight"].shape == (3, 16)
    assert nets.get_network(store, "tiny-ft@epoch2").provenance["epoch"] == 2

    # teammates extract from it by name; its weights sha256 keys the features
    result = extract(store, ExtractionRequest.parse("tiny", ["tiny-ft", NET], ["flat"]))
    entries = [store.get_entry(k) for k in result["keys"]]
    shas = {e.attrs["model_name"]: e.attrs["model"]["weights_sha256"] for e in entries}
    assert shas["tiny-ft"] == rec.weights_sha256 != shas[NET]
    feats = entries[0].read() if entries[0].attrs["model_name"] == "tiny-ft" else entries[1].read()
    net = load_model(NET).module
    net.fc = torch.nn.Linear(16, 3)
    net.load_state_dict(tensors)
    assert not np.allclose(feats, 0)


def test_a_second_identical_request_trains_nothing(
    tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = new_store(tmp_path / "s.zarr", images)
    first = finetune(store, "tiny", NET, "tiny-ft", **FAST)

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("trained again")

    monkeypatch.setattr(train_mod, "_train", no_training)
    again = finetune(store, "tiny", NET, "tiny-ft", **FAST)
    assert again["trained"] is False
    assert again["run"] == first["run"]
    assert again["best"] == first["best"]
    other = finetune(store, "tiny", NET, "alias", **FAST)  # same run, a second name: no training
    assert nets.get_network(store, "alias").blob == nets.get_network(store, "tiny-ft").blob
    assert other["trained"] is False
    # a changed recipe is another run; the name is refused before training
    with pytest.raises(FinetuneError, match="already has a network named 'tiny-ft'"):
        finetune(store, "tiny", NET, "tiny-ft", epochs=3, batch_size=8)


def test_frozen_layers_keep_their_weights_reinitialised_ones_differ(
    tmp_path: Path, images: Path
) -> None:
    store = new_store(tmp_path / "s.zarr", images)
    parent = load_model(NET).module.state_dict()
    finetune(store, "tiny", NET, "frozen", freeze="bn1", lr=0.1, **FAST)
    got = blob_tensors(store, "frozen")
    for key in (
        "conv1.weight",
        "conv1.bias",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
    ):
        assert torch.equal(got[key], parent[key]), key
    assert not torch.equal(got["conv2.weight"], parent["conv2.weight"])

    # reinit-above: layers after conv1 start from fresh random weights, conv1 keeps its own
    ds = store.get_dataset("tiny")
    plan = plan_run(store, ds, NET, Recipe(reinit_above="conv1", compute_dtype="float32"))
    module, frozen = train_mod._prepare(plan, "cpu")
    sd = module.state_dict()
    assert frozen == []
    assert torch.equal(sd["conv1.weight"], parent["conv1.weight"])
    assert not torch.equal(sd["conv2.weight"], parent["conv2.weight"])
    assert torch.equal(sd["bn1.running_var"], torch.ones(8))  # reset: fresh statistics
    assert not torch.equal(sd["bn1.running_var"], parent["bn1.running_var"])
    # linear probe: only the head trains
    finetune(store, "tiny", NET, "probe", train="head", **FAST)
    got = blob_tensors(store, "probe")
    assert all(torch.equal(got[k], parent[k]) for k in parent if not k.startswith("fc."))


def test_unknown_freeze_layer_is_refused_in_words(tmp_path: Path, images: Path) -> None:
    store = new_store(tmp_path / "s.zarr", images)
    with pytest.raises(Exception, match="has no layer 'conv9'"):
        finetune(store, "tiny", NET, "x", freeze="conv9", **FAST)


def test_resume_after_sigkill_gives_the_uninterrupted_weights(
    tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # float32 reductions are bitwise reproducible at one thread count: the killed process,
    # the resumed run and the straight run all use one thread (other tests change it)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # nothing changes it midway
    try:
        _resume_after_sigkill(tmp_path, images)
    finally:
        monkeypatch.undo()
        torch.set_num_threads(threads)


def _resume_after_sigkill(tmp_path: Path, images: Path) -> None:
    killed = tmp_path / "killed.zarr"
    new_store(killed, images)
    script = textwrap.dedent(
        f"""
        import os, signal
        import torch
        torch.set_num_threads(1)  # bitwise equality holds for one thread count
        from featstore.finetune import finetune
        def progress(done, total, info):
            if done == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        finetune({str(killed)!r}, "tiny", {NET!r}, "ft", epochs=4, batch_size=8, keep_every=3,
                 optimizer="adam", lr=0.01, augment="flip+crop", progress=progress)
        """
    )
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    store = open_store(str(killed))
    assert nets.list_networks(store) == []  # nothing named before the run finished
    recipe = {
        "epochs": 4,
        "batch_size": 8,
        "keep_every": 3,
        "optimizer": "adam",
        "lr": 0.01,
        "augment": "flip+crop",
    }
    resumed = finetune(store, "tiny", NET, "ft", **recipe)
    assert resumed["resumed_from_epoch"] == 3
    assert resumed["trained"] is True

    whole = new_store(tmp_path / "whole.zarr", images)
    straight = finetune(whole, "tiny", NET, "ft", **recipe)
    assert straight["resumed_from_epoch"] is None
    assert resumed["run"] == straight["run"]
    assert resumed["curve"] == straight["curve"]
    for name in ("ft", "ft@epoch3"):
        a, b = nets.get_network(store, name), nets.get_network(whole, name)
        assert a.weights_sha256 == b.weights_sha256
        assert a.blob == b.blob
    # the finished run left no in-progress state behind
    runs = store.trained_objects().path + "/runs"
    assert sorted(os.listdir(runs)) == [f"{resumed['run']}.json"]


def test_the_test_split_is_never_read(
    tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = new_store(tmp_path / "s.zarr", images)
    ds = store.get_dataset("tiny")
    test_rows = set(ds.split_indices("test").tolist())
    read: set[int] = set()
    original = Dataset.load_image_checked

    def spy(self, index):  # type: ignore[no-untyped-def]
        read.add(int(index))
        return original(self, index)

    monkeypatch.setattr(Dataset, "load_image_checked", spy)
    finetune(store, ds, NET, "honest", keep_every=1, **FAST)
    rows = training_rows(ds, Recipe())
    assert read == set(rows.train.tolist()) | set(rows.val.tolist())
    assert not read & test_rows
    assert len(rows.val) > 0


def test_a_damaged_blob_is_refused_when_read(tmp_path: Path, images: Path) -> None:
    store = new_store(tmp_path / "s.zarr", images)
    finetune(store, "tiny", NET, "ft", **FAST)
    rec = nets.get_network(store, "ft")
    path = Path(store.trained_objects().path) / "blobs" / f"{rec.blob}.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DamagedEntryError, match="is damaged"):
        extract(store, ExtractionRequest.parse("tiny", ["ft"], ["flat"]))


def test_hdf5_stores_keep_no_networks(tmp_path: Path, images: Path) -> None:
    store = new_store(tmp_path / "s.h5", images)
    with pytest.raises(StoreError, match="keeps no networks"):
        finetune(store, "tiny", NET, "ft", **FAST)


def test_recipe_is_validated_and_keyed() -> None:
    with pytest.raises(FinetuneError.__mro__[1], match="unknown optimizer 'rmsprop'"):
        Recipe(optimizer="rmsprop")
    with pytest.raises(Exception, match="step:N"):
        Recipe(schedule="linear")
    with pytest.raises(Exception, match="unknown fine-tuning recipe fields"):
        Recipe.from_dict({"epochs": 2, "lrr": 0.1})
    r = Recipe.from_dict({"epochs": "3", "lr": "0.05", "freeze": "layer2"})
    assert r.epochs == 3
    assert r.lr == 0.05
    assert r.freeze == "layer2"
    assert json.loads(json.dumps(r.to_dict())) == r.to_dict()
