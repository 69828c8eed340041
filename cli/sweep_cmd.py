"""`featstore sweep SPEC`: plan, extract (one pass per network), evaluate every cell, summarise."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import click

from featstore.errors import ProtocolLimitError, StoreNotFoundError
from featstore.store import open_store

from .common import (
    emit,
    handle_errors,
    human_bytes,
    json_option,
    open_cli_store,
    progress_bar,
    store_note,
    store_option,
)
from .evaluate_cmd import ProtocolRefused

if TYPE_CHECKING:
    from featstore.sweep.plan import SweepPlanJson
    from featstore.sweep.run import SweepSummary


def _seconds(s: float | None) -> str:
    if s is None:
        return "?"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def render_plan(data: SweepPlanJson, store: str = "") -> str:
    lines = [
        f"sweep {data['sweep']}: {data['n_cells']} cells ({data['cells_with_results']} already have results)"
        + (f"; {store}" if store else ""),
        f"feature entries: {data['n_entries']} ({data['n_entries_cached']} cached, "
        f"{data['n_entries_to_extract']} to extract in {data['extraction_passes']} pass(es), "
        "one per network and dataset)",
    ]
    for f in data.get("finetune") or []:
        what = {
            "done": "found (run finished: a lookup, nothing trained)",
            "resume": f"resume from epoch {f['saved_epoch']} of {f['epochs']}",
            "train": f"train {f['epochs']} epoch(s)",
        }[f["status"]]
        kept = f"; keeps {', '.join(f['kept'])}" if f["kept"] else ""
        lines.append(
            f"  finetune {f['network']}: {f['parent']} on {f['dataset']} (train {f['train']}, "
            f"freeze {f['freeze'] or '-'}): {what}; run {f['run']}{kept}"
        )
    for g in data["groups"]:
        head = (
            f"  {g['dataset']} x {g['network']}: {g['n_images']} images; layers {', '.join(g['layers'])}; "
            f"pooling {', '.join(g['poolings'])}; views {', '.join(g['views'])}"
        )
        lines.append(head)
        for e in g["cached"]:
            lines.append(
                f"      cached   {e['layer']:<24} {e['pooling']:<8} {e['view']:<8} {e['key']}"
            )
        for e in g["to_extract"]:
            what = "resume" if e.get("exists") else "extract"
            lines.append(
                f"      {what:<8} {e['layer']:<24} {e['pooling']:<8} {e['view']:<8} "
                f"~{human_bytes(e['nbytes'])}"
            )
        if g["to_extract"]:
            lines.append(
                f"      one pass: ~{human_bytes(g['est_bytes'])}, ~{_seconds(g['est_seconds'])}"
            )
    lines.append(
        f"estimated: {human_bytes(data['est_bytes'])} to write, ~{_seconds(data['est_seconds'])} "
        "of extraction (CPU estimate)"
    )
    lines.append("baseline: " + ", ".join(f"{k}={v}" for k, v in data["baseline"].items()))
    lines += [f"note: {n}" for n in data["notes"]]
    return "\n".join(lines)


def render_summary(data: SweepSummary, store: str = "") -> str:
    lines = [
        f"sweep {data['sweep']}: {data['n_cells']} cells: {data['evaluated']} evaluated, "
        f"{data['cached_results']} cached, {len(data['failed'])} failed"
        + (f"; {store}" if store else ""),
        *(
            [f"fine-tuning: {len(data['finetune'])} run(s), {data['trained_runs']} trained"]
            if data.get("finetune")
            else []
        ),
        f"extraction: {len(data['extractions'])} pass(es), forward_batches={data['forward_batches']}",
        "time: "
        + (f"fine-tune {data['timings']['finetune_s']} s, " if data.get("finetune") else "")
        + f"extract {data['timings']['extract_s']} s, evaluate {data['timings']['evaluate_s']} s "
        + (
            "(cells on Dask)"
            if data.get("cells_on") == "dask"
            else f"({data['workers']} worker(s))"
        ),
    ]
    lines += [f"note: {n}" for n in data.get("notes", [])]
    for f in data["failed"]:
        lines.append(f"FAILED {f['label']}: {f['error']}")
    return "\n".join(lines)


def _keys(key: Any) -> list[str]:
    """A cell's result key(s): one per cell, a list for a similarity study, None if it failed."""
    if key is None:
        return []
    return [str(k) for k in key] if isinstance(key, list) else [str(key)]


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@store_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only print the plan: cells, cached entries, what will be extracted.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Cells evaluated in parallel processes.",
)
@click.option(
    "--report/--no-report",
    "show_report",
    default=True,
    show_default=True,
    help="Print the study table when the sweep is done.",
)
@click.option(
    "--dask",
    "dask_address",
    default=None,
    metavar="ADDRESS|local:N",
    help="Run the extractions (in whole-chunk units) and the evaluation cells on Dask: a "
    "scheduler address or local:N.",
)
@json_option
@handle_errors
def sweep(
    spec_path: str,
    store_url: str,
    dry_run: bool,
    workers: int,
    show_report: bool,
    dask_address: str | None,
    as_json: bool,
) -> None:
    """Run the factor sweep described by the YAML file SPEC.

    Extracts missing features with one pass per network and dataset (all layers, poolings
    and views at once), then evaluates every cell in --workers processes. Everything
    cached is a lookup: a rerun runs no network (forward_batches = 0) and reports the
    same numbers. Results are stored records; see them with `featstore report`.

    \b
    Example:
      featstore sweep examples/quick_sweep.yaml --dry-run
      featstore sweep examples/quick_sweep.yaml --workers 2
      featstore sweep examples/flowers_sweep.yaml --json
    """
    from featstore.sweep.plan import make_plan
    from featstore.sweep.spec import load_spec

    spec = load_spec(spec_path)
    if dry_run:  # reads only: a missing store is reported, never created
        try:
            store = open_cli_store(store_url, mode="r")
            note, missing = store_note(store), None
        except StoreNotFoundError as exc:  # plan against nothing cached, in a throwaway store
            missing = getattr(exc, "location", store_url)
            store = open_store(f"memory://featstore-dry-run-{uuid.uuid4().hex}/s.zarr")
            note = f"store {missing} (does not exist: nothing cached)"
        plan = make_plan(store, spec, register=False)
        if missing is not None:
            plan.notes.append(
                f"store {missing} does not exist: nothing is cached, and this dry run did not "
                "create it (the sweep will)"
            )
        emit(plan.to_json(), as_json, lambda data: render_plan(data, note))
        return
    store = open_cli_store(store_url, mode="a")
    try:
        summary = _run(store, spec, workers, dask_address, as_json)
    except ProtocolLimitError as exc:  # refused before anything was extracted or evaluated
        raise ProtocolRefused(str(exc)) from exc
    except KeyboardInterrupt as exc:  # Ctrl-C: nothing computed after it was written
        from featstore.sweep.run import SweepInterrupted

        done = (
            f"{exc.done} of {exc.total} cells" if isinstance(exc, SweepInterrupted) else "no cells"
        )
        click.echo(f"interrupted; {done} done, rerun continues", err=True)
        raise click.exceptions.Exit(130) from None
    emit(summary, as_json, lambda data: render_summary(data, store_note(store)))
    if show_report and not as_json:
        from featstore.report import build_report, to_markdown
        from featstore.sweep.finetune import finetune_markdown, finetune_rows
        from featstore.sweep.study import study_records

        keys = [k for r in summary["results"] for k in _keys(r.get("key"))]
        records = study_records(store, spec, keys)  # this sweep's cells, no other runs
        scope = f"Only the settings of sweep {spec.name}: {len(records)} result records."
        rep = build_report(records, baseline=spec.baseline, orders=spec.orders(), scope=scope)
        click.echo("")
        click.echo(to_markdown(rep) + finetune_markdown(finetune_rows(store, spec)))
    if summary["failed"]:
        raise click.ClickException(
            f"{len(summary['failed'])} of {summary['n_cells']} cells failed (see above)"
        )


def _run(store: Any, spec: Any, workers: int, dask_address: str | None, as_json: bool) -> Any:
    """Fine-tune, extract and evaluate, drawing the progress bars (a line per epoch)."""
    from featstore.api import run_sweep  # what `featstore.run_sweep` runs

    def epochs(done: int, total: int, info: dict[str, Any]) -> None:
        if not as_json:
            click.echo(
                f"finetune {info['network']}: epoch {done}/{total}: train loss "
                f"{info['train_loss']:.4f}, val accuracy {info['val_accuracy']:.4f} "
                f"({info.get('seconds', 0):.0f} s)",
                err=True,
            )

    with (
        progress_bar("extract", unit="img", enabled=not as_json) as ext_bar,
        progress_bar("cells", unit="cell", enabled=not as_json) as cell_bar,
    ):
        return run_sweep(
            store, spec, workers=workers, dask=dask_address, extract_progress=ext_bar,
            progress=cell_bar, finetune_progress=epochs,
        )  # fmt: skip
