"""Team networks that go wrong in every way a user's ``-m module:function`` can (CLI tests)."""

from __future__ import annotations

from torch import nn


def fails() -> nn.Module:
    raise RuntimeError("checkpoint shard 3 is missing")


def returns_none() -> None:
    return None


def returns_name() -> str:
    return "resnet18"


def returns_bad_pair() -> tuple[nn.Module, str]:
    return nn.Conv2d(3, 4, 3), "imagenet"


def returns_bad_preprocess() -> tuple[nn.Module, dict[str, int]]:
    return nn.Conv2d(3, 4, 3), {"rezise": 64}


NOT_A_FUNCTION = 5
