"""Finding cached features by what the store holds: one selector for every command.

A :class:`Selector` names feature entries by the factors each entry records in its attrs
(network, weights identity, layer, stored pooling, view, preprocessing, compute dtype,
storage dtype). :class:`Catalog` answers it from one scan of the store's entry metadata:
no network is built, no weights file is read, torch is never imported and the reader's
device plays no part. ``evaluate``, ``sweep``, :func:`featstore.extract.lookup` and the
store commands all find cached features here.

Resolution rules (the same in every command):

- layer: an alias resolves through the network's layer table as recorded in the store
  (each entry records the name it was extracted under, its module and the network's
  aliases), so ``penultimate`` and ``avgpool`` find the same entries; when one layer is
  stored under both names, the entry named as asked is used;
- pooling: the asked pooling resolves to what extraction stores for the entry's recorded
  layer shape (a vector layer is stored as ``none``; ``avg`` of a token layer as ``mean``);
- weights: ``random``, ``pretrained`` (any source but random or a file), ``sha256:PREFIX``,
  or a weights FILE: known by its cached hash, else by the path, size and mtime recorded by
  the extraction that read it (a file absent here is known by its recorded path); hashed
  (torch) only when none of these tells;
- a factor left unset (None) matches any value. When several entries match and differ
  in a factor the user did not pin (compute dtype, storage dtype, weights, pooling ...),
  the selection is refused with every candidate's key and the differing factors, and the
  options that choose (``keys`` picks by key or prefix). Entries of exactly the dataset's
  images are used before entries holding them among others, and complete entries before
  interrupted ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from featstore.errors import (
    AmbiguousSelectionError,
    EntryNotFoundError,
    EvaluationError,
    SpecError,
    WeightsNotFoundError,
)
from featstore.keys import canonical_json
from featstore.specs import (
    DEFAULT_POOLING,
    DEFAULT_VIEW,
    Pooling,
    View,
    compute_dtype_name,
    parse_pooling,
)
from featstore.store.content import _readable_entries, entries_for

__all__ = [
    "CLI_CHOOSERS",
    "SPEC_CHOOSERS",
    "Catalog",
    "Selector",
    "WeightsChoice",
    "describe_entries",
    "describe_selection",
    "entry_factors",
    "file_record",
    "lookup",
    "parse_weights",
    "stored_poolings",
]

SHA_PREFIX = "sha256:"
MIN_SHA_PREFIX = 6
PRETRAINED = ("pretrained", "default")
NOT_PRETRAINED = ("random", "file")


# --- weights -------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightsChoice:
    """Which weights: ``random``, ``pretrained``, ``sha256`` (a hex prefix), ``file`` (a
    path) or ``name`` (a network registered in the store, see :mod:`featstore.store.networks`)."""

    kind: str
    value: str = ""

    def __str__(self) -> str:
        if self.kind == "sha256":
            return SHA_PREFIX + self.value
        return self.value if self.kind in ("file", "name") else self.kind


def parse_weights(text: str | WeightsChoice | None) -> WeightsChoice | None:
    """A weights choice from user text; None when not given (any weights)."""
    if text is None or isinstance(text, WeightsChoice):
        return text
    value = str(text).strip()
    if not value:
        return None
    if value == "random":
        return WeightsChoice("random")
    if value in PRETRAINED:
        return WeightsChoice("pretrained", value)
    if value.lower().startswith(SHA_PREFIX):
        prefix = value[len(SHA_PREFIX) :].strip().lower()
        if len(prefix) < MIN_SHA_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
            raise SpecError(
                f"weights {value!r}: give sha256: and at least {MIN_SHA_PREFIX} hex digits of the "
                "weights' sha256 (see the weights column of `featstore ls`)"
            )
        return WeightsChoice("sha256", prefix)
    return WeightsChoice("file", value)


def _model(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    model = attrs.get("model")
    return model if isinstance(model, Mapping) else {}


def _recorded_file(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    found = attrs.get("weights_file")
    return found if isinstance(found, Mapping) else {}


def file_record(path: str) -> dict[str, Any]:
    """What an entry records of the weights file it was extracted from (not a key factor)."""
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


# --- pooling -------------------------------------------------------------------------
def _layout(shape: Sequence[int]) -> str:
    if len(shape) == 1 or (len(shape) == 3 and shape[1] * shape[2] == 1):
        return "vector"
    return {3: "map", 2: "tokens"}.get(len(shape), "other")


def stored_poolings(asked: str | Pooling, layer_shape: Sequence[int] | None) -> tuple[str, ...]:
    """What extraction stores for ``asked`` on a layer of ``layer_shape`` (the rule of
    :func:`featstore.extract.pooling.effective_pooling`, without its checks or torch)."""
    pool = str(parse_pooling(asked))
    if layer_shape is None:
        return (pool,)
    layout = _layout(tuple(int(s) for s in layer_shape))
    if layout == "vector":
        return ("none",)
    if layout == "tokens" and pool == "avg":
        return ("mean", "avg")  # token layers with a declared layout store avg as mean
    return (pool,)


# --- the selector ----------------------------------------------------------------------
@dataclass(frozen=True)
class Selector:
    """Names feature entries of a dataset by their recorded factors (None = any), or by key.

    ``pooling`` and ``view`` are the extraction request's types (text given here is parsed
    once, on construction); ``keys`` (entry keys or prefixes) choose among several
    matches; ``attrs`` filters on any other recorded attr by equality.
    """

    network: str | None = None
    layer: str | None = None
    pooling: Pooling | None = None
    view: View | None = DEFAULT_VIEW
    weights: WeightsChoice | None = None
    preprocess: Mapping[str, Any] | None = None
    compute_dtype: str | None = None
    dtype: str | None = None
    key: str | None = None
    keys: tuple[str, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pooling is not None:
            object.__setattr__(self, "pooling", Pooling.parse(self.pooling))
        if self.view is not None:
            object.__setattr__(self, "view", View.parse(self.view))
        if self.compute_dtype is not None:
            object.__setattr__(self, "compute_dtype", compute_dtype_name(self.compute_dtype))
        if self.weights is not None and not isinstance(self.weights, WeightsChoice):
            object.__setattr__(self, "weights", parse_weights(self.weights))

    def with_(self, **changes: Any) -> Selector:
        return replace(self, **changes)

    def describe(self) -> str:
        factors = (
            ("model", self.network),
            ("layer", self.layer),
            ("pooling", self.pooling),
            ("view", self.view),
            ("weights", self.weights),
            ("compute_dtype", self.compute_dtype),
            ("dtype", self.dtype),
        )
        return describe_selection(self.key, factors, self.attrs)


def describe_selection(
    key: str | None, factors: Sequence[tuple[str, Any]], attrs: Mapping[str, Any]
) -> str:
    """How a selection reads in messages: its key, or the factors it pins (unset ones left out)."""
    if key:
        return f"entry {key}"
    bits = [f"{n}={v}" for n, v in factors if v] + [f"{n}={v}" for n, v in attrs.items()]
    return "features with " + (", ".join(bits) if bits else "any factors")


def _preprocess_ok(wanted: Mapping[str, Any], recorded: Any) -> bool:
    """Every preprocessing field given equals the recorded one (sizes as int or pair)."""
    if not isinstance(recorded, Mapping):
        return False
    return all(
        value is None or canonical_json(value) == canonical_json(recorded.get(name))
        for name, value in wanted.items()
    )


def _network_of(attrs: Mapping[str, Any]) -> str | None:
    name = attrs.get("model_name") or _model(attrs).get("name")
    return None if name is None else str(name)


def _equal(attrs: Mapping[str, Any], name: str, value: Any) -> bool:
    if name == "model" and isinstance(value, str):
        return _network_of(attrs) == value
    return bool(attrs.get(name) == value)


# option that chooses each factor shown in the "several entries match" message
CLI_CHOOSERS = {
    "pooling": "--pool LAYER=SPEC",
    "weights": "--weights random|pretrained|FILE",
    "compute_dtype": "--compute-dtype",
    "dtype": "--dtype",
    "view": "--view",
    "key": "--key KEY",
}
LOOKUP_CHOOSERS = {
    "pooling": "pooling=",
    "weights": "weights=",
    "compute_dtype": "compute_dtype=",
    "dtype": "dtype=",
    "view": "view=",
    "key": "keys=[KEY]",
}
SPEC_CHOOSERS = {
    "pooling": "pooling:",
    "weights": "the network's weights: (random, pretrained, FILE or sha256:PREFIX)",
    "compute_dtype": "extract: compute_dtype:",
    "dtype": "extract: dtype:",
    "view": "views:",
    "key": "featstore store rm KEY for the entry not wanted",
}


def _shown_factors(entry: Any) -> dict[str, str]:
    """One entry's factors as short text, preprocessing flattened field by field."""
    a = entry.attrs
    model = _model(a)
    sha = str(model.get("weights_sha256") or "")
    out = {
        "model": str(_network_of(a)),
        "weights": f"{model.get('source')}:{sha[:12]}" if sha else str(model.get("source")),
        "layer": str(a.get("layer")),
        "layer_target": str(a.get("layer_target")),
        "pooling": str(a.get("pooling")),
        "view": str(a.get("view")),
        "compute_dtype": str(a.get("compute_dtype")),
        "dtype": str(a.get("dtype")),
    }
    pre = a.get("preprocess")
    if isinstance(pre, Mapping):
        out.update({f"preprocess.{k}": canonical_json(v) for k, v in sorted(pre.items())})
    images = a.get("images") or f"fingerprint {a.get('dataset_fingerprint')}"
    out["images"] = f"{images} ({entry.shape[0]} rows)"
    return out


