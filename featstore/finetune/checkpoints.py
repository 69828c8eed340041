"""A training state as safetensors tensors plus JSON scalars (never a pickle).

The state after an epoch is the model's state dict, the optimizer's per-parameter tensors
(momentum buffers, Adam moments and steps) and a few scalars (the optimizer's parameter
groups, the AMP scaler). Random number generators need no saving: each epoch seeds its
own from the recipe's seed and the epoch number (see :func:`epoch_seed`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

__all__ = ["epoch_seed", "pack_state", "restore_state"]

MODEL = "model/"
OPTIM = "optim/"


def epoch_seed(seed: int, epoch: int, stream: str) -> int:
    """A 63-bit seed for one epoch and one use (``shuffle``, ``augment``, ``torch``)."""
    digest = hashlib.sha256(f"{int(seed)}|{int(epoch)}|{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def pack_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON scalars) that :func:`restore_state` puts back exactly."""
    tensors = {MODEL + k: v for k, v in module.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in opt["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIM}{index}/{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    meta = {
        "param_groups": opt["param_groups"],
        "optim_scalars": scalars,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    }
    return tensors, meta


def restore_state(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    scaler: Any = None,
) -> None:
    """Put a packed state back into ``module``, ``optimizer`` (and ``scaler``)."""
    device = next(iter(module.state_dict().values())).device
    model_sd = {k[len(MODEL) :]: v for k, v in tensors.items() if k.startswith(MODEL)}
    module.load_state_dict(model_sd, strict=True)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(OPTIM):
            index, name = key[len(OPTIM) :].split("/", 1)
            state.setdefault(int(index), {})[name] = value.to(device) if name != "step" else value
    for index, values in (meta.get("optim_scalars") or {}).items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
