"""Report plots drawn with matplotlib (Agg backend, no display): PNG bytes for embedding.

- :func:`score_vs_layer`: the layer-wise transfer curve: one panel per network, its layers
  in depth order, one line per task (the study's "which layer transfers best" figure);
- :func:`heatmap`: tasks x settings, the colour being the score (the overview figure);
- :func:`similarity_heatmap`: a CKA / RSA matrix, layers x layers within and across networks;
- :func:`factor_effects_plot`: one task's factor effects, one small panel per factor;
- :func:`architecture_plot`: ImageNet accuracy against transfer accuracy on log-odds axes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt
import numpy as np

from featstore.report.tables import Report
from featstore.settings import FACTORS

__all__ = [
    "architecture_plot",
    "factor_effects_plot",
    "heatmap",
    "layer_curves",
    "score_vs_layer",
    "similarity_heatmap",
]

MAX_LINES = 8  # more lines than this in a network's panel: one line per task, others at best


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def layer_curves(report: Report) -> dict[str, tuple[list[str], dict[str, dict[str, float]]]]:
    """Per network: its layers in depth order and, per line, the score (fraction) of each layer.

    A line is a task column plus the other factors that vary within one layer (a factor
    that only differs between layers, such as the stored pooling of a penultimate "none"
    beside "avg" maps, does not split the curve). When that gives more than ``MAX_LINES``
    lines, each task gets one line: per layer, its best score over the other factors.
    """
    from featstore.report.depth import depth_order

    others = [f for f in FACTORS if f not in ("network", "layer")]
    out: dict[str, tuple[list[str], dict[str, dict[str, float]]]] = {}
    for net in dict.fromkeys(r.setting["network"] for r in report.rows):
        rows = [r for r in report.rows if r.setting["network"] == net]
        layers = depth_order(net, [r.setting["layer"] for r in rows])
        split = [
            f
            for f in others
            if any(
                len({r.setting[f] for r in rows if r.setting["layer"] == la}) > 1 for la in layers
            )
        ]
        lines: dict[str, dict[str, float]] = {}
        for r in rows:
            rest = "/".join(r.setting[f] for f in split if r.setting[f] != "-")
            for col in report.columns:
                if col in r.scores:
                    name = f"{col.dataset} {col.task}" + (f" {rest}" if rest else "")
                    lines.setdefault(name, {})[r.setting["layer"]] = r.scores[col]
        if len(lines) > MAX_LINES:  # a large grid: each task's best over the other factors
            lines = {}
            for r in rows:
                for col in report.columns:
                    if col in r.scores:
                        name = f"{col.dataset} {col.task} (best of the other factors)"
                        line = lines.setdefault(name, {})
                        line[r.setting["layer"]] = max(
                            line.get(r.setting["layer"], -np.inf), r.scores[col]
                        )
        out[net] = (layers, lines)
    return out


def score_vs_layer(report: Report) -> bytes | None:
    """The layer-wise transfer curve: score (fraction) of each layer in depth order, per network and task.

    One panel per network (its layers from the input to the output, see
    :mod:`featstore.report.depth`), one line per task column (see :func:`layer_curves`): the
    Yosinski / Azizpour "which layer" figure. None when there is nothing to draw.
    """
    if not report.columns or not report.rows:
        return None
    curves = layer_curves(report)
    n = len(curves)
    ncols = min(n, 3)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 4.0 * nrows), squeeze=False)
    for ax, (net, (layers, lines)) in zip(axes.ravel(), curves.items(), strict=False):
        for name, points in lines.items():
            xs = [i for i, la in enumerate(layers) if la in points]
            ax.plot(xs, [points[layers[i]] for i in xs], marker="o", label=name)
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("layer (input to output)")
        ax.set_title(net, fontsize=9)
        ax.set_ylabel("score (fraction)")
        ax.grid(alpha=0.3)
        if len(lines) <= 12:
            ax.legend(fontsize=6)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle("Layer-wise transfer: score of each layer, in depth order")
    return _png(fig)


def heatmap(report: Report) -> bytes | None:
    """Tasks (rows) x settings (columns) coloured by score; missing cells left blank."""
    if not report.columns or not report.rows:
        return None
    data = np.full((len(report.columns), len(report.rows)), np.nan)
    for j, r in enumerate(report.rows):
        for i, col in enumerate(report.columns):
            if col in r.scores:
                data[i, j] = r.scores[col]
    width = min(30.0, max(6.0, 0.35 * len(report.rows) + 3))
    height = max(2.5, 0.5 * len(report.columns) + 2.2)
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(report.columns)))
    ax.set_yticklabels([c.label for c in report.columns], fontsize=8)
    if len(report.rows) <= 80:
        ax.set_xticks(range(len(report.rows)))
        ax.set_xticklabels([f"S{j + 1}" for j in range(len(report.rows))], fontsize=7, rotation=90)
    ax.set_xlabel("setting (see the table)")
    fig.colorbar(image, ax=ax, label="score (fraction)")
    ax.set_title("Tasks x settings")
    return _png(fig)


def similarity_heatmap(m: dict[str, Any]) -> bytes | None:
    """One similarity matrix (see :mod:`featstore.report.similarity`) as a heatmap.

    Rows and columns are the representations (network by network, each in depth order),
    lines separate networks, cells carry their value when the matrix is small enough to read.
    """
    from featstore.report.similarity import similarity_title

    labels = list(m.get("labels") or [])
    if len(labels) < 2:
        return None
    data = np.array(
        [[np.nan if v is None else float(v) for v in row] for row in m["matrix"]], dtype=float
    )
    size = max(4.5, 0.55 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    low = 0.0 if np.nanmin(data) >= 0 else -1.0
    image = ax.imshow(np.ma.masked_invalid(data), cmap="magma", vmin=low, vmax=1.0)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    nets = list(m.get("networks") or [])
    for i in range(1, len(nets)):
        if nets[i] != nets[i - 1]:
            ax.axhline(i - 0.5, color="white", lw=1.5)
            ax.axvline(i - 0.5, color="white", lw=1.5)
    if len(labels) <= 14:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if np.isfinite(data[i, j]):
                    colour = "black" if data[i, j] > 0.6 else "white"
                    ax.text(
                        j,
                        i,
                        f"{data[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=colour,
                    )
    name = str((m.get("measure") or {}).get("name", "similarity"))
    fig.colorbar(image, ax=ax, label=name, fraction=0.046, pad=0.04)
    ax.set_title(similarity_title(m), fontsize=9)
    return _png(fig)


def factor_effects_plot(te: Any) -> bytes | None:
    """One task's factor effects (a :class:`~featstore.report.effects.TaskEffects`): a panel
    per factor, largest effect first; per level, the best score (dot, line) and the spread
    over the other factors (bar from min to max, tick at the median)."""
    factors = list(te.ranked)
    if not factors:
        return None
    n = len(factors)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.6, 3.0), squeeze=False, sharey=True)
    for ax, f in zip(axes[0], factors, strict=True):
        xs = np.arange(len(f.levels))
        ax.vlines(xs, [lv.min for lv in f.levels], [lv.max for lv in f.levels], color="#bbb", lw=4)
        ax.plot(xs, [lv.median for lv in f.levels], "_", color="#555", ms=12)
        ax.plot(xs, [lv.best for lv in f.levels], "o-", color="C0")
        ax.set_xticks(xs)
        labels = [lv.level if len(lv.level) <= 20 else lv.level[:19] + "~" for lv in f.levels]
        ax.set_xticklabels(labels, rotation=40, ha="right", fontsize=7)
        ax.set_title(f"{f.factor}: {f.effect:.3f}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score (fraction)")
    fig.suptitle(
        f"{te.column.label}: best per level (dot), spread over the other factors (bar)",
        fontsize=9,
        y=1.04,
    )
    return _png(fig)


def architecture_plot(a: Mapping[str, Any]) -> bytes | None:
    """ImageNet top-1 against transfer score for one task, both on log-odds axes (ticks in
    %), with the least-squares line of the log-odds and r in the title."""
    from featstore.report.findings import fmt_r
    from featstore.report.kornblith import logit

    points = list(a.get("points") or [])
    if len(points) < 2:
        return None
    x = logit(np.array([p["imagenet_top1"] / 100.0 for p in points]))
    y = logit(np.array([p["score"] for p in points]))
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    ax.scatter(x, y, color="C0", zorder=3)
    for xi, yi, p in zip(x, y, points, strict=True):
        ax.annotate(
            str(p["network"]), (xi, yi), fontsize=7, xytext=(4, 4), textcoords="offset points"
        )
    if np.ptp(x) > 0:
        slope, icpt = np.polyfit(x, y, 1)
        xx = np.linspace(x.min(), x.max(), 20)
        ax.plot(xx, slope * xx + icpt, color="C1", lw=1)
    for axis, values in ((ax.xaxis, x), (ax.yaxis, y)):
        ticks = np.linspace(values.min(), values.max(), 4) if np.ptp(values) > 0 else values[:1]
        axis.set_ticks(ticks)
        axis.set_ticklabels([f"{100.0 / (1.0 + np.exp(-t)):.1f}%" for t in ticks], fontsize=7)
    ax.set_xlabel("ImageNet top-1 (log-odds axis)")
    ax.set_ylabel("transfer score (log-odds axis)")
    ax.grid(alpha=0.3)
    ax.set_title(f"{a['task']}\n{fmt_r(a)}", fontsize=8)
    return _png(fig)
