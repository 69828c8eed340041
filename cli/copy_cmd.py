"""Moving features between stores: `featstore copy | export | import`."""

from __future__ import annotations

from typing import Any

import click

from featstore.keys import check_key
from featstore.store import open_store
from featstore.store.copy import copy_store, export_hdf5, import_hdf5
from featstore.store.spec import parse_storage_options

from .choose import Choice, choose_options, chosen_entries, describe_choice
from .common import (
    emit,
    handle_errors,
    human_bytes,
    json_option,
    open_cli_store,
    progress_bar,
    storage_options_option,
    store_option,
)


def _merged(common: tuple[str, ...], side: tuple[str, ...]) -> dict[str, Any] | None:
    options = parse_storage_options(common)
    for key, value in parse_storage_options(side).items():
        if isinstance(value, dict) and isinstance(options.get(key), dict):
            options[key] = {**options[key], **value}
        else:
            options[key] = value
    return options or None


@click.command()
@click.argument("src")
@click.argument("dst")
@click.argument("keys", nargs=-1)
@click.option("--all", "copy_all", is_flag=True, help="Copy every dataset, entry and result.")
@storage_options_option
@click.option(
    "--src-option",
    "src_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="fsspec option for SRC only (repeatable).",
)
@click.option(
    "--dst-option",
    "dst_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="fsspec option for DST only (repeatable).",
)
@json_option
@handle_errors
def copy(
    src: str,
    dst: str,
    keys: tuple[str, ...],
    copy_all: bool,
    storage_options: tuple[str, ...],
    src_options: tuple[str, ...],
    dst_options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Copy feature entries (with their datasets) and result records from SRC to DST.

    Incremental: only what DST is missing, or holds with a checksum other than SRC's, is
    transferred (done markers are compared; no data is read for the rest), and the summary
    says how many chunks and bytes moved; a second copy moves 0 bytes. Every copied chunk
    is checked against its checksum in SRC before it is written and verified in DST after.
    Exits with status 1 when a chunk could not be copied intact.

    \b
    Example:
      featstore copy s3://team/feats.zarr stores/default.zarr --all \\
          --storage-option endpoint_url=http://127.0.0.1:9000
      featstore copy stores/default.zarr s3://team/feats.zarr feat-0123456789abcdef0123
    """
    if not keys and not copy_all:
        raise click.UsageError("name the KEYs to copy, or pass --all")
    if keys and copy_all:
        raise click.UsageError("pass either KEYs or --all, not both")
    for key in keys:  # before either store is opened (DST would be created)
        check_key(key)
    source = open_store(src, mode="r", storage_options=_merged(storage_options, src_options))
    target = open_store(dst, mode="a", storage_options=_merged(storage_options, dst_options))
    with progress_bar("copy", unit="entry", enabled=not as_json) as progress:
        summary = copy_store(source, target, list(keys) or None, progress=progress)
    emit(summary, as_json, _render_summary)
    if not summary["ok"]:
        raise SystemExit(1)


def _render_summary(summary: dict[str, Any]) -> str:
    lines = [f"{summary['source']} -> {summary['target']}"]
    for e in summary["entries"]:
        state = f"{len(e['copied'])} chunks copied, {e['skipped']} already there"
        if e["changed"]:
            state += f" ({len(e['changed'])} changed in the source: copied again: {e['changed']})"
        if e["unavailable"]:
            state += f"; chunks {e['unavailable']} missing or damaged in the source"
        if e["damaged_after_copy"]:
            state += f"; chunks {e['damaged_after_copy']} DAMAGED after the copy"
        if e.get("damaged"):
            state = f"not copied: DAMAGED in the source: {e['damaged']}"
        lines.append(f"  {e['key']}: {state}")
    d, r = summary["datasets"], summary["results"]
    lines.append(
        f"datasets: {len(d['copied'])} copied, {len(d['skipped'])} already there; "
        f"results: {len(r['copied'])} copied, {len(r['skipped'])} already there"
    )
    for kind in ("datasets", "results"):
        for name, why in sorted(summary[kind].get("damaged", {}).items()):
            lines.append(f"  {kind[:-1]} {name}: not copied: DAMAGED in the source: {why}")
    lines.append(
        f"transferred {summary['n_chunks_copied']} chunks ({human_bytes(summary['bytes_copied'])}"
        f", {summary['n_chunks_changed']} of them changed); {summary['n_chunks_skipped']} chunks "
        "already there with the same checksum"
    )
    lines.append("ok" if summary["ok"] else "INCOMPLETE: see above")
    return "\n".join(lines)


@click.command(name="export")
@click.argument("file")
@click.argument("keys", nargs=-1)
@choose_options("store")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["hdf5"]),
    default="hdf5",
    show_default=True,
    help="File format of the export.",
)
@store_option
@json_option
@handle_errors
def export_cmd(
    file: str,
    keys: tuple[str, ...],
    choice: Choice,
    fmt: str,
    store_url: str,
    as_json: bool,
) -> None:
    """Export entries (all, KEYs, or those the options choose, as in ls), their datasets and
    results to one HDF5 FILE.

    \b
    Example:
      featstore export --format hdf5 flowers-features.h5
      featstore export flowers-r18.h5 -d flowers -m resnet18 -l penultimate
    """
    _ = fmt  # one format for now; the option keeps scripts explicit
    if keys and choice.given():
        raise click.UsageError("give KEYs or the options that choose entries, not both")
    source = open_cli_store(store_url, "r")
    if choice.given():
        keys = tuple(e.key for e in chosen_entries(source, choice))
        if not keys:
            raise click.ClickException(
                f"no feature entries match {describe_choice(choice)}; see `featstore ls` with "
                "the same options"
            )
    with progress_bar("export", unit="entry", enabled=not as_json) as progress:
        summary = export_hdf5(source, file, list(keys) or None, progress=progress)
    emit(summary, as_json, _render_summary)
    if not summary["ok"]:
        raise SystemExit(1)


@click.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.argument("keys", nargs=-1)
@store_option
@json_option
@handle_errors
def import_cmd(
    file: str,
    keys: tuple[str, ...],
    store_url: str,
    as_json: bool,
) -> None:
    """Import entries, datasets and results from an HDF5 FILE made by `featstore export`.

    \b
    Example:
      featstore import flowers-features.h5 --store s3://team/feats.zarr
    """
    target = open_cli_store(store_url, "a")
    with progress_bar("import", unit="entry", enabled=not as_json) as progress:
        summary = import_hdf5(file, target, list(keys) or None, progress=progress)
    emit(summary, as_json, _render_summary)
    if not summary["ok"]:
        raise SystemExit(1)


def render_distributed(s: dict[str, Any]) -> str:
    """The summary of `featstore extract --dask/--share` (see featstore.extract.distributed)."""
    done = sum(1 for u in s["units"] if u["chunks"])
    text = (
        f"done: {s['entries']} entries; {len(s['units'])} units of work, {done} computed here, "
        f"{s['computed_chunks']} chunks in {s['forward_batches']} forward batches, {s['seconds']:.1f} s"
    )
    if s.get("waited_s"):
        text += f"; waited {s['waited_s']:.1f} s for other writers"
    if s.get("dropped_chunks"):
        text += f"; {s['dropped_chunks']} chunks dropped (their leases were taken over)"
    if s["incomplete"]:
        held = s.get("held") or {}
        lines = [
            f"  {k}: chunks {', '.join(map(str, v))}" + (f" held by {held[k]}" if k in held else "")
            for k, v in s["incomplete"].items()
        ]
        text += (
            "\nleft to other writers (--no-wait; run again, or without --no-wait, to finish "
            "what they drop):\n" + "\n".join(lines)
        )
    return text
