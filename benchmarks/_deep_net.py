"""A random-init deep team network for the read-path benchmark's 480-cell sweep.

Not a benchmark itself (the leading underscore keeps it out of the smoke test's list).
``_deep_net:deep_net`` has ``DEPTH`` blocks ``b01``..``bNN`` (3x3 conv, 16 channels, ReLU) on
16 px inputs: every block is a layer the sweep reads, each entry N x 16 after pooling.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

CHANNELS = 16
DEPTH = int(os.environ.get("READPATH_DEPTH", "40"))


def layer_names(depth: int = DEPTH) -> list[str]:
    return [f"b{i:02d}" for i in range(1, depth + 1)]


def deep_net() -> tuple[nn.Module, dict[str, Any]]:
    """``DEPTH`` seeded conv blocks; a forward pass of 1,797 digits takes seconds on a CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        for i, name in enumerate(layer_names()):
            conv = nn.Conv2d(3 if i == 0 else CHANNELS, CHANNELS, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")  # no fading at depth 40
            nn.init.zeros_(conv.bias)
            blocks[name] = nn.Sequential(conv, nn.ReLU())
        net = nn.Sequential(blocks)
    return net.eval(), {"resize": 16, "crop": 16}
