"""A fine-tuning recipe: every choice that decides the trained weights, as one frozen value.

The recipe is parsed once at the edge (CLI, sweep spec, library call) and hashed into the
run's key together with the parent network's identity and the dataset, so the same request
is a lookup and any changed choice (a learning rate, a frozen layer, the seed) is another run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from featstore.errors import SpecError

__all__ = ["AUGMENTS", "OPTIMIZERS", "TRAIN_MODES", "Recipe", "parse_schedule"]

OPTIMIZERS = ("sgd", "adam", "adamw")
AUGMENTS = ("none", "flip", "flip+crop")
TRAIN_MODES = ("all", "head")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16", "float16-amp")  # auto: float16-amp on CUDA


def parse_schedule(text: str) -> tuple[str, int, float]:
    """``constant`` | ``cosine`` | ``step:N[:GAMMA]`` -> (kind, step epochs, gamma)."""
    value = str(text).strip().lower()
    if value in ("constant", "cosine"):
        return value, 0, 1.0
    m = re.fullmatch(r"step:(\d+)(?::([0-9]*\.?[0-9]+))?", value)
    if m and int(m.group(1)) >= 1:
        gamma = float(m.group(2)) if m.group(2) else 0.1
        if 0 < gamma <= 1:
            return "step", int(m.group(1)), gamma
    raise SpecError(
        f"unknown learning-rate schedule {text!r}; use constant, cosine or step:N[:GAMMA] "
        "(multiply by GAMMA, default 0.1, every N epochs)"
    )


@dataclass(frozen=True)
class Recipe:
    """How a network is fine-tuned.

    train: ``all`` (every parameter not frozen) or ``head`` (only the new classifier head:
    a linear probe trained by SGD); freeze: layers up to and including this one keep their
    parent weights (Yosinski's frozen transfer); reinit_above: layers after this one start
    from random weights; keep_every: also keep every Kth epoch's weights (0: only the best
    on validation); val_fraction: share of the training rows carved for validation when the
    dataset has no val split (stratified, seeded, as evaluation carves it).
    """

    epochs: int = 5
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    schedule: str = "cosine"
    batch_size: int = 32
    weight_decay: float = 1e-4
    augment: str = "flip"
    seed: int = 0
    compute_dtype: str = "auto"
    train: str = "all"
    freeze: str | None = None
    reinit_above: str | None = None
    keep_every: int = 0
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        def bad(what: str) -> SpecError:
            return SpecError(f"fine-tuning recipe: {what}")

        if int(self.epochs) < 1:
            raise bad(f"epochs must be at least 1, got {self.epochs}")
        if self.optimizer not in OPTIMIZERS:
            raise bad(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        for name in ("lr", "momentum", "weight_decay"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise bad(f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}")
        parse_schedule(self.schedule)
        if int(self.batch_size) < 1:
            raise bad(f"batch_size must be at least 1, got {self.batch_size}")
        if self.augment not in AUGMENTS:
            raise bad(f"unknown augmentation {self.augment!r}; use one of {', '.join(AUGMENTS)}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise bad(
                f"unknown compute dtype {self.compute_dtype!r}; use one of {', '.join(COMPUTE_DTYPES)}"
            )
        if self.train not in TRAIN_MODES:
            raise bad(f"train must be one of {', '.join(TRAIN_MODES)}, got {self.train!r}")
        if self.train == "head" and (self.freeze or self.reinit_above):
            raise bad("train 'head' freezes every layer already; drop freeze and reinit_above")
        if int(self.keep_every) < 0:
            raise bad(
                f"keep_every must be 0 (best only) or a number of epochs, got {self.keep_every}"
            )
        if not 0 < float(self.val_fraction) < 1:
            raise bad(f"val_fraction must be between 0 and 1, got {self.val_fraction}")

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain JSON values (what the run key hashes and provenance records)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """A recipe from a dict (sweep spec, stored provenance); unknown fields are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown fine-tuning recipe fields {unknown}; known: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data or data[f.name] is None:
                continue
            value = data[f.name]
            try:
                if f.name in ("epochs", "batch_size", "seed", "keep_every"):
                    kwargs[f.name] = int(value)
                elif f.name in ("lr", "momentum", "weight_decay", "val_fraction"):
                    kwargs[f.name] = float(value)
                else:
                    kwargs[f.name] = (
                        str(value).strip().lower()
                        if f.name not in ("freeze", "reinit_above")
                        else str(value)
                    )
            except (TypeError, ValueError):
                raise SpecError(f"fine-tuning recipe: {f.name} {value!r} is not valid") from None
        return cls(**kwargs)

    def with_options(self, **values: Any) -> Recipe:
        """A copy with some fields replaced (None values are ignored)."""
        given = {k: v for k, v in values.items() if v is not None}
        return Recipe.from_dict({**self.to_dict(), **given}) if given else self
