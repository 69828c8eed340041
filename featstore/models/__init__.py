"""Networks: the registry (torchvision, bundled EfficientNet-Lite0, team modules, timm),
weights resolution and hashing, and layer discovery with output shapes.

    from featstore.models import get_spec, load_model, list_layers, resolve_layer
    net = load_model("efficientnet_lite0")            # bundled ImageNet weights, offline
    resolve_layer("resnet50", "penultimate").name      # -> "avgpool"

The names below are imported on first use (PEP 562): importing a torch-free submodule
(``featstore.models.weights``' hash cache) never pays for torch, so reading cached
features stays free of it (see :mod:`featstore.store.select`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from featstore.models.layers import (
        LayerInfo,
        build_meta,
        list_layers,
        meta_params,
        resolve_layer,
    )
    from featstore.models.loading import (
        LoadedModel,
        WeightsRef,
        describe,
        load_model,
        resolve_weights,
        weights_identity,
    )
    from featstore.models.registry import DEFAULT_MODEL, get_spec, list_specs, register
    from featstore.models.spec import ModelSpec, Preprocess
    from featstore.models.weights import load_state_dict_file, state_dict_sha256

_WHERE = {
    "DEFAULT_MODEL": "registry",
    "LayerInfo": "layers",
    "LoadedModel": "loading",
    "ModelSpec": "spec",
    "Preprocess": "spec",
    "WeightsRef": "loading",
    "build_meta": "layers",
    "describe": "loading",
    "get_spec": "registry",
    "list_layers": "layers",
    "list_specs": "registry",
    "load_model": "loading",
    "load_state_dict_file": "weights",
    "meta_params": "layers",
    "register": "registry",
    "resolve_layer": "layers",
    "resolve_weights": "loading",
    "state_dict_sha256": "weights",
    "weights_identity": "loading",
}

__all__ = [
    "DEFAULT_MODEL",
    "LayerInfo",
    "LoadedModel",
    "ModelSpec",
    "Preprocess",
    "WeightsRef",
    "build_meta",
    "describe",
    "get_spec",
    "list_layers",
    "list_specs",
    "load_model",
    "load_state_dict_file",
    "meta_params",
    "register",
    "resolve_layer",
    "resolve_weights",
    "state_dict_sha256",
    "weights_identity",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'featstore.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"featstore.models.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
