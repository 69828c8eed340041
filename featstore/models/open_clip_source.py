"""OpenCLIP image towers as ``open_clip:ARCH`` with ``--weights FILE``.

Only the vision tower is built (the text tower is never needed for image features). Its
layers are the visual trunk's transformer blocks (``transformer.resblocks.N``, aliases
``blockN``), captured with hooks in ONE forward of the tower, and ``embedding`` (the
tower's output, the image embedding; alias ``penultimate``). The token axis comes from the
tower itself: ``transformer.batch_first`` says NLD or LND (open_clip 3.x runs NLD; older
towers and hand-built ones run LND), and capture returns (N, L, D) either way. OpenCLIP
ViTs always have one class token. Towers whose trunk is a timm model are captured by module
name with hooks.

Weights: ``--weights FILE`` holding a full CLIP state dict (its ``visual.*`` keys are used)
or the tower's own; the keys must fit. Preprocessing from the model config's
``preprocess_cfg`` (OpenAI mean/std, bicubic, shortest-side resize by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from featstore.errors import UnknownLayerError, UnknownModelError, WeightsNotFoundError
from featstore.models.adapter import SourceAdapter, TapNet, to_nld
from featstore.models.registry import register_source
from featstore.models.spec import ModelSpec, Preprocess
from featstore.models.tokens import TokenLayout


class _Stop(BaseException):
    """Raised from the last wanted hook: the rest of the tower is skipped."""


def _blocks(visual: nn.Module) -> Sequence[nn.Module] | None:
    transformer = getattr(visual, "transformer", None)
    return getattr(transformer, "resblocks", None)


def layout_of(visual: nn.Module) -> TokenLayout:
    """The tower's token layout: one class token; NLD when its transformer is batch-first."""
    batch_first = bool(getattr(visual.transformer, "batch_first", True))
    return TokenLayout(prefix=1, layout="NLD" if batch_first else "LND", has_cls=True)


class OpenClipTapNet(TapNet):
    """An OpenCLIP VisionTransformer; hooks on its blocks, one forward for all layers."""

    def forward_taps(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        blocks = _blocks(self.model)
        assert blocks is not None  # wrap() only builds this class for block towers
        layout = layout_of(self.model)
        index = {f"transformer.resblocks.{i}": i for i in range(len(blocks))}
        wanted = {n for n in names if n in index}
        unknown = [n for n in names if n not in index and n != "embedding"]
        if unknown:
            raise UnknownLayerError(f"the OpenCLIP tower has no layer {unknown[0]!r}")
        out: dict[str, torch.Tensor] = {}
        handles = []
        for name in wanted:

            def hook(_m: nn.Module, _i: Any, value: Any, name: str = name) -> None:
                out[name] = to_nld(value, layout)
                if "embedding" not in names and wanted.issubset(out):
                    raise _Stop

            handles.append(blocks[index[name]].register_forward_hook(hook))
        try:
            embedding = self.model(x)
            out["embedding"] = embedding.detach().clone()
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return {n: out[n] for n in names}


class OpenClipAdapter(SourceAdapter):
    source = "open_clip"

    def __init__(self, name: str, arch: str, cfg: dict[str, Any]) -> None:
        import open_clip

        super().__init__(name, f"open_clip {open_clip.__version__}")
        self.arch = arch
        self.cfg = cfg

    def build(self) -> nn.Module:
        from open_clip.model import _build_vision_tower

        return _build_vision_tower(  # type: ignore[no-any-return]
            self.cfg["embed_dim"], self.cfg["vision_cfg"], self.cfg.get("quick_gelu", False)
        )

    def wrap(self, model: nn.Module) -> nn.Module:
        return OpenClipTapNet(model) if _blocks(model) is not None else model

    def taps(self, model: nn.Module) -> list[tuple[str, str, TokenLayout | None]]:
        blocks = _blocks(model)
        if blocks is None:
            return []
        layout = layout_of(model)
        out: list[tuple[str, str, TokenLayout | None]] = [
            (f"transformer.resblocks.{i}", type(b).__name__, layout) for i, b in enumerate(blocks)
        ]
        out.append(("embedding", "image_embedding", None))
        return out

    def aliases(self, model: nn.Module) -> list[tuple[str, str]]:
        blocks = _blocks(model)
        if blocks is None:
            return []
        out = [("penultimate", "embedding")]
        out += [(f"block{i}", f"transformer.resblocks.{i}") for i in range(len(blocks))]
        out.append(("last_block", f"transformer.resblocks.{len(blocks) - 1}"))
        return out

    def default_weights(self) -> tuple[str, str]:
        raise WeightsNotFoundError(
            f"open_clip:{self.arch} needs its weights as a file: pass --weights FILE (a CLIP "
            f"checkpoint: .safetensors, .bin or .pth, e.g. open_clip_pytorch_model.bin from the "
            f"model's page), or --weights random"
        )

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A full CLIP checkpoint: keep the visual tower's keys, without their prefix."""
        if any(k.startswith("visual.") for k in state_dict):
            return {
                k[len("visual.") :]: v for k, v in state_dict.items() if k.startswith("visual.")
            }
        return state_dict


def open_clip_preprocess(cfg: dict[str, Any]) -> Preprocess:
    from open_clip.transform import PreprocessCfg

    pre = PreprocessCfg(
        **{"size": cfg["vision_cfg"].get("image_size", 224), **cfg.get("preprocess_cfg", {})}
    )
    size: int | tuple[int, int] = (
        int(pre.size) if isinstance(pre.size, int) else (int(pre.size[0]), int(pre.size[-1]))
    )
    squash = pre.resize_mode == "squash" and isinstance(size, int)
    return Preprocess(
        resize=(size, size) if squash else size,  # type: ignore[arg-type]
        crop=size,
        interpolation=pre.interpolation,
        mean=tuple(float(m) for m in pre.mean),
        std=tuple(float(s) for s in pre.std),
        scale=1.0 / 255.0,
    )


def open_clip_spec(arch: str) -> ModelSpec:
    """The spec of an OpenCLIP architecture's image tower (any config open_clip knows)."""
    try:
        import open_clip
    except ImportError as exc:
        raise UnknownModelError(f"open_clip:{arch}: open_clip_torch is not installed") from exc
    cfg = open_clip.get_model_config(arch)
    if not cfg:
        import difflib

        close = difflib.get_close_matches(arch, open_clip.list_models(), n=5)
        raise UnknownModelError(
            f"open_clip has no architecture {arch!r}; close matches: {', '.join(close) or 'none'}"
        )
    adapter = OpenClipAdapter(f"open_clip:{arch}", arch, cfg)
    from featstore.models.layers import meta_params

    with meta_params():
        probe = adapter.build()
    return ModelSpec(
        name=adapter.name,
        family="open_clip",
        source="open_clip",
        builder=adapter.build,
        preprocess=open_clip_preprocess(cfg),
        layers=tuple(adapter.aliases(probe)),
        default_layers=("penultimate",),
        fixed_input=True,
        min_input=32,
        description=f"OpenCLIP {arch} image tower (weights: --weights FILE or random)",
        adapter=adapter,
    )


register_source("open_clip", open_clip_spec, "an OpenCLIP tower as 'open_clip:ARCH'")
