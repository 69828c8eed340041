"""The network registry: weights resolution and hashing, team networks, the bundled default."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from featstore.errors import ModelError, SpecError, UnknownModelError, WeightsNotFoundError
from featstore.models import (
    Preprocess,
    get_spec,
    load_model,
    register,
    resolve_weights,
    state_dict_sha256,
    weights_identity,
)
from featstore.models import weights as weights_mod


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hash cache and torch hub cache in a temporary folder."""
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def _random_state_dict(name: str = "resnet18") -> dict[str, torch.Tensor]:
    return load_model(name, "random").module.state_dict()


def test_missing_hub_weights_say_where_to_put_them(tmp_path: Path) -> None:
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("resnet18")
    assert f"put resnet18-f37072fd.pth at {expected}" in str(info.value)
    assert "--weights random" in str(info.value)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_model("resnet18", tmp_path / "nope.pth")


def test_hub_cache_file_is_used_and_hashed(tmp_path: Path) -> None:
    sd = _random_state_dict()
    target = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    target.parent.mkdir(parents=True)
    torch.save(sd, target)
    net = load_model("resnet18")
    assert net.identity.to_dict() == {
        "name": "resnet18",
        "source": "torchvision",
        "weights_sha256": state_dict_sha256(sd),
    }
    for key, value in net.module.state_dict().items():
        assert torch.equal(value, sd[key]), key


def test_checkpoint_wrappers_give_the_same_hash(tmp_path: Path) -> None:
    sd = _random_state_dict()
    plain = tmp_path / "plain.pth"
    torch.save(sd, plain)
    wrapped = tmp_path / "ckpt.pth"
    torch.save({"epoch": 7, "state_dict": sd, "optimizer": {"lr": torch.tensor(0.1)}}, wrapped)
    model_key = tmp_path / "model.pt"
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, model_key)
    shas = {load_model("resnet18", p).identity.weights_sha256 for p in (plain, wrapped, model_key)}
    assert shas == {state_dict_sha256(sd)}
    assert load_model("resnet18", wrapped).identity.source == "file"


def test_half_precision_checkpoint_loads_as_float32(tmp_path: Path) -> None:
    sd = _random_state_dict()
    path = tmp_path / "half.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, path)
    net = load_model("resnet18", path).module
    assert net.fc.weight.dtype == torch.float32
    torch.testing.assert_close(net.fc.weight, sd["fc.weight"].half().float())


def test_hash_is_content_not_file_format() -> None:
    sd = {
        "b": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "a": torch.ones(2, dtype=torch.float16),
    }
    reordered = {"a": sd["a"].clone(), "b": sd["b"].clone()}
    assert state_dict_sha256(sd) == state_dict_sha256(reordered)
    changed = dict(reordered, a=torch.tensor([1.0, 1.001], dtype=torch.float16))
    assert state_dict_sha256(changed) != state_dict_sha256(sd)
    # same bytes, other shape: a different state dict
    assert state_dict_sha256({"b": sd["b"].reshape(3, 2), "a": sd["a"]}) != state_dict_sha256(sd)


def test_file_hash_is_cached_per_path_mtime_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.pth"
    torch.save(_random_state_dict(), path)
    calls = []
    real = weights_mod.state_dict_sha256
    monkeypatch.setattr(weights_mod, "state_dict_sha256", lambda sd: calls.append(1) or real(sd))
    first = weights_mod.file_sha256(path)
    second = weights_mod.file_sha256(path)
    assert first == second
    assert len(calls) == 1
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # another mtime: hashed again
    assert weights_mod.file_sha256(path) == first
    assert len(calls) == 2
    assert (tmp_path / "fscache" / "weights_sha256.json").is_file()


