"""Upkeep of a store's networks (``trained/``): list, verify, repair, collect and remove.

What needs a weights blob: every name (``trained/names``), every finished run's best and
kept epochs (``trained/runs/KEY.json``: asking the same fine-tuning again re-registers its
names from them without training) and every unfinished run's best and kept epochs (its
state record). ``gc`` removes only blobs none of these names, and only when every record
could be read; removing a name leaves its blob to ``gc``. Verifying proves each blob by
the sha256 of its bytes (its file name) and each name by the state-dict sha256 it records.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from featstore.errors import DamagedEntryError, EntryNotFoundError, FeatstoreError, StoreError
from featstore.store import trained as nets

__all__ = [
    "collect_blobs",
    "network_rows",
    "remove_networks",
    "repair_networks",
    "verify_networks",
]

BLOB_SUFFIX = ".safetensors"


def _keeps(store: Any) -> bool:
    return store.trained_objects() is not None


def _runs(store: Any) -> list[str]:
    """Run keys with a record (finished) or a state record (unfinished)."""
    keys = set()
    for n in nets._sub(store, "runs").names():
        if n.endswith(".state.json"):
            keys.add(n[: -len(".state.json")])
        elif n.endswith(".json"):
            keys.add(n[: -len(".json")])
    return sorted(keys)


def _points(record: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The kept weights (best and every Kth epoch) a run or state record names."""
    if not record:
        return []
    points = [record.get("best"), *(record.get("kept") or [])]
    return [p for p in points if isinstance(p, dict) and p.get("blob")]


def _run_record(store: Any, key: str, state: bool) -> dict[str, Any] | None:
    suffix = ".state.json" if state else ".json"
    what = f"{'state of ' if state else ''}fine-tuning run {key}"
    return nets._json(nets._sub(store, "runs").read(key + suffix), what)


# --- listing ---------------------------------------------------------------------------------
def network_rows(store: Any) -> list[dict[str, Any]]:
    """One row per stored network (name, parent, epoch, weights, blob size); a record that
    cannot be read is a row with ``damaged`` saying why, never an exception."""
    if not _keeps(store):
        return []
    blobs = nets._sub(store, "blobs")
    rows: list[dict[str, Any]] = []
    for name in sorted(nets.list_networks(store)):
        try:
            rec = nets.get_network(store, name)
        except FeatstoreError as exc:
            rows.append({"name": name, "damaged": str(exc)})
            continue
        prov = rec.provenance
        try:
            size = int(blobs.fs.size(blobs.path_of(rec.blob + BLOB_SUFFIX)))
        except (FileNotFoundError, OSError):
            size = None
        rows.append(
            {
                "name": name,
                "parent": rec.parent,
                "dataset": (prov.get("dataset") or {}).get("name"),
                "epoch": prov.get("epoch"),
                "freeze": (prov.get("recipe") or {}).get("freeze"),
                "train": (prov.get("recipe") or {}).get("train"),
                "weights_sha256": rec.weights_sha256,
                "blob": rec.blob,
                "bytes": size,
                "run": prov.get("run"),
            }
        )
    return rows


# --- verifying -------------------------------------------------------------------------------
def _blob_problem(store: Any, sha: str, seen: dict[str, str | None], bad: set[str]) -> str | None:
    """Why blob ``sha`` is not whole (missing, or bytes that do not hash to its name), or
    None; a blob that is there but damaged joins ``bad`` (what a repair removes)."""
    if sha not in seen:
        try:
            nets.read_blob(store, sha)
            seen[sha] = None
        except DamagedEntryError as exc:
            seen[sha] = str(exc)
            bad.add(sha)
        except (EntryNotFoundError, StoreError) as exc:
            seen[sha] = str(exc)
    return seen[sha]


def _weights_sha(store: Any, sha: str, memo: dict[str, str]) -> str:
    """The state-dict sha256 of the weights blob ``sha`` holds (a whole blob)."""
    if sha not in memo:
        from featstore.models.weights import state_dict_sha256

        memo[sha] = state_dict_sha256(nets.load_tensors(nets.read_blob(store, sha)))
    return memo[sha]


