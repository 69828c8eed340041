"""One self-contained HTML page: the findings first, then plots, then the full tables.

Order: the study's findings (which factor matters, the best setting per task, the optimal
factors per task, architecture vs transfer; :mod:`featstore.report.findings`), the factor
effects of each task, layer curves and similarity heatmaps, transferability, and last the
full results table. Tables sort and filter in the browser (the inline script of
:mod:`featstore.report.page_assets`); long ones start collapsed. Plots are base64 PNG data
URIs and style and script are inline, so the page is one file that opens anywhere with no
network access. Every user-given name goes through ``html.escape``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from typing import Any

from featstore.report.findings import ORDER_RULE, Findings, fmt_r, study_findings
from featstore.report.page_assets import SCRIPT, STYLE
from featstore.report.plots import (
    architecture_plot,
    factor_effects_plot,
    heatmap,
    score_vs_layer,
    similarity_heatmap,
)
from featstore.report.similarity import similarity_title
from featstore.report.tables import SCORE_UNIT, Report, fmt_rer, fmt_score
from featstore.settings import FACTORS

COLLAPSE_OVER = 40  # a table with more rows starts collapsed

__all__ = ["to_html"]


def _img(png: bytes | None, alt: str, ident: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img id="{ident}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _num(value: float | None, text: str | None = None) -> str:
    """A numeric cell: shown text, and its value in ``data-v`` for sorting."""
    shown = text if text is not None else fmt_score(value)
    v = "" if value is None else repr(float(value))
    return f'<td class="num" data-v="{v}">{html.escape(shown)}</td>'


def _td(text: Any) -> str:
    return f"<td>{html.escape(str(text))}</td>"


def _table(
    ident: str,
    head: Sequence[str],
    rows: Sequence[str],
    *,
    caption: str,
    filterable: bool = False,
    collapse_over: int | None = COLLAPSE_OVER,
) -> str:
    """A sortable table (rows given as ``<tr>`` HTML), with a filter box when asked, inside a
    ``<details>`` that starts closed when it has more than ``collapse_over`` rows."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    table = (
        f'<table id="{ident}" class="sortable"><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    tools = ""
    if filterable:
        tools = (
            f'<div><input class="filter" type="search" data-table="{ident}" '
            f'placeholder="filter rows (all words must match)" aria-label="filter {ident}">'
            f'<span class="count" data-table="{ident}">{len(rows)} rows</span></div>'
        )
    is_open = collapse_over is None or len(rows) <= collapse_over
    summary = f"{html.escape(caption)} ({len(rows)} rows{'' if is_open else ': click to show'})"
    return (
        f'<details id="{ident}-details"{" open" if is_open else ""}><summary>{summary}</summary>'
        f"{tools}{table}</details>"
    )


def _main_table(report: Report) -> str:
    if not report.rows:
        return "<p>No classification or retrieval results in the store yet.</p>"
    head = ["setting", *report.factors, *[c.label for c in report.columns]]
    body = []
    for i, r in enumerate(report.rows, 1):
        cells = [f'<td data-v="{i}">S{i}{" (baseline)" if r.baseline else ""}</td>']
        cells += [_td(r.setting[k]) for k in report.factors]
        for c in report.columns:
            cls = "num best" if c in r.best else "num"
            score = r.scores.get(c)
            text = html.escape(fmt_score(score))
            rer = r.rer.get(c)
            if rer is not None and not r.baseline:
                text += f' <span class="rer">({html.escape(fmt_rer(rer))})</span>'
            v = "" if score is None else repr(float(score))
            cells.append(f'<td class="{cls}" data-v="{v}">{text}</td>')
        tr_cls = ' class="baseline"' if r.baseline else ""
        body.append(f"<tr{tr_cls}>{''.join(cells)}</tr>")
    return _table(
        "results",
        head,
        body,
        caption=f"All settings x tasks ({len(report.columns)} task columns)",
        filterable=True,
    )


