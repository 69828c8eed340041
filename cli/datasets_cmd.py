"""`featstore datasets add | list | show | rm`."""

from __future__ import annotations

from typing import Any

import click

from featstore.datasets import dataset_from_source, register_dataset
from featstore.errors import redact_url

from .common import (
    emit,
    handle_errors,
    json_option,
    open_cli_store,
    progress_bar,
    store_note,
    store_option,
    table,
)


@click.group()
def datasets() -> None:
    """Register and inspect datasets.

    \b
    Example:
      featstore datasets add flowers ../shared/data/flowers12
      featstore datasets add digits builtin:digits
      featstore datasets list
    """


@datasets.command("add")
@click.argument("name")
@click.argument("source")
@click.option(
    "--skip-bad", is_flag=True, help="Register the good images, record the bad ones as skipped."
)
@click.option("--replace", is_flag=True, help="Replace a different dataset registered under NAME.")
@click.option(
    "--splits",
    default=None,
    metavar="NAME,NAME",
    help="Split names a manifest may use (default: train, val, valid, validation, test, trainval).",
)
@store_option
@json_option
@handle_errors
def add(
    name: str,
    source: str,
    skip_bad: bool,
    replace: bool,
    splits: str | None,
    store_url: str,
    as_json: bool,
) -> None:
    """Register SOURCE as dataset NAME.

    SOURCE is a folder of class subfolders, a folder of split folders (train/, test/)
    holding class subfolders, a CSV or JSON manifest (path, label or labels, split, id),
    builtin:NAME (builtin:digits, builtin:copydays), a retrieval set given as
    oxford:DIR, paris:DIR, revisited:DIR, holidays:DIR, ukbench:DIR or retrieval-json:FILE,
    or a benchmark read from its official files with its official split: voc2007:,
    flowers102:, pets:, cub200:, mit67:, sun397:, dtd:, food101:, caltech101:, stanford40:,
    cars:, aircraft:, cifar10:, cifar100: DIR, hf:DIR (save_to_disk or parquet) and
    wds:PATTERN (tar shards). Options follow a '?': sun397:DIR?fold=3,
    aircraft:DIR?level=family, caltech101:DIR?seed=1. Every image is decoded and hashed;
    a bad image stops the registration (nothing is written) unless --skip-bad.

    \b
    Example:
      featstore datasets add flowers ../shared/data/flowers12
      featstore datasets add voc07 voc2007:/data/VOCdevkit/VOC2007
      featstore datasets add sun-3 'sun397:/data/sun?fold=3'
    """
    declared = [s.strip() for s in splits.split(",") if s.strip()] if splits is not None else None
    if splits is not None and not declared:
        raise click.BadParameter(f"{splits!r} names no split", param_hint="--splits")
    with progress_bar(f"checking {name}", unit="img", enabled=not as_json) as progress:
        dataset = dataset_from_source(  # before the store opens: a bad source creates nothing
            name, source, skip_bad=skip_bad, progress=progress, splits=declared
        )
    store = open_cli_store(store_url)
    register_dataset(store, dataset, replace=replace)
    emit(dataset.summary(), as_json, lambda s: _render_summary(s) + f"\n{store_note(store)}")


def _render_summary(summary: dict[str, Any]) -> str:
    splits = ", ".join(f"{k} {v}" for k, v in summary["split_counts"].items())
    lines = [
        f"dataset {summary['name']}: {summary['n']} images, {len(summary['classes'])} classes ({splits})",
        f"id {summary['id']}",
    ]
    lines.append(f"classes: {_classes_line(summary['classes'])}")
    if summary.get("repointed"):
        lines.append(
            f"same images as registered: re-pointed {summary['repointed']} image locations "
            f"to {summary['source'].get('root') or summary['source'].get('path') or 'the new source'}"
        )
    if summary.get("skipped"):
        lines.append(f"skipped {len(summary['skipped'])} bad images:")
        lines.extend(f"  {s['path']}: {s['reason']}" for s in summary["skipped"])
    lines.extend(f"warning: {w}" for w in summary.get("warnings", []))
    return "\n".join(lines)


def _classes_line(classes: list[str], shown: int = 12) -> str:
    more = f" ... ({len(classes) - shown} more)" if len(classes) > shown else ""
    return ", ".join(classes[:shown]) + more


def _render_source(source: dict[str, Any]) -> str:
    """Where a dataset came from and, for a benchmark layout, its official protocol and fold."""
    if source.get("kind") != "benchmark":
        return redact_url(f"source: {source}")
    options = {k: v for k, v in source.items() if k not in ("kind", "scheme", "root", "protocol")}
    lines = [f"source: {source['scheme']}:{source['root']}", f"protocol: {source['protocol']}"]
    lines += [f"{key}: {value}" for key, value in options.items()]
    return redact_url("\n".join(lines))


@datasets.command("list")
@store_option
@json_option
@handle_errors
def list_(store_url: str, as_json: bool) -> None:
    """List registered datasets.

    \b
    Example:
      featstore datasets list --json
    """
    rows = open_cli_store(store_url, mode="r").list_datasets()
    emit(
        rows,
        as_json,
        lambda rs: (
            table(
                [
                    (
                        r["name"],
                        r["id"],
                        r["n"],
                        len(r["classes"] or []),
                        ", ".join(f"{k} {v}" for k, v in (r["split_counts"] or {}).items()),
                    )
                    if not r.get("damaged")
                    else ("?", r["id"], "DAMAGED", "", r["damaged"])
                    for r in rs
                ],
                ["name", "id", "images", "classes", "splits"],
            )
            if rs
            else "no datasets registered"
        ),
    )


@datasets.command("show")
@click.argument("name")
@store_option
@json_option
@handle_errors
def show(name: str, store_url: str, as_json: bool) -> None:
    """Show one dataset: size, classes, splits, source.

    \b
    Example:
      featstore datasets show flowers
    """
    dataset = open_cli_store(store_url, mode="r").get_dataset(name)
    summary = dataset.summary()
    emit(
        summary,
        as_json,
        lambda s: _render_summary(s) + "\n" + _render_source(s["source"]),
    )


@datasets.command("rm")
@click.argument("name")
@store_option
@handle_errors
def rm(name: str, store_url: str) -> None:
    """Remove a dataset's registration (feature entries stay).

    \b
    Example:
      featstore datasets rm flowers
    """
    open_cli_store(store_url, create=False).delete_dataset(name)
    click.echo(f"removed dataset {name}")
