"""Networks kept in a store: fine-tuned weights, their names and how they were made.

Layout (plain objects beside the Zarr hierarchy, under ``trained/``)::

    trained/blobs/<sha256>.safetensors   weights, named by the sha256 of the file's bytes
    trained/names/<NAME>.json            a name: architecture, weights, preprocessing, provenance
    trained/runs/<ft-key>.json           a finished fine-tuning run (what it kept)
    trained/runs/<ft-key>.state.json     a run in progress: epoch, curve, best so far ...
    trained/runs/<ft-key>.state-<E>.safetensors   ... and its tensors after epoch E

Every object is written in one step (a temporary file renamed into place, or one PUT) and
read back with proof: a blob's bytes must hash to its name, and the state dict they hold
to the weights sha256 its name records. A name is written after its blob, a run record
after its names, and a state record after its tensors, so a killed writer leaves either the
old state or the new. HDF5 stores keep no side objects: networks need a Zarr store.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featstore._atomic import write_atomic
from featstore.errors import DamagedEntryError, EntryNotFoundError, InvalidKeyError, StoreError
from featstore.keys import check_key
from featstore.store.objects import ObjectFolder

if TYPE_CHECKING:  # torch only where tensors are read or written: names and records need none
    import torch

__all__ = [
    "NETWORK_NAME_PATTERN",
    "NetworkRecord",
    "StoredNetwork",
    "check_network_name",
    "get_network",
    "get_run",
    "get_run_state",
    "has_network",
    "list_networks",
    "network_weights_path",
    "put_blob",
    "put_network",
    "put_run",
    "put_run_state",
    "read_blob",
    "stored_network",
]

FORMAT = 1
NETWORK_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(@epoch[0-9]{1,6})?")
_SHA = re.compile(r"[0-9a-f]{64}")


def check_network_name(name: object) -> str:
    """``name`` if it can name a stored network (``NAME`` or ``NAME@epochK``)."""
    if not isinstance(name, str) or not NETWORK_NAME_PATTERN.fullmatch(name):
        raise InvalidKeyError(
            f"network name {name!r} is not valid in a store: use up to 128 letters, digits, "
            "'_', '-' and '.', starting with a letter or digit (kept checkpoints add @epochK)"
        )
    return name


def _folders(store: Any) -> ObjectFolder:
    folder = store.trained_objects()
    if folder is None:
        raise StoreError(
            f"store {store.location} keeps no networks (an HDF5 store holds arrays only); "
            "fine-tune into a Zarr store (a .zarr folder or an object-storage URL)"
        )
    return folder  # type: ignore[no-any-return]


def _sub(store: Any, part: str) -> ObjectFolder:
    folder = _folders(store)
    return replace(folder, path=f"{folder.path}/{part}")


def _json(payload: bytes | None, what: str) -> dict[str, Any] | None:
    if payload is None:
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise DamagedEntryError(
            f"{what} cannot be read (not a JSON record); remove it and run again"
        )
    return data


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode()


# --- weights blobs ---------------------------------------------------------------------
def tensors_bytes(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> bytes:
    """The safetensors bytes of ``tensors`` (contiguous CPU copies; no pickle)."""
    from safetensors.torch import save

    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return save(plain, metadata=metadata)


def put_blob(store: Any, payload: bytes) -> str:
    """Store safetensors bytes under their sha256 (once); returns the sha256."""
    sha = hashlib.sha256(payload).hexdigest()
    blobs = _sub(store, "blobs")
    name = f"{sha}.safetensors"
    if blobs.read(name) != payload:  # absent, or damaged: write it again
        blobs.put(name, payload)
    return sha


def read_blob(store: Any, sha: str) -> bytes:
    """The bytes of blob ``sha``, proven by their hash (DamagedEntryError otherwise)."""
    if not _SHA.fullmatch(str(sha)):
        raise InvalidKeyError(f"weights blob id {sha!r} is not a sha256")
    payload = _sub(store, "blobs").read(f"{sha}.safetensors")
    if payload is None:
        raise EntryNotFoundError(
            f"weights blob {sha[:12]} is missing from store {store.location}; the network "
            "that names it must be made again (featstore finetune)"
        )
    if hashlib.sha256(payload).hexdigest() != sha:
        raise DamagedEntryError(
            f"weights blob {sha[:12]} in store {store.location} is damaged (its bytes do not hash "
            "to its name); remove the network and fine-tune it again"
        )
    return payload


def load_tensors(payload: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(payload)


# --- names -----------------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkRecord:
    """A stored network: its parent architecture and new head, weights and provenance."""

    name: str
    parent: str  # the registered network it was derived from (its architecture)
    head: dict[str, Any] | None  # featstore.models.derived.Head as a dict, or None
    preprocess: dict[str, Any]
    blob: str  # sha256 of the safetensors file's bytes
    weights_sha256: str  # sha256 of the state dict (featstore.models.weights.state_dict_sha256)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": "network",
            "name": self.name,
            "architecture": {"parent": self.parent, "head": self.head},
            "preprocess": self.preprocess,
            "weights": {"blob": self.blob, "weights_sha256": self.weights_sha256},
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> NetworkRecord:
        try:
            arch, weights = data["architecture"], data["weights"]
            return cls(
                name=str(data["name"]),
                parent=str(arch["parent"]),
                head=arch.get("head"),
                preprocess=dict(data["preprocess"]),
                blob=str(weights["blob"]),
                weights_sha256=str(weights["weights_sha256"]),
                provenance=dict(data.get("provenance") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DamagedEntryError(f"{where} is damaged: missing {exc}") from None


def put_network(store: Any, record: NetworkRecord) -> None:
    """Register ``record`` under its name (its blob must be stored first). The same network
    again is a no-op; another network under a name in use is refused."""
    from featstore.store.networks import check_name_free

    check_network_name(record.name)
    check_name_free(store, record.name.partition("@")[0], "fine-tuned")
    read_blob(store, record.blob)  # the blob exists and is whole before a name points to it
    names = _sub(store, "names")
    old = _json(names.read(f"{record.name}.json"), f"network {record.name!r}")
    if old is not None:
        have = NetworkRecord.from_dict(old, f"network {record.name!r}")
        same_run = have.provenance.get("run") == record.provenance.get("run")
        if have.weights_sha256 == record.weights_sha256 and same_run:
            return
        raise StoreError(
            f"store {store.location} already has a network named {record.name!r} (made by "
            f"{have.provenance.get('run', 'another run')}); choose another name"
        )
    names.put(f"{record.name}.json", _dumps(record.to_dict()))


def get_network(store: Any, name: str) -> NetworkRecord:
    """The record of stored network ``name``; EntryNotFoundError names the ones there are."""
    check_network_name(name)
    data = _json(_sub(store, "names").read(f"{name}.json"), f"network {name!r}")
    if data is None:
        have = list_networks(store)
        hint = f"; it has {', '.join(have[:10])}" if have else ""
        raise EntryNotFoundError(f"store {store.location} has no network named {name!r}{hint}")
    return NetworkRecord.from_dict(data, f"network {name!r}")


def has_network(store: Any, name: str) -> bool:
    """Whether the store has a fine-tuned network named ``name`` (no record is parsed)."""
    if not NETWORK_NAME_PATTERN.fullmatch(str(name)) or store.trained_objects() is None:
        return False
    return _sub(store, "names").read(f"{name}.json") is not None


def list_networks(store: Any) -> list[str]:
    """Names of the networks in the store (none for a store that keeps no networks)."""
    if store.trained_objects() is None:
        return []
    return [n[: -len(".json")] for n in _sub(store, "names").names() if n.endswith(".json")]


def network_weights_path(store: Any, record: NetworkRecord) -> Path:
    """A local safetensors file holding ``record``'s weights, proven by their sha256.

    A local store's blob is used in place; a remote one is copied once into the user cache
    (``FEATSTORE_CACHE_DIR``), named by its hash.
    """
    payload = read_blob(store, record.blob)
    folder = _sub(store, "blobs")
    if folder.local:
        return Path(folder.path_of(f"{record.blob}.safetensors"))
    from featstore.models.weights import cache_dir

    target = cache_dir() / "networks" / f"{record.blob}.safetensors"
    if not target.is_file() or hashlib.sha256(target.read_bytes()).hexdigest() != record.blob:
        write_atomic(target, payload)
    return target


# --- the extraction hook: a stored name as a network ------------------------------------
@dataclass(frozen=True)
class StoredNetwork:
    """A stored network resolved for extraction: spec, weights file and its record."""

    spec: Any  # featstore.models.ModelSpec
    weights: Any  # featstore.models.WeightsRef (source "store", a local verified file)
    record: NetworkRecord


def stored_network(store: Any, name: str) -> StoredNetwork | None:
    """``name`` as a network of ``store``, or None when the store has no network so named
    (registered networks, ``module:function`` and ``timm:`` names are never store names)."""
    if store is None or not NETWORK_NAME_PATTERN.fullmatch(name):
        return None
    if store.trained_objects() is None:
        return None
    data = _json(_sub(store, "names").read(f"{name}.json"), f"network {name!r}")
    if data is None:
        return None
    record = NetworkRecord.from_dict(data, f"network {name!r}")
    from featstore.models import Preprocess, WeightsRef, get_spec
    from featstore.models.derived import Head, derived_spec
    from featstore.models.weights import file_sha256

    head = Head.from_dict(record.head) if record.head else None
    spec = derived_spec(
        get_spec(record.parent),
        name,
        head,
        f"fine-tuned from {record.parent} (weights {record.weights_sha256[:12]})",
    ).with_preprocess(Preprocess.from_dict(record.preprocess))
    path = network_weights_path(store, record)
    if file_sha256(path) != record.weights_sha256:
        raise DamagedEntryError(
            f"network {name!r}: the weights in blob {record.blob[:12]} are not those its record "
            "names; remove the network and fine-tune it again"
        )
    return StoredNetwork(spec=spec, weights=WeightsRef("store", str(path)), record=record)


# --- fine-tuning runs ----------------------------------------------------------------------
def get_run(store: Any, run_key: str) -> dict[str, Any] | None:
    """The record of a finished run, or None."""
    check_key(run_key, "fine-tuning run key")
    return _json(_sub(store, "runs").read(f"{run_key}.json"), f"fine-tuning run {run_key}")


def put_run(store: Any, run_key: str, record: dict[str, Any]) -> None:
    """Mark run ``run_key`` finished (after every name it made is registered); its
    in-progress state is removed afterwards."""
    check_key(run_key, "fine-tuning run key")
    runs = _sub(store, "runs")
    runs.put(f"{run_key}.json", _dumps({"format": FORMAT, "kind": "finetune_run", **record}))
    state = _json(runs.read(f"{run_key}.state.json"), f"state of run {run_key}")
    runs.delete(f"{run_key}.state.json")
    if state is not None:
        runs.delete(f"{run_key}.state-{int(state.get('epoch', 0))}.safetensors")


def put_run_state(
    store: Any, run_key: str, epoch: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Save a run's state after ``epoch``: the tensors first, then the record naming them
    (the commit point), then the previous epoch's tensors are removed."""
    check_key(run_key, "fine-tuning run key")
    runs = _sub(store, "runs")
    payload = tensors_bytes(tensors)
    runs.put(f"{run_key}.state-{epoch}.safetensors", payload)
    old = _json(runs.read(f"{run_key}.state.json"), f"state of run {run_key}")
    record = {**meta, "epoch": epoch, "tensors_sha256": hashlib.sha256(payload).hexdigest()}
    runs.put(f"{run_key}.state.json", _dumps(record))
    if old is not None and int(old.get("epoch", -1)) != epoch:
        runs.delete(f"{run_key}.state-{int(old['epoch'])}.safetensors")


def run_state_epoch(store: Any, run_key: str) -> int | None:
    """The last epoch an unfinished run saved (its state record only), or None."""
    check_key(run_key, "fine-tuning run key")
    meta = _json(_sub(store, "runs").read(f"{run_key}.state.json"), f"state of run {run_key}")
    return None if meta is None else int(meta.get("epoch", 0))


def get_run_state(
    store: Any, run_key: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The last saved state of an unfinished run, proven by its hash; None if there is none."""
    check_key(run_key, "fine-tuning run key")
    runs = _sub(store, "runs")
    meta = _json(runs.read(f"{run_key}.state.json"), f"state of run {run_key}")
    if meta is None:
        return None
    payload = runs.read(f"{run_key}.state-{int(meta.get('epoch', -1))}.safetensors")
    if payload is None or hashlib.sha256(payload).hexdigest() != meta.get("tensors_sha256"):
        raise DamagedEntryError(
            f"the saved state of fine-tuning run {run_key} is damaged; delete "
            f"trained/runs/{run_key}.state.json in the store to start the run over"
        )
    return meta, load_tensors(payload)