def verify_networks(store: Any) -> dict[str, Any]:
    """Check every name, run and blob of the store's networks.

    A name: its record reads, its blob is there and hashes to its name, and the state dict
    it holds hashes to the weights sha256 the name records. A run: its record reads and the
    blobs of its kept epochs are whole; an unfinished run's saved state hashes to its
    record. Every other blob: its bytes hash to its name. ``damaged`` lists each failing
    object with why, and what ``repair_networks`` would do about it.
    """
    out: dict[str, Any] = {"names": 0, "runs": 0, "blobs": 0, "damaged": [], "bad_blobs": []}
    if not _keeps(store):
        return out
    seen: dict[str, str | None] = {}
    bad: set[str] = set()
    memo: dict[str, str] = {}

    def damaged(kind: str, ident: str, why: str, **extra: Any) -> None:
        out["damaged"].append({"object": f"{kind} {ident}", "kind": kind, "id": ident,
                               "why": why, **extra})  # fmt: skip

    for name in sorted(nets.list_networks(store)):
        out["names"] += 1
        try:
            rec = nets.get_network(store, name)
        except FeatstoreError as exc:
            damaged("network", name, str(exc))
            continue
        why = _blob_problem(store, rec.blob, seen, bad)
        if why is None and _weights_sha(store, rec.blob, memo) != rec.weights_sha256:
            why = (
                f"blob {rec.blob[:12]} holds other weights than the sha256:"
                f"{rec.weights_sha256[:12]} the name records"
            )
        if why is not None:
            damaged("network", name, why, blob=rec.blob)
    for key in _runs(store):
        out["runs"] += 1
        for state in (False, True):
            try:
                record = _run_record(store, key, state)
                if state and record is not None:
                    nets.get_run_state(store, key)  # its tensors hash to the record
            except FeatstoreError as exc:
                damaged("run state" if state else "run", key, str(exc))
                continue
            for point in _points(record):
                why = _blob_problem(store, str(point["blob"]), seen, bad)
                sha = point.get("weights_sha256")
                if why is None and sha and _weights_sha(store, str(point["blob"]), memo) != sha:
                    why = f"blob {str(point['blob'])[:12]} holds other weights than it records"
                if why is not None:
                    damaged("run state" if state else "run", key, why, blob=point["blob"])
    for file in nets._sub(store, "blobs").names():
        if file.endswith(BLOB_SUFFIX):
            out["blobs"] += 1
            sha = file[: -len(BLOB_SUFFIX)]
            if sha not in seen and _blob_problem(store, sha, seen, bad) is not None:
                damaged("blob", sha, str(seen[sha]), blob=sha)
    out["bad_blobs"] = sorted(bad)
    return out


def repair_networks(store: Any, report: dict[str, Any]) -> list[dict[str, str]]:
    """Remove what ``verify_networks`` found damaged, so that asking again makes it anew.

    A damaged blob is removed, with every name and finished run that needs it (asking the
    same fine-tuning again trains it again: bitwise the same weights on CPU); a name whose
    record or weights do not prove out is removed (its run, if whole, registers it again
    without training); a damaged run record is removed (asking again trains); a damaged
    saved state is removed (the run starts over). Every action is returned.
    """
    actions: list[dict[str, str]] = []
    if not report.get("damaged"):
        return actions
    names = nets._sub(store, "names")
    runs = nets._sub(store, "runs")
    bad_blobs = set(report.get("bad_blobs") or [])
    again = "`featstore finetune` (or the sweep) with the same request makes it again"

    def act(obj: str, why: str) -> None:
        actions.append({"object": obj, "action": "removed", "why": why})

    for sha in sorted(bad_blobs):
        nets._sub(store, "blobs").delete(sha + BLOB_SUFFIX)
        act(f"blob {sha[:12]}", "its bytes do not hash to its name")
    for name in sorted(nets.list_networks(store)):
        try:
            rec = nets.get_network(store, name)
            broken = rec.blob in bad_blobs or any(
                d["kind"] == "network" and d["id"] == name for d in report["damaged"]
            )
        except FeatstoreError:
            broken = True
        if broken:
            names.delete(f"{name}.json")
            act(f"network {name}", f"its record or weights are damaged; {again}")
    for d in report["damaged"]:
        if d["kind"] == "run":
            runs.delete(f"{d['id']}.json")
            act(f"run {d['id']}", f"it needs a damaged or missing object; {again}")
        elif d["kind"] == "run state":
            _drop_state(runs, d["id"])
            act(f"run state {d['id']}", "the saved state is damaged; the run starts over")
    return _unique(actions)


