"""`featstore extract`: fill the cache with features of many layers of many networks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from featstore.store.lease import DEFAULT_TTL

from .choose import Choice, choose_options, renamed
from .common import (
    emit,
    handle_errors,
    human_bytes,
    json_option,
    open_cli_store,
    progress_bar,
    store_note,
    store_option,
    table,
)

if TYPE_CHECKING:
    from featstore.extract.pipeline import ExtractionSummary
    from featstore.extract.plan import ExtractPlanJson


@click.command("extract")
@choose_options("extract")
@click.option(
    "--resize", type=click.IntRange(min=1), default=None, help="Override the resize (shorter side)."
)
@click.option(
    "--crop",
    type=click.IntRange(min=1),
    default=None,
    help="Override the centre crop (network input size).",
)
@click.option(
    "--interpolation", default=None, help="Override the resize filter (bilinear, bicubic ...)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Images per batch (default 32 on CPU, 64 on CUDA).",
)
@click.option(
    "--loader-workers",
    type=click.IntRange(min=0),
    default=None,
    help="Image loader processes (0: a decoding thread; default 0 on CPU, up to 8 on CUDA).",
)
@click.option(
    "--amp/--no-amp",
    default=None,
    help="Autocast (default: float16 on CUDA, off on CPU; --amp on CPU means bfloat16).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@click.option(
    "--dask",
    "dask_address",
    default=None,
    metavar="ADDRESS|local:N",
    help="Run whole-chunk units on Dask: a scheduler address, or local:N worker processes.",
)
@click.option(
    "--share",
    is_flag=True,
    help="Lease whole-chunk units, so several processes filling one shared store split the "
    "work; then wait for the chunks the others hold, and exit when every entry is complete.",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    help="With --share/--dask: wait for chunks other writers hold (default), or return after "
    "this process's share and say what they still hold.",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TTL,
    show_default=True,
    metavar="SECONDS",
    help="With --share/--dask: a chunk whose writer stops renewing its lease (every TTL/3) "
    "for this long is taken over by the writers still waiting.",
)
@renamed("--flip", "--view: give --view plain,flip", flag=True)
@renamed("--crops", "--view: give --view plain,crops:{value}")
@renamed("--workers", "--loader-workers (image loader processes)")
@store_option
@json_option
@handle_errors
def extract(
    choice: Choice,
    resize: int | None,
    crop: int | None,
    interpolation: str | None,
    device: str,
    batch_size: int | None,
    loader_workers: int | None,
    amp: bool | None,
    dry_run: bool,
    dask_address: str | None,
    share: bool,
    wait: bool,
    lease_ttl: float,
    store_url: str,
    as_json: bool,
) -> None:
    """Extract features of DATASET images into the store; only what is missing is computed.

    All layers of a network come from one forward pass per batch; each image is decoded
    once for all networks. Entries are keyed by every factor (dataset content, network
    weights hash, layer, preprocessing, view, pooling, dtypes). A killed run resumes
    where it stopped; a run with everything cached computes nothing.

    \b
    Example:
      featstore extract -d flowers -m efficientnet_lite0 -l stage6,last_conv,penultimate --view plain,flip
      featstore extract -d flowers -m alexnet -m resnet50 -l penultimate --pool grid:max:6
      featstore extract -d holidays -m efficientnet_lite0 -l last_conv --pool max \\
          --view crops:1x1,2x2,3x3
      featstore extract -d flowers -m r18-places -l penultimate   # a name from featstore models add
      featstore extract -d flowers -m resnet50 --store s3://team/feats.zarr --dask local:4
    """
    from featstore.extract.options import pooling_by_layer  # torch: lazy

    model_list = list(choice.models)
    preprocess = {
        k: v
        for k, v in (("resize", resize), ("crop", crop), ("interpolation", interpolation))
        if v is not None
    }
    from featstore.extract import ExtractionRequest, plan  # torch: imported only when used
    from featstore.extract.run import choose_mode, run_extraction
    from featstore.specs import DEFAULT_STORAGE_DTYPE

    if choice.dataset is None:  # -d is required: click refuses a command without it first
        raise click.UsageError("featstore extract needs a dataset: -d/--dataset NAME")
    # a dry run never writes; a real run needs the dataset registered, so never creates a store
    store = open_cli_store(store_url, "r" if dry_run else "a", create=False)
    request = ExtractionRequest.parse(
        choice.dataset,
        model_list,
        list(choice.layers) or None,
        pooling_by_layer(choice.pools),
        list(choice.views) or None,
        weights=_weights(choice.weights),
        preprocess=preprocess or None,
        device=device,
        amp=amp,
        compute_dtype=choice.compute_dtype,
        dtype=choice.dtype or DEFAULT_STORAGE_DTYPE,
    )
    p = plan(store, request)
    request = p.request  # the dataset as registered, for every mode
    if not as_json:
        click.echo(render_plan(p.to_dict(), store_note(store)))
    if dry_run:
        if as_json:
            emit(p.to_dict(), as_json)
        return
    mode = choose_mode(share=share, dask=dask_address)
    if not p.todo:
        summary = run_extraction(store, request, plan_=p)
        if as_json:
            emit(summary, as_json)
        else:
            by_index = sum(1 for e in p.entries if e.by_index)
            note = (
                f" ({by_index} read by index from entries holding these images)" if by_index else ""
            )
            click.echo(f"nothing to compute: all {len(p.entries)} entries are cached{note}")
        return
    unit = "img" if mode == "local" else "unit"
    with progress_bar("extracting", unit=unit, enabled=not as_json) as progress:
        summary = run_extraction(
            store, request, mode=mode, dask=dask_address, plan_=p if mode == "local" else None,
            batch_size=batch_size, num_workers=loader_workers,
            progress=waiting_notes(progress, enabled=not as_json), lease_ttl=lease_ttl, wait=wait,
        )  # fmt: skip
    if mode == "local":
        emit(summary, as_json, render_summary)
    else:
        from .copy_cmd import render_distributed

        emit(summary, as_json, render_distributed)
        if summary.get("incomplete") and wait:  # waiting ends only when all is complete
            raise click.ClickException(
                f"{len(summary['incomplete'])} entries are still incomplete after waiting; run "
                "the command again"
            )


def _weights(chosen: Any) -> dict[str, str] | None:
    """The weights per network as plan takes them; ``pretrained`` is the network's default."""
    if not chosen:
        return None
    return {net: "default" if w == "pretrained" else w for net, w in chosen.items()}


