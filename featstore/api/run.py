"""What the CLI's computing commands run, as functions: register, extract, evaluate, sweep.

Each takes a store (a :class:`~featstore.api.store.FeatureStore` from ``featstore.open``, a
backend Store, or a path/URL) and returns what the command prints with ``--json``; errors
are the library's typed errors, with the CLI's messages. torch is imported only by the
calls that run a network (extraction, and a sweep that extracts).

=========================  ============================================
``featstore datasets add``  :func:`add_dataset`
``featstore extract``       :func:`extract_features`
``featstore evaluate``      :func:`evaluate_features`
``featstore sweep``         :func:`run_sweep`
``featstore report``        :meth:`FeatureStore.results` (same records)
=========================  ============================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from featstore.api.store import StoreLike, as_store
from featstore.errors import EvaluationError
from featstore.progress import Progress
from featstore.specs import DEFAULT_DEVICE, DEFAULT_POOLING, DEFAULT_STORAGE_DTYPE, DEFAULT_VIEW

if TYPE_CHECKING:
    import os

    from featstore.datasets.core import Dataset
    from featstore.sweep.run import SweepSummary
    from featstore.sweep.spec import SweepSpec

__all__ = ["add_dataset", "evaluate_features", "extract_features", "run_sweep"]


def _names(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def add_dataset(
    store: StoreLike,
    name: str,
    source: str,
    *,
    subset: int | None = None,
    skip_bad: bool = False,
    replace: bool = False,
    splits: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """Register ``source`` as dataset ``name`` (``featstore datasets add``); ``subset``
    keeps a stratified, seeded subset of that many images, as a sweep spec's ``subset:``."""
    from featstore.datasets import dataset_from_source, register_dataset

    dataset = dataset_from_source(name, source, skip_bad=skip_bad, progress=progress, splits=splits)
    if subset is not None and subset < dataset.n:
        from featstore.sweep.plan import subset_dataset

        dataset = subset_dataset(dataset, int(subset))
    return register_dataset(as_store(store), dataset, replace=replace)


def extract_features(
    store: StoreLike,
    dataset: str,
    models: str | Sequence[str],
    layers: str | Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    pooling: str | Sequence[str] | Mapping[str, Any] = str(DEFAULT_POOLING),
    views: Sequence[str] = (str(DEFAULT_VIEW),),
    *,
    weights: str | Mapping[str, str] | None = None,
    preprocess: Mapping[str, Any] | None = None,
    device: str = DEFAULT_DEVICE,
    amp: bool | None = None,
    compute_dtype: str | None = None,
    dtype: str = DEFAULT_STORAGE_DTYPE,
    batch_size: int | None = None,
    num_workers: int | None = None,
    share: bool = False,
    dask: Any = None,
    progress: Progress | None = None,
) -> Mapping[str, Any]:
    """Extract what is missing of ``dataset`` for each network's layers, poolings and views
    in one forward pass per batch (``featstore extract``); returns the run's summary
    (entries, computed and skipped chunks, forward batches, keys)."""
    from featstore.extract.request import ExtractionRequest
    from featstore.extract.run import choose_mode, run_extraction

    if isinstance(layers, (str, list, tuple)):
        layers = _names(layers) or None
    request = ExtractionRequest.parse(
        dataset,
        _names(models),
        layers,
        pooling,
        list(views),
        weights=weights,
        preprocess=preprocess,
        device=device,
        amp=amp,
        compute_dtype=compute_dtype,
        dtype=dtype,
    )
    return run_extraction(
        as_store(store),
        request,
        mode=choose_mode(share=share, dask=dask),
        dask=dask,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )


