"""`featstore evaluate`: score cached features on a task and print one comparison table.

``--task`` names a task of the library's registry (:mod:`featstore.evaluate.tasks`); each
option's name is the keyword the tasks take, and the registry keeps the ones a task uses.
"""

from __future__ import annotations

from typing import Any

import click

from featstore.errors import ProtocolLimitError
from featstore.evaluate.tasks import TASKS, Task, get_task

from .choose import Choice, choose_options
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


class ProtocolRefused(click.ClickException):
    """A protocol value beyond what the data allows: a usage error (exit 2), one line."""

    exit_code = 2


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
@choose_options("evaluate")
@click.option(
    "--task",
    type=click.Choice(sorted(TASKS)),
    default="classify",
    show_default=True,
    help="What to evaluate.",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="KEY",
    help="Entry key (or prefix, from featstore ls) that picks one of several matching entries.",
)
@click.option(
    "--transform",
    default=None,
    help="Post-learning transform chain, e.g. 'pool=max,pca=256,l2' or 'flipavg,power=0.5,l2' "
    "[default: l2; none for similarity].",
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
    "c_grid",
    callback=_c_grid,
    default=None,
    metavar="C[,C...]",
    help="SVM C grid searched by cross-validation [default: 0.01,0.1,1,10].",
)
@click.option(
    "--cv",
    default=None,
    type=click.IntRange(min=2),
    help="CV folds (SVM) [default: 5, or the smallest class's training images when fewer].",
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
@click.option(
    "--measure",
    type=click.Choice(["cka", "rbf_cka", "rsa"]),
    default="cka",
    show_default=True,
    help="Similarity: linear CKA, RBF-kernel CKA, or RSA (correlation of the RDMs).",
)
@click.option(
    "--split",
    default="all",
    show_default=True,
    help="Similarity: the images compared (a split name such as test, or all).",
)
@click.option("--debiased", is_flag=True, help="Similarity: the unbiased HSIC estimator (CKA).")
@click.option(
    "--sigma",
    type=click.FloatRange(min=0, min_open=True),
    default=0.8,
    show_default=True,
    help="Similarity: RBF bandwidth as a fraction of the median distance.",
)
@click.option(
    "--distance",
    type=click.Choice(["correlation", "euclidean", "sqeuclidean", "cosine"]),
    default="correlation",
    show_default=True,
    help="Similarity: RSA's dissimilarity between two images.",
)
@click.option(
    "--compare",
    type=click.Choice(["spearman", "pearson", "kendall"]),
    default="spearman",
    show_default=True,
    help="Similarity: how RSA correlates two RDMs.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(0, 2**32 - 1),  # what numpy and scikit-learn accept as a seed
    help="Seed of CV folds and splits.",
)
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
      featstore evaluate -d flowers -m efficientnet_lite0 -l stage3,stage5,penultimate \\
          --task similarity --measure cka --split test
    """
    choice: Choice = opts.pop("choice")
    task = get_task(opts["task"])
    _refuse_unused(click.get_current_context(), task, opts)
    if opts["transform"] is None:
        opts["transform"] = task.default_transform
    settings = _settings(choice, opts["concat"], [k for value in opts["keys"] for k in _csv(value)])
    opts["dataset"] = choice.dataset
    store = open_cli_store(opts["store_url"], create=False)  # evaluating needs a dataset in it
    options = task.select(opts)
    if task.matrix:
        _evaluate_matrix(task, store, settings, opts, options)
        return
    from featstore.api import evaluate_features  # what `featstore.evaluate_features` runs

    with progress_bar(f"evaluate {opts['dataset']}", enabled=not opts["as_json"]) as progress:
        try:
            records = evaluate_features(
                store, opts["dataset"], settings=settings, task=task.name, force=opts["force"],
                progress=progress, **options,
            )  # fmt: skip
        except ProtocolLimitError as exc:  # checked for every setting before any is evaluated
            raise ProtocolRefused(str(exc)) from exc
    emit(records, opts["as_json"], lambda recs: _render(recs, store_note(store)))


# The classify options each classifier reads (the others belong to another classifier).
CLASSIFIER_OPTIONS = {
    "svm": {"c_grid", "cv", "class_weight", "solver"},
    "logreg": {"class_weight", "solver"},
    "knn": {"knn_k"},
}


def _refuse_unused(ctx: click.Context, task: Task, opts: dict[str, Any]) -> None:
    """An option given on the command line that this task (or classifier) does not read is an
    error, not silently dropped: ``--svm-c`` with ``--classifier logreg``, ``--measure`` with
    ``--task classify``."""
    task_options = {name for t in TASKS.values() for name in t.options}
    unused = task_options - set(task.options)
    if task.name == "classify":
        choice = opts.get("classifier", "svm")
        unused |= set().union(*CLASSIFIER_OPTIONS.values()) - CLASSIFIER_OPTIONS[choice]
        what = f"--task classify --classifier {choice}"
    else:
        what = f"--task {task.name}"
    for param in ctx.command.params:
        if param.name in unused and ctx.get_parameter_source(param.name) in (
            click.core.ParameterSource.COMMANDLINE,
            click.core.ParameterSource.ENVIRONMENT,
        ):
            raise click.UsageError(
                f"{param.opts[0]} does not apply to {what}; drop it (see featstore evaluate --help)"
            )


def _settings(choice: Choice, concat: bool, keys: list[str]) -> list[Any]:
    """A row per (network, view, layer, pooling) chosen, or one concatenated row: every
    repeated option is used, none is silently dropped."""
    from featstore.evaluate.features.settings import settings_from_factors

    rows: list[Any] = []
    for model in choice.models:
        for view in choice.views or ("plain",):
            rows += settings_from_factors(
                [model], list(choice.layers), pooling=_pooling(choice.pools), view=view,
                weights=choice.weights_for(model),
                compute_dtype=_compute_dtype(choice.compute_dtype), keys=keys,
            )  # fmt: skip
    if choice.dtype:
        rows = [[{**sel, "dtype": choice.dtype} for sel in setting] for setting in rows]
    return [[sel for setting in rows for sel in setting]] if concat else rows


def _pooling(values: tuple[str, ...]) -> dict[str, list[str]] | None:
    """``--pool`` parsed as extract parses it; no ``SPEC`` for every layer means any pooling."""
    if not values:
        return None
    from featstore.extract.options import pooling_by_layer  # extract's parser: lazy

    table = pooling_by_layer(values)
    if all("=" in v for v in values):
        table.pop("*", None)  # extract's default (avg) is not a choice made here
    return table


def _compute_dtype(value: str | None) -> str | None:
    if value is None:
        return None
    from featstore.specs import compute_dtype_name

    return compute_dtype_name(value)


def _evaluate_matrix(
    task: Task, store: Any, settings: list[Any], opts: dict[str, Any], options: dict[str, Any]
) -> None:
    """A task over all settings at once (similarity): one call, one matrix."""
    with progress_bar(f"evaluate {opts['dataset']}", enabled=not opts["as_json"]) as progress:
        result = task.evaluate(
            store, opts["dataset"], settings, force=opts["force"], progress=progress, **options
        )
    emit(result, opts["as_json"], lambda res: _render_matrix(res, store_note(store)))


# --- rendering ---------------------------------------------------------------------------


def _render_matrix(result: dict[str, Any], store: str = "") -> str:
    """The similarity matrix as a table, rows and columns in the order asked."""
    m = result["measure"]
    params = ", ".join(f"{k}={v}" for k, v in m.items() if k != "name")
    head = (
        f"{result['dataset_name']}: task similarity, {m['name']}"
        + (f" ({params})" if params else "")
        + f", transform {result['transform']}, rows {result['split']} (n={result['n_rows']})"
        + (f"; {store}" if store else "")
    )
    labels = result["labels"]
    rows = [
        [label] + ["-" if v is None else f"{v:.3f}" for v in values]
        for label, values in zip(labels, result["matrix"], strict=True)
    ]
    t = result["timings"]
    foot = (
        f"{result['computed']} pair(s) computed, {result['cached']} read from the store; "
        f"{t.get('total_s', 0.0):.1f} s (reading features {t.get('features_s', 0.0):.1f} s)"
    )
    return head + "\n" + table(rows, ["", *labels]) + "\n" + foot


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


def _retrieval_applied(records: list[dict[str, Any]]) -> str:
    """What retrieval applied after the transform: L2 alone, or L2 + PCA-whitening to N dims + L2."""
    first = records[0]
    if first.get("task") != "retrieve":
        return ""
    whiten = (first.get("classifier") or {}).get("whiten") or {}
    on = whiten.get("on", "database") if isinstance(whiten, dict) else str(whiten)
    if on == "none":
        return ", then l2 (no whitening)"
    dims = {r.get("chosen", {}).get("dims") for r in records}
    dim = str(dims.pop()) if len(dims) == 1 else "N (see dim)"
    vectors = first.get("chosen", {}).get("whiten_train_vectors")
    learned = f"the {vectors} database vectors" if on == "database" and vectors else on
    return f", then l2,pca={dim}:whiten,l2 (whitening learned on {learned})"


def _render(records: list[dict[str, Any]], store: str = "") -> str:
    first = records[0]
    classifier = first.get("classifier", {}).get("name", "")
    head = (
        f"{first.get('dataset_name')}: task {first.get('task')}"
        + (f", {classifier}" if classifier else "")
        + f", transform {first.get('transform')}"
        + _retrieval_applied(records)
        + (f"; {store}" if store else "")
    )
    metric_names: list[str] = []
    for r in records:
        metric_names += [m for m in r.get("metrics", {}) if m not in metric_names]
    poolings = {str(r.get("factors", {}).get("pooling")) for r in records}
    headers = ["setting"] + (["pooling"] if len(poolings) > 1 else []) + ["dim"]
    headers += [*metric_names, "chosen", "cached", "seconds"]
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
    notes = sorted({r["not_saved"] for r in records if r.get("not_saved")})
    foot = "".join(f"\nnote: results were not saved to the store ({n})" for n in notes)
    warned = dict.fromkeys(w for r in records for w in r.get("warnings") or [])
    foot += "".join(f"\nwarning: {w}" for w in warned)
    return head + "\n" + table(rows, headers) + foot