def describe_entries(
    entries: Sequence[Any], choosers: Mapping[str, str] = CLI_CHOOSERS
) -> tuple[str, list[str]]:
    """Per entry its key and the factors that differ between them; and the options to choose."""
    shown = [_shown_factors(e) for e in entries]
    names = [n for n in shown[0] if len({s.get(n) for s in shown}) > 1]
    if not names:  # same factors under several keys (e.g. a format-1 copy): the images tell
        names = ["images"]
    text = "; ".join(
        f"{e.key} ({', '.join(f'{n}={s.get(n)}' for n in names)})"
        for e, s in zip(entries, shown, strict=True)
    )
    options = [choosers[n] for n in names if n in choosers] + [choosers["key"]]
    return text, options


def ambiguous(
    entries: Sequence[Any], what: str, choosers: Mapping[str, str] = CLI_CHOOSERS
) -> AmbiguousSelectionError:
    listed, options = describe_entries(entries, choosers)
    head = ", ".join(options[:-1]) + " or " if options[:-1] else ""
    return AmbiguousSelectionError(
        f"{len(entries)} cached entries match {what}: {listed}; choose one with {head}{options[-1]}"
    )


# --- the catalog -----------------------------------------------------------------------
def _default_hash(path: str) -> str:
    from featstore.models.weights import file_sha256  # torch: only when nothing else tells

    return file_sha256(path)


