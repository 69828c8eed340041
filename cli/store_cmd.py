"""Store commands: `featstore ls | info | verify | rm | gc`."""

from __future__ import annotations

from typing import Any

import click
from featstore.cli.common import (
    emit,
    handle_errors,
    human_bytes,
    json_option,
    open_cli_store,
    store_option,
    table,
)

from featstore.store.maintenance import entry_summary, verify_store


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Also list result records.")
@store_option
@json_option
@handle_errors
def ls(show_all: bool, store_url: str, as_json: bool) -> None:
    """List feature entries: factors, size, complete or not.

    \b
    Example:
      featstore ls --store stores/default.zarr
    """
    store = open_cli_store(store_url, "r")
    rows = [entry_summary(info) for info in store.entries()]
    data: dict[str, Any] = {"store": store.url, "entries": rows}
    if show_all:
        data["results"] = store.result_keys()
    emit(data, as_json, _render_ls)


def _render_ls(data: dict[str, Any]) -> str:
    rows = data["entries"]
    if not rows:
        text = f"store {data['store']}: no feature entries"
    else:
        text = table(
            [
                (
                    r["key"],
                    r.get("dataset") or "",
                    r.get("model") or "",
                    r.get("layer") or "",
                    r.get("pooling") or "",
                    r.get("view") or "",
                    "x".join(map(str, r["shape"])),
                    human_bytes(r["bytes"]),
                    "complete" if r["complete"] else f"{r['chunks_done']}/{r['chunks']} chunks",
                )
                for r in rows
            ],
            ["key", "dataset", "model", "layer", "pooling", "view", "shape", "size", "status"],
        )
    if "results" in data:
        text += f"\n{len(data['results'])} result records"
    return text


@click.command()
@click.argument("key")
@store_option
@json_option
@handle_errors
def info(key: str, store_url: str, as_json: bool) -> None:
    """Show every factor of one entry (or result record).

    \b
    Example:
      featstore info feat-0123456789abcdef0123
    """
    store = open_cli_store(store_url, "r")
    if store.has_result(key) and not store.has_entry(key):
        emit(store.get_result(key), True)
        return
    entry = store.get_entry(key)
    data = {
        **entry.attrs,
        "key": key,
        "chunks": entry.n_chunks,
        "missing_chunks": entry.missing_chunks(),
        "bytes": store.entry_nbytes(key),
    }
    emit(data, as_json, lambda d: "\n".join(f"{k}: {v}" for k, v in sorted(d.items())))


@click.command()
@click.argument("keys", nargs=-1)
@store_option
@json_option
@handle_errors
def verify(keys: tuple[str, ...], store_url: str, as_json: bool) -> None:
    """Check done markers against data and checksums; name missing and damaged chunks.

    Exits with status 1 when any chunk is damaged.

    \b
    Example:
      featstore verify
    """
    store = open_cli_store(store_url, "r")
    report = verify_store(store, list(keys) or None)
    emit(report, as_json, _render_verify)
    if any(r["damaged"] for r in report["entries"]):
        raise SystemExit(1)


def _render_verify(report: dict[str, Any]) -> str:
    lines = []
    for r in report["entries"]:
        state = "ok" if not r["damaged"] and not r["missing"] else ""
        if r["missing"]:
            state += f"incomplete: chunks {r['missing']} not written "
        if r["damaged"]:
            state += f"DAMAGED chunks {r['damaged']} (checksum mismatch or unreadable)"
        lines.append(f"{r['key']}: {state.strip()} ({r['ok']} chunks verified)")
    lines.append(f"{len(report['entries'])} entries checked, {report['n_damaged']} damaged chunks")
    return "\n".join(lines)


@click.command()
@click.argument("keys", nargs=-1, required=True)
@store_option
@handle_errors
def rm(keys: tuple[str, ...], store_url: str) -> None:
    """Remove feature entries or result records.

    \b
    Example:
      featstore rm feat-0123456789abcdef0123
    """
    store = open_cli_store(store_url, "a", create=False)
    for key in keys:
        if store.has_entry(key) or not store.has_result(key):
            store.delete_entry(key)
        else:
            store.delete_result(key)
        click.echo(f"removed {key}")


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--older-than",
    default=3600.0,
    show_default=True,
    help="Seconds; younger leftovers may be a run in progress.",
)
@store_option
@json_option
@handle_errors
def gc(
    dry_run: bool,
    older_than: float,
    store_url: str,
    as_json: bool,
) -> None:
    """Remove leftovers of killed runs (temp files, entries that never finished a chunk, stale leases).

    \b
    Example:
      featstore gc --dry-run
    """
    from featstore.store.lease import gc_leases

    store = open_cli_store(store_url, "a", create=False)
    removed = store.gc(dry_run=dry_run, older_than_s=older_than)
    removed += gc_leases(store, dry_run=dry_run)
    emit(
        {"removed": removed, "dry_run": dry_run},
        as_json,
        lambda d: (
            "\n".join([("would remove " if dry_run else "removed ") + p for p in d["removed"]])
            or "nothing to remove"
        ),
    )
