"""One self-contained HTML page: the table, the transferability comparison and the plots.

Plots are embedded as base64 PNG data URIs and the style is inline, so the page is a
single file that opens anywhere (mail it, attach it to a ticket) with no network access.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html

from featstore.report.plots import heatmap, score_vs_layer, similarity_heatmap
from featstore.report.similarity import similarity_title
from featstore.report.tables import SCORE_UNIT, Report, fmt_rer, fmt_score
from featstore.settings import FACTORS

__all__ = ["to_html"]

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:bold;background:#e6f4ea}
tr.baseline td{background:#fff8e1}
.rer{color:#666;font-size:11px}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
"""


def _img(png: bytes | None, alt: str, ident: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img id="{ident}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _main_table(report: Report) -> str:
    if not report.rows:
        return "<p>No classification or retrieval results in the store yet.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["setting", *FACTORS])
    head += "".join(f"<th>{html.escape(c.label)}</th>" for c in report.columns)
    body = []
    for i, r in enumerate(report.rows, 1):
        cells = [f"<td>S{i}{' (baseline)' if r.baseline else ''}</td>"]
        cells += [f"<td>{html.escape(r.setting[k])}</td>" for k in FACTORS]
        for c in report.columns:
            cls = "num best" if c in r.best else "num"
            text = html.escape(fmt_score(r.scores.get(c)))
            rer = r.rer.get(c)
            if rer is not None and not r.baseline:
                text += f' <span class="rer">({html.escape(fmt_rer(rer))})</span>'
            cells.append(f'<td class="{cls}">{text}</td>')
        tr_cls = ' class="baseline"' if r.baseline else ""
        body.append(f"<tr{tr_cls}>{''.join(cells)}</tr>")
    return (
        f'<table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


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
            '<table class="transfer"><thead><tr>'
            + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            + f"<p>Kendall's tau against the SVM ranking ({t['n_compared']} settings):</p>"
            + f'<table class="tau"><thead><tr><th>estimator</th><th>tau</th></tr></thead><tbody>{taus}</tbody></table>'
        )
    return "".join(out)


def _similarity_section(report: Report, plots: bool) -> str:
    """Each CKA / RSA matrix as a table (blank = pair not computed) and, with plots, a heatmap."""
    out = []
    for n, m in enumerate(report.similarity, 1):
        labels = [html.escape(str(lb)) for lb in m["labels"]]
        head = "<th></th>" + "".join(f"<th>{lb}</th>" for lb in labels)
        body = "".join(
            f"<tr><th>{lb}</th>"
            + "".join(f'<td class="num">{"" if v is None else f"{v:.3f}"}</td>' for v in row)
            + "</tr>"
            for lb, row in zip(labels, m["matrix"], strict=True)
        )
        out.append(
            f"<h3>{html.escape(similarity_title(m))}</h3>"
            f'<table class="similarity" id="similarity-{n}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )
        if plots:
            out.append(
                _img(similarity_heatmap(m), f"similarity heatmap {n}", f"plot-similarity-{n}")
            )
    return "".join(out)


def to_html(report: Report, *, title: str = "featstore report", plots: bool = True) -> str:
    """The whole page as a string (UTF-8, no external resources)."""
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    notes = f"{SCORE_UNIT}; the best setting of each column is highlighted."
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
            "<h2>Plots</h2>"
            + _img(score_vs_layer(report), "layer-wise transfer curve per network", "plot-layers")
            + _img(heatmap(report), "heatmap of tasks x settings", "plot-heatmap")
        )
    transfer = _transfer_tables(report)
    similarity = _similarity_section(report, plots)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>{report.n_records} result records; generated {created}.</p>"
        f"<h2>Results</h2><p>{notes}</p>{_main_table(report)}"
        + (f"<h2>Transferability</h2>{transfer}" if transfer else "")
        + figures
        + (f"<h2>Representational similarity</h2>{similarity}" if similarity else "")
        + "</body></html>\n"
    )