class Catalog:
    """One scan of a store's feature entries, answering selectors (metadata only).

    ``hash_file(path)`` gives a weights file's state-dict sha256 when neither the per-file
    hash cache nor an entry's record tells it (default: hash it, which imports torch).
    """

    def __init__(self, store: Any, hash_file: Callable[[str], str] | None = None) -> None:
        self.store = store
        self.hash_file = hash_file or _default_hash
        self._entries: list[Any] | None = None
        self._by_network: dict[str | None, list[Any]] | None = None
        self._tables: dict[str, dict[str, str]] = {}
        self._file_sha: dict[str, set[str]] = {}
        self._named: dict[str, Any] = {}

    # --- what the store holds --------------------------------------------------------
    def entries(self) -> list[Any]:
        if self._entries is None:
            self._entries = [
                e
                for e in _readable_entries(self.store)
                if e.attrs.get("kind", "features") == "features"
            ]
        return self._entries

    def of_network(self, network: str | None) -> list[Any]:
        """The entries of ``network`` (every entry when None), indexed on first use: a
        sweep asks once per cell, and scanning every entry each time is its quadratic cost."""
        if network is None:
            return self.entries()
        if self._by_network is None:
            self._by_network = {}
            for e in self.entries():
                self._by_network.setdefault(_network_of(e.attrs), []).append(e)
        return self._by_network.get(network, [])

    def _of_layer(self, sel: Selector, table: Mapping[str, str]) -> list[Any]:
        """The entries of ``sel``'s network that may hold its layer (by name or module),
        in store order: the only ones :meth:`matches` can accept."""
        entries = self.of_network(sel.network)
        if sel.layer is None:
            return entries
        names = {sel.layer, table.get(sel.layer, sel.layer)}
        return [
            e
            for e in entries
            if e.attrs.get("layer") in names or e.attrs.get("layer_target") in names
        ]

    def layer_table(self, network: str) -> dict[str, str]:
        """Alias -> module of ``network`` as the store records it (no model needed)."""
        if network not in self._tables:
            self._tables[network] = self._read_layer_table(network)
        return dict(self._tables[network])

    def _read_layer_table(self, network: str) -> dict[str, str]:
        table: dict[str, str] = {}
        for e in self.of_network(network):
            a = e.attrs
            recorded = a.get("layer_aliases")
            if isinstance(recorded, Mapping):
                table.update({str(k): str(v) for k, v in recorded.items()})
            if a.get("layer") and a.get("layer_target"):
                table.setdefault(str(a["layer"]), str(a["layer_target"]))
        return table

    # --- weights ---------------------------------------------------------------------
    def file_identity(self, path: str, network: str | None) -> set[str]:
        """The sha256(s) a weights file stands for, found without reading it if possible."""
        if path in self._file_sha:
            return self._file_sha[path]
        full = os.path.abspath(os.path.expanduser(path))
        recorded = [
            e.attrs
            for e in self.entries()
            if _recorded_file(e.attrs).get("path") == full
            and (network is None or _network_of(e.attrs) == network)
        ]
        found: set[str]
        if os.path.isfile(full):
            from featstore.models.weights import cached_hash, file_cache_key

            sha = cached_hash(file_cache_key(full))
            if sha is None:
                here = file_record(full)
                same = {
                    str(_model(a).get("weights_sha256"))
                    for a in recorded
                    if dict(_recorded_file(a)) == here
                }
                sha = next(iter(same)) if len(same) == 1 else self.hash_file(full)
            found = {sha}
        else:
            found = {str(_model(a).get("weights_sha256")) for a in recorded}
            if not found:
                raise WeightsNotFoundError(
                    f"weights file {path} does not exist here and no cached entry"
                    f"{' of ' + network if network else ''} was extracted from it; name the "
                    "weights by identity instead (sha256:PREFIX, see `featstore ls`), or put the "
                    "file there"
                )
        self._file_sha[path] = found
        return found

    def _weights_filter(
        self, choice: WeightsChoice | None, network: str | None
    ) -> Callable[[Mapping[str, Any]], bool]:
        if choice is None:
            return lambda a: True
        if choice.kind == "random":
            return lambda a: _model(a).get("source") == "random"
        if choice.kind == "pretrained":
            return lambda a: _model(a).get("source") not in NOT_PRETRAINED
        if choice.kind == "sha256":
            prefix = choice.value
            return lambda a: str(_model(a).get("weights_sha256") or "").startswith(prefix)
        if choice.kind == "file":
            shas = self.file_identity(choice.value, network)
            return lambda a: _model(a).get("weights_sha256") in shas
        raise SpecError(f"weights {choice} cannot select entries here")

    # --- selecting -------------------------------------------------------------------
    def _layer_ok(self, sel: Selector, a: Mapping[str, Any], table: Mapping[str, str]) -> bool:
        if sel.layer is None:
            return True
        if a.get("layer") == sel.layer:
            return True
        return a.get("layer_target") == table.get(sel.layer, sel.layer)

    def _pooling_ok(self, sel: Selector, entry: Any) -> bool:
        if sel.pooling is None:
            return True
        a = entry.attrs
        shape = a.get("layer_shape")
        stored = str(a.get("pooling"))
        if stored == str(sel.pooling):
            return True
        if isinstance(shape, (list, tuple)) and shape:
            return stored in stored_poolings(sel.pooling, shape)
        return False

    def matches(self, sel: Selector, entry: Any, table: Mapping[str, str] | None = None) -> bool:
        """Whether ``entry``'s recorded factors satisfy ``sel`` (weights not checked here)."""
        a = entry.attrs
        if sel.network is not None and _network_of(a) != sel.network:
            return False
        if table is None:
            table = self.layer_table(sel.network) if sel.network else {}
        for name in ("view", "compute_dtype", "dtype"):
            value = getattr(sel, name)
            if value is not None and str(a.get(name)) != str(value):
                return False
        if sel.preprocess is not None and not _preprocess_ok(sel.preprocess, a.get("preprocess")):
            return False
        if not all(_equal(a, k, v) for k, v in sel.attrs.items() if v is not None):
            return False
        return self._layer_ok(sel, a, table) and self._pooling_ok(sel, entry)

    def candidates(self, dataset: Any, sel: Selector) -> list[Any]:
        """Every entry (or row view of one) holding ``dataset``'s images that ``sel`` matches."""
        table = self.layer_table(sel.network) if sel.network else {}
        weights_ok = self._weights_filter(sel.weights, sel.network)
        chosen = [
            e
            for e in self._of_layer(sel, table)
            if self.matches(sel, e, table) and weights_ok(e.attrs)
        ]
        found = entries_for(self.store, dataset, entries=chosen)
        if not found and sel.pooling is not None and sel.pooling.kind != "none":
            # no recorded layer shape (older writers): a vector entry stored unpooled still
            # serves a vector pooling, as extraction stores any pooling of a vector as none
            loose = [
                e
                for e in self.entries()
                if str(e.attrs.get("pooling")) == "none"
                and len(e.shape) == 2
                and not e.attrs.get("layer_shape")
                and self.matches(sel.with_(pooling=None), e, table)
                and weights_ok(e.attrs)
            ]
            found = entries_for(self.store, dataset, entries=loose)
        return found

    def narrow(self, found: Sequence[Any], sel: Selector) -> list[Any]:
        """The documented tie-breaks: entries chosen by ``keys``, then the layer named as asked."""
        out = list(found)
        if len(out) > 1 and sel.keys:
            chosen = [e for e in out if any(e.key == k or e.key.startswith(k) for k in sel.keys)]
            out = chosen or out
        if len(out) > 1 and sel.layer is not None:  # one layer stored under two names
            groups: dict[str, list[Any]] = {}
            for e in out:
                groups.setdefault(_same_features(e), []).append(e)
            out = []
            for members in groups.values():
                named = [e for e in members if e.attrs.get("layer") == sel.layer]
                out.extend(named or members)
        return out

    def find(
        self,
        dataset: Any,
        sel: Selector,
        *,
        choosers: Mapping[str, str] = CLI_CHOOSERS,
        prefer: Callable[[Any], bool] | None = None,
    ) -> Any | None:
        """The one entry ``sel`` names for ``dataset``; None when none; refused when several
        match and no rule picks one. ``prefer`` keeps, among several, those it accepts."""
        if sel.key:
            return self._by_key(dataset, sel.key)
        sel = self.expand(sel)
        found = self.narrow(self.candidates(dataset, sel), sel)
        if len(found) > 1 and prefer is not None:
            found = [e for e in found if prefer(e)] or found
        if len(found) > 1:  # a complete entry before an interrupted one of other factors
            found = [e for e in found if e.is_complete] or found
        if len(found) > 1:
            self._check_weights_prefix(found, sel)
            raise ambiguous(found, f"{sel.describe()} for dataset {dataset.name!r}", choosers)
        return found[0] if found else None

    def named(self, name: str | None) -> Any | None:
        """The network recorded in the store under ``name`` (see :mod:`featstore.store.networks`)."""
        if not name:
            return None
        if name not in self._named:
            from featstore.store.networks import get_network

            self._named[name] = get_network(self.store, name)
        return self._named[name]

    def expand(self, sel: Selector) -> Selector:
        """A selector naming a store-registered network, as its architecture, weights identity
        and preprocessing; a weights FILE given with it must be those weights."""
        net = self.named(sel.network)
        if net is None:
            return sel
        weights = WeightsChoice("sha256", net.weights_sha256)
        if sel.weights is not None and sel.weights.kind == "file":
            shas = self.file_identity(sel.weights.value, net.arch)
            if net.weights_sha256 not in shas:
                raise SpecError(
                    f"weights {sel.weights.value} (sha256 {', '.join(sorted(s[:16] for s in shas))}) "
                    f"are not the weights of network {net.name} (sha256 {net.weights_sha256[:16]}); "
                    f"drop --weights or name the network {net.arch}"
                )
        elif (
            sel.weights is not None
            and str(sel.weights) != str(weights)
            and not (
                sel.weights.kind == "sha256" and net.weights_sha256.startswith(sel.weights.value)
            )
        ):
            raise SpecError(
                f"network {net.name} is {net.arch} with weights sha256:{net.weights_sha256[:16]}; "
                f"weights {sel.weights} contradict it: drop them"
            )
        return sel.with_(
            network=net.arch, weights=weights, preprocess=sel.preprocess or net.preprocess
        )

    def select(self, sel: Selector, dataset: Any = None) -> list[Any]:
        """Every entry ``sel`` names (holding ``dataset``'s images when given), with no
        tie-break: what ``featstore ls`` lists and ``featstore rm`` removes."""
        if sel.key:
            return [e for e in self.entries() if e.key == sel.key]
        sel = self.expand(sel)
        if dataset is not None:
            return self.candidates(dataset, sel)
        table = self.layer_table(sel.network) if sel.network else {}
        weights_ok = self._weights_filter(sel.weights, sel.network)
        return [e for e in self.entries() if self.matches(sel, e, table) and weights_ok(e.attrs)]

    def _check_weights_prefix(self, found: Sequence[Any], sel: Selector) -> None:
        if sel.weights is None or sel.weights.kind != "sha256":
            return
        shas = sorted({str(_model(e.attrs).get("weights_sha256")) for e in found})
        if len(shas) > 1:
            raise AmbiguousSelectionError(
                f"weights {sel.weights} matches {len(shas)} weights: "
                f"{', '.join(s[:16] for s in shas)}; give more digits"
            )

    def _by_key(self, dataset: Any, key: str) -> Any:
        from featstore.store.content import view_for

        entry = self.store.get_entry(key)
        view = view_for(self.store, dataset, entry)
        if view is None:
            raise EvaluationError(
                f"entry {key} holds features of other images (extracted for dataset "
                f"{entry.attrs.get('dataset_name')!r}), not those of {dataset.name!r}; extract "
                f"them with featstore extract -d {dataset.name} or choose an entry of this dataset"
            )
        return view


