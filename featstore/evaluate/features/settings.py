"""Several settings in one go: rows of a comparison table (layers, networks, or their concat).

``featstore evaluate -m NET -l L1,L2,L3`` evaluates each layer separately (three rows), or,
with ``--concat``, their concatenation (one row). The settings are all checked before any
is evaluated, so a bad layer name stops the command before anything is written.

Entries are chosen by the same factors extraction took: stored pooling per layer (the
mapping :func:`featstore.extract.options.pooling_by_layer` makes of ``--pool LAYER=SPEC``;
several poolings of one layer are one row each), weights (``random``, ``pretrained`` or a
file), compute dtype, and entry keys that pick one of several matches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from featstore.errors import EvaluationError
from featstore.progress import Progress
from featstore.settings import selector_label
from featstore.specs import parse_pooling

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset
    from featstore.store.base import Store

__all__ = ["evaluate_settings", "settings_from_factors"]

Setting = list[dict[str, Any]]


def settings_from_factors(
    models: Sequence[str],
    layers: Sequence[str],
    *,
    pooling: str | Mapping[str, Sequence[str]] | None = None,
    view: str | None = "plain",
    concat: bool = False,
    weights: str | None = None,
    compute_dtype: str | None = None,
    keys: Sequence[str] = (),
) -> list[Setting]:
    """One setting per (model, layer, pooling), or a single concatenated setting of them all.

    ``pooling`` is one spec for every layer, or ``{"*": [...], LAYER: [...]}`` (a layer not
    named takes ``"*"``, and without ``"*"`` any pooling); None matches any stored pooling.
    """
    models = [m.strip() for m in models if m and m.strip()]
    layers = [layer.strip() for layer in layers if layer and layer.strip()]
    if not models or not layers:
        raise EvaluationError("give at least one model and one layer to evaluate")
    per_layer = _poolings(pooling, layers)
    extra: dict[str, Any] = {}
    if weights:
        extra["weights"] = weights
    if compute_dtype:
        extra["compute_dtype"] = compute_dtype
    if keys:
        extra["keys"] = list(keys)
    selectors = [
        {"model": m, "layer": layer, "pooling": pool, "view": view, **extra}
        for m in models
        for layer in layers
        for pool in per_layer[layer]
    ]
    if len({(s["model"], s["layer"], s["pooling"]) for s in selectors}) != len(selectors):
        raise EvaluationError("a (model, layer) pair is listed twice")
    return [selectors] if concat else [[s] for s in selectors]


def _poolings(
    pooling: str | Mapping[str, Sequence[str]] | None, layers: Sequence[str]
) -> dict[str, list[str | None]]:
    """The canonical stored poolings asked for each layer ([None] = any)."""
    if pooling is None or isinstance(pooling, str):
        table: Mapping[str, Sequence[str]] = {"*": [pooling]} if pooling else {}
    else:
        table = pooling
    unknown = sorted(set(table) - {"*", *layers})
    if unknown:
        raise EvaluationError(
            f"--pool names layer(s) {', '.join(unknown)} that are not evaluated (-l "
            f"{','.join(layers)}); give LAYER=SPEC for one of those layers"
        )
    out: dict[str, list[str | None]] = {}
    for layer in layers:
        specs = list(table.get(layer) or table.get("*") or [])
        canonical = list(dict.fromkeys(str(parse_pooling(s)) for s in specs))
        out[layer] = list(canonical) if canonical else [None]
    return out


def evaluate_settings(
    evaluate: Callable[..., Mapping[str, Any]],
    store: Store,
    dataset: str | Dataset,
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
    views = {sel.get("view") for setting in settings for sel in setting}
    labels = [
        selector_label(s, with_model=len(models) > 1, with_view=len(views) > 1) for s in settings
    ]
    if check is not None:
        for setting in settings:
            check(store, dataset, list(setting), **options)
    records = []
    for label, setting in zip(labels, settings, strict=True):

        def tagged(done: int, total: int, info: dict[str, Any], _label: str = label) -> None:
            if progress is not None:
                progress(done, total, {**info, "setting": _label})

        record = evaluate(store, dataset, list(setting), force=force, progress=tagged, **options)
        records.append({**record, "setting": label})
    return records
