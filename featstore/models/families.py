"""Curated layer names per architecture family (torchvision and the bundled network).

Aliases point at module names (captured with forward hooks) or, where the value only
exists inside a forward function (densenet's final ReLU, a ViT's class token), at
torch.fx graph node names. The whole-registry test checks every alias resolves and
that its declared shape is the real one.
"""

from __future__ import annotations

import re

_VGG_CONVS = {"11": 8, "13": 10, "16": 13, "19": 16}


def _alexnet() -> list[tuple[str, str]]:
    return [
        ("penultimate", "classifier.5"),
        ("fc7", "classifier.5"),
        ("fc6", "classifier.2"),
        ("pool5", "features.12"),
        ("last_conv", "features.11"),
        ("conv5", "features.11"),
        ("conv4", "features.9"),
        ("conv3", "features.7"),
        ("conv2", "features.4"),
        ("conv1", "features.1"),
        ("logits", "classifier.6"),
    ]


def _vgg(name: str) -> list[tuple[str, str]]:
    depth, bn = re.match(r"vgg(\d+)(_bn)?$", name).groups()  # type: ignore[union-attr]
    n_modules = _VGG_CONVS[depth] * (3 if bn else 2) + 5
    return [
        ("penultimate", "classifier.4"),
        ("fc7", "classifier.4"),
        ("fc6", "classifier.1"),
        ("pool5", f"features.{n_modules - 1}"),
        ("last_conv", f"features.{n_modules - 2}"),
        ("logits", "classifier.6"),
    ]


def _resnet() -> list[tuple[str, str]]:
    return [
        ("penultimate", "avgpool"),
        ("last_conv", "layer4"),
        ("layer4", "layer4"),
        ("layer3", "layer3"),
        ("layer2", "layer2"),
        ("layer1", "layer1"),
        ("logits", "fc"),
    ]


def _densenet() -> list[tuple[str, str]]:
    return [
        ("penultimate", "flatten"),
        ("last_conv", "relu"),
        ("block4", "features.denseblock4"),
        ("block3", "features.denseblock3"),
        ("block2", "features.denseblock2"),
        ("logits", "classifier"),
    ]


def _efficientnet(name: str) -> list[tuple[str, str]]:
    last = 7 if name == "efficientnet_v2_s" else 8
    return [
        ("penultimate", "avgpool"),
        ("last_conv", f"features.{last}"),
        ("stage6", f"features.{last - 2}"),
        ("stage4", f"features.{last - 4}"),
        ("logits", "classifier.1"),
    ]


def _googlenet() -> list[tuple[str, str]]:
    return [
        ("penultimate", "avgpool"),
        ("last_conv", "inception5b"),
        ("inception4e", "inception4e"),
        ("inception3b", "inception3b"),
        ("logits", "fc"),
    ]


def _inception() -> list[tuple[str, str]]:
    return [
        ("penultimate", "avgpool"),
        ("last_conv", "Mixed_7c"),
        ("mixed_6e", "Mixed_6e"),
        ("mixed_5d", "Mixed_5d"),
        ("logits", "fc"),
    ]


def _maxvit() -> list[tuple[str, str]]:
    return [
        ("penultimate", "classifier.4"),
        ("last_conv", "blocks.3"),
        ("block2", "blocks.2"),
        ("logits", "classifier.5"),
    ]


def _mnasnet() -> list[tuple[str, str]]:
    return [
        ("penultimate", "mean"),
        ("last_conv", "layers"),
        ("stage5", "layers.12"),
        ("logits", "classifier.1"),
    ]


def _mobilenet_v2() -> list[tuple[str, str]]:
    return [
        ("penultimate", "flatten"),
        ("last_conv", "features"),
        ("block13", "features.14"),
        ("logits", "classifier.1"),
    ]


def _mobilenet_v3() -> list[tuple[str, str]]:
    return [
        ("penultimate", "classifier.1"),
        ("pool", "avgpool"),
        ("last_conv", "features"),
        ("logits", "classifier.3"),
    ]


def _regnet() -> list[tuple[str, str]]:
    return [
        ("penultimate", "avgpool"),
        ("last_conv", "trunk_output"),
        ("block3", "trunk_output.block3"),
        ("block2", "trunk_output.block2"),
        ("logits", "fc"),
    ]


def _shufflenet() -> list[tuple[str, str]]:
    return [
        ("penultimate", "mean"),
        ("last_conv", "conv5"),
        ("stage4", "stage4"),
        ("stage3", "stage3"),
        ("logits", "fc"),
    ]


def _squeezenet() -> list[tuple[str, str]]:
    return [
        ("penultimate", "features"),
        ("last_conv", "features"),
        ("fire7", "features.10"),
        ("logits", "flatten"),
    ]


def _swin() -> list[tuple[str, str]]:
    # features.N are channels-last (N, H, W, C); "permute" is the NCHW map after the norm
    return [
        ("penultimate", "flatten"),
        ("last_conv", "permute"),
        ("logits", "head"),
    ]


def _convnext() -> list[tuple[str, str]]:
    return [
        ("penultimate", "classifier.1"),
        ("last_conv", "features"),
        ("stage3", "features.5"),
        ("logits", "classifier.2"),
    ]


def _vit(name: str) -> list[tuple[str, str]]:
    return [
        ("penultimate", "getitem_5"),  # the class token after the final LayerNorm
        ("tokens", "encoder"),
        ("logits", "heads.head"),
    ]


def torchvision_layers(name: str) -> tuple[str, list[tuple[str, str]]]:
    """(family, aliases) of a torchvision classification model."""
    if name == "alexnet":
        return "alexnet", _alexnet()
    if name.startswith("vgg"):
        return "vgg", _vgg(name)
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        return "resnet", _resnet()
    if name.startswith("densenet"):
        return "densenet", _densenet()
    if name.startswith("efficientnet"):
        return "efficientnet", _efficientnet(name)
    if name == "googlenet":
        return "googlenet", _googlenet()
    if name == "inception_v3":
        return "inception", _inception()
    if name.startswith("maxvit"):
        return "maxvit", _maxvit()
    if name.startswith("mnasnet"):
        return "mnasnet", _mnasnet()
    if name == "mobilenet_v2":
        return "mobilenet_v2", _mobilenet_v2()
    if name.startswith("mobilenet_v3"):
        return "mobilenet_v3", _mobilenet_v3()
    if name.startswith("regnet"):
        return "regnet", _regnet()
    if name.startswith("shufflenet"):
        return "shufflenet", _shufflenet()
    if name.startswith("squeezenet"):
        return "squeezenet", _squeezenet()
    if name.startswith("swin"):
        return "swin", _swin()
    if name.startswith("convnext"):
        return "convnext", _convnext()
    if name.startswith("vit"):
        return "vit", _vit(name)
    return "other", []


EFFICIENTNET_LITE0_LAYERS: list[tuple[str, str]] = [
    ("penultimate", "_avg_pooling"),
    ("last_conv", "_swish_1"),  # head conv after BN and ReLU6 (the shared activation module)
    ("head_bn", "_bn1"),
    ("stage7", "_blocks.15"),
    ("stage6", "_blocks.14"),
    ("stage5", "_blocks.10"),
    ("stage4", "_blocks.7"),
    ("stage3", "_blocks.4"),
    ("logits", "_fc"),
]
