"""Tiny team networks for the fine-tuning tests (``tiny_nets:cnn``): fast on one CPU core."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

NET = "tiny_nets:cnn"
PREPROCESS = {"resize": 20, "crop": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


class TinyCNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.bn2 = nn.BatchNorm2d(16)
        self.drop = nn.Dropout(0.2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(16, classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.bn1(self.conv1(x)).relu()
        x = self.bn2(self.conv2(x)).relu()
        return self.fc(self.drop(self.flat(self.pool(x))))


def cnn() -> tuple[nn.Module, dict]:
    """The same weights on every call (seeded), as a team network's pretrained weights are."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        net = TinyCNN()
        for bn in (net.bn1, net.bn2):  # statistics as a trained network has them
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
        return net, PREPROCESS


def make_images(root: Path) -> Path:
    """3 classes x (8 train + 3 test) small JPEGs; each class has its own mean colour."""
    rng = np.random.default_rng(0)
    for c, colour in enumerate(((200, 40, 40), (40, 200, 40), (40, 40, 200))):
        for split, n in (("train", 8), ("test", 3)):
            for k in range(n):
                noise = rng.integers(-50, 50, size=(24, 24, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                path = root / split / f"c{c}" / f"{split}_{k}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path, quality=92)
    return root
