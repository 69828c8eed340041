"""`featstore finetune`: train a network on a dataset into a named network of the store."""

from __future__ import annotations

from typing import Any

import click

from .common import (
    emit,
    handle_errors,
    json_option,
    open_cli_store,
    store_note,
    store_option,
)


@click.command("finetune")
@click.option(
    "-d", "--dataset", required=True, help="Dataset name or id (its train split is used)."
)
@click.option(
    "-m", "--model", required=True, help="Parent network (registry, team or stored name)."
)
@click.option("--name", required=True, help="Name of the fine-tuned network in the store.")
@click.option(
    "--weights", default=None, help="Parent weights: FILE or 'random' (default: pretrained)."
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs [5].")
@click.option(
    "--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default=None, help="[sgd]"
)
@click.option("--lr", type=float, default=None, help="Learning rate [0.01].")
@click.option("--momentum", type=float, default=None, help="SGD momentum [0.9].")
@click.option("--schedule", default=None, help="constant, cosine or step:N[:GAMMA] [cosine].")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="[32]")
@click.option("--weight-decay", type=float, default=None, help="[1e-4]")
@click.option(
    "--augment", type=click.Choice(["none", "flip", "flip+crop"]), default=None, help="[flip]"
)
@click.option("--seed", type=int, default=None, help="[0]")
@click.option(
    "--compute-dtype",
    default=None,
    help="auto, float32, bfloat16, float16-amp [auto: AMP on CUDA].",
)
@click.option(
    "--train", "train_mode", type=click.Choice(["all", "head"]), default=None,
    help="Train every unfrozen layer, or only the new classifier head [all].",
)  # fmt: skip
@click.option(
    "--freeze", default=None, metavar="LAYER", help="Keep layers up to and including LAYER."
)
@click.option("--reinit-above", default=None, metavar="LAYER", help="Random weights after LAYER.")
@click.option(
    "--keep-every", type=click.IntRange(min=0), default=None, metavar="K",
    help="Also keep every Kth epoch as NAME@epochK (0: only the best on validation) [0].",
)  # fmt: skip
@click.option("--val-fraction", type=float, default=None, help="Carved validation share [0.2].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Decoding processes.",
)
@store_option
@json_option
@handle_errors
def finetune(
    dataset: str, model: str, name: str, weights: str | None, device: str, workers: int,
    store_url: str, as_json: bool, train_mode: str | None, **recipe: Any,
) -> None:  # fmt: skip
    """Fine-tune MODEL on DATASET and register the result as NAME (best epoch on validation).

    \b
    A run is keyed by the parent's weights, the dataset and the recipe: asking again is a
    lookup, and a killed run resumes from its last epoch. Extract from it with -m NAME.
    Example:
      featstore finetune -d flowers -m efficientnet_lite0 --name lite0-ft --epochs 3
    """
    from featstore.finetune import finetune as run

    store = open_cli_store(store_url, create=False)

    def progress(done: int, total: int, info: dict[str, Any]) -> None:
        if not as_json:
            click.echo(
                f"epoch {done}/{total}: train loss {info['train_loss']:.4f}, "
                f"val accuracy {info['val_accuracy']:.4f} ({info['seconds']:.0f} s)",
                err=True,
            )

    if not as_json:
        click.echo(store_note(store), err=True)
    out = run(
        store, dataset, model, name, weights=weights, device=device, num_workers=workers,
        progress=progress, train=train_mode, **recipe,
    )  # fmt: skip
    emit(out, as_json, _render)


def _render(out: dict[str, Any]) -> str:
    best = out["best"]
    how = "trained" if out["trained"] else "already trained (run found in the store)"
    if out.get("resumed_from_epoch"):
        how = f"resumed from epoch {out['resumed_from_epoch']}"
    lines = [
        f"{out['name']}: {how}; run {out['run']}",
        f"best epoch {best['epoch']} (val accuracy {best['val_accuracy']:.4f}), "
        f"weights sha256 {best['weights_sha256'][:16]}",
        f"networks: {', '.join(out['networks'])} (extract with -m {out['name']})",
    ]
    return "\n".join(lines)
