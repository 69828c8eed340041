"""Several settings in one go: rows of a comparison table (layers, networks, or their concat).

``featstore evaluate -m NET -l L1,L2,L3`` evaluates each layer separately (three rows), or,
with ``--concat``, their concatenation (one row). The settings are all checked before any
is evaluated, so a bad layer name stops the command before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from featstore.errors import EvaluationError
from featstore.progress import Progress
from featstore.settings import selector_label

__all__ = ["evaluate_settings", "settings_from_factors"]

Setting = list[dict[str, Any]]


def settings_from_factors(
    models: Sequence[str],
    layers: Sequence[str],
    *,
    pooling: str | None = None,
    view: str | None = "plain",
    concat: bool = False,
) -> list[Setting]:
    """One setting per (model, layer), or a single concatenated setting of them all."""
    models = [m.strip() for m in models if m and m.strip()]
    layers = [layer.strip() for layer in layers if layer and layer.strip()]
    if not models or not layers:
        raise EvaluationError("give at least one model and one layer to evaluate")
    selectors = [
        {"model": m, "layer": layer, "pooling": pooling, "view": view}
        for m in models
        for layer in layers
    ]
    if len({(s["model"], s["layer"]) for s in selectors}) != len(selectors):
        raise EvaluationError("a (model, layer) pair is listed twice")
    return [selectors] if concat else [[s] for s in selectors]


def evaluate_settings(
    evaluate: Callable[..., dict[str, Any]],
    store: Any,
    dataset: Any,
    settings: Sequence[Setting],
    *,
    check: Callable[..., Any] | None = None,
    force: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Evaluate every setting with ``evaluate(store, dataset, features, **options)``.

    ``check(store, dataset, features, **options)`` (e.g. ``plan_classification``) runs on
    every setting first, so bad input in any row raises before any row is computed. Each
    returned record carries ``setting`` (its row label) besides ``cached``.
    """
    if not settings:
        raise EvaluationError("no settings to evaluate")
    models = {sel.get("model") for setting in settings for sel in setting}
    labels = [selector_label(s, with_model=len(models) > 1) for s in settings]
    if check is not None:
        for setting in settings:
            check(store, dataset, list(setting), **options)
    records = []
    for label, setting in zip(labels, settings, strict=True):

        def tagged(done: int, total: int, info: dict, _label: str = label) -> None:
            if progress is not None:
                progress(done, total, {**info, "setting": _label})

        record = evaluate(store, dataset, list(setting), force=force, progress=tagged, **options)
        records.append({**record, "setting": label})
    return records
