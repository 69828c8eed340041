"""Name claims: one small object per dataset name, taken before the dataset is written.

Two processes registering different content under one name at the same moment must end
with at most one dataset of that name, and exactly the process that was told it succeeded
owning it. Checking the registered names and then writing cannot promise that (both check,
both write), so ``Store.put_dataset`` first takes the name's claim ``names/<name>.json``
(the dataset id, the owner process, the time) with an atomic create (ObjectFolder.create):

- the process whose create succeeds writes its dataset; every other one is refused with
  DatasetMismatchError naming the holder's id, before it writes anything;
- after writing, the writer reads the claim again (:func:`holds_name`); if it no longer
  names its dataset (a ``--replace`` or a stale-claim takeover elsewhere took it meanwhile),
  it removes what it wrote and is refused;
- ``--replace`` first writes the new dataset whole under its own id (not listed while the
  claim names the old one, see Store.list_datasets), then overwrites the claim in one step
  (write_atomic, one PUT) and only then removes the old dataset, so a kill at any point
  leaves the old registration or the new; of two replacements at once, the one whose claim
  landed last keeps the name (the other sees that after writing and backs out);
- removing a dataset (``featstore datasets rm``) releases the claim that names it;
- a claim whose dataset is not in the store is stale once its owner is a process of this host
  that has exited, or :data:`STALE_CLAIM_S` after it was taken (its writer was killed between
  claim and write): the next registration of the name takes it over (a compare-and-swap, so
  one of several takers wins) and ``featstore gc`` removes it. A writer that stalls longer
  than that between its claim and its last write can therefore lose the name, and the ages
  compare wall clocks of different machines: keep them in sync, as for leases;
- stores written before claims existed have none: ``put_dataset`` still refuses a name that
  ``list_datasets`` shows with another id, and the next registration of a name claims it.

Where creation is not atomic (``ObjectFolder.atomic_create`` is False: memory://, gcs, ...)
two creates within one round trip can both succeed. The check after writing then keeps the
dataset whose claim was written last and refuses the other, deterministically, unless one
process ran its whole registration between the other's existence check and its write.
HDF5 stores keep no claims: a writer holds the file's only write lock, so its name check
cannot race.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from featstore.errors import DatasetMismatchError
from featstore.keys import check_dataset_name
from featstore.store.objects import ObjectFolder, default_owner, owner_is_dead

__all__ = [
    "NAMES_DIR",
    "STALE_CLAIM_S",
    "NameClaim",
    "drop_name",
    "gc_names",
    "holds_name",
    "lost_name",
    "read_claim",
    "release_names",
    "take_name",
]

NAMES_DIR = "names"
CLAIM_SUFFIX = ".json"
STALE_CLAIM_S = 600.0  # registering writes a few small arrays: seconds, not minutes


@dataclass(frozen=True)
class NameClaim:
    """``name`` is claimed for ``dataset_id`` by ``owner`` (see default_owner) since ``time``."""

    name: str
    dataset_id: str
    owner: str
    time: float
    raw: bytes  # the object as read: a takeover replaces it only if it is still this
    version: object = None  # with ``raw``, for ObjectFolder.replace (the S3 ETag)

    def stale(self, present: Collection[str], older_than_s: float = STALE_CLAIM_S) -> bool:
        """Its dataset is not in the store (``present`` ids) and its writer is gone: a process
        of this host that has exited, or a claim older than ``older_than_s``."""
        if self.dataset_id in present:
            return False
        return owner_is_dead(self.owner) or time.time() - self.time > older_than_s


def _object(name: str) -> str:
    return check_dataset_name(name) + CLAIM_SUFFIX


def _payload(dataset_id: str) -> bytes:
    return json.dumps({"id": dataset_id, "owner": default_owner(), "time": time.time()}).encode()


def read_claim(folder: ObjectFolder, name: str, *, versioned: bool = False) -> NameClaim | None:
    """The claim on ``name``, or None (``versioned``: with what a takeover needs). An
    unreadable claim (foreign or damaged object) reads as one with no dataset and no age, so
    it is stale at once."""
    found = folder.read_versioned(_object(name)) if versioned else folder.read(_object(name))
    if found is None:
        return None
    raw, version = found if isinstance(found, tuple) else (found, None)
    try:
        record = json.loads(raw)
        dataset_id, owner, since = str(record["id"]), str(record["owner"]), float(record["time"])
    except (ValueError, KeyError, TypeError):
        dataset_id, owner, since = "", "?", 0.0
    return NameClaim(name, dataset_id, owner, since, raw, version)


def take_name(
    folder: ObjectFolder,
    name: str,
    dataset_id: str,
    present: Callable[[], Collection[str]],
    *,
    replace: bool = False,
) -> bool:
    """Claim ``name`` for ``dataset_id`` before writing it; DatasetMismatchError if another
    dataset holds the name. ``present()`` gives the ids in the store (to tell a stale claim);
    ``replace`` takes the name whoever holds it. True if this call wrote the claim, False if
    the name was already claimed for ``dataset_id``."""
    payload = _payload(dataset_id)
    key = _object(name)
    if replace:
        folder.put(key, payload)
        return True
    for _attempt in range(3):  # a claim released or taken over between our steps: look again
        if folder.create(key, payload):
            return True
        holder = read_claim(folder, name, versioned=True)
        if holder is None:
            continue
        if holder.dataset_id == dataset_id:
            return False  # the same content again: it re-points the stored image locations
        if not holder.stale(present()):
            raise DatasetMismatchError(
                f"dataset name {name!r} is taken by dataset {holder.dataset_id} (registered, or "
                "being registered by another process now); pick another name, or run again "
                "with --replace"
            )
        if folder.replace(key, payload, holder.raw, holder.version):
            return True
    raise DatasetMismatchError(
        f"dataset name {name!r} kept changing hands while this registration tried to claim it; "
        "run it again"
    )


def holds_name(folder: ObjectFolder, name: str, dataset_id: str) -> bool:
    """Whether the claim on ``name`` still names ``dataset_id`` (checked after writing it)."""
    claim = read_claim(folder, name)
    return claim is not None and claim.dataset_id == dataset_id


def drop_name(folder: ObjectFolder, name: str, dataset_id: str) -> None:
    """Give up a claim just taken for ``dataset_id`` (its write failed), if it still names it."""
    if holds_name(folder, name, dataset_id):
        folder.delete(_object(name))


def lost_name(folder: ObjectFolder, name: str) -> DatasetMismatchError:
    """The error for a writer whose claim was taken while it wrote (it removed its dataset)."""
    claim = read_claim(folder, name)
    holder = f"dataset {claim.dataset_id}" if claim is not None else "nobody (it was released)"
    return DatasetMismatchError(
        f"another process took the name {name!r} while this dataset was being written (now held "
        f"by {holder}), so this registration was withdrawn; pick another name, or run again "
        "with --replace"
    )


def _claims(folder: ObjectFolder) -> list[NameClaim]:
    out = []
    for obj in folder.names():
        if not obj.endswith(CLAIM_SUFFIX):
            continue
        try:
            claim = read_claim(folder, obj[: -len(CLAIM_SUFFIX)])
        except ValueError:  # InvalidKeyError: not an object featstore wrote
            continue
        if claim is not None:
            out.append(claim)
    return out


def release_names(folder: ObjectFolder, dataset_id: str) -> list[str]:
    """Delete every claim naming ``dataset_id`` (its dataset was removed); returns the names.

    A ``--replace`` that rewrites the claim between this read and the delete loses its claim
    and backs out (see the module docstring): nothing is left registered, nothing wrong kept.
    """
    released = []
    for claim in _claims(folder):
        if claim.dataset_id == dataset_id:
            folder.delete(_object(claim.name))
            released.append(claim.name)
    return released


def gc_names(
    folder: ObjectFolder,
    present: Collection[str],
    *,
    older_than_s: float,
    dry_run: bool = False,
) -> list[str]:
    """Stale claims (see NameClaim.stale with ``older_than_s``): removed unless ``dry_run``;
    returns their object paths."""
    removed = []
    for claim in _claims(folder):
        if claim.stale(present, older_than_s):
            removed.append(folder.path_of(_object(claim.name)))
            if not dry_run:
                folder.delete(_object(claim.name))
    return removed
