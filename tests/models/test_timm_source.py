"""timm: feature_info taps captured with forward_intermediates equal timm's own outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from token_refs import VIEWS, reference_view

from featstore.errors import ModelError, WeightsNotFoundError
from featstore.extract import LayerCapture, Pooling, apply_pooling
from featstore.models import get_spec, list_layers, load_model, register, resolve_layer
from featstore.models.registry import _REGISTRY
from featstore.models.timm_source import timm_spec

timm = pytest.importorskip("timm")


def _tiny(name: str, arch: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return _REGISTRY.get(name) or register(timm_spec(arch, name=name, **kwargs))


@pytest.fixture(scope="module")
def vit():  # type: ignore[no-untyped-def]
    """A tiny random ViT with a class token and 2 register tokens (prefix 3)."""
    spec = _tiny("timm:vit-test-reg", "vit_tiny_patch16_224", img_size=32, depth=3, reg_tokens=2)
    return load_model(spec, "random")


def _library_tokens(model: torch.nn.Module, x: torch.Tensor, index: int) -> torch.Tensor:
    patches, prefix = model.forward_intermediates(
        x, indices=[index], output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
    )[0]
    return torch.cat([prefix, patches], dim=1)


def test_layers_come_from_feature_info_with_token_shapes(vit) -> None:  # type: ignore[no-untyped-def]
    spec = vit.spec
    assert spec.aliases["block2"] == "blocks.2"
    info = resolve_layer(spec, "block1")
    assert info.kind == "tap"
    assert info.shape == (3 + 4, 192)
    assert info.tokens is not None
    assert info.tokens.prefix == 3
    assert info.tokens.has_cls
    names = [i.name for i in list_layers(spec)]
    assert names[:3] == ["blocks.0", "blocks.1", "blocks.2"]
    assert resolve_layer(spec, "penultimate").shape == (192,)


@pytest.mark.parametrize("view", VIEWS)
def test_every_block_and_view_equals_forward_intermediates(vit, view: str) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(1)
    x = torch.randn(3, 3, 32, 32)
    infos = [resolve_layer(vit.spec, f"block{i}") for i in range(3)]
    with torch.no_grad(), LayerCapture(vit.module, infos) as capture:
        out = capture(x)
        for i, info in enumerate(infos):
            ref = reference_view(view, _library_tokens(vit.module.model, x, i), prefix=3)
            got = apply_pooling(Pooling.parse(view), out[info.name], info.tokens)
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert capture.forward_calls == 1


def test_all_layers_in_one_forward_and_stop_early(vit) -> None:  # type: ignore[no-untyped-def]
    model = vit.module.model
    calls = {"embed": 0, "last_block": 0}
    h1 = model.patch_embed.register_forward_hook(
        lambda *_: calls.__setitem__("embed", calls["embed"] + 1)
    )
    h2 = model.blocks[2].register_forward_hook(
        lambda *_: calls.__setitem__("last_block", calls["last_block"] + 1)
    )
    try:
        infos = [resolve_layer(vit.spec, n) for n in ("block0", "block1")]
        with torch.no_grad():
            LayerCapture(vit.module, infos)(torch.randn(2, 3, 32, 32))
        assert calls == {"embed": 1, "last_block": 0}  # stop_early: block 2 never ran
        infos.append(resolve_layer(vit.spec, "penultimate"))
        with torch.no_grad():
            out = LayerCapture(vit.module, infos)(x := torch.randn(2, 3, 32, 32))
        assert calls == {"embed": 2, "last_block": 1}
        ref = model.forward_head(model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(out["penultimate"], ref)
    finally:
        h1.remove()
        h2.remove()


def test_conv_model_taps_are_maps_equal_to_forward_intermediates() -> None:
    spec = get_spec("timm:resnet18")
    assert spec.aliases["last_block"] == "layer4"
    net = load_model(spec, "random")
    x = torch.randn(2, 3, 64, 64)
    infos = [resolve_layer(spec, n, 64) for n in ("layer2", "layer4")]
    assert all(i.tokens is None for i in infos)
    with torch.no_grad():
        out = LayerCapture(net.module, infos)(x)
        ref = net.module.model.forward_intermediates(x, indices=[2, 4], intermediates_only=True)
    torch.testing.assert_close(out["layer2"], ref[0])
    torch.testing.assert_close(out["layer4"], ref[1])


def test_weights_file_safetensors_hash_and_key_check(
    tmp_path: Path, vit, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    from featstore.models import state_dict_sha256

    sd = {k: v.contiguous() for k, v in vit.module.model.state_dict().items()}
    path = tmp_path / "vit.safetensors"
    save_file(sd, str(path))

    def no_pickle(*_a: object, **_k: object) -> None:
        raise AssertionError("torch.load (pickle) must not be used for .safetensors")

    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = load_model(vit.spec, str(path))
    assert loaded.identity.source == "file"
    assert loaded.identity.weights_sha256 == state_dict_sha256(loaded.module.model.state_dict())
    assert loaded.identity.weights_sha256 == vit.identity.weights_sha256
    monkeypatch.undo()

    bad = dict(sd)
    bad["extra.weight"] = bad.pop("head.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(
        ModelError, match=r"1 missing \(first: head.weight\); 1 unexpected \(first: extra.weight\)"
    ):
        load_model(vit.spec, str(tmp_path / "bad.pth"))


def test_no_local_pretrained_weights_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError, match="--weights FILE"):
        load_model(get_spec("timm:resnet18"))


def test_preprocessing_comes_from_resolve_data_config() -> None:
    from timm.data import resolve_data_config

    spec = get_spec("timm:resnet18")
    cfg = resolve_data_config({}, model=timm.create_model("resnet18"))
    assert spec.preprocess.crop == cfg["input_size"][-1]
    assert spec.preprocess.mean == pytest.approx(cfg["mean"])
    assert spec.preprocess.interpolation == cfg["interpolation"]
    assert spec.preprocess.resize == round(cfg["input_size"][-1] / cfg["crop_pct"])
