"""Hugging Face transformers vision models as ``hf:DIR_OR_CACHED_ID``, local files only.

A folder saved with ``save_pretrained`` or a model id already in the local HF cache
(``local_files_only=True``: never a download). ViT, DeiT, DINOv2 (with registers), BEiT,
Swin, ConvNeXt and the CLIP / SigLIP vision towers (a full CLIP / SigLIP checkpoint loads
its vision tower). Layers are the encoder's hidden states as ``output_hidden_states``
gives them: ``hidden_0`` (embeddings) ... ``hidden_N`` (the last block), plus ``last``
(``last_hidden_state``) and ``pooler`` (``pooler_output``), all from ONE forward.
Token layers declare their prefix tokens per model type (class, distillation, register
tokens); a model type this table does not know gets no token views rather than a guess.
Preprocessing comes from the folder's ``preprocessor_config.json``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featstore.errors import ModelError, UnknownModelError, WeightsNotFoundError
from featstore.models.adapter import SourceAdapter, TapNet, check_keys, to_nld
from featstore.models.registry import register_source
from featstore.models.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, Preprocess
from featstore.models.tokens import TokenLayout
from featstore.models.weights import hf_cached_file

# model_type -> (class name, prefix tokens before patches, has a class token)
TOWERS: dict[str, tuple[str, int, bool]] = {
    "vit": ("ViTModel", 1, True),
    "deit": ("DeiTModel", 2, True),  # class + distillation token
    "dinov2": ("Dinov2Model", 1, True),
    "dinov2_with_registers": ("Dinov2WithRegistersModel", 1, True),  # + num_register_tokens
    "beit": ("BeitModel", 1, True),
    "swin": ("SwinModel", 0, False),
    "convnext": ("ConvNextModel", 0, False),
    "clip_vision_model": ("CLIPVisionModel", 1, True),
    "clip": ("CLIPVisionModel", 1, True),
    "siglip_vision_model": ("SiglipVisionModel", 0, False),
    "siglip": ("SiglipVisionModel", 0, False),
}
# keys of other heads / towers that a backbone may ignore when loading a task checkpoint
HEAD_PREFIXES = (
    "classifier.",
    "text_model.",
    "text_projection",
    "visual_projection",
    "logit_scale",
    "logit_bias",
    "lm_head",
    "head.",
    "cls_classifier.",
    "distillation_classifier.",
)
FIXED_SIZE_TYPES = (
    "vit",
    "deit",
    "beit",
    "clip",
    "clip_vision_model",
    "siglip",
    "siglip_vision_model",
)
PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers draws progress bars and load reports; the library must not print."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # transformers: untyped
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers: untyped
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # transformers: untyped


def _tower_class(model_type: str) -> Any:
    import transformers

    return getattr(transformers, TOWERS[model_type][0])


class HFTapNet(TapNet):
    """An HF vision model + one ``output_hidden_states=True`` forward for every layer."""

    def __init__(self, model: nn.Module, layouts: dict[str, TokenLayout | None]) -> None:
        super().__init__(model)
        self.layouts = layouts

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(pixel_values=x)

    def forward_taps(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        out = self.model(pixel_values=x, output_hidden_states=True, return_dict=True)
        taps: dict[str, torch.Tensor] = {}
        for name in names:
            if name == "last":
                value = out.last_hidden_state
            elif name == "pooler":
                value = getattr(out, "pooler_output", None)
                if value is None:
                    raise ModelError(
                        "this model has no pooler output (its checkpoint has no pooler weights); "
                        "use a hidden_N layer or last"
                    )
            else:
                value = out.hidden_states[int(name.split("_", 1)[1])]
            taps[name] = to_nld(value, self.layouts.get(name))
        return taps


class HFAdapter(SourceAdapter):
    source = "hf"

    def __init__(self, name: str, location: str, config: Any) -> None:
        import transformers

        super().__init__(name, f"transformers {transformers.__version__}")
        self.location = location
        self.config = config
        self.model_type = str(config.model_type)
        self.vision_config = getattr(config, "vision_config", None) or config

    def build(self) -> nn.Module:
        with _quiet():
            return _tower_class(self.model_type)(self.vision_config)  # type: ignore[no-any-return]

    def _prefix(self) -> tuple[int, bool]:
        _, prefix, has_cls = TOWERS[self.model_type]
        prefix += int(getattr(self.vision_config, "num_register_tokens", 0) or 0)
        return prefix, has_cls

    def _n_hidden(self) -> int:
        cfg = self.vision_config
        depths = getattr(cfg, "depths", None)  # swin / convnext: one hidden state per stage
        return len(depths) if depths else int(cfg.num_hidden_layers)

    def taps(self, model: nn.Module) -> list[tuple[str, str, TokenLayout | None]]:
        prefix, has_cls = self._prefix()
        tokens = None if self.model_type == "convnext" else TokenLayout(prefix, "NLD", has_cls)
        out: list[tuple[str, str, TokenLayout | None]] = [
            (f"hidden_{i}", "embeddings" if i == 0 else "hidden_state", tokens)
            for i in range(self._n_hidden() + 1)
        ]
        out.append(("last", "last_hidden_state", tokens))
        out.append(("pooler", "pooler_output", None))
        return out

    def wrap(self, model: nn.Module) -> nn.Module:
        return HFTapNet(model, {name: t for name, _, t in self.taps(model)})

    def aliases(self) -> list[tuple[str, str]]:
        n = self._n_hidden()
        return [
            ("penultimate", "pooler"),
            ("embeddings", "hidden_0"),
            ("last_block", f"hidden_{n}"),
        ]

    # --- weights ---------------------------------------------------------------------
    def default_weights(self) -> tuple[str, str]:
        return "hf", self.location

    def weights_files(self, path: str) -> list[str]:
        p = Path(path)
        if p.is_dir():
            return super().weights_files(path)
        found = hf_cached_file(path, ("model.safetensors", "pytorch_model.bin", "config.json"))
        return [found] if found else [path]

    def load_default(self, path: str) -> nn.Module:
        cls = _tower_class(self.model_type)
        try:
            with _quiet():
                model, info = cls.from_pretrained(
                    path, local_files_only=True, output_loading_info=True
                )
        except OSError as exc:
            raise WeightsNotFoundError(
                f"no weights for hf:{path} on this machine ({str(exc).splitlines()[0]}); save the "
                f"model with save_pretrained into a folder, or pass --weights random"
            ) from exc
        missing = sorted(info.get("missing_keys", ()))
        unexpected = sorted(
            k for k in info.get("unexpected_keys", ()) if not k.startswith(HEAD_PREFIXES)
        )
        mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
        if missing and all(k.startswith("pooler.") for k in missing):
            model.pooler = None  # a task checkpoint without pooler: no random pooler served
            missing = []
        check_keys(f"weights of hf:{path}", missing + mismatched, unexpected)
        return model  # type: ignore[no-any-return]


def _preprocessor_config(location: str) -> dict[str, Any] | None:
    p = Path(location)
    path = p / "preprocessor_config.json" if p.is_dir() else None
    if path is None:
        found = hf_cached_file(location, ("preprocessor_config.json",))
        path = Path(found) if found else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _size(value: Any, fallback: int) -> int | tuple[int, int]:
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if "height" in value and "width" in value:
            return (int(value["height"]), int(value["width"]))
    if isinstance(value, (int, float)):
        return int(value)
    return fallback


def hf_preprocess(location: str, image_size: int) -> tuple[Preprocess, str]:
    """(Preprocess, note) from the image-processor config; ImageNet defaults without one."""
    cfg = _preprocessor_config(location)
    if cfg is None:
        pre = Preprocess(resize=image_size, crop=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        return pre, "no preprocessor_config.json: ImageNet mean/std at the config's image size"
    resize = _size(cfg.get("size"), image_size) if cfg.get("do_resize", True) else image_size
    crop: int | tuple[int, int]
    if cfg.get("do_center_crop"):
        crop = _size(cfg.get("crop_size"), image_size)
    else:
        crop = resize if isinstance(resize, tuple) else (resize, resize)
    normalise = cfg.get("do_normalize", True)
    mean = tuple(cfg.get("image_mean", IMAGENET_MEAN)) if normalise else (0.0, 0.0, 0.0)
    std = tuple(cfg.get("image_std", IMAGENET_STD)) if normalise else (1.0, 1.0, 1.0)
    rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    pre = Preprocess(
        resize=resize,
        crop=crop,
        interpolation=PIL_FILTERS.get(int(cfg.get("resample", 2)), "bilinear"),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        scale=rescale,
    )
    return pre, "preprocessing from preprocessor_config.json"


def hf_spec(location: str) -> ModelSpec:
    """The spec of a local HF vision model: a save_pretrained folder or a cached model id."""
    try:
        from transformers import AutoConfig
    except ImportError as exc:
        raise UnknownModelError(f"hf:{location}: transformers is not installed") from exc
    try:
        with _quiet():
            config = AutoConfig.from_pretrained(location, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UnknownModelError(
            f"hf:{location} is neither a folder saved with save_pretrained nor a model in the "
            f"local Hugging Face cache ({str(exc).splitlines()[0]}); featstore never downloads"
        ) from exc
    if config.model_type not in TOWERS:
        raise UnknownModelError(
            f"hf:{location} is a {config.model_type!r} model; featstore reads the vision models "
            f"{', '.join(sorted(TOWERS))}"
        )
    name = f"hf:{location}"
    adapter = HFAdapter(name, location, config)
    vcfg = adapter.vision_config
    image_size = int(getattr(vcfg, "image_size", 224) or 224)
    preprocess, note = hf_preprocess(location, image_size)
    return ModelSpec(
        name=name,
        family=str(config.model_type),
        source="hf",
        builder=adapter.build,
        preprocess=preprocess,
        layers=tuple(adapter.aliases()),
        default_layers=("penultimate",),
        fixed_input=config.model_type in FIXED_SIZE_TYPES,
        min_input=32,
        description=f"Hugging Face {TOWERS[config.model_type][0]} from {location} ({note})",
        adapter=adapter,
    )


register_source("hf", hf_spec, "a Hugging Face model as 'hf:DIR_OR_CACHED_ID'")
