"""The setting vocabulary shared by evaluate, sweep and report: one place names the factors.

A *setting* is one row of a study table: network, layer, pooling, view, transform and
classifier. A result record says which setting it scored (:func:`record_setting`); a sweep
names its cells with the same labels (:func:`setting_label`, :func:`cell_key`); a report's
baseline is a partial setting (:func:`parse_baseline`). Nothing here reads a store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from featstore.errors import EvaluationError

__all__ = [
    "FACTORS",
    "FEATURE_FACTORS",
    "cell_key",
    "parse_baseline",
    "record_setting",
    "selector_label",
    "setting_label",
]

FACTORS = ("network", "layer", "pooling", "view", "transform", "classifier")
FEATURE_FACTORS = ("network", "layer", "pooling", "view", "transform")


def _join(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    return "-" if value is None else str(value)


def record_setting(record: Mapping[str, Any]) -> dict[str, str]:
    """The setting (row identity) of a result record.

    A plain-view entry averaged with its flip (a transform with ``flipavg``) is shown as
    view "flipavg" with the rest of the transform, as a sweep names it.
    """
    f = record.get("factors") or {}
    transform = str(record.get("transform") or "none")
    view = _join(f.get("view", "plain"))
    steps = [s for s in transform.split(",") if s and s != "none"]
    if "flipavg" in steps and view == "plain":
        view = "flipavg"
        steps = [s for s in steps if s != "flipavg"]
        transform = ",".join(steps) or "none"
    clf = record.get("classifier") or {}
    task = record.get("task")
    classifier = "-"
    if isinstance(clf, Mapping) and task == "classify":
        classifier = str(clf.get("name", "-"))
    elif isinstance(clf, Mapping) and task == "retrieve":
        # method, index and whitening tell retrieval settings apart (never average them)
        whiten = clf.get("whiten") or {}
        on = whiten.get("on", "-") if isinstance(whiten, Mapping) else whiten
        classifier = f"{clf.get('name', '-')} {clf.get('index', '-')} whiten:{on}"
    return {
        "network": _join(f.get("model") or f.get("model_name")),
        "layer": _join(f.get("layer")),
        "pooling": _join(f.get("pooling")),
        "view": view,
        "transform": transform,
        "classifier": classifier,
    }


def parse_baseline(text: str | Mapping[str, Any] | None) -> dict[str, str] | None:
    """``"layer=head,pooling=avg"`` (or a dict) -> a partial setting; None stays None."""
    if text is None or text == "":
        return None
    if isinstance(text, Mapping):
        pairs = {str(k): str(v) for k, v in text.items()}
    else:
        pairs = {}
        for bit in re.split(
            r";|,(?=\s*(?:network|layer|pooling|view|transform|classifier)=)", text
        ):
            key, sep, value = bit.strip().partition("=")
            if not sep:
                raise EvaluationError(f"baseline {text!r}: {bit!r} is not FACTOR=VALUE")
            pairs[key.strip()] = value.strip()
    unknown = sorted(set(pairs) - set(FACTORS))
    if unknown:
        raise EvaluationError(
            f"baseline names unknown factor(s) {unknown}; factors are {list(FACTORS)}"
        )
    return pairs


def setting_label(setting: Mapping[str, Any]) -> str:
    """A short readable name of a setting: ``net/layer/pool/view/transform/classifier``."""
    return "/".join(str(setting.get(k) or "-") for k in FACTORS)


def cell_key(dataset: str, task: str, setting: Mapping[str, Any]) -> str:
    """Identity of a cell as the report sees it (dataset, task, setting factors)."""
    return f"{dataset}:{task}:{setting_label(setting)}"


def selector_label(
    selectors: Sequence[Mapping[str, Any]], with_model: bool = False, with_view: bool = False
) -> str:
    """A row label of ``featstore evaluate``: the layer (``model:layer`` when several models,
    ``layer@view`` when several views), ``+``-joined for a concatenation."""
    names = []
    for sel in selectors:
        layer = str(sel.get("layer") or sel.get("key") or "?")
        name = f"{sel.get('model')}:{layer}" if with_model else layer
        names.append(f"{name}@{sel.get('view')}" if with_view else name)
    return "+".join(names)
