"""`featstore report`: the study's table from the result records in the store."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import (
    handle_errors,
    json_option,
    open_cli_store,
    store_note,
    store_option,
)

if TYPE_CHECKING:  # the sweep spec loads only when --spec is given (CLI startup time)
    from featstore.sweep.spec import SweepSpec


def _report_inputs(
    spec_path: str | None, baseline: str | None
) -> tuple[SweepSpec | None, dict[str, str] | None, dict[str, list[str]]]:
    from featstore.report import parse_baseline

    spec: SweepSpec | None = None
    orders: dict[str, list[str]] = {}
    base = parse_baseline(baseline)
    if spec_path:
        from featstore.sweep.spec import load_spec

        spec = load_spec(spec_path)
        if base is None:
            base = dict(spec.baseline)
        orders = spec.orders()
    return spec, base, orders


@click.command()
@store_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "csv", "html"]),
    default="md",
    show_default=True,
    help="Markdown table, CSV (one line per cell) or one self-contained HTML page.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the report to FILE instead of printing it.",
)
@click.option(
    "--plot/--no-plot",
    "plot",
    default=None,
    help="Draw the plots (layer-wise transfer curve, heatmap, CKA/RSA heatmaps): embedded in "
    "HTML (default there), "
    "PNG files next to --out for md/csv.",
)
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A sweep spec: only its datasets, its baseline, its factor order.",
)
@click.option(
    "--baseline",
    default=None,
    metavar="FACTOR=VALUE[,...]",
    help="Baseline setting for relative error reduction, e.g. 'layer=head,pooling=avg'.",
)
@click.option(
    "-d", "--dataset", "datasets", multiple=True, help="Only these datasets (repeatable)."
)
@click.option(
    "--task",
    "tasks",
    multiple=True,
    type=click.Choice(["classify", "retrieve", "transferability", "similarity"]),
    help="Only these tasks.",
)
@click.option(
    "--imagenet-top1",
    "top1",
    multiple=True,
    metavar="NETWORK=ACC",
    help="A network's ImageNet top-1 accuracy in % (repeatable), for the architecture-vs-"
    "transfer plot; overrides the spec's and the published value of a bundled network.",
)
@click.option("--title", default=None, help="Title of the HTML page.")
@json_option
@handle_errors
def report(
    store_url: str,
    fmt: str,
    out: str | None,
    plot: bool | None,
    spec_path: str | None,
    baseline: str | None,
    datasets: tuple[str, ...],
    tasks: tuple[str, ...],
    top1: tuple[str, ...],
    title: str | None,
    as_json: bool,
) -> None:
    """Build the results table (rows = settings, columns = tasks) from the store's records.

    Every result record in the store counts, a teammate's included; with --spec, only the
    records of that sweep's settings (other evaluate runs on its datasets are left out),
    and the table says which it shows. The best setting of
    each column is marked; with a baseline (--baseline or a --spec's), each cell shows the
    relative error reduction (err_base - err) / err_base. Transferability records are set
    beside the SVM ranking with Kendall's tau.

    \b
    Example:
      featstore report --spec examples/flowers_sweep.yaml
      featstore report --format html --out report.html
      featstore report --baseline 'layer=head,pooling=avg,transform=l2' --format csv
    """
    from featstore.report import build_report, collect_records, render

    if out is not None:
        _check_out(out)
    spec, base, orders = _report_inputs(spec_path, baseline)
    store = open_cli_store(store_url, mode="r")
    if spec is not None:  # the study's settings only, not every run that shared the store
        from featstore.sweep.study import study_records

        records = study_records(store, spec)
        records = [r for r in records if not datasets or _of(r, datasets)]
        records = [r for r in records if not tasks or r.get("task") in tasks]
        scope = (
            f"Only the settings of sweep {spec.name}: {len(records)} result records of "
            f"{store_note(store)}."
        )
    else:
        records = collect_records(store, datasets=list(datasets) or None, tasks=list(tasks) or None)
        scope = (
            f"Every result record of {store_note(store)} ({len(records)}), whichever run made "
            "it; --spec SPEC shows one study's settings only."
        )
    rep = build_report(records, baseline=base, orders=orders, scope=scope)
    accuracies = {**(spec.imagenet_top1() if spec is not None else {}), **_top1(top1)}
    if as_json:
        import json

        from featstore.report.findings import study_findings

        data = {**rep.to_json(), "findings": study_findings(rep, accuracies).to_json()}
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    draw = plot if plot is not None else fmt == "html"
    page_title = title or (
        f"featstore report: {spec.name}" if spec is not None else "featstore report"
    )
    text = render(rep, fmt, title=page_title, plots=draw, imagenet_top1=accuracies)
    if draw and fmt != "html":
        text += _write_pngs(rep, out)
    if out:
        try:
            Path(out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(
                f"cannot write the report to {out}: {exc.strerror}"
            ) from None
        click.echo(
            f"wrote {out} ({len(rep.rows)} settings x {len(rep.columns)} tasks, "
            f"{rep.n_records} records)",
            err=True,
        )
    else:
        click.echo(text, nl=False)


def _check_out(out: str) -> None:
    """Refuse an --out whose folder does not exist before any work is done."""
    folder = Path(out).parent
    if not folder.is_dir():
        raise click.BadParameter(
            f"the folder {str(folder)!r} does not exist; create it or choose another file",
            param_hint="--out",
        )


def _top1(values: tuple[str, ...]) -> dict[str, float]:
    """``("resnet50=76.1", ...)`` -> {network: accuracy in %}; a bad value is a usage error."""
    out = {}
    for text in values:
        name, sep, acc = text.partition("=")
        try:
            value = float(acc)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or not 1 < value < 100:
            raise click.BadParameter(
                f"{text!r} is not NETWORK=ACC with ACC the top-1 accuracy in % (e.g. "
                "resnet50=76.1, not a fraction)",
                param_hint="--imagenet-top1",
            )
        out[name.strip()] = value
    return out


def _of(record: Mapping[str, Any], datasets: tuple[str, ...]) -> bool:
    return bool({record.get("dataset_name"), record.get("dataset_id")} & set(datasets))


def _write_pngs(rep: Any, out: str | None) -> str:
    from featstore.report.plots import heatmap, score_vs_layer, similarity_heatmap

    stem = Path(out).with_suffix("") if out else Path("report")
    lines = []
    figures = [("layers", score_vs_layer(rep)), ("heatmap", heatmap(rep))]
    figures += [(f"similarity{n}", similarity_heatmap(m)) for n, m in enumerate(rep.similarity, 1)]
    for suffix, png in figures:
        if png is None:
            continue
        path = Path(f"{stem}_{suffix}.png")
        try:
            path.write_bytes(png)
        except OSError as exc:
            raise click.ClickException(f"cannot write the plot {path}: {exc.strerror}") from None
        lines.append(f"![{suffix}]({path.name})")
        click.echo(f"wrote {path}", err=True)
    return ("\n" + "\n".join(lines) + "\n") if lines else ""
