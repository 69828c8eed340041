"""Networks known to a store by name: an architecture, a weights identity, a preprocessing.

``featstore models add NAME ARCH --weights FILE`` records under NAME the architecture, the
sha256 of the file's state dict (the identity every feature key already holds), the
architecture's preprocessing and where the file was when added. Teammates then write
``-m NAME`` (or ``name: NAME`` in a sweep spec): reading selects the entries of ARCH with
exactly those weights, with no file and no torch; computing a missing entry needs the
file (the recorded path, or one given) and checks that its hash is NAME's. This is how
Azizpour et al.'s "source task" factor (one architecture trained on ImageNet, Places or
both) becomes networks with names.

Each record is stored as canonical JSON with its own sha256, checked on every read.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from featstore.errors import ModelError, SpecError, StoreError, WeightsNotFoundError
from featstore.keys import canonical_json, content_hash
from featstore.specs import WeightsIdentity

__all__ = [
    "AddedNetwork",
    "NamedNetwork",
    "add_network",
    "added_network",
    "check_name_free",
    "get_network",
    "list_networks",
    "named_networks",
    "put_network",
]

NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class NamedNetwork:
    name: str
    arch: str
    weights_sha256: str
    preprocess: dict[str, Any] = field(default_factory=dict)
    weights_file: dict[str, Any] = field(default_factory=dict)  # path, size, mtime_ns when added
    source: str = "file"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arch": self.arch,
            "weights_sha256": self.weights_sha256,
            "preprocess": dict(self.preprocess),
            "weights_file": dict(self.weights_file),
            "source": self.source,
        }


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SpecError(
            f"network name {name!r} is not valid: use up to 64 letters, digits, '_', '-' and '.', "
            "starting with a letter"
        )
    return name


def _payload(net: NamedNetwork) -> bytes:
    record = net.to_dict()
    return canonical_json({"network": record, "sha256": content_hash(record, length=64)}).encode()


def get_network(store: Any, name: str) -> NamedNetwork | None:
    """The network recorded under ``name``, or None; a damaged record is refused."""
    if not NAME_PATTERN.fullmatch(str(name)):
        return None
    payload = store._get_network_blob(name)
    if payload is None:
        return None
    try:
        data = json.loads(payload)
        record = data["network"]
        ok = content_hash(record, length=64) == data["sha256"] and record["name"] == name
        net = NamedNetwork(**record) if ok else None
    except (ValueError, KeyError, TypeError):
        net = None
    if net is None:
        raise StoreError(
            f"the record of network {name!r} in store {store.url} is damaged (it no longer "
            f"matches its checksum); add it again with featstore models add {name} ARCH "
            "--weights FILE --replace"
        )
    return net


def list_networks(store: Any) -> list[NamedNetwork]:
    out = []
    for name in store._network_blob_names():
        net = get_network(store, name)
        if net is not None:
            out.append(net)
    return out


def check_name_free(store: Any, name: str, kind: str) -> None:
    """One name, one network across the store's two registries: a name taken by a fine-tuned
    network (``trained/``) is refused to ``models add`` (``kind="added"``), and a name taken
    by ``models add`` (``networks/``) is refused to fine-tuning (``kind="fine-tuned"``)."""
    if kind == "added":
        from featstore.store import trained

        if trained.has_network(store, name):
            raise SpecError(
                f"{name!r} is the name of a fine-tuned network in store {store.url} (see "
                "`featstore models named`); give the added network another name"
            )
        return
    held = get_network(store, name)
    if held is not None:
        raise SpecError(
            f"{name!r} is the name of a network added to store {store.url} with featstore "
            f"models add ({held.arch}, weights sha256 {held.weights_sha256[:16]}); give the "
            "fine-tuned network another name"
        )


def named_networks(store: Any) -> list[dict[str, Any]]:
    """Every network the store knows by name: those added (``kind: added``) and the
    fine-tuned ones (``kind: fine-tuned``, with parent, dataset, epoch and run)."""
    from featstore.store import trained

    rows = [{"kind": "added", **n.to_dict()} for n in list_networks(store)]
    for name in sorted(trained.list_networks(store)):
        rec = trained.get_network(store, name)
        prov = rec.provenance
        rows.append(
            {
                "kind": "fine-tuned",
                "name": rec.name,
                "arch": rec.parent,
                "weights_sha256": rec.weights_sha256,
                "parent": prov.get("parent"),
                "dataset": (prov.get("dataset") or {}).get("name"),
                "epoch": prov.get("epoch"),
                "selected": prov.get("selected"),
                "val_accuracy": prov.get("val_accuracy"),
                "recipe": prov.get("recipe"),
                "run": prov.get("run"),
            }
        )
    return rows


def put_network(store: Any, net: NamedNetwork, *, replace: bool = False) -> None:
    """Record ``net``; another network already under its name is refused unless ``replace``
    (a fine-tuned network's name always)."""
    check_name(net.name)
    check_name_free(store, net.name, "added")
    old = get_network(store, net.name)
    if old is not None and old.to_dict() != net.to_dict() and not replace:
        raise SpecError(
            f"a network named {net.name!r} is already in the store ({old.arch}, weights sha256 "
            f"{old.weights_sha256[:16]}); choose another name or pass --replace"
        )
    store._put_network_blob(net.name, _payload(net))


def add_network(
    store: Any, name: str, arch: str, weights: str, *, replace: bool = False
) -> NamedNetwork:
    """Hash ``weights`` for ``arch`` (built and loaded once, so a file that does not fit is
    refused now) and record it under ``name``."""
    from featstore.models import get_spec, load_model
    from featstore.store.select import file_record

    check_name(name)
    check_name_free(store, name, "added")  # before the weights are read
    try:
        get_spec(name)
    except ModelError:
        pass
    else:
        raise SpecError(
            f"{name!r} is a network of featstore's registry already; give the weights another name"
        )
    spec = get_spec(arch)
    loaded = load_model(spec, weights)  # ModelError when the file does not fit the architecture
    if loaded.weights.path is None:
        raise WeightsNotFoundError(f"give a weights FILE for {name}, not {weights!r}")
    net = NamedNetwork(
        name=name,
        arch=spec.name,
        weights_sha256=loaded.identity.weights_sha256,
        preprocess=spec.preprocess.to_dict(),
        weights_file=file_record(loaded.weights.path),
    )
    put_network(store, net, replace=replace)
    return net


@dataclass(frozen=True)
class AddedNetwork:
    """An added network resolved for extraction (the hook of featstore.extract.plan): the
    architecture's spec with the recorded preprocessing, the weights file to compute from
    (given, else where the network was added from) and the record.

    Planning keys entries by the recorded identity, so entries already cached need neither
    the file nor a hash of it; :meth:`check_file` proves the file before anything is computed.
    """

    spec: Any  # featstore.models.ModelSpec
    weights: Any  # featstore.models.WeightsRef (source "file"); the file is not read yet
    network: NamedNetwork

    @property
    def identity(self) -> WeightsIdentity:
        """What keys hold: ARCH, a file, the recorded sha256 (as ``-m ARCH --weights FILE``)."""
        return WeightsIdentity(self.spec.name, "file", self.network.weights_sha256)

    def check_file(self, n_todo: int) -> None:
        """The weights file, before ``n_todo`` entries are computed from it: it must exist
        and its state dict hash to the recorded sha256."""
        from featstore.models.weights import file_sha256

        net, path = self.network, str(self.weights.path or "")
        if not path or not os.path.isfile(path):
            where = f"at {path}" if path else "where it was added from"
            entries = "1 entry" if n_todo == 1 else f"{n_todo} entries"
            raise WeightsNotFoundError(
                f"computing {entries} of network {net.name} needs its weights file ({net.arch}, "
                f"sha256 {net.weights_sha256[:16]}), which is not {where}; put the file there "
                f"or give --weights FILE (the same weights) for {net.name}"
            )
        sha = file_sha256(path)
        if sha != net.weights_sha256:
            raise SpecError(
                f"weights file {path} (sha256 {sha[:16]}) is not the weights of network "
                f"{net.name} (sha256 {net.weights_sha256[:16]}); give the file it was added from"
            )


def added_network(store: Any, name: str, weights: str | None = None) -> AddedNetwork | None:
    """Network ``name`` of ``store`` (added with ``models add``) as extraction computes it, or
    None when the store has no such name.

    The weights file is the one given (``weights``: a FILE), else where the network was
    added from; it is neither required nor read here (see :meth:`AddedNetwork.check_file`).
    Keys are those of ARCH with that file, so ``-m NAME`` and ``-m ARCH --weights FILE``
    share entries.
    """
    net = get_network(store, name)
    if net is None:
        return None
    from featstore.models import Preprocess, WeightsRef, get_spec

    given = str(weights).strip() if weights is not None else ""
    if given.lower().startswith("sha256:"):
        if not net.weights_sha256.startswith(given[len("sha256:") :].lower()):
            raise SpecError(
                f"network {name} has weights sha256:{net.weights_sha256[:16]}; weights {given} "
                "contradict it: drop them"
            )
        given = ""
    elif given in ("random", "pretrained", "default"):
        raise SpecError(
            f"{name} is a network of the store with its own weights ({net.arch}, sha256 "
            f"{net.weights_sha256[:16]}); drop --weights {given} for it, or name {net.arch}"
        )
    path = given or str(net.weights_file.get("path") or "")
    spec = get_spec(net.arch)
    if net.preprocess:
        spec = spec.with_preprocess(Preprocess.from_dict(net.preprocess))
    ref = WeightsRef("file", os.path.abspath(os.path.expanduser(path)) if path else None)
    return AddedNetwork(spec=spec, weights=ref, network=net)
