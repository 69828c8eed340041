"""Every registered network: its declared layer shapes are the shapes a real forward produces.

Declared shapes come from featstore's listing (a forward on the meta device, no weights).
Real shapes come from a CPU forward of the same architecture at a small input where the
architecture permits (its own size for ViT/MaxViT/the bundled network), with zeroed
weights (values do not matter for shapes; zeros keep it cheap) and bfloat16 autocast
where the CPU has bfloat16 units (float32 elsewhere).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from featstore.extract.capture import LayerCapture
from featstore.models import build_meta, get_spec, list_layers, list_specs, resolve_layer
from featstore.models.layers import probe_modules

HEAVY = {"vit_h_14"}  # about a TFLOP per image at its fixed 518 px input


def _params() -> list:
    return [
        pytest.param(s.name, marks=pytest.mark.slow) if s.name in HEAVY else s.name
        for s in list_specs()
    ]


def _has_bf16_units() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16). Without them torch
    emulates bfloat16 matmuls, which made vit_h_14 at 518 px take 14 minutes here."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _fast() -> contextlib.AbstractContextManager[object]:
    """bfloat16 autocast where it is fast, float32 elsewhere (shapes are the same)."""
    if _has_bf16_units():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _zeroed(name: str) -> torch.nn.Module:
    module = build_meta(get_spec(name)).to_empty(device="cpu")
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            t.zero_()
    return module.eval()


def test_registry_has_every_torchvision_classifier() -> None:
    import torchvision.models as tvm

    names = {s.name for s in list_specs()}
    assert set(tvm.list_models(module=tvm)) <= names
    assert "efficientnet_lite0" in names
    assert list_specs()[0].name == "efficientnet_lite0"  # the offline default comes first


@pytest.mark.parametrize("name", _params())
def test_declared_shapes_are_real(name: str) -> None:
    spec = get_spec(name)
    size = spec.input_size if spec.fixed_input else (spec.min_input, spec.min_input)
    declared = {i.name: i for i in list_layers(spec, size)}
    module = _zeroed(name)
    with _fast():
        real = {i.name: i for i in probe_modules(module, size, "cpu")}
    assert {n: (i.shape, i.calls) for n, i in declared.items()} == {
        n: (i.shape, i.calls) for n, i in real.items()
    }
    assert spec.layers, f"{name} has no curated layers"
    aliases = {alias: resolve_layer(spec, alias, size) for alias, _ in spec.layers}
    assert aliases["penultimate"].shape is not None
    nodes = [info for info in aliases.values() if info.kind == "node"]
    for alias, info in aliases.items():
        if info.kind == "module":
            assert real[info.name].shape == info.shape, alias
    if nodes:
        x = torch.zeros(1, 3, *size)
        with (
            LayerCapture(module, nodes) as cap,
            torch.no_grad(),
            _fast(),
        ):
            got = cap(x)
        for info in nodes:
            assert tuple(got[info.name].shape[1:]) == info.shape, info.name
