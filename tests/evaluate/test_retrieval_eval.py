"""The retrieval pipeline on cached entries built by hand: rankings, metrics, records, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_image
from eval_helpers import HOLIDAY_FEATURES, put_features

from featstore.datasets import add_dataset
from featstore.datasets.retrieval import load_holidays, retrieval_info
from featstore.errors import (
    DatasetError,
    EntryNotFoundError,
    EvaluationError,
    IncompleteEntryError,
    TransformError,
)
from featstore.evaluate.retrieval.task import evaluate_retrieval, retrieval_metrics
from featstore.store import open_store

SELECT = {"model": "toy", "layer": "fc"}


@pytest.fixture
def holidays(tmp_path: Path) -> tuple[Any, Any]:
    """Holidays layout: groups {100000, 100001, 100002} and {100100, 100101}, plus a lone 100200."""
    folder = tmp_path / "hol"
    for i, number in enumerate([100000, 100001, 100002, 100100, 100101, 100200]):
        make_image(folder / f"{number}.jpg", seed=60 + i)
    store = open_store(str(tmp_path / "s.zarr"))
    ds = load_holidays("hol", str(folder))
    store.put_dataset(ds)
    put_features(store, ds, HOLIDAY_FEATURES)
    return store, ds


def test_global_flat_holidays_map_by_hand(holidays: tuple[Any, Any]) -> None:
    store, _ds = holidays
    record = evaluate_retrieval(store, "hol", SELECT, whiten="none")
    # q0 ranking without itself: 100001 (+), 100200, 100101, 100002 (+)
    # trapezoids: (1 + 1)/2 + (1/3 + 2/4)/2 over 2 positives = (1 + 0.41667) / 2 = 0.70833
    # q1 ranking without itself: 100101 (+) first -> AP 1
    assert record["per_class"] == pytest.approx({"100000": 0.708333333, "100100": 1.0})
    assert record["metrics"]["mAP"] == pytest.approx((0.708333333 + 1.0) / 2)
    assert record["metrics"]["P@1"] == 1.0
    assert record["metrics"]["R@1"] == pytest.approx((0.5 + 1.0) / 2)
    assert record["task"] == "retrieve"
    assert record["classifier"]["name"] == "global"
    assert record["queries"]["skipped"][0]["query"] == "100200"
    assert store.get_result(record["key"])["metrics"] == record["metrics"]
    assert {"read_s", "transform_s", "features_s", "search_s"} <= set(record["timings"])


def test_repeat_is_a_lookup_unless_forced(holidays: tuple[Any, Any]) -> None:
    store, _ = holidays
    first = evaluate_retrieval(store, "hol", SELECT, whiten="none")
    again = evaluate_retrieval(store, "hol", SELECT, whiten="none")
    assert first["cached"] is False
    assert again["cached"] is True
    strip = lambda r: {k: v for k, v in r.items() if k != "cached"}  # noqa: E731
    assert strip(again) == strip(first)  # same record, created time included: nothing recomputed
    forced = evaluate_retrieval(store, "hol", SELECT, whiten="none", force=True)
    assert forced["key"] == first["key"]
    assert forced["metrics"] == first["metrics"]
    other = evaluate_retrieval(store, "hol", SELECT, whiten="database")
    assert other["key"] != first["key"]
    assert len(store.result_keys()) == 2


def test_ivfpq_with_full_shortlist_equals_flat(holidays: tuple[Any, Any]) -> None:
    store, _ = holidays
    flat = evaluate_retrieval(store, "hol", SELECT, whiten="none")
    ivf = evaluate_retrieval(
        store,
        "hol",
        SELECT,
        whiten="none",
        index="ivfpq",
        index_params={"nlist": 2, "nprobe": 2, "rerank": 10},
    )
    assert ivf["metrics"] == pytest.approx(flat["metrics"])
    assert ivf["classifier"]["index"] == "ivfpq"
    assert ivf["key"] != flat["key"]


def test_whitening_on_another_dataset(holidays: tuple[Any, Any], tmp_path: Path) -> None:
    store, _ds = holidays
    other_dir = tmp_path / "other"
    for i, number in enumerate([200000, 200001, 200100, 200101, 200200, 200201]):
        make_image(other_dir / f"{number}.jpg", seed=80 + i)
    other = load_holidays("other", str(other_dir))
    store.put_dataset(other)
    with pytest.raises(EntryNotFoundError, match="whitening on dataset 'other' needs its features"):
        evaluate_retrieval(store, "hol", SELECT, whiten="other")
    rng = np.random.default_rng(0)
    put_features(store, other, rng.standard_normal((6, 3)).astype(np.float32))
    record = evaluate_retrieval(store, "hol", SELECT, whiten="other")
    assert record["classifier"]["whiten"]["on"] == other.id
    assert len(record["classifier"]["whiten"]["features"]) == 1
    assert record["chosen"]["whiten_train_vectors"] == 6


def test_subpatch_reads_crops_entries(holidays: tuple[Any, Any]) -> None:
    store, ds = holidays
    # 2 patches per image: a whole-image patch and a "detail" patch
    patches = np.stack([HOLIDAY_FEATURES, HOLIDAY_FEATURES[[0, 0, 0, 3, 3, 5]]], axis=1)
    put_features(store, ds, patches, view="crops:1x1,2x2")
    record = evaluate_retrieval(store, "hol", SELECT, method="subpatch", whiten="none")
    # every positive shares the query's detail patch exactly: both queries rank them first
    assert record["metrics"]["mAP"] == pytest.approx(1.0)
    assert record["factors"]["view"] == "crops:1x1,2x2"
    whitened = evaluate_retrieval(store, "hol", SELECT, method="subpatch", whiten="database")
    assert whitened["chosen"]["whiten_train_vectors"] == 12  # 6 database images x 2 patches
    with pytest.raises(EvaluationError, match="use index='flat'"):
        evaluate_retrieval(store, "hol", SELECT, method="subpatch", index="ivfpq")
    with pytest.raises(TransformError, match="only power= and l2 apply per patch"):
        evaluate_retrieval(store, "hol", SELECT, method="subpatch", transform="pool=max")


def test_subpatch_finds_a_layer_extracted_under_an_alias(holidays: tuple[Any, Any]) -> None:
    store, ds = holidays
    patches = np.stack([HOLIDAY_FEATURES, HOLIDAY_FEATURES[[0, 0, 0, 3, 3, 5]]], axis=1)
    put_features(store, ds, patches, view="crops:1x1,2x2", layer="penultimate", layer_target="_avg")
    for layer in ("penultimate", "_avg"):
        record = evaluate_retrieval(
            store, "hol", {"model": "toy", "layer": layer}, method="subpatch", whiten="none"
        )
        assert record["factors"]["layer"] == "penultimate"


def test_subpatch_without_crops_view_says_what_to_extract(holidays: tuple[Any, Any]) -> None:
    store, _ = holidays
    with pytest.raises(EntryNotFoundError, match=r"needs a crops view.*--view crops:1x1,2x2,3x3"):
        evaluate_retrieval(store, "hol", SELECT, method="subpatch")


def test_bad_input_writes_nothing(holidays: tuple[Any, Any], tmp_path: Path) -> None:
    store, ds = holidays
    with pytest.raises(EvaluationError, match="unknown retrieval method 'knn'"):
        evaluate_retrieval(store, "hol", SELECT, method="knn")
    with pytest.raises(EvaluationError, match=r"unknown IVF-PQ parameter\(s\) \['lists'\]"):
        evaluate_retrieval(store, "hol", SELECT, index="ivfpq", index_params={"lists": 4})
    with pytest.raises(EvaluationError, match="whiten_dim=2 needs whitening"):
        evaluate_retrieval(store, "hol", SELECT, whiten="none", whiten_dim=2)
    with pytest.raises(EvaluationError, match="cannot whiten to 9 dims"):
        evaluate_retrieval(store, "hol", SELECT, whiten_dim=9)
    # an incomplete entry
    put_features(
        store, ds, np.ones((6, 4), dtype=np.float32), layer="conv", complete=False, chunk_rows=3
    )
    with pytest.raises(IncompleteEntryError, match="incomplete"):
        evaluate_retrieval(store, "hol", {"model": "toy", "layer": "conv"})
    # an entry of another dataset given by key
    folder = tmp_path / "cls"
    for i in range(2):
        make_image(folder / "a" / f"{i}.jpg", seed=90 + i)
        make_image(folder / "b" / f"{i}.jpg", seed=95 + i)
    cls = add_dataset(store, "cls", str(folder))
    foreign = put_features(store, cls, np.ones((4, 3), dtype=np.float32))
    with pytest.raises(
        EvaluationError,
        match=r"holds features of other images \(extracted for dataset 'cls'\), not those of 'hol'",
    ):
        evaluate_retrieval(store, "hol", foreign)
    # a dataset without retrieval ground truth
    put_features(store, cls, np.ones((4, 3), dtype=np.float32), layer="fc2")
    with pytest.raises(DatasetError, match="has no retrieval ground truth"):
        evaluate_retrieval(store, "cls", {"model": "toy", "layer": "fc2"})
    assert store.result_keys() == []


def test_copydays_with_group_features(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.zarr"))
    ds = add_dataset(store, "copydays", "builtin:copydays")
    info = retrieval_info(store.get_dataset("copydays"))
    assert all(set(g["positives"]) <= set(info["database"]) for g in info["gnd"])
    assert ds.labels[info["queries"]].tolist() == list(range(14))
    rng = np.random.default_rng(0)
    # the photo's one-hot plus small noise: every copy of a query outranks every distractor
    n_photos = len(ds.classes)  # 14 query photos + 4 distractor photos
    onehot = np.eye(n_photos, dtype=np.float32)[ds.labels]
    feats = onehot + 0.1 * rng.standard_normal(onehot.shape).astype(np.float32)
    put_features(store, ds, feats)
    record = evaluate_retrieval(store, "copydays", SELECT, whiten="database")
    assert record["metrics"]["mAP"] == pytest.approx(1.0)
    assert record["metrics"]["P@10"] == 1.0
    assert record["protocol"]["queries"] == 14
    assert record["protocol"]["database"] == 18 * 13


def test_metrics_for_each_protocol() -> None:
    base = {
        "queries": [0, 1],
        "query_names": ["a", "b"],
        "database": [0, 1, 2, 3],
        "skipped_queries": [],
    }
    gnd = [
        {"positives": [0, 2], "junk": [3], "easy": [0], "hard": [2]},
        {"positives": [3], "junk": [], "easy": [3], "hard": []},
    ]
    rankings = [[0, 3, 1, 2], [2, 3, 1, 0]]
    # Oxford keeps the query (row 0 is its own positive): hits after junk removal 1,0,1 -> AP
    # (1+1)/2 + (1/2 + 2/3)/2 = 1.5833 / 2 = 0.79167; query b: positive 2nd -> (0 + 1/2)/2 = 0.25
    metrics, per = retrieval_metrics({**base, "protocol": "oxford", "gnd": gnd}, rankings, ks=(1,))
    assert per == pytest.approx({"a": 0.7916667, "b": 0.25})
    # generic drops the query from its own ranking: a -> [3 (junk), 1, 2] -> 2 positives, one found 2nd
    metrics, per = retrieval_metrics({**base, "protocol": "generic", "gnd": gnd}, rankings, ks=(1,))
    assert per["a"] == pytest.approx((0 + 0.5) / 2 / 2)
    rev, per = retrieval_metrics({**base, "protocol": "revisited", "gnd": gnd}, rankings, ks=(1,))
    assert rev["mAP_easy"] == pytest.approx((1.0 + 0.25) / 2)
    assert rev["mAP"] == rev["mAP_medium"]
    uk = {
        **base,
        "protocol": "ukbench",
        "queries": [0, 2],
        "query_names": ["a", "c"],
        "gnd": [{"positives": [1], "junk": []}, {"positives": [3], "junk": []}],
    }
    # a: 0 and 1 in its top 4 -> 2; c: a shortlist of 3 without c itself -> only 3 -> 1
    metrics, per = retrieval_metrics(uk, [[0, 1, 2, 3], [3, 0, 1]], ks=(1,))
    assert metrics["ukbench_score"] == pytest.approx((2 + 1) / 2)
    # AP and P@1 leave the query itself out: a -> [1 (+), 2, 3], c -> [3 (+), 0, 1]
    assert per == {"a": 1.0, "c": 1.0}
    assert metrics["P@1"] == 1.0
