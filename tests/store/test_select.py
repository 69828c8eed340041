"""One selection, asked of the store, through every command (issue 22).

``lookup`` (Python), evaluation's ``resolve_parts`` (what ``featstore evaluate`` calls) and
the sweep's planner must pick the same entry key, or refuse with the same message, for:
an alias or a module name, a default pooling on a vector layer, an unpinned or pinned
compute dtype, and several matches. No network is built: extraction is never planned for
an entry the store holds.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest
from eval_helpers import add_dataset, blobs, interleave_splits

from featstore.errors import AmbiguousSelectionError, EntryNotFoundError, SpecError
from featstore.evaluate.features.selection import resolve_parts
from featstore.keys import make_key
from featstore.store import open_store
from featstore.store.select import Catalog, Selector, lookup, parse_weights, stored_poolings
from featstore.sweep.plan import store_planner
from featstore.sweep.spec import NetworkSpec

plan_mod = importlib.import_module("featstore.sweep.plan")
ALIASES = {"penultimate": "classifier.1", "last_conv": "features.12"}
PRE = {"resize": 8, "crop": 8, "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3}


def put(
    store: Any,
    ds: Any,
    X: np.ndarray,
    *,
    layer: str = "penultimate",
    target: str = "classifier.1",
    pooling: str = "none",
    layer_shape: tuple[int, ...] = (8,),
    compute_dtype: str = "float32",
    source: str = "torchvision",
    sha: str = "0" * 64,
    extra: dict[str, Any] | None = None,
    complete: bool = True,
) -> Any:
    """An entry with every attr extraction writes, the recorded layer table included."""
    factors = {
        "images": ds.images_id,
        "model": {"name": "toynet", "source": source, "weights_sha256": sha},
        "layer": layer,
        "layer_target": target,
        "preprocess": PRE,
        "view": "plain",
        "pooling": pooling,
        "dtype": "float32",
        "compute_dtype": compute_dtype,
    }
    attrs = {
        "kind": "features",
        **factors,
        "dataset_name": ds.name,
        "model_name": "toynet",
        "layer_shape": list(layer_shape),
        "layer_aliases": ALIASES,
        **(extra or {}),
    }
    entry = store.create_entry(
        make_key("feat", factors), attrs, X.shape, dtype="float32", chunk_rows=6
    )
    for i in range(entry.n_chunks if complete else 1):
        a, b = entry.chunk_bounds(i)
        entry.write_chunk(i, X[a:b])
    return entry


@pytest.fixture
def data(tmp_path):
    store = open_store(str(tmp_path / "s.zarr"))
    X, y = blobs([6, 6, 6])
    ds = add_dataset(store, "blobs", y, interleave_splits(y))
    return store, ds, X


class Unplanned(Exception):
    """Raised by the sweep's extraction planner: the store did not hold the entry."""


def _no_extraction(*args: Any, **kwargs: Any) -> Any:
    raise Unplanned("extraction planned")


def via_lookup(store, ds, layer, pooling, compute_dtype):
    return lookup(store, ds, "toynet", layer, pooling, compute_dtype=compute_dtype).key


def via_evaluate(store, ds, layer, pooling, compute_dtype):
    wanted = {"model": "toynet", "layer": layer, "pooling": pooling}
    if compute_dtype:
        wanted["compute_dtype"] = compute_dtype
    (part,) = resolve_parts(store, ds, wanted)
    return part.plain.key


def via_sweep(store, ds, layer, pooling, compute_dtype):
    options = {"compute_dtype": compute_dtype} if compute_dtype else {}
    net = NetworkSpec("toynet", (layer,))
    (e,) = store_planner(store, ds, net, [(layer, pooling, "plain")], options)
    return e.key


COMMANDS = [via_lookup, via_evaluate, via_sweep]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("stored_as", "asked"),
    [
        ("classifier.1", "penultimate"),
        ("penultimate", "classifier.1"),
        ("penultimate", "penultimate"),
    ],
)
def test_alias_or_module_name_find_the_same_entry(data, monkeypatch, command, stored_as, asked):
    store, ds, X = data
    monkeypatch.setattr(plan_mod, "extract_planner", _no_extraction)
    entry = put(store, ds, X, layer=stored_as)
    assert command(store, ds, asked, "avg", None) == entry.key  # avg of a vector: stored none


