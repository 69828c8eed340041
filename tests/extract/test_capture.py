"""Capturing many layers in one forward: equal to a fresh forward, immune to in-place ops."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featstore.errors import UnknownLayerError
from featstore.extract.capture import LayerCapture
from featstore.models import load_model, resolve_layer


@pytest.fixture(autouse=True)
def _weights_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "cache"))


def _reference(module: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Each layer from its own forward, copied inside the hook (the slow, obvious way)."""
    out = {}
    modules = dict(module.named_modules())
    for name in names:
        grabbed: dict[str, torch.Tensor] = {}

        def hook(_m: nn.Module, _i: object, o: torch.Tensor, grabbed: dict = grabbed) -> None:
            grabbed["v"] = o.clone()  # returns None: a hook's return value replaces the output

        handle = modules[name].register_forward_hook(hook)
        with torch.no_grad():
            module(x)
        handle.remove()
        out[name] = grabbed["v"]
    return out


@pytest.mark.parametrize(
    ("model", "layers", "size"),
    [
        (
            "alexnet",
            ["features.0", "features.1", "features.12", "classifier.2", "classifier.5"],
            96,
        ),
        ("resnet18", ["layer1", "layer3.0.conv1", "layer4", "avgpool", "fc"], 64),
        ("efficientnet_lite0", ["_blocks.4", "_blocks.10", "_bn1", "_avg_pooling"], 224),
    ],
)
def test_capture_equals_separate_forwards(model: str, layers: list[str], size: int) -> None:
    net = load_model(model, "random").module
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    infos = [resolve_layer(model, name, size) for name in layers]
    with LayerCapture(net, infos) as capture, torch.no_grad():
        got = capture(x)
    ref = _reference(net, x, layers)
    assert capture.mode == "hooks"
    for name in layers:
        assert got[name].shape == ref[name].shape
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-5)


def test_inplace_relu_does_not_change_captured_conv() -> None:
    # features.1 is ReLU(inplace=True): without a copy, features.0 would read as min 0
    net = load_model("alexnet", "random").module
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with LayerCapture(net, [resolve_layer("alexnet", "features.0", 96)]) as cap, torch.no_grad():
        conv = cap(x)["features.0"]
    assert conv.min().item() < 0
    infos = [resolve_layer("alexnet", n, 96) for n in ("features.0", "features.1")]
    with LayerCapture(net, infos) as cap, torch.no_grad():
        both = cap(x)
    torch.testing.assert_close(both["features.0"], conv)
    torch.testing.assert_close(both["features.1"], conv.clamp(min=0))


def test_graph_nodes_and_traced_modules_match_hooks() -> None:
    # "_swish_1" exists only as a graph node (the activation module is shared);
    # "_blocks.10" is a module the fx tracer traces through.
    net = load_model("efficientnet_lite0", "random").module
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    infos = [
        resolve_layer("efficientnet_lite0", n) for n in ("last_conv", "_blocks.10", "penultimate")
    ]
    assert infos[0].kind == "node"
    with LayerCapture(net, infos) as cap, torch.no_grad():
        got = cap(x)
    assert cap.mode == "fx"
    ref = _reference(net, x, ["_blocks.10", "_bn1", "_avg_pooling"])
    torch.testing.assert_close(got["_blocks.10"], ref["_blocks.10"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["_swish_1"], ref["_bn1"].clamp(0, 6), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["_avg_pooling"], ref["_avg_pooling"], rtol=1e-5, atol=1e-5)


def test_fx_capture_copies_before_inplace_ops() -> None:
    net = load_model("densenet121", "random").module
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    infos = [resolve_layer("densenet121", n, 64) for n in ("features.norm5", "relu")]
    with LayerCapture(net, infos) as cap, torch.no_grad():
        got = cap(x)
    assert cap.mode == "fx"
    assert got["features.norm5"].min().item() < 0
    torch.testing.assert_close(got["relu"], got["features.norm5"].clamp(min=0))


def test_forward_stops_after_last_requested_layer() -> None:
    net = load_model("resnet18", "random").module
    ran: list[str] = []
    for name in ("layer4", "fc"):
        dict(net.named_modules())[name].register_forward_hook(lambda m, i, o, n=name: ran.append(n))
    with LayerCapture(net, [resolve_layer("resnet18", "layer2", 64)]) as cap, torch.no_grad():
        out = cap(torch.randn(1, 3, 64, 64))
    assert set(out) == {"layer2"}
    assert ran == []  # nothing after layer2 ran
    assert cap.forward_calls == 1


def test_unknown_layer_lists_close_matches() -> None:
    with pytest.raises(UnknownLayerError) as info:
        resolve_layer("resnet18", "layer5")
    message = str(info.value)
    assert "layer4" in message
    assert "featstore models layers resnet18" in message


def test_alias_resolves_to_module() -> None:
    info = resolve_layer("alexnet", "fc7")
    assert (info.name, info.kind, info.shape) == ("classifier.5", "module", (4096,))
