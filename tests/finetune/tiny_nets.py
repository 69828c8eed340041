"""Tiny team networks for the fine-tuning tests (``tiny_nets:cnn``): fast on one CPU core."""

from __future__ import annotations

import torch
from torch import nn

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