def _findings_section(f: Findings, plots: bool) -> str:
    """Which factor matters, the best setting per task, optimal factors, architecture."""
    if f.empty:
        return ""
    out = ["<h2>Findings</h2>"]
    if f.ranking:
        name, effect, n = f.ranking[0]
        out.append(
            f'<p class="finding">The factor that moves the score most is <b>{html.escape(name)}</b>: '
            f"its best levels differ by {effect:.4f} (mean over {n} task(s)).</p>"
        )
        rows = [
            f'<tr><td data-v="{i}">{i}</td>{_td(fn)}{_num(e, f"{e:.4f}")}{_num(k, str(k))}</tr>'
            for i, (fn, e, k) in enumerate(f.ranking, 1)
        ]
        out.append("<h3>Which factor matters</h3>")
        out.append(
            '<p class="note">Effect = range of the factor\'s best-per-level scores (each level '
            "with the other factors at their best), averaged over the tasks where it varies.</p>"
        )
        out.append(
            _table(
                "factor-ranking",
                ["rank", "factor", "effect", "tasks"],
                rows,
                caption="Factors ranked by effect",
            )
        )
    out.append("<h3>Best setting per task</h3>")
    rows = []
    for b, d in f.ordered:
        rows.append(
            "<tr>"
            + _td(b.column.label)
            + _td(b.label)
            + _num(b.score)
            + _num(b.baseline_score)
            + _num(b.rer, fmt_rer(b.rer))
            + _num(b.n_settings, str(b.n_settings))
            + _num(d, str(d))
            + "</tr>"
        )
    out.append(
        _table(
            "best-per-task",
            [
                "task",
                "best setting",
                "score",
                "baseline",
                "RER vs baseline",
                "settings",
                "distance",
            ],
            rows,
            caption="Best setting of each task (task order below)",
        )
    )
    tasks = [b.column.label for b, _ in f.ordered]
    out.append("<h3>Optimal factors per task</h3>")
    out.append(f'<p class="note">{html.escape(ORDER_RULE)}</p>')
    rows = [
        "<tr>" + _td(name) + "".join(_td(v) for v in levels) + "</tr>" for name, levels in f.optimal
    ]
    out.append(
        _table("optimal-factors", ["factor", *tasks], rows, caption="Optimal level per factor")
    )
    if f.architecture:
        out.append("<h3>Architecture vs transfer</h3>")
        out.append(
            '<p class="note">Each network at its best (other factors at their best) against its '
            "ImageNet top-1 accuracy, on log-odds axes; Pearson r of the log-odds with a 95% "
            "percentile bootstrap interval over networks, and Spearman's rank correlation.</p>"
        )
        figs = []
        for n, a in enumerate(f.architecture, 1):
            out.append(f"<p><b>{html.escape(a['task'])}</b>: {html.escape(fmt_r(a))}</p>")
            if a["missing"]:
                out.append(
                    f'<p class="note">No ImageNet accuracy for: '
                    f"{html.escape(', '.join(a['missing']))} (give imagenet_top1 in the spec)</p>"
                )
            if plots:
                figs.append(_img(architecture_plot(a), "ImageNet vs transfer", f"plot-arch-{n}"))
        if figs:
            out.append(f'<div class="figures">{"".join(figs)}</div>')
    return "".join(out)


def _effects_section(f: Findings, plots: bool) -> str:
    """Each task's factor effects: a table of levels and, with plots, the small multiples."""
    out = []
    for n, te in enumerate(f.effects, 1):
        out.append(f"<h3>Factor effects: {html.escape(te.column.label)}</h3>")
        if te.fixed:
            fixed = ", ".join(f"{k}={v}" for k, v in te.fixed.items())
            out.append(f'<p class="note">Fixed in this task: {html.escape(fixed)}</p>')
        if plots:
            out.append(_img(factor_effects_plot(te), "factor effects", f"plot-effects-{n}"))
        rows = []
        for fe in te.ranked:
            for lv in fe.levels:
                rows.append(
                    "<tr>"
                    + _td(fe.factor)
                    + _num(fe.effect, f"{fe.effect:.4f}")
                    + _td(lv.level)
                    + "".join(_num(x) for x in (lv.best, lv.min, lv.median, lv.max))
                    + _num(lv.n, str(lv.n))
                    + _td(setting_text(lv.best_setting))
                    + "</tr>"
                )
        head = ["factor", "effect", "level", "best", "min", "median", "max", "n", "best setting"]
        out.append(
            _table(f"effects-{n}", head, rows, caption="Levels of each factor", filterable=True)
        )
    return "".join(out)


def setting_text(setting: Mapping[str, str]) -> str:
    return "/".join(setting.get(k, "-") for k in FACTORS)