def entry_factors(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The factors a :class:`Selector` matches, as one entry records them (``featstore ls
    --json``): what to pass to choose exactly this entry."""
    model = _model(attrs)
    return {
        "network": _network_of(attrs),
        "weights": {"source": model.get("source"), "sha256": model.get("weights_sha256")},
        "layer": attrs.get("layer"),
        "layer_target": attrs.get("layer_target"),
        "layer_aliases": sorted(
            k
            for k, v in (attrs.get("layer_aliases") or {}).items()
            if v == attrs.get("layer_target")
        ),
        "pooling": attrs.get("pooling"),
        "view": attrs.get("view"),
        "preprocess": attrs.get("preprocess"),
        "compute_dtype": attrs.get("compute_dtype"),
        "dtype": attrs.get("dtype"),
        "images": attrs.get("images"),
        "dataset": attrs.get("dataset_name"),
    }


def _same_features(entry: Any) -> str:
    """An entry's factors without the name its layer was asked by."""
    a = dict(entry.attrs)
    names = ("images", "model", "layer_target", "preprocess", "view", "pooling", "dtype")
    return canonical_json({k: a.get(k) for k in (*names, "compute_dtype")})


def lookup(
    store: Any,
    dataset: Any,
    model: str,
    layer: str,
    pooling: str | Pooling | None = DEFAULT_POOLING,
    view: str | View = DEFAULT_VIEW,
    *,
    weights: str | None = None,
    preprocess: Mapping[str, Any] | None = None,
    compute_dtype: str | None = None,
    dtype: str | None = None,
    keys: Sequence[str] = (),
    device: str | None = None,
) -> Any:
    """The cached entry for one (network, layer, pooling, view) of a dataset, asked of the store
    (an open Store, or its path or URL, opened read-only).

    Aliases and the stored form of ``pooling`` resolve as extraction writes them; weights,
    preprocessing (fields given), compute and storage dtype select when given and match
    any value when not (several matches are refused, listing them). ``device`` is accepted
    for symmetry with ``plan`` and ignored: what was cached does not depend on the reader's
    device. Imports no torch and loads no network. Raises EntryNotFoundError, with the
    command that would create it, when absent; an entry holding the dataset's images among
    others comes as a :class:`~featstore.store.content.RowView` in the dataset's order.
    """
    del device
    if isinstance(store, (str, os.PathLike)):
        from featstore.store import open_store

        store = open_store(str(store), mode="r")
    ds = dataset if hasattr(dataset, "images_id") else store.get_dataset(str(dataset))
    sel = Selector(
        network=model,
        layer=layer,
        pooling=None if pooling is None else Pooling.parse(pooling),
        view=View.parse(view),
        weights=parse_weights(weights),
        preprocess=preprocess,
        compute_dtype=compute_dtype,
        dtype=dtype,
        keys=tuple(keys),
    )
    found = Catalog(store).find(ds, sel, choosers=LOOKUP_CHOOSERS)
    if found is None:
        pool = sel.pooling or DEFAULT_POOLING
        raise EntryNotFoundError(
            f"no cached features for {model} layer {layer} (pooling {pool}, view {sel.view}) of "
            f"dataset {ds.name}; create them with `featstore extract -d {ds.name} -m {model} "
            f"-l {layer} --pool {pool}`"
        )
    return found
