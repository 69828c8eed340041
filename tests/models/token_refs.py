"""Reference token views computed straight from a library's own token outputs (N, L, D).

Written independently of featstore's pooling: the tests compare captured-and-pooled features
against these, per view, so a prefix-token or axis mistake in featstore shows up.
"""

from __future__ import annotations

import torch

VIEWS = ("cls", "mean", "cls+mean", "tokens", "gem", "max")


def reference_view(view: str, tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """The view of (N, L, D) library tokens whose first ``prefix`` tokens are not patches."""
    t = tokens.float()
    patches = t[:, prefix:, :]
    if view == "cls":
        return t[:, 0, :]
    if view == "mean":
        return patches.sum(dim=1) / patches.shape[1]
    if view == "cls+mean":
        return torch.cat([t[:, 0, :], patches.sum(dim=1) / patches.shape[1]], dim=1)
    if view == "tokens":
        return t
    if view == "max":
        return patches.max(dim=1).values
    if view == "gem":
        return (patches.clamp(min=1e-6) ** 3).mean(dim=1) ** (1 / 3)
    raise ValueError(view)