def _transfer_tables(report: Report) -> str:
    out = []
    for t in report.transfer:
        out.append(f"<h3>Transferability estimates vs SVM: {html.escape(t['dataset'])}</h3>")
        head = ["features", f"SVM {t['svm_metric'] or ''}", "rank"]
        for e in t["estimators"]:
            head += [e, "rank"]
        rows = []
        for row in t["rows"]:
            cells = [
                f"<td>{html.escape(row['label'])}</td>",
                f'<td class="num">{fmt_score(row["svm"])}</td>',
                f'<td class="num">{row["ranks"]["svm"] or ""}</td>',
            ]
            for e in t["estimators"]:
                v = row["scores"].get(e)
                cells.append(f'<td class="num">{"" if v is None else f"{v:.4g}"}</td>')
                cells.append(f'<td class="num">{row["ranks"].get(e) or ""}</td>')
            rows.append(f"<tr>{''.join(cells)}</tr>")
        taus = "".join(
            f'<tr><td>{html.escape(e)}</td><td class="num">{"n/a" if v is None else f"{v:+.3f}"}</td></tr>'
            for e, v in t["kendall_tau"].items()
        )
        out.append(
            '<table class="transfer sortable" id="transfer-'
            + str(len(out))
            + '"><thead><tr>'
            + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            + f"<p>Kendall's tau against the SVM ranking ({t['n_compared']} settings):</p>"
            + f'<table class="tau"><thead><tr><th>estimator</th><th>tau</th></tr></thead><tbody>{taus}</tbody></table>'
        )
    return "".join(out)


def _similarity_section(report: Report, plots: bool) -> str:
    """The CKA / RSA heatmaps side by side, then each matrix as a table (blank = pair not
    computed), collapsed when large."""
    figs = []
    tables = []
    for n, m in enumerate(report.similarity, 1):
        labels = [html.escape(str(lb)) for lb in m["labels"]]
        head = "<th></th>" + "".join(f"<th>{lb}</th>" for lb in labels)
        body = "".join(
            f"<tr><th>{lb}</th>"
            + "".join(f'<td class="num">{"" if v is None else f"{v:.3f}"}</td>' for v in row)
            + "</tr>"
            for lb, row in zip(labels, m["matrix"], strict=True)
        )
        title = html.escape(similarity_title(m))
        is_open = " open" if len(labels) <= 16 else ""
        tables.append(
            f"<details{is_open}><summary>{title}</summary>"
            f'<table class="similarity" id="similarity-{n}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></details>"
        )
        if plots:
            figs.append(
                _img(similarity_heatmap(m), f"similarity heatmap {n}", f"plot-similarity-{n}")
            )
    side = f'<div class="figures">{"".join(figs)}</div>' if any(figs) else ""
    return side + "".join(tables)


def to_html(
    report: Report,
    *,
    title: str = "featstore report",
    plots: bool = True,
    imagenet_top1: Mapping[str, float] | None = None,
    findings: Findings | None = None,
) -> str:
    """The whole page as a string (UTF-8, no external resources)."""
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    f = findings if findings is not None else study_findings(report, imagenet_top1)
    notes = f"{SCORE_UNIT}; the best setting of each column is highlighted; click a header to sort."
    if report.scope:
        notes += f" {html.escape(report.scope)}"
    if report.baseline:
        base = ", ".join(f"{k}={v}" for k, v in report.baseline.items())
        notes += (
            f" In brackets: relative error reduction (err_base - err) / err_base against the "
            f"baseline ({html.escape(base)})."
        )
    figures = ""
    if plots:
        figures = (
            "<h2>Layer curves</h2>"
            + _img(score_vs_layer(report), "layer-wise transfer curve per network", "plot-layers")
            + _img(heatmap(report), "heatmap of tasks x settings", "plot-heatmap")
        )
    transfer = _transfer_tables(report)
    similarity = _similarity_section(report, plots)
    effects = _effects_section(f, plots)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>{report.n_records} result records, {len(report.rows)} settings x "
        f"{len(report.columns)} tasks; generated {created}.</p>"
        + _findings_section(f, plots)
        + (f"<h2>Factor effects per task</h2>{effects}" if effects else "")
        + figures
        + (f"<h2>Representational similarity</h2>{similarity}" if similarity else "")
        + (f"<h2>Transferability</h2>{transfer}" if transfer else "")
        + f"<h2>Results</h2><p>{notes}</p>{_main_table(report)}"
        + f"<script>{SCRIPT}</script></body></html>\n"
    )
