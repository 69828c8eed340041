"""Tiny generated data for the benchmarks' ``--smoke`` runs (seconds, no shared data).

Not a benchmark itself (the leading underscore keeps it out of the smoke test's list).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

CLASSES = ("circle", "square", "stripes")
TINY_NET = "_smoke:tiny_net"  # a team network: importable while a benchmark script runs


def tiny_net() -> tuple[nn.Module, dict[str, Any]]:
    """A seeded two-layer network on 32 px inputs: a forward pass costs next to nothing."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, 8, 3, padding=1),
                relu=nn.ReLU(),
                pool=nn.AdaptiveAvgPool2d(1),
                flat=nn.Flatten(),
                fc=nn.Linear(8, 3),
            )
        )
    return net.eval(), {"resize": 36, "crop": 32}


def _image(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A noisy drawing of its class, so classes are told apart and every file differs."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "circle":
        shape = (xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1
    elif kind == "square":
        shape = (abs(xx - 0.5) < 0.3) & (abs(yy - 0.5) < 0.3)
    else:
        shape = (xx * 8).astype(int) % 2 == 0
    pixels = 60 + 140 * shape[..., None] + rng.normal(0, 25, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def image_folder(root: str | Path, train: int = 10, test: int = 4, size: int = 64) -> Path:
    """``root/{train,test}/<class>/NNN.jpg`` for three classes (the flowers12 layout)."""
    root = Path(root)
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for kind in CLASSES:
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _image(kind, size, rng).save(folder / f"{i:03d}.jpg", quality=90)
    return root
