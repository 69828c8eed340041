"""Running an extraction: the one place that chooses how (here, leased, or on Dask).

- ``local``: this process fills every missing chunk (:func:`featstore.extract.extract`);
- ``leased``: this process works unit by unit, leasing each unit's chunks first, so
  teammates extracting into the same shared store split the work instead of repeating it;
  when nothing is left to take it waits for the chunks the others hold (taking over any
  whose lease, ``lease_ttl`` seconds, expires) and returns when every entry is complete,
  or at once with ``wait=False`` (``incomplete`` and ``held`` then say what others hold);
- ``dask``: the units run on a Dask cluster (``dask="tcp://host:8786"`` or ``"local:N"``),
  each worker opening the store from its :class:`~featstore.store.spec.StoreSpec`.

Every mode fills the same entries with the same bytes; the summary says what was computed.
Before it is returned, every entry it reports is opened again and must exist with a readable
done marker on every chunk (a distributed run may leave chunks other live writers hold, and
says so in ``incomplete``): an entry removed or damaged while the run wrote it (`featstore rm`
meanwhile) is an ExtractionError naming it, never a run reported complete.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from featstore.errors import (
    DamagedChunkError,
    DamagedEntryError,
    EntryNotFoundError,
    ExtractionError,
    IncompleteEntryError,
)
from featstore.progress import Progress
from featstore.store.base import Store

if TYPE_CHECKING:
    from featstore.extract.plan import ExtractPlan
    from featstore.extract.request import ExtractionRequest

__all__ = ["MODES", "choose_mode", "run_extraction"]

MODES = ("local", "leased", "dask")


def choose_mode(*, share: bool = False, dask: Any = None) -> str:
    """``dask`` when a cluster is named, ``leased`` for a shared store, else ``local``."""
    if dask:
        return "dask"
    return "leased" if share else "local"


def run_extraction(
    store: Store,
    request: ExtractionRequest,
    *,
    mode: str = "local",
    dask: Any = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: Progress | None = None,
    plan_: ExtractPlan | None = None,
    lease_ttl: float | None = None,
    wait: bool = True,
) -> Mapping[str, Any]:
    """Fill the request's entries in ``mode``; ``plan_``, a plan of this request already
    made against ``store``, spares a local run planning it again. ``lease_ttl`` and
    ``wait``: the leased and Dask modes' (see :func:`~featstore.extract.distributed.run_distributed`)."""
    if mode not in MODES:
        raise ExtractionError(f"unknown extraction mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "dask" and not dask:
        raise ExtractionError("mode 'dask' needs a cluster: an address or local:N")
    if mode == "local":
        from featstore.extract.pipeline import extract

        summary: Mapping[str, Any] = extract(
            store,
            plan_ if plan_ is not None else request,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
        )
    else:
        from featstore.extract.distributed import run_distributed
        from featstore.store.lease import DEFAULT_TTL

        summary = run_distributed(
            store,
            request,
            client=dask if mode == "dask" else None,
            ttl=DEFAULT_TTL if lease_ttl is None else lease_ttl,
            wait=wait,
            progress=progress,
            batch_size=batch_size,
            num_workers=num_workers,
        )
    if isinstance(store, Store):  # not a spec or URL: the run opened none here to ask
        recheck(store, summary.get("keys", []), summary.get("incomplete") or {})
    return summary


def recheck(store: Store, keys: Sequence[str], held: Any = ()) -> None:
    """Open each reported entry again: it must exist and every chunk must have a readable
    done marker (``held``: keys whose missing chunks other live writers still lease).
    ExtractionError naming the first entry that vanished or was damaged meanwhile."""
    for key in keys:
        try:
            entry = store.get_entry(key)
            if key in held:
                continue  # reported as incomplete: other writers are filling it
            entry.content_checksum()  # every marker present and holding its checksum
        except EntryNotFoundError:
            raise ExtractionError(
                f"entry {key} was removed while this extraction wrote it (by `featstore rm` or "
                "`featstore gc --force`?); nothing of it is kept: run the extraction again"
            ) from None
        except (IncompleteEntryError, DamagedChunkError, DamagedEntryError) as exc:
            raise ExtractionError(
                f"entry {key} was damaged while this extraction wrote it ({exc}); run the "
                "extraction again to fill it"
            ) from exc
