"""Reports from the result records of a store: the study's table, Markdown/CSV/HTML, plots."""

from __future__ import annotations

from collections.abc import Mapping

from featstore.evaluate.results import collect_records
from featstore.report.tables import Column, Report, Row, build_report, to_csv, to_markdown
from featstore.settings import parse_baseline, record_setting

__all__ = [
    "Column",
    "Report",
    "Row",
    "build_report",
    "collect_records",
    "parse_baseline",
    "record_setting",
    "render",
    "to_csv",
    "to_markdown",
]


def render(
    report: Report,
    fmt: str = "md",
    *,
    title: str = "featstore report",
    plots: bool = True,
    imagenet_top1: Mapping[str, float] | None = None,
) -> str:
    """The report as text in ``fmt`` ("md", "csv" or "html"); Markdown and HTML open with
    the study's findings (``imagenet_top1``: network accuracies in %, e.g. a spec's)."""
    if fmt == "md":
        from featstore.report.findings import findings_markdown, study_findings

        return findings_markdown(study_findings(report, imagenet_top1)) + to_markdown(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        from featstore.report.html import to_html

        return to_html(report, title=title, plots=plots, imagenet_top1=imagenet_top1)
    from featstore.errors import SpecError

    raise SpecError(f"unknown report format {fmt!r}; choose md, csv or html")