@pytest.mark.parametrize("text", ["[1, 2]", '{"k": 3, "file|x|1|2": "abc"}', "null"])
def test_a_hash_cache_of_another_shape_counts_as_empty(tmp_path: Path, text: str) -> None:
    cache = weights_mod.cache_dir() / "weights_sha256.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(text)
    assert weights_mod.cached_hash("k") is None  # not a crash, not a non-string hash
    weights_mod.remember_hash("k", "f" * 64)  # and remembering rewrites it whole
    assert weights_mod.cached_hash("k") == "f" * 64


def test_random_weights_are_explicit_and_deterministic() -> None:
    a = weights_identity("resnet18", resolve_weights("resnet18", "random"))
    b = load_model("resnet18", "random").identity
    assert a == b
    assert a.source == "random"


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "alex.pth"
    torch.save(_random_state_dict("alexnet"), path)
    with pytest.raises(ModelError, match="do not fit resnet18"):
        load_model("resnet18", path)
    junk = tmp_path / "junk.pth"
    torch.save({"epoch": 3}, junk)
    with pytest.raises(ModelError, match="holds no state dict"):
        load_model("resnet18", junk)


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(UnknownModelError, match="Did you mean: resnet50"):
        get_spec("resnet05")


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ModelError, match="already registered"):
        register(get_spec("alexnet"))


def test_preprocess_override_and_validation() -> None:
    pre = get_spec("resnet50").preprocess
    assert pre.to_dict() == {
        "resize": 232,
        "crop": 224,
        "interpolation": "bilinear",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "scale": 1 / 255,
        "orientation": "exif",  # EXIF orientation applied at decoding: a factor of the key
    }
    small = pre.override(crop=64, resize=72, interpolation=None)
    assert (small.crop, small.resize, small.interpolation) == (64, 72, "bilinear")
    with pytest.raises(SpecError, match="interpolation"):
        pre.override(interpolation="cubic")
    with pytest.raises(SpecError, match="unknown preprocess fields"):
        Preprocess.from_dict({"size": 3})


def test_team_network_from_module_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "teamnets.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        def tiny():
            torch.manual_seed(0)
            net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
            return net, {"resize": 40, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}

        def not_a_net():
            return 3
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = get_spec("teamnets:tiny")
    assert spec.source == "module"
    assert spec.input_size == (32, 32)
    net = load_model("teamnets:tiny")
    assert net.identity.source == "module"
    assert net.identity.weights_sha256 == state_dict_sha256(net.module.state_dict())
    with pytest.raises(UnknownModelError, match="cannot import"):
        get_spec("teamnets:missing")
    with pytest.raises(ModelError, match=r"not a torch.nn.Module"):
        get_spec("teamnets:not_a_net")
    sys.modules.pop("teamnets", None)


def test_bundled_network_names_real_photos(tmp_path: Path) -> None:
    """scikit-image's cat -> Egyptian cat / tabby / tiger cat; its coffee -> espresso.

    Goes through the extraction pipeline, so the preprocessing extraction uses is the one tested.
    """
    import skimage.data
    from PIL import Image

    from featstore.datasets import dataset_from_source
    from featstore.extract import ExtractionRequest, extract
    from featstore.store import open_store

    root = tmp_path / "photos"
    for split in ("train", "test"):
        for name in ("chelsea", "coffee"):
            (root / split / name).mkdir(parents=True)
            Image.fromarray(getattr(skimage.data, name)()).save(root / split / name / f"{name}.png")
    ds = dataset_from_source("photos", str(root))
    store = open_store(str(tmp_path / "s.zarr"))
    summary = extract(
        store, ExtractionRequest.parse(ds, ["efficientnet_lite0"], ["logits"], views=["plain"])
    )
    logits = store.get_entry(summary["keys"][0]).read().astype(np.float32)
    top = {ds.ids[i].split("/")[-1]: int(np.argmax(logits[i])) for i in range(ds.n)}
    assert top["chelsea.png"] in (281, 282, 285)  # tabby, tiger cat, Egyptian cat
    assert top["coffee.png"] == 967  # espresso
    assert store.get_entry(summary["keys"][0]).attrs["model"]["source"] == "bundled"
