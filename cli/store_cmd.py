"""Store commands: `featstore ls | info | verify | repair | rm | gc`."""

from __future__ import annotations

from typing import Any

import click

from featstore.errors import redact_url
from featstore.keys import check_key
from featstore.store.maintenance import entry_summary, repair_objects, verify_store
from featstore.store.select import entry_factors
from featstore.store.trained_upkeep import (
    collect_blobs,
    network_rows,
    repair_networks,
    verify_networks,
)

from .choose import Choice, choose_options, chosen_entries, describe_choice
from .common import (
    emit,
    handle_errors,
    human_bytes,
    json_option,
    open_cli_store,
    progress_bar,
    store_option,
    table,
)


@click.command()
@choose_options("store")
@click.option("--all", "show_all", is_flag=True, help="Also list result records.")
@store_option
@json_option
@handle_errors
def ls(choice: Choice, show_all: bool, store_url: str, as_json: bool) -> None:
    """List feature entries: factors, size, complete or not; the options choose which.

    The choosing options are extract's and evaluate's (an alias and its module name find
    the same entries; a pooling finds what extraction stores for it); left out, they
    match any value. --json gives each entry's factors as selectors match them.

    \b
    Example:
      featstore ls --store stores/default.zarr
      featstore ls -d flowers -m efficientnet_lite0 -l penultimate --view flip
      featstore ls -m r18-places --compute-dtype bfloat16 --json
    """
    store = open_cli_store(store_url, "r")
    infos = store.entries()
    if choice.given():
        keys = {e.key for e in chosen_entries(store, choice)}
        infos = [info for info in infos if info.key in keys]
    rows = [{**entry_summary(info), "factors": entry_factors(info.attrs)} for info in infos]
    data: dict[str, Any] = {"store": redact_url(store.url), "entries": rows}
    if choice.given():
        data["chosen"] = describe_choice(choice)
    data["networks"] = network_rows(store)  # fine-tuned networks (trained/)
    if show_all:
        data["results"] = store.result_keys()
    emit(data, as_json, _render_ls)


def _render_ls(data: dict[str, Any]) -> str:
    rows = data["entries"]
    if not rows:
        text = f"store {data['store']}: no feature entries" + (
            f" match {data['chosen']}" if data.get("chosen") else ""
        )
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
                    _weights(r),
                    r.get("compute_dtype") or "",
                    "x".join(map(str, r["shape"])),
                    human_bytes(r["bytes"]),
                    _status(r),
                )
                for r in rows
            ],
            [
                "key",
                "dataset",
                "model",
                "layer",
                "pooling",
                "view",
                "weights",
                "compute",
                "shape",
                "size",
                "status",
            ],
        )
    if data.get("networks"):
        text += "\n\n" + _render_networks(data["networks"])
    if "results" in data:
        text += f"\n{len(data['results'])} result records"
    return text


def _render_networks(rows: list[dict[str, Any]]) -> str:
    """The store's fine-tuned networks, one line each (`featstore models named` says more)."""
    return table(
        [
            (r["name"], f"DAMAGED: {r['damaged']}", "", "", "", "", "")
            if r.get("damaged")
            else (
                r["name"],
                r["parent"],
                r.get("dataset") or "",
                str(r.get("epoch") or ""),
                r.get("freeze") or ("head only" if r.get("train") == "head" else "-"),
                "sha256:" + r["weights_sha256"][:12],
                human_bytes(r["bytes"]) if r.get("bytes") is not None else "MISSING",
            )
            for r in rows
        ],
        ["network", "parent", "fine-tuned on", "epoch", "freeze", "weights", "size"],
    )


def _weights(r: dict[str, Any]) -> str:
    """Weights source and the start of their hash: two files' entries differ in the hash."""
    sha = r.get("weights_sha256") or ""
    return f"{r.get('weights') or ''}:{sha[:8]}" if sha else str(r.get("weights") or "")


