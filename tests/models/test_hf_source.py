"""hf:DIR: hidden states captured in one forward equal output_hidden_states=True."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from token_refs import VIEWS, reference_view

from featstore.errors import ModelError, SpecError, UnknownModelError
from featstore.extract import LayerCapture, Pooling, apply_pooling, effective_pooling
from featstore.models import get_spec, load_model, resolve_layer, state_dict_sha256

transformers = pytest.importorskip("transformers")
SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def _save(tmp_path: Path, name: str, model: torch.nn.Module, processor: object = None) -> str:
    folder = tmp_path / name
    torch.manual_seed(0)
    model.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)  # type: ignore[attr-defined]
    return str(folder)


@pytest.fixture(scope="module")
def towers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, int]]:
    """Tiny random ViT, DINOv2 with registers, CLIP and SigLIP vision towers: folder, prefix."""
    t = transformers
    tmp = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    vit = t.ViTModel(t.ViTConfig(image_size=32, patch_size=8, **SMALL))
    dino = t.Dinov2WithRegistersModel(
        t.Dinov2WithRegistersConfig(image_size=32, patch_size=8, num_register_tokens=2, **SMALL)
    )
    clip = t.CLIPVisionModel(t.CLIPVisionConfig(image_size=32, patch_size=8, **SMALL))
    siglip = t.SiglipVisionModel(t.SiglipVisionConfig(image_size=32, patch_size=8, **SMALL))
    proc = t.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3)
    return {
        "vit": (_save(tmp, "vit", vit, proc), 1),
        "dinov2_reg": (_save(tmp, "dino", dino), 3),
        "clip": (_save(tmp, "clip", clip), 1),
        "siglip": (_save(tmp, "siglip", siglip), 0),
    }


@pytest.mark.parametrize("tower", ["vit", "dinov2_reg", "clip", "siglip"])
def test_every_hidden_state_and_view_equals_output_hidden_states(towers, tower: str) -> None:  # type: ignore[no-untyped-def]
    folder, prefix = towers[tower]
    spec = get_spec(f"hf:{folder}")
    net = load_model(spec)
    assert net.identity.source == "hf"
    assert net.identity.weights_sha256 == state_dict_sha256(net.module.model.state_dict())
    names = [f"hidden_{i}" for i in range(4)] + ["last", "pooler"]
    infos = [resolve_layer(spec, n) for n in names]
    assert [i.tokens.prefix for i in infos[:-1]] == [prefix] * 5  # type: ignore[union-attr]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), LayerCapture(net.module, infos) as capture:
        out = capture(x)
        ref = net.module.model(pixel_values=x, output_hidden_states=True)
    assert capture.forward_calls == 1
    torch.testing.assert_close(out["pooler"], ref.pooler_output)
    views = [v for v in VIEWS if prefix or v not in ("cls", "cls+mean")]
    for i, info in enumerate(infos[:-1]):
        lib = ref.hidden_states[i] if i < 4 else ref.last_hidden_state
        for view in views:
            got = apply_pooling(Pooling.parse(view), out[info.name], info.tokens)
            torch.testing.assert_close(got, reference_view(view, lib, prefix), rtol=1e-5, atol=1e-5)


def test_one_forward_for_all_hidden_states(towers) -> None:  # type: ignore[no-untyped-def]
    spec = get_spec(f"hf:{towers['vit'][0]}")
    net = load_model(spec)
    calls = []
    hook = net.module.model.embeddings.register_forward_hook(lambda *_: calls.append(1))
    try:
        infos = [resolve_layer(spec, n) for n in ("hidden_1", "hidden_2", "last", "pooler")]
        with torch.no_grad():
            LayerCapture(net.module, infos)(torch.randn(4, 3, 32, 32))
    finally:
        hook.remove()
    assert len(calls) == 1


def test_siglip_has_no_class_token_so_cls_is_refused(towers) -> None:  # type: ignore[no-untyped-def]
    info = resolve_layer(get_spec(f"hf:{towers['siglip'][0]}"), "hidden_2")
    with pytest.raises(SpecError, match="needs a class token"):
        effective_pooling("cls", info.shape, info.tokens)  # type: ignore[arg-type]
    assert str(effective_pooling("avg", info.shape, info.tokens)) == "mean"  # type: ignore[arg-type]


def test_preprocessing_from_the_image_processor_config(towers) -> None:  # type: ignore[no-untyped-def]
    pre = get_spec(f"hf:{towers['vit'][0]}").preprocess
    assert pre.crop_hw == (32, 32)
    assert pre.resize == (32, 32)
    assert pre.mean == (0.5, 0.5, 0.5)
    assert pre.interpolation == "bilinear"


def test_task_checkpoint_loads_backbone_and_foreign_keys_are_refused(tmp_path: Path) -> None:
    t = transformers
    cfg = t.ViTConfig(image_size=32, patch_size=8, **SMALL)
    folder = _save(tmp_path, "cls", t.ViTForImageClassification(cfg))
    net = load_model(get_spec(f"hf:{folder}"))  # classifier.* ignored, no random pooler kept
    assert net.module.model.pooler is None
    assert not any(k.startswith("pooler.") for k in net.module.model.state_dict())
    with torch.no_grad(), pytest.raises(ModelError, match="no pooler output"):
        LayerCapture(net.module, [resolve_layer(net.spec, "pooler")])(torch.randn(1, 3, 32, 32))
    other = _save(
        tmp_path,
        "other",
        t.ViTModel(t.ViTConfig(image_size=32, patch_size=8, **{**SMALL, "intermediate_size": 48})),
    )
    sd = t.ViTModel.from_pretrained(other).state_dict()
    torch.save(sd, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="other shapes"):
        load_model(get_spec(f"hf:{folder}"), str(tmp_path / "other.pth"))


def test_missing_folder_never_downloads(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="never downloads"):
        get_spec(f"hf:{tmp_path / 'nothing-here'}")