def _unique(actions: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    seen: dict[str, dict[str, str]] = {}
    for a in actions:
        seen.setdefault(a["object"], a)
    return list(seen.values())


def _drop_state(runs: Any, key: str) -> None:
    for file in runs.names():
        if file == f"{key}.state.json" or file.startswith(f"{key}.state-"):
            runs.delete(file)


# --- collecting and removing -----------------------------------------------------------------
def _needed(store: Any) -> set[str]:
    """Every blob a name or a run still needs; StoreError when a record cannot be read (then
    nothing can be collected safely)."""
    need = set()
    for name in nets.list_networks(store):
        need.add(nets.get_network(store, name).blob)
    for key in _runs(store):
        for state in (False, True):
            need |= {str(p["blob"]) for p in _points(_run_record(store, key, state))}
    return need


def collect_blobs(store: Any, *, older_than_s: float = 3600.0, dry_run: bool = False) -> list[str]:
    """Remove weights blobs no name or run needs (older than ``older_than_s``: a run in
    progress writes a blob before the record naming it), and saved run states no state
    record names. Returns the objects removed (or that would be, with ``dry_run``)."""
    if not _keeps(store):
        return []
    try:
        need = _needed(store)
    except FeatstoreError as exc:
        raise StoreError(
            f"cannot tell which network weights are still needed: {exc}; run `featstore verify "
            "--repair` first"
        ) from None
    now = time.time()
    removed = []
    blobs, runs = nets._sub(store, "blobs"), nets._sub(store, "runs")
    for file in blobs.names():
        sha = file[: -len(BLOB_SUFFIX)]
        if file.endswith(BLOB_SUFFIX) and sha not in need and _age(blobs, file, now) > older_than_s:
            removed.append(blobs.path_of(file))
            if not dry_run:
                blobs.delete(file)
    for file in runs.names():
        key, sep, rest = file.partition(".state-")
        if not sep or _age(runs, file, now) <= older_than_s:
            continue
        state = _run_record(store, key, True)
        if state is None or f"{int(state.get('epoch', -1))}{BLOB_SUFFIX}" != rest:
            removed.append(runs.path_of(file))
            if not dry_run:
                runs.delete(file)
    return removed


def _age(folder: Any, name: str, now: float) -> float:
    try:
        info = folder.fs.info(folder.path_of(name))
    except FileNotFoundError:
        return 0.0
    mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    return now - float(mtime) if mtime is not None else 0.0


def remove_networks(store: Any, names: list[str], *, forget_run: bool = False) -> dict[str, Any]:
    """Remove stored networks by name (every name checked first). With ``forget_run``, also
    the runs that made them and every other name those runs made, so asking again trains.
    Blobs are left to ``collect_blobs`` (``featstore gc``), which frees those nothing needs."""
    records = {}
    for name in names:
        nets.check_network_name(name)
        records[name] = nets.get_network(store, name)  # EntryNotFoundError names the others
    drop = set(names)
    run_keys = sorted(
        {str(r.provenance["run"]) for r in records.values() if r.provenance.get("run")}
    )
    if forget_run:
        for other in nets.list_networks(store):
            try:
                if nets.get_network(store, other).provenance.get("run") in run_keys:
                    drop.add(other)
            except FeatstoreError:
                continue
    folder = nets._sub(store, "names")
    for name in sorted(drop):
        folder.delete(f"{name}.json")
    forgotten = []
    if forget_run:
        runs = nets._sub(store, "runs")
        for key in run_keys:
            runs.delete(f"{key}.json")
            _drop_state(runs, key)
            forgotten.append(key)
    kept_by = [] if forget_run else [k for k in run_keys if _run_record(store, k, False)]
    return {"removed": sorted(drop), "runs_forgotten": forgotten, "blobs_kept_by_runs": kept_by}
