"""``featstore upgrade``: convert a store of format 1 (features keyed by dataset) to format 2
(features keyed by image content), in place, without recomputing a feature.

Format 1 registered datasets without per-image hashes and keyed each entry by its
dataset's id and fingerprint. Upgrading:

1. hashes every image of each format-1 dataset again (its files, where they are now) and
   checks the hashes reproduce the registered fingerprint, so nothing changed meanwhile;
   a dataset whose files are missing or changed is reported, left as it is, and its
   entries keep working for it by fingerprint (register it again to convert it);
2. gives each format-1 entry of a converted dataset its ``images`` attribute and records
   the dataset's image list, so other datasets of the same images (or subsets) find it;
3. records format 2 in the store's root once every dataset is converted.

Entries keep their keys: lookups go by attributes, so an upgraded entry is found for every
dataset with its images, exactly like one extracted by format 2. Running it twice changes
nothing the second time.
"""

from __future__ import annotations

from typing import Any

from featstore.datasets.core import fingerprint
from featstore.datasets.images import check_and_hash_all
from featstore.errors import BadImageError
from featstore.progress import Progress
from featstore.store.base import FORMAT_VERSION

__all__ = ["upgrade_store"]


def _split_names(ds: Any) -> list[str]:
    return [ds.split_names[int(code)] for code in ds.splits]


def upgrade_store(store: Any, progress: Progress | None = None) -> dict[str, Any]:
    """Convert ``store`` to the current format; returns what was done and what was not.

    Summary: format_before, format, datasets_upgraded, datasets_failed ([{id, reason}]),
    entries_upgraded, entries_left ([keys of format-1 entries without a converted dataset]).
    """
    store._check_writable()
    before = int(store.format_version)
    upgraded: list[str] = []
    failed: list[dict[str, str]] = []
    by_fingerprint: dict[str, Any] = {}
    for dataset_id in store.dataset_ids():
        ds = store.get_dataset(dataset_id)
        if ds.image_hashes is None:
            try:
                hashes, _ = check_and_hash_all(ds.refs, skip_bad=False, progress=progress)
            except BadImageError as exc:
                failed.append({"id": dataset_id, "reason": str(exc)})
                continue
            again = fingerprint(
                list(ds.ids), ds.labels, _split_names(ds), [str(h) for h in hashes], ds.extra
            )
            if again != ds.fingerprint:
                failed.append(
                    {
                        "id": dataset_id,
                        "reason": "its image files changed since it was registered; register "
                        f"it again with `featstore datasets add {ds.name} SOURCE --replace`",
                    }
                )
                continue
            ds.image_hashes = [str(h) for h in hashes]
            store.put_dataset(ds)  # same id: adds the hashes
            upgraded.append(dataset_id)
        by_fingerprint[ds.fingerprint] = ds
    entries_done: list[str] = []
    entries_left: list[str] = []
    for key in store.entry_keys():
        entry = store.get_entry(key)
        attrs = entry.attrs
        if attrs.get("images") is not None or attrs.get("kind", "features") != "features":
            continue
        ds = by_fingerprint.get(str(attrs.get("dataset_fingerprint")))
        if ds is None or ds.image_hashes is None or entry.shape[0] != ds.n:
            entries_left.append(key)
            continue
        store.put_image_list(ds.require_images_id(), ds.image_hashes)
        entry.update_attrs(images=ds.images_id)
        entries_done.append(key)
    if not failed and not entries_left and before < FORMAT_VERSION:
        store._set_format_version(FORMAT_VERSION)
    return {
        "format_before": before,
        "format": int(store.format_version),
        "datasets_upgraded": upgraded,
        "datasets_failed": failed,
        "entries_upgraded": entries_done,
        "entries_left": entries_left,
    }