def evaluate_features(
    store: StoreLike,
    dataset: str,
    network: str | Sequence[str] | None = None,
    layers: str | Sequence[str] | None = None,
    *,
    task: str = "classify",
    pooling: str | Mapping[str, Sequence[str]] | None = None,
    view: str | None = str(DEFAULT_VIEW),
    transform: str | None = None,
    concat: bool = False,
    weights: str | None = None,
    compute_dtype: str | None = None,
    keys: Sequence[str] = (),
    settings: Sequence[Sequence[dict[str, Any]]] | None = None,
    force: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Evaluate cached features (``featstore evaluate``): one result record per layer (or
    one for their concatenation), looked up when the same setting was evaluated before.

    ``options`` are the task's (classify: ``classifier``, ``cv``, ``seed``, ``c_grid``,
    ``class_weight``, ``solver``, ``knn_k``, ``shots``, ``draws``; retrieve: ``method``,
    ``index``, ``whiten`` ...); an option the task does not take is refused. Every setting
    is checked before any is evaluated. Records come under the dataset name asked for.
    ``settings`` (rows of feature selectors, as
    :func:`featstore.evaluate.features.settings.settings_from_factors` makes them) replace the
    factors (network, layers, pooling, view, concat, weights, compute_dtype, keys).
    """
    from featstore.evaluate.features.settings import evaluate_settings, settings_from_factors
    from featstore.evaluate.tasks import get_task
    from featstore.specs import compute_dtype_name

    chosen = get_task(task)
    unknown = sorted(set(options) - set(chosen.options))
    if unknown:
        raise EvaluationError(
            f"task {chosen.name} takes no option {', '.join(unknown)}; its options are "
            f"{', '.join(chosen.options) or 'none'}"
        )
    if chosen.matrix:
        raise EvaluationError(
            f"task {chosen.name} compares settings pairwise; run it with `featstore evaluate "
            f"--task {chosen.name}` or a sweep"
        )
    st = as_store(store)
    if settings is None:
        settings = settings_from_factors(
            _names(network),
            _names(layers),
            pooling=pooling,
            view=view,
            concat=concat,
            weights=weights,
            compute_dtype=compute_dtype_name(compute_dtype) if compute_dtype else None,
            keys=list(keys),
        )
    options = {
        **options,
        "transform": transform if transform is not None else chosen.default_transform,
    }
    records = evaluate_settings(
        chosen.evaluate,
        st,
        dataset,
        [list(setting) for setting in settings],
        check=chosen.plan,
        force=force,
        progress=progress,
        **chosen.select(options),
    )
    asked = st.get_dataset(dataset).name  # a record made under another name of the same data
    return [{**r, "dataset_name": asked} for r in records]


def run_sweep(
    store: StoreLike,
    spec: SweepSpec | str | os.PathLike[str],
    *,
    workers: int = 1,
    dask: str | None = None,
    extract_progress: Progress | None = None,
    progress: Progress | None = None,
    finetune_progress: Progress | None = None,
) -> SweepSummary:
    """Run the factor sweep of ``spec`` (a YAML path or loaded spec) on the store
    (``featstore sweep``): register its datasets, fine-tune its ``finetune:`` networks
    (``finetune_progress`` ticks per epoch), extract what is missing and evaluate every
    cell (on the Dask cluster ``dask``, an address or ``local:N``, when given; else cells
    in ``workers`` processes); returns the sweep's JSON summary (KeyboardInterrupt, as
    :class:`featstore.sweep.run.SweepInterrupted`, when interrupted)."""
    from featstore.api.results import load_sweep_spec
    from featstore.sweep.run import run_sweep as _run

    st, loaded = as_store(store), load_sweep_spec(spec)
    if not dask:
        return _run(
            st,
            loaded,
            workers=workers,
            extract_progress=extract_progress,
            progress=progress,
            finetune_progress=finetune_progress,
        )
    from featstore.extract.distributed import DaskExtractor
    from featstore.sweep.distributed import dask_cells

    with DaskExtractor(dask) as on_dask:  # one client for the extractions and the cells
        return _run(
            st,
            loaded,
            workers=workers,
            extract_progress=extract_progress,
            progress=progress,
            extract_fn=on_dask,
            finetune_progress=finetune_progress,
            cell_runner=dask_cells(on_dask.client),
        )
