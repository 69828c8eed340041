"""Report plots drawn with matplotlib (Agg backend, no display): PNG bytes for embedding.

- :func:`score_vs_layer`: one panel per task column, score against layer, one line per
  combination of the other factors (the study's "which layer transfers best" figure);
- :func:`heatmap`: tasks x settings, the colour being the score (the overview figure).
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from featstore.report.tables import Report  # noqa: E402
from featstore.settings import FACTORS  # noqa: E402

__all__ = ["heatmap", "score_vs_layer"]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def score_vs_layer(report: Report) -> bytes | None:
    """Score (%) against layer, one panel per column; None when there is nothing to draw."""
    if not report.columns or not report.rows:
        return None
    layers: list[str] = []
    for r in report.rows:  # rows are already in display (network) order
        if r.setting["layer"] not in layers:
            layers.append(r.setting["layer"])
    n = len(report.columns)
    ncols = min(n, 3)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
    others = [f for f in FACTORS if f != "layer"]
    for ax, col in zip(axes.ravel(), report.columns, strict=False):
        lines: dict[str, dict[str, float]] = {}
        for r in report.rows:
            if col in r.scores:
                name = "/".join(r.setting[f] for f in others if r.setting[f] != "-")
                lines.setdefault(name, {})[r.setting["layer"]] = 100.0 * r.scores[col]
        for name, points in lines.items():
            xs = [i for i, la in enumerate(layers) if la in points]
            ax.plot(xs, [points[layers[i]] for i in xs], marker="o", label=name)
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=8)
        ax.set_title(col.label, fontsize=9)
        ax.set_ylabel(f"{col.metric} (%)")
        ax.grid(alpha=0.3)
        if len(lines) <= 12:
            ax.legend(fontsize=6)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle("Score against layer")
    return _png(fig)


def heatmap(report: Report) -> bytes | None:
    """Tasks (rows) x settings (columns) coloured by score; missing cells left blank."""
    if not report.columns or not report.rows:
        return None
    data = np.full((len(report.columns), len(report.rows)), np.nan)
    for j, r in enumerate(report.rows):
        for i, col in enumerate(report.columns):
            if col in r.scores:
                data[i, j] = 100.0 * r.scores[col]
    width = max(6.0, 0.35 * len(report.rows) + 3)
    height = max(2.5, 0.5 * len(report.columns) + 2.2)
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(report.columns)))
    ax.set_yticklabels([c.label for c in report.columns], fontsize=8)
    ax.set_xticks(range(len(report.rows)))
    ax.set_xticklabels([f"S{j + 1}" for j in range(len(report.rows))], fontsize=7, rotation=90)
    ax.set_xlabel("setting (see the table)")
    fig.colorbar(image, ax=ax, label="score (%)")
    ax.set_title("Tasks x settings")
    return _png(fig)
