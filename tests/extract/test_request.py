"""The extraction request: loose values parsed once into frozen types, shared by every path."""

from __future__ import annotations

import dataclasses
import pickle
from types import SimpleNamespace

import pytest
import torch

from featstore.datasets.sources import dataset_from_source
from featstore.errors import SpecError
from featstore.extract import ExtractionRequest, apply_pooling, plan
from featstore.extract.request import ALL, ByName, group_request
from featstore.specs import (
    DEFAULT_POOLING,
    DEFAULT_STORAGE_DTYPE,
    DEFAULT_VIEW,
    FeatureKey,
    Pooling,
    Preprocess,
    View,
    WeightsIdentity,
)
from featstore.store import open_store
from featstore.store.select import Selector

SMALL = {"resize": 40, "crop": 32}


def test_loose_values_become_typed_factors_once() -> None:
    r = ExtractionRequest.parse(
        "tiny",
        "resnet18, alexnet,resnet18",
        "layer3,penultimate",
        {"layer3": "max,grid:max:2", "*": ["gem"]},
        ["plain", "crops:1x1,2x2", "plain", View.parse("flip")],
        weights={"alexnet": "random"},
        preprocess={"crop": [32, 48], "resize": 40},
        compute_dtype="bf16",
        dtype="float32",
    )
    assert r.models == ("resnet18", "alexnet")
    assert r.layers_for("alexnet") == ["layer3", "penultimate"]
    assert r.poolings_for("layer3") == (Pooling("max"), Pooling("grid", size=2))
    assert r.poolings_for("penultimate") == (Pooling("gem", p=3.0),)
    assert r.views == (View("plain"), View("crops", (1, 2)), View("flip"))
    assert all(isinstance(p, Pooling) for _, ps in r.pooling.items for p in ps)
    assert (r.weights_for("alexnet"), r.weights_for("resnet18")) == ("random", None)
    assert r.preprocess_for("resnet18") == {"crop": (32, 48), "resize": 40}
    assert (r.compute_dtype, r.dtype) == ("bfloat16", "float32")


def test_defaults_are_the_shared_constants() -> None:
    r = ExtractionRequest.parse("tiny", ["resnet18"])
    assert r.poolings_for("anything") == (DEFAULT_POOLING,) == (Pooling.parse("avg"),)
    assert r.views == (DEFAULT_VIEW,)
    assert r.dtype == DEFAULT_STORAGE_DTYPE
    assert r.layers_for("resnet18") is None  # the network's own default layers
    # a per-layer pooling leaves every other layer at the default
    assert ExtractionRequest.parse("t", "m", pooling={"fc": "max"}).poolings_for("x") == (
        DEFAULT_POOLING,
    )
    # the read path speaks the same vocabulary: a selector parses text into the same objects
    sel = Selector(network="resnet18", pooling="avg", view="crops:1,2")
    assert sel.pooling == DEFAULT_POOLING
    assert sel.view == View("crops", (1, 2))
    assert Selector().view == DEFAULT_VIEW


