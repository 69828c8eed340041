"""open_clip:ARCH: block tokens equal the tower's own intermediates, NLD and LND."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from token_refs import VIEWS, reference_view

from featstore.errors import ModelError, WeightsNotFoundError
from featstore.extract import LayerCapture, Pooling, apply_pooling
from featstore.models import get_spec, load_model, resolve_layer, state_dict_sha256

open_clip = pytest.importorskip("open_clip")
TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("oc")
    (folder / "featstore-tiny-vit.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder)
    return get_spec("open_clip:featstore-tiny-vit")


def _reference(visual: torch.nn.Module, x: torch.Tensor, index: int) -> torch.Tensor:
    """The tower's blocks run by hand from its embeddings, in the tower's own layout."""
    t = visual._embeds(x)
    batch_first = visual.transformer.batch_first
    t = t if batch_first else t.transpose(0, 1)
    for blk in visual.transformer.resblocks[: index + 1]:
        t = blk(t)
    return t if batch_first else t.transpose(0, 1)


def _as_lnd(visual: torch.nn.Module) -> None:
    """Rebuild the tower's transformer sequence-first (LND), keeping its weights."""
    from open_clip.transformer import Transformer

    old = visual.transformer
    new = Transformer(32, 3, 2, mlp_ratio=4.0, batch_first=False)
    for blk in new.resblocks:
        blk.attn = torch.nn.MultiheadAttention(32, 2, batch_first=False)
    new.load_state_dict(old.state_dict())
    visual.transformer = new.eval()


@pytest.mark.parametrize("layout", ["NLD", "LND"])
def test_every_block_and_view_equals_the_towers_blocks(spec, layout: str) -> None:  # type: ignore[no-untyped-def]
    net = load_model(spec, "random")
    visual = net.module.model
    if layout == "LND":
        _as_lnd(visual)
    infos = [resolve_layer(spec, f"block{i}") for i in range(3)] + [
        resolve_layer(spec, "penultimate")
    ]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), LayerCapture(net.module, infos) as capture:
        out = capture(x)
        lib = visual.forward_intermediates(
            x,
            indices=[0, 1, 2],
            output_fmt="NLC",
            output_extra_tokens=True,
            intermediates_only=True,
        )
        for i, info in enumerate(infos[:3]):
            assert out[info.name].shape == (2, 17, 32)  # batch first whatever the tower's layout
            ref = _reference(visual, x, i)
            full = torch.cat(
                [lib["image_intermediates_prefix"][i], lib["image_intermediates"][i]], 1
            )
            torch.testing.assert_close(ref, full, rtol=1e-5, atol=1e-5)
            for view in VIEWS:
                got = apply_pooling(Pooling.parse(view), out[info.name], info.tokens)
                torch.testing.assert_close(got, reference_view(view, ref, 1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out["embedding"], visual(x))
    assert capture.forward_calls == 1


def test_weights_from_a_full_clip_checkpoint(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(3)
    clip = open_clip.create_model("featstore-tiny-vit")
    path = tmp_path / "clip.pth"
    torch.save(clip.state_dict(), path)
    net = load_model(spec, str(path))
    assert net.identity.weights_sha256 == state_dict_sha256(clip.visual.state_dict())
    with pytest.raises(WeightsNotFoundError, match="--weights FILE"):
        load_model(spec)
    sd = clip.visual.state_dict()
    sd.pop("proj")
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match=r"missing \(first: proj\)"):
        load_model(spec, str(tmp_path / "bad.pth"))