def _status(r: dict[str, Any]) -> str:
    if r.get("damaged"):
        return "DAMAGED (unreadable metadata: `featstore verify` says more)"
    return "complete" if r["complete"] else f"{r['chunks_done']}/{r['chunks']} chunks"


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
    check_key(key)
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
@click.option(
    "--repair",
    "do_repair",
    is_flag=True,
    help="Recompute the damaged and missing chunks of the entries checked and remove damaged "
    "result records; every action is listed.",
)
@click.option("--weights", default=None, help="Weights file the entries were extracted with.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@store_option
@json_option
@handle_errors
def verify(
    keys: tuple[str, ...],
    do_repair: bool,
    weights: str | None,
    device: str,
    store_url: str,
    as_json: bool,
) -> None:
    """Check that every stored object proves what it claims; name what does not.

    Chunks against the checksums of their done markers (bound to entry and index), each
    entry's key against its recorded factors, each dataset's fingerprint against its ids,
    labels, splits and image hashes, each result record against its own key and checksum,
    each fine-tuned network's weights blob against its sha256 and the weights its name records.
    Objects of the older format (not bound) are listed; `featstore upgrade` binds them.
    Exits with status 1 when anything is damaged and was not repaired. With --repair,
    damaged and missing chunks are recomputed and damaged result records removed
    (evaluating again recomputes them); a damaged weights blob is removed with the names and
    runs that need it, and a damaged name or run record removed (fine-tuning the same request
    again makes them anew); damaged datasets and misplaced entries are listed with their fix,
    never changed.

    \b
    Example:
      featstore verify
      featstore verify --repair
    """
    for key in keys:
        check_key(key, "entry key")
    store = open_cli_store(store_url, "a" if do_repair else "r", create=False)
    report = verify_store(store, list(keys) or None)
    report["networks"] = verify_networks(store)
    if do_repair:
        report["repairs"] = []
        for r in report["entries"]:
            if r.get("error") or not (r["damaged"] or r["missing"]):
                continue
            with progress_bar(f"repair {r['key']}", unit="img", enabled=not as_json) as progress:
                from featstore.extract.repair import repair_entry  # torch: only when repairing

                fixed = repair_entry(
                    store, r["key"], weights=weights, device=device, check=r, progress=progress
                )
            report["repairs"].append(fixed)
        report["actions"] = repair_objects(store, report)
        report["actions"] += repair_networks(store, report["networks"])
    emit(report, as_json, _render_verify)
    repaired = {f["key"] for f in report.get("repairs", []) if f["ok"]}
    removed = {a["object"] for a in report.get("actions", []) if a["action"] == "removed"}
    if (
        any(
            (r["damaged"] and r["key"] not in repaired) or r.get("error") for r in report["entries"]
        )
        or report["damaged_datasets"]
        or any(f"result {k}" not in removed for k in report["records"]["damaged"])
        or (report["networks"]["damaged"] and not do_repair)
    ):
        raise SystemExit(1)


@click.command()
@click.argument("key")
@click.option("--weights", default=None, help="Weights file the entry was extracted with.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@store_option
@json_option
@handle_errors
def repair(key: str, weights: str | None, device: str, store_url: str, as_json: bool) -> None:
    """Recompute exactly the damaged and missing chunks of entry KEY.

    The entry's recorded factors are planned again and must give KEY; the repaired
    entry has the bytes an undamaged run writes.

    \b
    Example:
      featstore repair feat-0123456789abcdef0123
    """
    check_key(key, "entry key")
    store = open_cli_store(store_url, "a", create=False)
    with progress_bar(f"repair {key}", unit="img", enabled=not as_json) as progress:
        from featstore.extract.repair import repair_entry  # torch: only when repairing

        fixed = repair_entry(store, key, weights=weights, device=device, progress=progress)
    emit(fixed, as_json, _render_repair)
    if not fixed["ok"]:
        raise SystemExit(1)


def _render_repair(r: dict[str, Any]) -> str:
    if not r["recomputed"]:
        return f"{r['key']}: nothing to repair (every chunk verified)"
    return (
        f"{r['key']}: recomputed chunks {r['recomputed']} (damaged {r['damaged']}, missing "
        f"{r['missing']}) in {r['forward_batches']} forward batches; "
        + ("verified ok" if r["ok"] else "STILL DAMAGED OR INCOMPLETE")
    )


def _render_verify(report: dict[str, Any]) -> str:
    lines = []
    for r in report["entries"]:
        if r.get("error"):
            lines.append(f"{r['key']}: DAMAGED entry: {r['error']}")
            continue
        state = "ok" if not r["damaged"] and not r["missing"] else ""
        if r["missing"]:
            state += f"incomplete: chunks {r['missing']} not written "
        if r["damaged"]:
            state += f"DAMAGED chunks {r['damaged']} (checksum mismatch or unreadable)"
        if r.get("unbound"):
            state += f"; chunks {_spans(r['unbound'])} unbound (older format)"
        if r.get("key_unbound"):
            state += "; key unbound (older format)"
        lines.append(f"{r['key']}: {state.strip()} ({r['ok']} chunks verified)")
    for dataset_id, why in sorted(report.get("damaged_datasets", {}).items()):
        lines.append(f"dataset {dataset_id}: DAMAGED: {why}")
    for dataset_id in sorted(report.get("unbound_datasets", {})):
        lines.append(f"dataset {dataset_id}: unbound (older format): no per-image hashes")
    records = report.get("records", {"checked": 0, "damaged": {}, "unbound": {}})
    for key, why in sorted(records["damaged"].items()):
        lines.append(f"{key}: DAMAGED record: {why}")
    if records["unbound"]:
        lines.append(
            f"{len(records['unbound'])} result records unbound (older format, no checksum): "
            "not served as cached until `featstore upgrade` seals them"
        )
    lines.append(
        f"{len(report['entries'])} entries checked, {report['n_damaged']} damaged chunks, "
        f"{report.get('n_unreadable', 0)} entries unreadable or misplaced; "
        f"{len(report.get('damaged_datasets', {}))} damaged datasets; "
        f"{records['checked']} result records checked, {len(records['damaged'])} damaged"
    )
    nets = report.get("networks")
    if nets and (nets["names"] or nets["runs"] or nets["blobs"]):
        lines += [f"{d['object']}: DAMAGED: {d['why']}" for d in nets["damaged"]]
        lines.append(
            f"{nets['names']} fine-tuned networks, {nets['runs']} runs, {nets['blobs']} weights "
            f"blobs checked, {len(nets['damaged'])} damaged"
            + ("; `featstore verify --repair` removes them (asking again makes them anew)"
               if nets["damaged"] and "actions" not in report else "")
        )  # fmt: skip
    if report.get("n_unbound"):
        lines.append(
            f"{report['n_unbound']} objects of the older format: run `featstore upgrade` to bind them"
        )
    lines += [_render_repair(r) for r in report.get("repairs", [])]
    lines += [
        f"repair: {a['object']}: {a['action']} ({a['why']})" for a in report.get("actions", [])
    ]
    return "\n".join(lines)


def _spans(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5": a store of the older format lists every chunk."""
    parts: list[str] = []
    for i in indices:
        if parts and parts[-1].split("-")[-1] == str(i - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ", ".join(parts)


@click.command()
@click.argument("keys", nargs=-1)
@choose_options("store")
@click.option(
    "--force", is_flag=True, help="Also remove an entry a running extraction holds a lease on."
)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@store_option
@handle_errors
def rm(keys: tuple[str, ...], choice: Choice, force: bool, dry_run: bool, store_url: str) -> None:
    """Remove feature entries or result records: by KEY, or every entry the options choose.

    The choosing options are those of ls (list first with the same options); with -d only
    entries of exactly that dataset's images are removed, never one other datasets read.
    An entry that a live writer holds a lease on (an extraction or copy filling it now) is
    refused, naming the holder, unless --force.

    \b
    Example:
      featstore rm feat-0123456789abcdef0123
      featstore rm -d flowers -m efficientnet_lite0 -l stage5 --view flip --dry-run
    """
    from featstore.store.lease import check_not_held

    if keys and choice.given():
        raise click.UsageError("give KEYs or the options that choose entries, not both")
    if not keys and not choice.given():
        raise click.UsageError(
            "name the KEYs to remove, or choose entries with -d/-m/-l/--pool/--view/--weights/"
            "--compute-dtype/--dtype (see featstore ls)"
        )
    for key in keys:  # every key checked before the store is touched
        check_key(key)
    store = open_cli_store(store_url, "r" if dry_run else "a", create=False)
    if choice.given():
        keys = tuple(e.key for e in chosen_entries(store, choice, whole=True))
        if not keys:
            raise click.ClickException(
                f"no feature entries match {describe_choice(choice)}; see `featstore ls` with "
                "the same options"
            )
    for key in keys:
        if dry_run:
            if not (store.has_entry(key) or store.has_result(key)):
                raise click.ClickException(f"store has no entry or result record {key}")
            click.echo(f"would remove {key}")
            continue
        if store.has_entry(key) or not store.has_result(key):
            if not force:
                check_not_held(store, key)
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
@click.option("--force", is_flag=True, help="Also remove leftovers a live writer holds a lease on.")
@store_option
@json_option
@handle_errors
def gc(
    dry_run: bool,
    older_than: float,
    force: bool,
    store_url: str,
    as_json: bool,
) -> None:
    """Remove leftovers of killed runs (temp files, entries that never finished a chunk, stale leases).

    Weights blobs of fine-tuned networks are removed only when no name and no run (finished
    or not) needs them: after `featstore models rm NAME --forget-run`, or superseded epochs.

    An entry a live writer holds a lease on is kept (and named) whatever its age, unless --force.

    \b
    Example:
      featstore gc --dry-run
    """
    from featstore.store.lease import gc_leases

    store = open_cli_store(store_url, "a", create=False)
    found = store.gc(dry_run=dry_run, older_than_s=older_than, force=force)
    held = dict(getattr(found, "held", {}))
    removed = list(found) + gc_leases(store, dry_run=dry_run)
    removed += collect_blobs(store, older_than_s=older_than, dry_run=dry_run)
    emit({"removed": removed, "held": held, "dry_run": dry_run}, as_json, _render_gc)


def _render_gc(d: dict[str, Any]) -> str:
    verb = "would remove " if d["dry_run"] else "removed "
    lines = [verb + p for p in d["removed"]]
    lines += [
        f"kept {key}: a live writer holds it, leased by {who}; `featstore gc --force` removes it"
        for key, who in sorted(d["held"].items())
    ]
    return "\n".join(lines) or "nothing to remove"