@pytest.mark.parametrize("command", COMMANDS, ids=lambda f: f.__name__)
def test_one_layer_under_two_names_reads_the_one_named_as_asked(data, monkeypatch, command):
    store, ds, X = data
    monkeypatch.setattr(plan_mod, "extract_planner", _no_extraction)
    by_alias = put(store, ds, X, layer="penultimate")
    by_module = put(store, ds, X, layer="classifier.1")
    assert command(store, ds, "penultimate", "avg", None) == by_alias.key
    assert command(store, ds, "classifier.1", "avg", None) == by_module.key


@pytest.mark.parametrize("command", COMMANDS, ids=lambda f: f.__name__)
def test_default_pooling_of_a_map_layer(data, monkeypatch, command):
    store, ds, X = data
    monkeypatch.setattr(plan_mod, "extract_planner", _no_extraction)
    avg = put(store, ds, X, layer="last_conv", target="features.12", pooling="avg",
              layer_shape=(8, 3, 3))  # fmt: skip
    put(store, ds, 2 * X, layer="last_conv", target="features.12", pooling="max",
        layer_shape=(8, 3, 3))  # fmt: skip
    assert command(store, ds, "last_conv", "avg", None) == avg.key
    assert command(store, ds, "features.12", "avg", None) == avg.key


@pytest.mark.parametrize("command", COMMANDS, ids=lambda f: f.__name__)
def test_unpinned_compute_dtype_uses_the_one_cached(data, monkeypatch, command):
    """A teammate's bfloat16 (or a GPU's float16-amp) entry serves a reader that pins nothing,
    whatever this machine's default is."""
    store, ds, X = data
    monkeypatch.setattr(plan_mod, "extract_planner", _no_extraction)
    bf16 = put(store, ds, X, compute_dtype="bfloat16")
    assert command(store, ds, "penultimate", "avg", None) == bf16.key
    assert command(store, ds, "penultimate", "avg", "bf16") == bf16.key


@pytest.mark.parametrize("command", COMMANDS, ids=lambda f: f.__name__)
def test_pinned_compute_dtype_selects_exactly_that(data, monkeypatch, command):
    store, ds, X = data
    monkeypatch.setattr(plan_mod, "extract_planner", _no_extraction)
    put(store, ds, X, compute_dtype="bfloat16")
    missing = Unplanned if command is via_sweep else EntryNotFoundError
    with pytest.raises(missing):
        command(store, ds, "penultimate", "avg", "float32")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda f: f.__name__)
def test_several_matches_are_one_message_in_every_command(data, monkeypatch, command):
    store, ds, X = data
    monkeypatch.setattr(plan_mod, "extract_planner", _no_extraction)
    fp32 = put(store, ds, X, compute_dtype="float32")
    bf16 = put(store, ds, X + 0.5, compute_dtype="bfloat16")
    with pytest.raises(AmbiguousSelectionError) as err:
        command(store, ds, "penultimate", "avg", None)
    text = str(err.value)
    assert text.startswith("2 cached entries match features with model=toynet, layer=penultimate")
    assert f"{fp32.key} (compute_dtype=float32)" in text
    assert f"{bf16.key} (compute_dtype=bfloat16)" in text
    assert command(store, ds, "penultimate", "avg", "float32") == fp32.key
    assert command(store, ds, "penultimate", "avg", "bfloat16") == bf16.key


@pytest.mark.parametrize("command", COMMANDS, ids=lambda f: f.__name__)
def test_an_interrupted_entry_gives_way_to_a_complete_one(data, monkeypatch, command):
    """A run stopped on a GPU box (float16-amp) and the laptop's complete float32 entry: the
    complete one is read, with nothing pinned."""
    store, ds, X = data
    monkeypatch.setattr(plan_mod, "extract_planner", _no_extraction)
    put(store, ds, X, compute_dtype="float16-amp", complete=False)
    fp32 = put(store, ds, X, compute_dtype="float32")
    assert command(store, ds, "penultimate", "avg", None) == fp32.key


