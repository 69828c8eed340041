"""Token layouts of transformer layers: what the token axis of a captured layer holds.

A source (timm, Hugging Face, OpenCLIP) declares, per layer, how many prefix tokens
(class, distillation, register tokens) come before the patch tokens and in which axis
order the library produces the tokens (NLD: batch first; LND: tokens first, as older
OpenCLIP towers run their transformer). Capture turns LND into NLD once, so every
captured token layer is (N, L, D); pooling reads ``prefix`` and never guesses which
tokens are patches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featstore.errors import SpecError

LAYOUTS = ("NLD", "LND")


@dataclass(frozen=True)
class TokenLayout:
    """prefix: tokens before the patch tokens (1 for a class token, 1 + registers for
    DINOv2 with registers, 2 for DeiT-distilled, 0 for SigLIP / Swin); has_cls: whether
    token 0 is a class token; layout: the library's axis order before capture;
    grid: (h, w) of the patch tokens when they form a grid."""

    prefix: int
    layout: str = "NLD"
    has_cls: bool = True
    grid: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise SpecError(f"token layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.prefix < 0 or (self.has_cls and self.prefix < 1):
            raise SpecError(
                f"a token layout with has_cls={self.has_cls} needs prefix >= "
                f"{int(self.has_cls)}, got {self.prefix}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "layout": self.layout,
            "has_cls": self.has_cls,
            "grid": list(self.grid) if self.grid else None,
        }
