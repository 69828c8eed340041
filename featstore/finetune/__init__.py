"""Fine-tuning as a factor: train a network on a registered dataset into a stored network.

    from featstore.finetune import Recipe, finetune
    finetune(store, "flowers", "efficientnet_lite0", "lite0-ft", Recipe(epochs=3, freeze="blocks.10"))

The result is registered in the store under its name (see :mod:`featstore.store.trained`)
and extracted from with ``-m NAME`` like any other network. The training functions (and
torch) are imported when first used, so a recipe is parsed without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featstore.finetune.recipe import Recipe

if TYPE_CHECKING:
    from featstore.finetune.train import (
        Request,
        finetune,
        plan_request,
        plan_run,
        training_rows,
    )

__all__ = ["Recipe", "Request", "finetune", "plan_request", "plan_run", "training_rows"]

_TRAIN = {"Request", "finetune", "plan_request", "plan_run", "training_rows"}


def __getattr__(name: str) -> Any:
    if name in _TRAIN:
        from featstore.finetune import train

        return getattr(train, name)
    raise AttributeError(f"module 'featstore.finetune' has no attribute {name!r}")
