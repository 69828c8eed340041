"""The sweep's ``finetune:`` factor: networks fine-tuned on each dataset, then swept.

Each ``finetune:`` entry of a spec (:class:`featstore.sweep.spec.FinetuneSpec`) is one
fine-tuning run per dataset of the sweep, stored as ``NAME`` (one dataset) or
``NAME-<dataset>`` (several), with ``NAME@epochK`` for kept epochs. Every run is planned
and checked (names, recipe layers, the layers to extract) before any is trained; a
finished run is a lookup (see :func:`featstore.finetune.plan_request`), so a rerun trains
nothing. The trained networks are then networks of the sweep like any other, and their
provenance (parent, freeze, epoch ...) is set beside the study's records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featstore.errors import FeatstoreError, SpecError
from featstore.progress import Progress, report
from featstore.sweep.spec import FinetuneSpec, SweepSpec

if TYPE_CHECKING:
    from featstore.evaluate.results import ResultRecord
    from featstore.store.base import Store

__all__ = [
    "FinetuneJob",
    "annotate_records",
    "finetune_markdown",
    "finetune_rows",
    "plan_finetunes",
    "run_finetunes",
]


@dataclass(frozen=True)
class FinetuneJob:
    """One run of a sweep: ``entry`` fine-tuned on ``dataset`` into network ``network``."""

    dataset: str
    network: str
    entry: FinetuneSpec
    run: str
    status: str  # done (a lookup), resume (from a saved epoch), train
    saved_epoch: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "network": self.network,
            "parent": self.entry.network,
            "run": self.run,
            "status": self.status,
            "saved_epoch": self.saved_epoch,
            "epochs": self.entry.recipe["epochs"],
            "freeze": self.entry.recipe.get("freeze"),
            "train": self.entry.recipe.get("train"),
            "kept": [f"{self.network}@epoch{e}" for e in self.entry.kept_epochs],
        }


def _recipe(entry: FinetuneSpec) -> Any:
    from featstore.finetune import Recipe

    return Recipe.from_dict(entry.recipe)


def plan_finetunes(store: Store, spec: SweepSpec, datasets: Mapping[str, Any]) -> list[FinetuneJob]:
    """Every fine-tuning run of the sweep, checked (SpecError naming the entry), none trained."""
    from featstore.finetune import plan_request
    from featstore.models import resolve_layer

    device = str(spec.extract.get("device", "auto"))
    jobs = []
    for d in spec.datasets:
        for entry in spec.finetune:
            name = entry.stored_name(d.name, len(spec.datasets))
            try:
                req = plan_request(
                    store, datasets[d.name], entry.network, name, _recipe(entry),
                    weights=entry.weights, device=device,
                )  # fmt: skip
                for layer in entry.layers:
                    resolve_layer(req.plan.spec, layer)
            except FeatstoreError as exc:
                raise SpecError(
                    f"sweep spec: finetune {entry.name} on dataset {d.name!r}: {exc}"
                ) from None
            jobs.append(FinetuneJob(d.name, name, entry, req.plan.key, req.status, req.saved_epoch))
    return jobs


def run_finetunes(
    store: Store,
    spec: SweepSpec,
    datasets: Mapping[str, Any],
    *,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Train what is missing (all runs checked first); a finished run is only looked up.

    ``progress(epoch, epochs, info)`` follows each epoch (``info["network"]`` names the
    run). Returns one summary per run: what it is, whether it trained, its best epoch.
    """
    from featstore.finetune import finetune

    jobs = plan_finetunes(store, spec, datasets)
    options = spec.extract
    out = []
    for job in jobs:

        def each(done: int, total: int, info: Mapping[str, Any], job: FinetuneJob = job) -> None:
            report(progress, done, total, {**info, "network": job.network})

        result = finetune(
            store, datasets[job.dataset], job.entry.network, job.network, _recipe(job.entry),
            weights=job.entry.weights, device=str(options.get("device", "auto")),
            num_workers=int(options.get("workers", 0) or 0), progress=each,
        )  # fmt: skip
        out.append(
            {
                **job.to_json(),
                "trained": bool(result["trained"]),
                "networks": result["networks"],
                "best_epoch": result["best"]["epoch"],
                "val_accuracy": result["best"]["val_accuracy"],
            }
        )
    return out


# --- the study: provenance beside the records ---------------------------------------------
PROVENANCE_COLUMNS = ("network", "parent", "dataset", "train", "freeze", "epoch", "selected")


def _provenance(store: Store, name: str) -> dict[str, Any] | None:
    from featstore.store import trained

    if not trained.has_network(store, name):
        return None
    rec = trained.get_network(store, name)
    prov, recipe = rec.provenance, rec.provenance.get("recipe") or {}
    return {
        "network": name,
        "parent": rec.parent,
        "parent_weights_sha256": (prov.get("parent") or {}).get("weights_sha256"),
        "dataset": (prov.get("dataset") or {}).get("name"),
        "train": recipe.get("train"),
        "freeze": recipe.get("freeze") or "-",
        "reinit_above": recipe.get("reinit_above") or "-",
        "epochs": recipe.get("epochs"),
        "epoch": prov.get("epoch"),
        "selected": prov.get("selected"),
        "val_accuracy": prov.get("val_accuracy"),
        "lr": recipe.get("lr"),
        "run": prov.get("run"),
    }


def finetune_rows(store: Store, spec: SweepSpec) -> list[dict[str, Any]]:
    """The provenance of each fine-tuned network of the spec the store holds, in row order."""
    names = [n.name for d in spec.datasets for n in spec.networks_for(d.name) if n.finetuned]
    found = (_provenance(store, n) for n in dict.fromkeys(names))
    return [p for p in found if p is not None]


def annotate_records(store: Store, records: Sequence[ResultRecord]) -> list[ResultRecord]:
    """Records of fine-tuned networks with a ``finetune`` field: their provenance (parent,
    freeze, epoch ...); others unchanged. Nothing is written."""
    from featstore.settings import record_setting

    seen: dict[str, dict[str, Any] | None] = {}
    out: list[ResultRecord] = []
    for rec in records:
        name = record_setting(rec)["network"]
        if name not in seen:
            try:
                seen[name] = _provenance(store, name)
            except FeatstoreError:
                seen[name] = None
        prov = seen[name]
        out.append({**rec, "finetune": prov} if prov is not None else rec.copy())
    return out


def finetune_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The fine-tuned networks of a study as a Markdown table (empty when there are none)."""
    if not rows:
        return ""
    head = [*PROVENANCE_COLUMNS, "val accuracy"]
    lines = [
        "\n### Fine-tuned networks\n",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * (len(head) - 1) + ["---:"]) + "|",
    ]
    for r in rows:
        acc = r.get("val_accuracy")
        cells = [str(r.get(k) if r.get(k) is not None else "-") for k in PROVENANCE_COLUMNS]
        cells.append("-" if acc is None else f"{float(acc):.4f}")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
