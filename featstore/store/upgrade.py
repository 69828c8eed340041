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
dataset with its images, exactly like one extracted by format 2.

It also binds the objects written before they proved their place (see store/proofs.py
and store/checksum.py), in any format-2 store:

4. each done marker of the older format is rewritten bound to its entry key and chunk
   index, after its chunk's bytes were checked against the old checksum (a chunk that
   fails is left as it is and listed: `featstore verify --repair` recomputes it);
5. an entry that records neither all its factors nor its key gets its ``key``;
6. each result record without a checksum is sealed, if it says it is the record of the
   key it is stored under (one that does not is listed, never sealed).

Running it twice changes nothing the second time.
"""

from __future__ import annotations

from typing import Any

from featstore.datasets.core import fingerprint
from featstore.datasets.images import check_and_hash_all
from featstore.errors import BadImageError, DamagedEntryError, EntryNotFoundError
from featstore.progress import Progress
from featstore.store.base import FORMAT_VERSION
from featstore.store.proofs import UNBOUND, entry_key_state, record_state, seal_record

__all__ = ["upgrade_store"]


def _split_names(ds: Any) -> list[str]:
    return [ds.split_names[int(code)] for code in ds.splits]


def upgrade_store(store: Any, progress: Progress | None = None) -> dict[str, Any]:
    """Convert ``store`` to the current format; returns what was done and what was not.

    Summary: format_before, format, datasets_upgraded, datasets_failed ([{id, reason}]),
    entries_upgraded, entries_left ([keys of format-1 entries without a converted dataset]),
    markers_bound ({key: n}), markers_damaged ({key: [chunks]}), keys_recorded ([keys]),
    records_sealed ([keys]), records_left ([{key, reason}]).
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
        **_bind_entries(store),
        **_seal_records(store),
    }


def _bind_entries(store: Any) -> dict[str, Any]:
    """Steps 4 and 5: bind older markers and record the keys of unbound entries."""
    bound: dict[str, int] = {}
    damaged: dict[str, list[int]] = {}
    keys: list[str] = []
    for key in store.entry_keys():
        try:
            entry = store.get_entry(key)
        except DamagedEntryError:
            continue  # unreadable or misplaced: `featstore verify` names it
        if entry_key_state(key, entry.attrs)[0] == UNBOUND:
            entry.update_attrs(key=key)
            keys.append(key)
        done = entry.bind_markers()
        if done["bound"]:
            bound[key] = len(done["bound"])
        if done["damaged"]:
            damaged[key] = done["damaged"]
    return {"markers_bound": bound, "markers_damaged": damaged, "keys_recorded": keys}


def _seal_records(store: Any) -> dict[str, Any]:
    """Step 6: seal the result records of the older format that are where they say."""
    sealed: list[str] = []
    left: list[dict[str, str]] = []
    for key in store.result_keys():
        try:
            record = store.get_result(key)
        except (DamagedEntryError, EntryNotFoundError) as exc:
            left.append({"key": key, "reason": str(exc)})
            continue
        state, why = record_state(key, record)
        if state == UNBOUND:
            store.put_result(key, seal_record(record))
            sealed.append(key)
        elif why:
            left.append({"key": key, "reason": why})
    return {"records_sealed": sealed, "records_left": left}
