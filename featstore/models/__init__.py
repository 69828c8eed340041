"""Networks: the registry (torchvision, bundled EfficientNet-Lite0, team modules, timm),
weights resolution and hashing, and layer discovery with output shapes.

    from featstore.models import get_spec, load_model, list_layers, resolve_layer
    net = load_model("efficientnet_lite0")            # bundled ImageNet weights, offline
    resolve_layer("resnet50", "penultimate").name      # -> "avgpool"
"""

from __future__ import annotations

from featstore.models.layers import LayerInfo, build_meta, list_layers, meta_params, resolve_layer
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