def waiting_notes(progress: Any, enabled: bool = True, every_s: float = 15.0) -> Any:
    """The progress callback, plus a line on stderr when a --share run starts waiting on other
    writers, when what it waits on changes, and every ``every_s`` seconds while it waits."""
    import re
    import time

    last: list[Any] = ["", 0.0]

    def update(done: int, total: int, info: dict[str, Any]) -> None:
        note = info.get("waiting")
        if note and enabled:
            what = re.sub(r"lease age \d+ s, ", "", note)
            if what != last[0] or time.monotonic() - last[1] >= every_s:
                click.echo(f"waiting for other writers: {note}", err=True)
                last[:] = [what, time.monotonic()]
        progress(done, total, {k: v for k, v in info.items() if k != "waiting"})

    return update


def render_plan(data: ExtractPlanJson, store: str = "") -> str:
    rows = []
    for e in data["entries"]:
        if e.get("by_index"):
            state = f"cached: rows by index from {e['key']}"
        elif e["complete"]:
            state = "cached"
        elif e["exists"]:
            state = f"resume: {e['missing_chunks']}/{e['chunks']} chunks"
        else:
            state = "new"
        layer = (
            e["layer"] if e["layer"] == e["layer_target"] else f"{e['layer']} ({e['layer_target']})"
        )
        rows.append(
            (
                e["model"],
                layer,
                e["pooling"],
                e["view"],
                "x".join(map(str, e["shape"][1:])),
                state,
                human_bytes(e["missing_bytes"]),
            )
        )
    head = (
        f"plan: {data['n_entries']} entries for dataset {data['dataset_name']} ({data['n_images']} images), "
        f"{data['n_complete']} cached; {data['images_to_compute']} images to compute on "
        f"{data['device']} ({data['compute_dtype']}); up to {human_bytes(data['missing_bytes'])} to write, "
        f"{human_bytes(data['free_bytes'])} free" + (f"; {store}" if store else "")
    )
    return (
        head
        + "\n"
        + table(rows, ["model", "layer", "pooling", "view", "row shape", "state", "to write"])
    )


def render_summary(s: ExtractionSummary) -> str:
    return (
        f"done: {s['entries']} entries complete; computed {s['computed_chunks']} chunks "
        f"({s['skipped_chunks']} already cached) from {s['images']} images in {s['forward_batches']} "
        f"forward batches, {s['images_per_s']:.1f} images/s, {human_bytes(s['bytes_written'])} written"
    )