def test_weights_by_sha256_prefix_and_the_errors(data) -> None:
    store, ds, X = data
    a = put(store, ds, X, source="file", sha="ab12cd0" + "0" * 57)
    b = put(store, ds, X + 1, source="file", sha="ab12cd1" + "0" * 57)
    assert lookup(store, ds, "toynet", "penultimate", weights="sha256:ab12cd0").key == a.key
    assert lookup(store, ds, "toynet", "penultimate", weights="sha256:AB12CD1").key == b.key
    with pytest.raises(AmbiguousSelectionError, match="weights sha256:ab12cd matches 2 weights"):
        lookup(store, ds, "toynet", "penultimate", weights="sha256:ab12cd")
    with pytest.raises(SpecError, match="at least 6 hex digits"):
        parse_weights("sha256:ab1")
    with pytest.raises(EntryNotFoundError):
        lookup(store, ds, "toynet", "penultimate", weights="sha256:ffffff")


def test_a_missing_weights_file_is_known_by_the_path_extraction_recorded(data, tmp_path) -> None:
    store, ds, X = data
    path = str(tmp_path / "gone" / "r18.pth")
    sha = "5" * 64
    entry = put(store, ds, X, source="file", sha=sha,
                extra={"weights_file": {"path": path, "size": 1, "mtime_ns": 1}})  # fmt: skip
    put(store, ds, X + 1, source="file", sha="6" * 64)
    hashed: list[str] = []
    catalog = Catalog(store, hash_file=lambda p: hashed.append(p) or "x")
    sel = Selector(network="toynet", layer="penultimate", weights=parse_weights(path))
    assert catalog.find(ds, sel).key == entry.key
    assert hashed == []
    other = Selector(network="toynet", layer="penultimate", weights=parse_weights(path + ".x"))
    with pytest.raises(FileNotFoundError, match="name the weights by identity instead"):
        catalog.find(ds, other)


@pytest.mark.parametrize("shape", [(8,), (8, 1, 1), (8, 3, 3), (5, 8), (2, 2, 2, 2)], ids=str)
@pytest.mark.parametrize("asked", ["none", "avg", "max", "gem", "grid:max:2", "map:avg:2"])
def test_stored_pooling_agrees_with_extraction(shape, asked) -> None:
    """The store's rule (no torch) gives what extraction's effective_pooling stores."""
    from featstore.errors import SpecError as Refused
    from featstore.extract.pooling import effective_pooling

    try:
        stored = str(effective_pooling(asked, shape))
    except Refused:
        return  # extraction refuses it: nothing is ever stored for it
    assert stored in stored_poolings(asked, shape)


def test_weights_named_by_sha256_cannot_compute_what_is_missing() -> None:
    from featstore.errors import WeightsNotFoundError
    from featstore.models import resolve_weights

    with pytest.raises(WeightsNotFoundError, match="give the weights FILE"):
        resolve_weights("resnet18", "sha256:abcdef")


def test_a_sweep_never_takes_random_weights_for_the_default(data, monkeypatch) -> None:
    """Weights unset in a spec are the network's default weights (what the sweep would
    compute): a teammate's random-weights entry is not used for them, only when named."""
    store, ds, X = data
    monkeypatch.setattr(plan_mod, "extract_planner", _no_extraction)
    random_entry = put(store, ds, X, source="random")
    with pytest.raises(Unplanned):
        via_sweep(store, ds, "penultimate", "avg", None)
    net = NetworkSpec("toynet", ("penultimate",), weights="random")
    (e,) = store_planner(store, ds, net, [("penultimate", "avg", "plain")], {})
    assert e.key == random_entry.key
    assert via_lookup(store, ds, "penultimate", "avg", None) == random_entry.key  # any weights
