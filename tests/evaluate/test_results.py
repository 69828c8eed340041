"""Result keys and records: content-addressed, JSON-clean, found by fields or factors."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest

from featstore.errors import EvaluationError
from featstore.evaluate.results import (
    build_record,
    find_results,
    load_result,
    make_result_key,
    save_result,
    to_json,
)
from featstore.store import open_store


@pytest.fixture(params=["memory", "hdf5"])
def store(request, tmp_path):
    if request.param == "memory":
        return open_store(f"memory://results-{uuid.uuid4().hex}")
    return open_store(str(tmp_path / "r.h5"))


def record(key_seed: int = 0, **over):
    base = {
        "features": [f"feat-{key_seed}"],
        "transform": "l2",
        "task": "classify",
        "classifier": {"name": "svm", "C_grid": [0.1, 1.0]},
        "protocol": {"train": "train", "test": "test"},
        "seed": 0,
    }
    base.update({k: over.pop(k) for k in list(over) if k in base})
    key = make_result_key(**base)
    return build_record(
        key=key,
        dataset_id="toy-abc",
        dataset_name="toy",
        factors=over.pop(
            "factors", {"model": "net", "layer": "fc", "pooling": "avg", "view": "plain"}
        ),
        metrics={"accuracy": 0.5},
        **base,
        **over,
    )


def test_the_key_depends_on_every_part_and_nothing_else():
    args = {
        "features": ["feat-a"],
        "transform": "l2",
        "task": "classify",
        "classifier": {"name": "svm"},
        "protocol": {"cv_folds": 5},
        "seed": 0,
    }
    key = make_result_key(**args)
    assert key.startswith("res-")
    assert len(key) == 24
    assert (
        make_result_key(**{**args, "classifier": {"name": "svm"}}) == key
    )  # equal content, equal key
    assert make_result_key(**{**args, "protocol": {"cv_folds": 5.0}}) == key  # 5 and 5.0 hash alike
    for name, other in [
        ("features", ["feat-b"]),
        ("transform", "l2,pca=8"),
        ("task", "retrieve"),
        ("classifier", {"name": "logreg"}),
        ("protocol", {"cv_folds": 3}),
        ("seed", 1),
    ]:
        assert make_result_key(**{**args, name: other}) != key, name
    # the column order of a concatenation is part of the setting
    assert make_result_key(**{**args, "features": ["feat-a", "feat-b"]}) != make_result_key(
        **{**args, "features": ["feat-b", "feat-a"]}
    )


def test_to_json_unwraps_numpy_and_drops_non_finite_numbers():
    out = to_json(
        {"a": np.float32(0.5), "b": np.array([1, 2]), "c": (np.nan, math.inf), 3: np.int64(4)}
    )
    assert out == {"a": 0.5, "b": [1, 2], "c": [None, None], "3": 4}
    assert type(out["3"]) is int


def test_save_load_roundtrip_and_lookup_of_a_missing_key(store):
    rec = record(per_class={"ap": {"cat": float("nan"), "dog": 0.75}})
    assert save_result(store, rec) == rec["key"]
    loaded = load_result(store, rec["key"])
    assert loaded["per_class"] == {"ap": {"cat": None, "dog": 0.75}}
    assert loaded["metrics"] == {"accuracy": 0.5}
    assert loaded["kind"] == "result"
    assert loaded["versions"]["numpy"] == np.__version__
    assert load_result(store, "res-00000000000000000000") is None


def test_save_refuses_an_incomplete_record(store):
    rec = record()
    del rec["metrics"]
    with pytest.raises(EvaluationError) as err:
        save_result(store, rec)
    assert (
        str(err.value) == "result record lacks the fields ['metrics']; build it with build_record"
    )
    assert store.result_keys() == []


def test_find_results_filters_on_fields_and_factors(store):
    a = record(1, factors={"model": "net", "layer": "fc", "pooling": "avg", "view": "plain"})
    b = record(
        2,
        factors={"model": "net", "layer": "conv5", "pooling": "max", "view": "plain"},
        classifier={"name": "logreg"},
    )
    c = record(3, task="retrieve", factors={"model": "other", "layer": "fc"})
    for r in (a, b, c):
        save_result(store, r)
    keys = lambda rs: sorted(r["key"] for r in rs)  # noqa: E731
    assert keys(find_results(store)) == sorted([a["key"], b["key"], c["key"]])
    assert keys(find_results(store, task="classify")) == sorted([a["key"], b["key"]])
    assert keys(find_results(store, layer="conv5")) == [b["key"]]
    assert keys(find_results(store, model="net", pooling="avg")) == [a["key"]]
    assert keys(find_results(store, classifier="logreg")) == [b["key"]]
    assert keys(find_results(store, dataset="toy", task="retrieve")) == [c["key"]]
    assert keys(find_results(store, dataset="toy-abc", layer=None)) == keys(find_results(store))
    assert keys(find_results(store, metrics=lambda m: m["accuracy"] > 0.9)) == []
    assert find_results(store, layer="fc6") == []
