"""`featstore upgrade`: convert a format-1 store to the current format in place."""

from __future__ import annotations

from typing import Any

import click

from .common import (
    emit,
    handle_errors,
    json_option,
    open_cli_store,
    progress_bar,
    store_option,
)


@click.command("upgrade")
@store_option
@json_option
@handle_errors
def upgrade(store_url: str, as_json: bool) -> None:
    """Convert the store to the current format, keeping every feature.

    Format 1 keyed features by dataset name and labels; format 2 keys them by image
    content. Done markers, entries and result records written before they were bound to
    their place are bound (markers after their chunk's bytes are checked). Each format-1 dataset's images are hashed again (they must be where they
    were registered and unchanged); its entries then serve every dataset of the same
    images. Safe to run twice. Format-1 stores are also read without upgrading.

    \b
    Example:
      featstore upgrade --store stores/team.zarr
    """
    from featstore.store.upgrade import upgrade_store

    store = open_cli_store(store_url, "a", create=False)
    with progress_bar("hashing images", unit="img", enabled=not as_json) as progress:
        summary = upgrade_store(store, progress=progress)
    emit(summary, as_json, _render)


def _render(s: dict[str, Any]) -> str:
    lines = [
        f"store format {s['format_before']} -> {s['format']}: {len(s['datasets_upgraded'])} "
        f"datasets and {len(s['entries_upgraded'])} entries upgraded"
    ]
    lines += [f"  dataset {f['id']} not upgraded: {f['reason']}" for f in s["datasets_failed"]]
    if s["entries_left"]:
        lines.append(
            f"  {len(s['entries_left'])} entries keep their format-1 keys (their dataset is not "
            "upgraded): register it again and rerun `featstore upgrade`"
        )
    bound = sum(s.get("markers_bound", {}).values())
    if bound or s.get("keys_recorded") or s.get("records_sealed"):
        lines.append(
            f"  bound to their place (older format): {bound} done markers in "
            f"{len(s.get('markers_bound', {}))} entries, {len(s.get('keys_recorded', []))} entry "
            f"keys, {len(s.get('records_sealed', []))} result records"
        )
    for key, chunks in sorted(s.get("markers_damaged", {}).items()):
        lines.append(
            f"  entry {key}: chunks {chunks} fail their checksum, left unbound: "
            "`featstore verify --repair` recomputes them"
        )
    lines += [f"  result {r['key']} not sealed: {r['reason']}" for r in s.get("records_left", [])]
    return "\n".join(lines)
