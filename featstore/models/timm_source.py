"""timm models as ``timm:NAME``: local pretrained weights, layers from ``feature_info``.

Layers are the model's ``feature_info`` taps (a ViT's ``blocks.3``, a ConvNeXt's
``stages.2``, a ResNet's ``layer2``), captured with timm's own ``forward_intermediates``
(``intermediates_only`` and ``stop_early`` unless the final features are asked for), plus
``features`` (forward_features), ``penultimate`` (pre-logits) and ``logits``. Aliases come
from the module names (``blocks.3`` -> ``block3``, ``stages.2`` -> ``stage2``). Token taps
carry the model's own prefix count (class + register tokens, ``num_prefix_tokens``).
Models without ``forward_intermediates`` are captured with hooks on their modules.

Weights are local only: the Hugging Face hub cache (``pretrained_cfg['hf_hub_id']``), the
torch hub cache (the ``url`` file name), or ``--weights FILE`` (.safetensors, .pth, .bin).
Preprocessing comes from ``resolve_data_config`` of the model's pretrained config.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from featstore.errors import UnknownModelError, WeightsNotFoundError
from featstore.models.adapter import SourceAdapter, TapNet, to_nld
from featstore.models.registry import register_source
from featstore.models.spec import ModelSpec, Preprocess
from featstore.models.tokens import TokenLayout
from featstore.models.weights import hf_cached_file, hub_checkpoint_path

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
FINAL_TAPS = ("features", "penultimate", "logits")


def _alias(module: str) -> str:
    """blocks.3 -> block3, stages.2 -> stage2, layer2 -> layer2, stages_2 -> stage2."""
    m = re.fullmatch(r"(.*?)s?[._](\d+)", module)
    return f"{m.group(1).split('.')[-1]}{m.group(2)}" if m else module.replace(".", "_")


def _is_token_model(model: nn.Module) -> bool:
    fi: Any = model.forward_intermediates
    params = inspect.signature(fi).parameters
    return hasattr(model, "num_prefix_tokens") and "return_prefix_tokens" in params


class TimmTapNet(TapNet):
    """timm model + forward_intermediates for its feature_info taps (one call per batch)."""

    def __init__(self, model: nn.Module, taps: Sequence[str], layout: TokenLayout | None) -> None:
        super().__init__(model)
        self.tap_names = list(taps)
        self.layout = layout

    def forward_taps(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        index = {name: i for i, name in enumerate(self.tap_names)}
        wanted = sorted({index[n] for n in names if n in index})
        final = any(n in FINAL_TAPS for n in names)
        out: dict[str, torch.Tensor] = {}
        m: Any = self.model
        kwargs: dict[str, Any] = {"indices": wanted or [0], "stop_early": not final}
        kwargs["intermediates_only"] = not final
        if self.layout is not None:
            kwargs.update(output_fmt="NLC", return_prefix_tokens=self.layout.prefix > 0)
        result = m.forward_intermediates(x, **kwargs)
        feats: Any
        feats, inter = (None, result) if not final else result
        for i, t in zip(wanted or [0], inter, strict=True):
            if isinstance(t, tuple):  # (patch tokens, prefix tokens) -> all tokens, in order
                t = torch.cat([t[1], t[0]], dim=1)
            out[self.tap_names[i]] = to_nld(t, self.layout)
        if final:
            out["features"] = to_nld(feats, self.layout if feats.dim() == 3 else None)
            pre = m.forward_head(feats, pre_logits=True)
            out["penultimate"] = pre.detach().clone()
            out["logits"] = m.forward_head(feats).detach().clone()
        return {n: out[n] for n in names}


class TimmAdapter(SourceAdapter):
    source = "timm"

    def __init__(self, name: str, arch: str, kwargs: dict[str, Any]) -> None:
        import timm

        super().__init__(name, f"timm {timm.__version__}")
        self.arch = arch
        self.kwargs = dict(kwargs)

    def build(self) -> nn.Module:
        import timm

        return timm.create_model(self.arch, pretrained=False, **self.kwargs)

    def _feature_modules(self, model: nn.Module) -> list[str]:
        info = getattr(model, "feature_info", None) or []
        return [str(f["module"]) for f in info]

    def _layout(self, model: nn.Module) -> TokenLayout | None:
        if not hasattr(model, "forward_intermediates") or not _is_token_model(model):
            return None
        prefix = int(model.num_prefix_tokens)  # type: ignore[arg-type]
        has_cls = getattr(model, "cls_token", None) is not None
        return TokenLayout(prefix=prefix, layout="NLD", has_cls=has_cls)

    def wrap(self, model: nn.Module) -> nn.Module:
        if not hasattr(model, "forward_intermediates") or not self._feature_modules(model):
            return model  # hooks on its modules (layers.py probes them)
        return TimmTapNet(model, self._feature_modules(model), self._layout(model))

    def taps(self, model: nn.Module) -> list[tuple[str, str, TokenLayout | None]]:
        layout = self._layout(model)
        out: list[tuple[str, str, TokenLayout | None]] = [
            (name, "forward_intermediates", layout) for name in self._feature_modules(model)
        ]
        out += [("features", "forward_features", layout), ("penultimate", "pre_logits", None)]
        out.append(("logits", "head", None))
        return out

    def aliases(self, model: nn.Module) -> list[tuple[str, str]]:
        if not isinstance(self.wrap(model), TapNet):
            return []  # captured by module name with hooks
        out = [("penultimate", "penultimate"), ("logits", "logits")]
        mods = self._feature_modules(model)
        seen = {"penultimate", "logits"}
        for name in mods:
            alias = _alias(name)
            if alias != name and alias not in seen:
                out.append((alias, name))
                seen.add(alias)
        if mods:
            out.append(("last_block", mods[-1]))
        return out

    # --- weights ---------------------------------------------------------------------
    def default_weights(self) -> tuple[str, str]:
        cfg = self._pretrained_cfg()
        hub_id = cfg.get("hf_hub_id")
        if hub_id:
            found = hf_cached_file(str(hub_id), HF_WEIGHT_FILES)
            if found:
                return "timm", found
        url = cfg.get("url") or ""
        if url:
            path = hub_checkpoint_path(url.rsplit("/", 1)[-1])
            if path.is_file():
                return "timm", str(path)
        where = f"the Hugging Face cache ({hub_id})" if hub_id else "the torch hub cache"
        raise WeightsNotFoundError(
            f"pretrained weights of timm:{self.arch} are not in {where}: fetch them on a machine "
            f"with internet (timm.create_model({self.arch!r}, pretrained=True)) and copy the cache, "
            f"or pass --weights FILE (.safetensors, .pth, .bin), or --weights random"
        )

    def _pretrained_cfg(self) -> dict[str, Any]:
        import timm

        try:
            cfg = timm.models.get_pretrained_cfg(self.arch)
        except Exception:  # unknown tag: no pretrained config
            cfg = None
        return cfg.to_dict() if cfg is not None else {}  # type: ignore[no-untyped-call]  # timm

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _strip(state_dict, ("module.", "model."))


def _strip(state_dict: dict[str, torch.Tensor], prefixes: Sequence[str]) -> dict[str, torch.Tensor]:
    for prefix in prefixes:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def timm_preprocess(model: nn.Module) -> Preprocess:
    """Preprocessing from timm's resolve_data_config, at the size the model was built for."""
    from timm.data.config import resolve_data_config

    cfg = resolve_data_config({}, model=model)  # type: ignore[no-untyped-call]  # timm: untyped
    size = int(cfg["input_size"][-1])
    built = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if built:  # a ViT built for another size than its pretrained config says
        size = int(built[-1] if isinstance(built, (tuple, list)) else built)
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    return Preprocess(
        resize=round(size / crop_pct),
        crop=size,
        interpolation=str(cfg.get("interpolation") or "bicubic"),
        mean=tuple(float(m) for m in cfg["mean"]),
        std=tuple(float(s) for s in cfg["std"]),
        scale=1.0 / 255.0,
    )


