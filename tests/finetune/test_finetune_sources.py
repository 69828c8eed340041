"""Fine-tuning parents from the library sources: a timm network trains, is stored and is
extracted from by name; Hugging Face and OpenCLIP towers are refused in words (no head)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_nets import make_images

from featstore.datasets import dataset_from_source
from featstore.errors import ModelError
from featstore.extract import ExtractionRequest, extract
from featstore.finetune import finetune
from featstore.models import get_spec, load_model, register
from featstore.models.registry import _REGISTRY
from featstore.store import open_store
from featstore.store import trained as nets

timm = pytest.importorskip("timm")
HERE = Path(__file__).resolve().parent
VIT = "timm:vit-ft-tiny"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))
    monkeypatch.syspath_prepend(str(HERE))


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = open_store(str(tmp_path / "s.zarr"))
    s.put_dataset(dataset_from_source("tiny", str(make_images(tmp_path / "imgs"))))
    return s


def _vit():  # type: ignore[no-untyped-def]
    from featstore.models.timm_source import timm_spec

    if VIT not in _REGISTRY:  # a random-init ViT of 2 blocks at 32x32: nothing downloads
        register(timm_spec("vit_tiny_patch16_224", name=VIT, img_size=32, depth=2))
    return get_spec(VIT)


def test_a_timm_network_fine_tunes_with_frozen_blocks_and_is_extracted_by_name(store) -> None:  # type: ignore[no-untyped-def]
    spec = _vit()
    parent = load_model(spec, "random").module.model.state_dict()
    out = finetune(store, "tiny", VIT, "vit-ft", weights="random", epochs=1, batch_size=16,
                   freeze="block0", lr=0.05)  # fmt: skip
    assert out["trained"] is True
    assert out["networks"] == ["vit-ft"]
    rec = nets.get_network(store, "vit-ft")
    # the head is timm's own classifier (get_classifier), now with the dataset's 3 classes
    assert rec.parent == VIT
    assert rec.head == {
        "module": "head",
        "in_features": 192,
        "out_features": 3,
    }
    tensors = nets.load_tensors(nets.read_blob(store, rec.blob))
    assert tensors["head.weight"].shape == (3, 192)
    # up to block0 (the embeddings, class token and position embedding too) kept the parent's
    for name in ("patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.0.mlp.fc1.weight"):
        assert torch.equal(tensors[name], parent[name]), name
    assert not torch.equal(tensors["blocks.1.mlp.fc1.weight"], parent["blocks.1.mlp.fc1.weight"])

    # extracted by name, keyed by the weights the record names, through timm's own taps
    done = extract(
        store, ExtractionRequest.parse("tiny", ["vit-ft"], ["penultimate", "block1"], device="cpu")
    )
    attrs = [store.get_entry(k).attrs for k in done["keys"]]
    assert {a["layer"] for a in attrs} == {"penultimate", "block1"}
    assert all(json.dumps(a).count(rec.weights_sha256) for a in attrs)

    again = finetune(store, "tiny", VIT, "vit-ft", weights="random", epochs=1, batch_size=16,
                     freeze="block0", lr=0.05)  # fmt: skip
    assert again["trained"] is False


def test_open_clip_towers_are_refused_before_training(store) -> None:  # type: ignore[no-untyped-def]
    open_clip = pytest.importorskip("open_clip")
    tiny = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "patch_size": 8,
            "head_width": 16,
        },
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    }
    folder = Path(store.location).parent / "oc"
    folder.mkdir()
    (folder / "featstore-ft-tower.json").write_text(json.dumps(tiny))
    open_clip.add_model_config(folder)
    with pytest.raises(ModelError, match="feature tower without a classifier layer") as err:
        finetune(store, "tiny", "open_clip:featstore-ft-tower", "oc-ft", weights="random")
    assert "timm:NAME" in str(err.value)
    assert nets.list_networks(store) == []
