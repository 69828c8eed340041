"""What the timm, Hugging Face and OpenCLIP sources share: weights, hashing, layer tables.

A source adapter hangs off a ModelSpec (``spec.adapter``) and answers what loading.py
and layers.py ask of it: the local default weights, the sha256 of the state dict it
actually loads, a ready network, and the layer table. Its network is a ``TapNet``: the
library's model plus ``forward_taps(x, names)``, which returns every requested layer
from ONE call of the library's own multi-layer forward (timm ``forward_intermediates``,
HF ``output_hidden_states``, the OpenCLIP tower's blocks), token layers as (N, L, D).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featstore.errors import ModelError, WeightsNotFoundError
from featstore.models.layers import PROBE_BATCH, LayerInfo, meta_params
from featstore.models.tokens import TokenLayout
from featstore.models.weights import (
    cached_hash,
    file_cache_key,
    load_state_dict_file,
    remember_hash,
    state_dict_sha256,
)

MAX_LISTED_KEYS = 5


class TapNet(nn.Module):
    """A library network whose layers come out of one multi-layer forward.

    ``model`` is the library's module (its state dict is the one hashed); ``forward`` is
    the library's plain forward, ``forward_taps`` the one capture uses.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def forward_taps(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def to_nld(t: torch.Tensor, tokens: TokenLayout | None) -> torch.Tensor:
    """A copy of a captured tensor, token layers batch-first (LND -> NLD)."""
    if tokens is not None and tokens.layout == "LND":
        t = t.transpose(0, 1)
    return t.detach().clone(memory_format=torch.contiguous_format)


def check_keys(
    what: str, missing: Sequence[str], unexpected: Sequence[str], hint: str = ""
) -> None:
    """Refuse a checkpoint whose keys do not fit, listing the first offending keys."""
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(
            f"{len(missing)} missing (first: {', '.join(list(missing)[:MAX_LISTED_KEYS])})"
        )
    if unexpected:
        parts.append(
            f"{len(unexpected)} unexpected (first: {', '.join(list(unexpected)[:MAX_LISTED_KEYS])})"
        )
    raise ModelError(
        f"{what}: keys do not fit the architecture: {'; '.join(parts)}. "
        f"{hint or 'Is it a checkpoint of another architecture or variant?'}"
    )


def load_checked(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, hint: str = ""
) -> None:
    """Load a state dict strictly (refusing with the first missing/unexpected keys) and
    cast tensors to the model's dtypes; shape mismatches are refused too."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    check_keys(what, missing, unexpected, hint)
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise ModelError(
            f"{what}: {len(wrong)} tensors have other shapes than the architecture (first: "
            f"{', '.join(wrong[:3])}); is it a checkpoint of another variant or class count?"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state_dict.items()}, strict=True)


class SourceAdapter:
    """Base of the timm, hf and open_clip adapters.

    Subclasses set ``source`` and implement ``build`` (random-init library model),
    ``wrap`` (library model -> TapNet or the model itself), ``taps`` (layer names with
    their token layouts, given a built model) and ``default_weights`` / ``load_file``.
    """

    source = "?"

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version  # library version: part of a random network's hash key

    # --- to implement ------------------------------------------------------------------
    def build(self) -> nn.Module:
        raise NotImplementedError

    def wrap(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def default_weights(self) -> tuple[str, str]:
        """(source label, path) of local pretrained weights; WeightsNotFoundError otherwise."""
        raise WeightsNotFoundError(
            f"{self.name} has no local default weights: pass --weights FILE or --weights random"
        )

    def load_default(self, path: str) -> nn.Module:
        """The library model with its default (local) weights."""
        return self.load_file(path)

    def load_file(self, path: str) -> nn.Module:
        """The library model with weights from a state-dict file, keys checked."""
        model = self.build()
        state_dict = self.adapt_state_dict(load_state_dict_file(path))
        load_checked(model, state_dict, f"weights {path} for {self.name}")
        return model

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return state_dict

    def weights_files(self, path: str) -> list[str]:
        """Files whose change changes the weights (a folder: its weight files)."""
        p = Path(path)
        if p.is_dir():
            found = sorted(
                str(f)
                for pattern in ("*.safetensors", "*.bin", "*.pth", "*.pt")
                for f in p.glob(pattern)
            )
            return found or [str(p / "config.json")]
        return [str(p)]

    # --- shared --------------------------------------------------------------------------
    def _cache_key(self, kind: str, path: str | None, seed: int) -> str:
        if kind == "random" or path is None:
            return (
                f"random|{self.source}|{self.name}|{seed}|{self.version}|torch {torch.__version__}"
            )
        files = "|".join(file_cache_key(f) for f in self.weights_files(path))
        return f"{self.source}|{kind}|{self.name}|{files}"

    def load(self, kind: str, path: str | None, seed: int) -> tuple[nn.Module, str]:
        """(ready network, sha256 of the state dict actually loaded); kind is the
        WeightsRef source: random | file | the adapter's default label."""
        if kind == "random":
            from featstore.models.registry import torch_seeded

            with torch_seeded(seed):
                model = self.build()
        elif kind == "file":
            assert path is not None  # a resolved file ref always has a path
            model = self.load_file(path)
        else:
            assert path is not None
            model = self.load_default(path)
        model.eval().requires_grad_(False)
        sha = state_dict_sha256(model.state_dict())
        remember_hash(self._cache_key(kind, path, seed), sha)
        return self.wrap(model), sha

    def weights_sha(self, kind: str, path: str | None, seed: int) -> str:
        """The loaded state dict's sha256, from the per-file cache when unchanged."""
        sha = cached_hash(self._cache_key(kind, path, seed))
        return sha if sha is not None else self.load(kind, path, seed)[1]

    # --- layer table ---------------------------------------------------------------------
    def taps(self, model: nn.Module) -> list[tuple[str, str, TokenLayout | None]]:
        """(layer name, type, token layout) of every tap, in forward order."""
        raise NotImplementedError

    def layer_table(self, input_hw: tuple[int, int]) -> list[LayerInfo]:
        """Every tap with its per-sample shape, from one probe forward (meta device first)."""
        try:
            with meta_params():
                model = self.build().eval()
            return self._probe(model, input_hw, "meta")
        except Exception:  # some ops have no meta kernel: run it for real
            from featstore.models.registry import torch_seeded

            with torch_seeded(0):
                model = self.build().eval()
            return self._probe(model, input_hw, "cpu")

    def _probe(self, model: nn.Module, input_hw: tuple[int, int], device: str) -> list[LayerInfo]:
        net = self.wrap(model)
        taps = self.taps(model)
        if not isinstance(net, TapNet):
            from featstore.models.layers import probe_modules

            return probe_modules(net, input_hw, device)
        x = torch.zeros(PROBE_BATCH, 3, *input_hw, device=device)
        with torch.no_grad():
            out = net.forward_taps(x, [name for name, _, _ in taps])
        return [
            LayerInfo(name, "tap", kind, tuple(int(s) for s in out[name].shape[1:]), 1, tokens)
            for name, kind, tokens in taps
        ]


def grid_of(n_patches: int, hw: tuple[int, int] | None) -> tuple[int, int] | None:
    """(h, w) of a patch grid when known and consistent with the token count."""
    if hw is not None and hw[0] * hw[1] == n_patches:
        return (int(hw[0]), int(hw[1]))
    return None


Builder = Callable[[], nn.Module]
