"""`featstore evaluate`: score cached features on a task and print one comparison table.

Each ``--task`` dispatches to one library function through :data:`TASKS` (its import
path, the function that checks a setting without computing, and how this command's
options become its keyword arguments). A new task is one entry there plus its options.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from featstore.cli.common import (
    emit,
    handle_errors,
    json_option,
    open_cli_store,
    progress_bar,
    store_option,
    table,
)


@dataclass(frozen=True)
class Task:
    """How ``--task NAME`` runs: ``module:function`` paths and an options adapter."""

    evaluate: str  # fn(store, dataset, features, force=, progress=, **options) -> record
    check: str | None  # fn(store, dataset, features, **options): raises on bad input
    options: Callable[[dict[str, Any]], dict[str, Any]]  # CLI options -> keyword arguments


def _classify_options(opts: dict[str, Any]) -> dict[str, Any]:
    return {
        "transform": opts["transform"],
        "classifier": opts["classifier"],
        "cv": opts["cv"],
        "seed": opts["seed"],
        "c_grid": opts["svm_c"],
        "class_weight": None if opts["class_weight"] == "none" else opts["class_weight"],
        "solver": opts["solver"],
        "knn_k": opts["knn_k"],
        "shots": opts["shots"],
        "draws": opts["draws"],
    }


def _retrieve_options(opts: dict[str, Any]) -> dict[str, Any]:
    return {
        "transform": opts["transform"],
        "seed": opts["seed"],
        "method": opts["method"],
        "whiten": opts["whiten"],
        "whiten_dim": opts["whiten_dim"],
        "index": opts["index"],
    }


TASKS: dict[str, Task] = {
    "classify": Task(
        "featstore.evaluate.classify:evaluate_classification",
        "featstore.evaluate.classify:plan_classification",
        _classify_options,
    ),
    "retrieve": Task(
        "featstore.evaluate.retrieve:evaluate_retrieval",
        "featstore.evaluate.retrieve:plan_retrieval",
        _retrieve_options,
    ),
    "transferability": Task(  # issue 6: estimators on the train split's cached features
        "featstore.evaluate.transfer_task:evaluate_transferability",
        "featstore.evaluate.transfer_task:plan_transferability",
        lambda opts: {
            "transform": opts["transform"],
            "seed": opts["seed"],
            "estimators": _csv(opts["estimators"]),
        },
    ),
}


def _load(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        items = [int(v) for v in _csv(value)]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if not items or any(k < 1 for k in items):
        raise click.BadParameter(f"{value!r}: give positive integers, e.g. 1,5,10")
    return items


def _c_grid(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        grid = [float(v) for v in _csv(value)]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None
    if not grid or any(not c > 0 for c in grid):
        raise click.BadParameter(f"{value!r}: C values must be positive numbers")
    return grid


@click.command()
@click.option("-d", "--dataset", required=True, help="Dataset name or id.")
@click.option("-m", "--model", required=True, help="Network name(s), comma-separated.")
@click.option("-l", "--layer", required=True, help="Layer name(s), comma-separated: one row each.")
@click.option(
    "--task",
    type=click.Choice(sorted(TASKS)),
    default="classify",
    show_default=True,
    help="What to evaluate.",
)
@click.option(
    "--pool", "pooling", default=None, help="Stored pooling of the entries (avg, grid:max:6 ...)."
)
@click.option("--view", default="plain", show_default=True, help="Stored view of the entries.")
@click.option(
    "--transform",
    default="l2",
    show_default=True,
    help="Post-learning transform chain, e.g. 'pool=max,pca=256,l2' or 'flipavg,power=0.5,l2'.",
)
@click.option(
    "--concat", is_flag=True, help="Evaluate the concatenation of all layers/networks (one row)."
)
@click.option(
    "--classifier",
    type=click.Choice(["svm", "logreg", "knn"]),
    default="svm",
    show_default=True,
    help="One-vs-rest linear SVM (C by k-fold CV), multinomial logistic regression (lambda on "
    "val) or a cosine kNN probe (DINO-weighted vote, k on val).",
)
@click.option(
    "--solver",
    type=click.Choice(["torch", "sklearn"]),
    default="torch",
    show_default=True,
    help="Linear solvers: batched torch Newton-CG (CPU or CUDA) or the scikit-learn reference loop.",
)
@click.option(
    "--knn-k",
    callback=_int_list,
    default=None,
    metavar="K[,K...]",
    help="kNN: neighbour counts searched on val (one value: fixed) [default: 10,20,50,100].",
)
@click.option(
    "--shots",
    callback=_int_list,
    default=None,
    metavar="K[,K...]",
    help="Few-shot: K training images per class, drawn from the train split.",
)
@click.option(
    "--draws",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Few-shot: seeded draws per K (mean and std reported).",
)
@click.option(
    "--svm-c",
    callback=_c_grid,
    default=None,
    metavar="C[,C...]",
    help="SVM C grid searched by cross-validation [default: 0.01,0.1,1,10].",
)
@click.option(
    "--cv", default=5, show_default=True, type=click.IntRange(min=2), help="CV folds (SVM)."
)
@click.option(
    "--class-weight",
    type=click.Choice(["none", "balanced"]),
    default="none",
    show_default=True,
    help="Class weights of the classifier.",
)
@click.option(
    "--method",
    type=click.Choice(["global", "subpatch"]),
    default="global",
    show_default=True,
    help="Retrieval: one descriptor per image, or sub-patch matching over a crops view.",
)
@click.option(
    "--whiten",
    default="database",
    show_default=True,
    metavar="database|none|DATASET",
    help="Retrieval: learn PCA-whitening on the database, on another dataset, or not at all.",
)
@click.option(
    "--whiten-dim",
    type=click.IntRange(min=1),
    default=None,
    help="Retrieval: whitened dims kept [default: one per 8 training vectors].",
)
@click.option(
    "--index",
    type=click.Choice(["flat", "ivfpq"]),
    default="flat",
    show_default=True,
    help="Retrieval: exact inner-product search, or IVF-PQ with exact re-ranking.",
)
@click.option(
    "--estimators",
    default="logme,h_score,gbc",
    show_default=True,
    help="Transferability: estimators scored on the training split's features.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of CV folds and splits.")
@click.option("--force", is_flag=True, help="Recompute even when the result is stored.")
@store_option
@json_option
@handle_errors
def evaluate(**opts: Any) -> None:
    """Evaluate cached features of DATASET and print one table (rows = layers).

    Every post-learning factor (pooling from stored maps, flip-average, power and L2
    normalisation, PCA/whitening, concatenation) is derived from the cache; no network
    runs. A setting evaluated before is looked up (--force recomputes).

    \b
    Example:
      featstore evaluate -d flowers -m efficientnet_lite0 -l stage5,stage7,penultimate --task classify
      featstore evaluate -d flowers -m efficientnet_lite0 -l penultimate --classifier logreg --json
      featstore evaluate -d flowers -m efficientnet_lite0 -l stage7,penultimate --concat \\
          --transform l2,concat,pca=256
      featstore evaluate -d copydays -m efficientnet_lite0 -l penultimate --task retrieve \\
          --method subpatch --whiten none
    """
    task = TASKS[opts["task"]]
    store = open_cli_store(opts["store_url"])
    from featstore.evaluate.settings import evaluate_settings, settings_from_factors

    settings = settings_from_factors(
        _csv(opts["model"]),
        _csv(opts["layer"]),
        pooling=opts["pooling"],
        view=opts["view"],
        concat=opts["concat"],
    )
    options = task.options(opts)
    with progress_bar(f"evaluate {opts['dataset']}", enabled=not opts["as_json"]) as progress:
        records = evaluate_settings(
            _load(task.evaluate),
            store,
            opts["dataset"],
            settings,
            check=_load(task.check) if task.check else None,
            force=opts["force"],
            progress=progress,
            **options,
        )
    emit(records, opts["as_json"], _render)


# --- rendering ---------------------------------------------------------------------------


def _chosen(chosen: dict[str, Any]) -> str:
    """The chosen hyper-parameters in a few characters."""
    bits = []
    names = ("lambda",) if "lambda" in chosen else ("C",)  # logreg's C is derived from lambda
    names = ("k",) if "k" in chosen else names  # kNN
    for name in names:
        value, symbol = chosen.get(name), name
        if isinstance(value, (int, float)):
            bits.append(f"{symbol}={value:.3g}")
        elif isinstance(value, dict):
            bits.append(f"{symbol} per class")
    return " ".join(bits) or "-"


def _render(records: list[dict[str, Any]]) -> str:
    first = records[0]
    classifier = first.get("classifier", {}).get("name", "")
    head = (
        f"{first.get('dataset_name')}: task {first.get('task')}"
        + (f", {classifier}" if classifier else "")
        + f", transform {first.get('transform')}"
    )
    metric_names: list[str] = []
    for r in records:
        metric_names += [m for m in r.get("metrics", {}) if m not in metric_names]
    poolings = {str(r.get("factors", {}).get("pooling")) for r in records}
    headers = ["setting"] + (["pooling"] if len(poolings) > 1 else []) + ["dim"]
    headers += metric_names + ["chosen", "cached", "seconds"]
    rows = []
    for r in records:
        row: list[Any] = [r.get("setting", r.get("key"))]
        if len(poolings) > 1:
            row.append(r.get("factors", {}).get("pooling"))
        row.append(r.get("sizes", {}).get("dim", ""))
        row += [r["metrics"].get(m, "") for m in metric_names]
        row += [_chosen(r.get("chosen", {})), "yes" if r.get("cached") else "no"]
        row.append(f"{r.get('timings', {}).get('total_s', 0.0):.1f}")
        rows.append(row)
    return head + "\n" + table(rows, headers)