def test_the_request_is_frozen_and_travels_by_pickle() -> None:
    r = ExtractionRequest.parse("tiny", ["resnet18"], ["fc"], "gem:2", ["flip"], weights="random")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.dtype = "float64"  # type: ignore[misc]
    back = pickle.loads(pickle.dumps(r))  # what a Dask worker receives
    assert back == r
    assert back.poolings_for("fc") == (Pooling("gem", p=2.0),)
    assert r.with_dataset("ds-id").dataset == "ds-id"
    assert r.dataset == "tiny"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pooling": "avgg"}, "unknown pooling 'avgg'"),
        ({"views": ["sideways"]}, "unknown view 'sideways'"),
        ({"dtype": "int8"}, "storage dtype 'int8' is not supported"),
        ({"compute_dtype": "fp8"}, "unknown compute dtype 'fp8'"),
    ],
)
def test_bad_values_are_refused_when_parsed(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        ExtractionRequest.parse("tiny", ["resnet18"], **kwargs)


def test_a_request_names_a_network(tmp_path) -> None:
    with pytest.raises(SpecError, match="no network given: name at least one with -m"):
        ExtractionRequest.parse("tiny", " , ")
    built = ExtractionRequest(dataset="tiny", models=())  # field by field, not parsed
    with pytest.raises(SpecError, match="no network given"):
        plan(open_store(str(tmp_path / "s.zarr")), built)


def test_by_name_falls_back_to_every_name() -> None:
    table = ByName((("a", 1), (ALL, 2)))
    assert (table.get("a"), table.get("b"), table.names) == (1, 2, ("a",))
    assert ByName((("a", 1),)).get("b") is None


def test_a_sweep_group_becomes_one_request() -> None:
    missing = [
        SimpleNamespace(layer="fc", pooling="avg", view="plain"),
        SimpleNamespace(layer="layer4", pooling="max", view="flip"),
    ]
    group = SimpleNamespace(
        network="ft", extraction_network="resnet18", weights="random", missing=missing
    )
    r = group_request("tiny", group, {"dtype": "float32", "batch_size": 8, "workers": 2})
    assert r.models == ("resnet18",)
    assert r.layers_for("resnet18") == ["fc", "layer4"]
    assert r.poolings_for("fc") == (Pooling("avg"), Pooling("max"))
    assert r.views == (View("plain"), View("flip"))
    assert r.dtype == "float32"


def test_apply_pooling_takes_a_parsed_pooling() -> None:
    x = torch.arange(8, dtype=torch.float32).reshape(1, 2, 2, 2)
    assert apply_pooling(Pooling.parse("max"), x).tolist() == [[3.0, 7.0]]
    with pytest.raises(TypeError, match="takes a Pooling"):
        apply_pooling("max", x)  # type: ignore[arg-type]


def test_keys_derive_as_before() -> None:
    """Keys made from the typed factors are those of stores written before the request type
    (values computed by the previous release): an existing entry is still found."""
    common = {
        "images": "images-0123456789abcdef",
        "model": WeightsIdentity("resnet18", "random", "ab" * 32),
        "dtype": "float16",
        "compute_dtype": "float32",
    }
    crops = FeatureKey(
        layer="layer4",
        layer_target="layer4",
        preprocess=Preprocess(resize=40, crop=32),
        view=View.parse("crops:1x1,2x2"),
        pooling=Pooling.parse("gem"),
        **common,
    )
    plain = FeatureKey(
        layer="penultimate",
        layer_target="avgpool",
        preprocess=Preprocess(),
        view=DEFAULT_VIEW,
        pooling=DEFAULT_POOLING,
        **common,
    )
    assert (crops.key, plain.key) == ("feat-041360930bfbeaef692f", "feat-0caf64ea6339b84c06cc")


def test_plan_entries_hold_typed_factors_and_text_plans_the_same(tmp_path, image_folder) -> None:
    store = open_store(str(tmp_path / "s.zarr"))
    store.put_dataset(dataset_from_source("tiny", str(image_folder)))
    loose = ExtractionRequest.parse(
        "tiny", ["resnet18"], ["fc", "layer3"], "avg,max", "plain,flip", weights="random",
        preprocess=SMALL,
    )  # fmt: skip
    typed = dataclasses.replace(
        loose,
        pooling=ByName(((ALL, (Pooling("avg"), Pooling("max"))),)),
        views=(View("plain"), View("flip")),
    )
    p, q = plan(store, loose), plan(store, typed)
    assert [e.key for e in p.entries] == [e.key for e in q.entries]
    assert len(p.entries) == 6
    fc = [e for e in p.entries if e.layer == "fc"]
    assert {e.pooling for e in fc} == {Pooling("none")}  # a vector layer is stored unpooled
    assert all(isinstance(e.view, View) for e in p.entries)
    assert p.request.dataset is p.dataset  # the plan carries the request it answers
    assert p.to_dict()["entries"][0]["pooling"] == "none"  # text only at the output edge