def timm_spec(arch: str, name: str | None = None, **kwargs: Any) -> ModelSpec:
    """The spec of a timm architecture; ``kwargs`` go to ``timm.create_model`` (img_size,
    depth ... for small test variants; they must be part of ``name`` when registered)."""
    try:
        import timm
    except ImportError as exc:
        raise UnknownModelError(f"timm:{arch}: timm is not installed (pip install timm)") from exc
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5)
        raise UnknownModelError(
            f"timm has no model {arch!r}; close matches: {', '.join(close) or 'none'}"
        )
    adapter = TimmAdapter(name or f"timm:{arch}", arch, kwargs)
    from featstore.models.layers import meta_params

    with meta_params():
        probe = adapter.build()
    fixed = bool(getattr(probe, "pretrained_cfg", {}).get("fixed_input_size", False))
    preprocess = timm_preprocess(probe)
    return ModelSpec(
        name=adapter.name,
        family=str(getattr(probe, "pretrained_cfg", {}).get("architecture", arch)),
        source="timm",
        builder=adapter.build,
        preprocess=preprocess,
        layers=tuple(adapter.aliases(probe)),
        default_layers=("penultimate",),
        fixed_input=fixed,
        min_input=32,
        description=f"timm {arch} (weights: local timm/HF cache, --weights FILE or random)",
        adapter=adapter,
    )


register_source("timm", timm_spec, "a timm model as 'timm:NAME'")
