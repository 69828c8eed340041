"""A sweep that asks for the similarity task: one CKA study per group, beside the accuracies."""

from __future__ import annotations

import numpy as np
import pytest
from eval_helpers import add_dataset, add_features, blobs, interleave_splits

from featstore.errors import SpecError
from featstore.report import build_report, collect_records
from featstore.similarity import rsa
from featstore.store import open_store
from featstore.sweep.plan import factor_planner
from featstore.sweep.run import run_sweep
from featstore.sweep.spec import parse_spec


def _spec(**extra):
    raw = {
        "name": "sim-sweep",
        "datasets": [{"name": "blobs", "tasks": ["classify", "similarity"]}],
        "networks": [{"name": "toynet", "layers": ["l1", "l2", "l3"]}],
        "pooling": ["avg"],
        "transforms": ["none"],
        "baseline": {"layer": "l1"},
        **extra,
    }
    return parse_spec(raw)


@pytest.fixture
def store(tmp_path):
    store = open_store(str(tmp_path / "sw.zarr"))
    X, y = blobs([8, 8, 8], dim=5)
    ds = add_dataset(store, "blobs", y, interleave_splits(y))
    noise = np.random.default_rng(1).normal(size=X.shape)
    for layer, values in (("l1", X), ("l2", X + noise), ("l3", noise)):
        add_features(store, ds, values, layer=layer)
    return store, {"l1": X, "l2": X + noise, "l3": noise}


def _no_extraction(*args, **kwargs):
    raise AssertionError("everything is cached: the sweep must not extract")


def test_sweep_runs_one_similarity_study_and_the_report_shows_it(store):
    st, arrays = store
    spec = _spec(similarity={"measure": "rsa", "split": "test"})
    summary = run_sweep(st, spec, extract_fn=_no_extraction, planner=factor_planner)
    assert summary["failed"] == []
    assert summary["forward_batches"] == 0
    sims = [r for r in summary["results"] if r["task"] == "similarity"]
    assert len(sims) == 1
    assert summary["n_cells"] == 3 + 1
    assert sims[0]["metrics"]["labels"] == ["l1", "l2", "l3"]
    assert sims[0]["cached"] is False
    test = st.get_dataset("blobs").split_indices("test")
    want = rsa(arrays["l1"][test], arrays["l2"][test])
    assert sims[0]["metrics"]["matrix"][0][1] == pytest.approx(want, abs=1e-5)

    rep = build_report(collect_records(st), orders=spec.orders())
    assert len(rep.rows) == 3
    assert [m["labels"] for m in rep.similarity] == [["l1", "l2", "l3"]]
    assert rep.similarity[0]["measure"]["name"] == "rsa"
    assert rep.similarity[0]["rows"] == "test"

    again = run_sweep(st, spec, extract_fn=_no_extraction, planner=factor_planner)
    assert [r["cached"] for r in again["results"]] == [True] * 4  # all lookups


def test_bad_similarity_options_are_refused_by_the_spec():
    with pytest.raises(SpecError, match="unknown similarity measure 'cca'"):
        _spec(similarity={"measure": "cca"})
    with pytest.raises(SpecError, match=r"unknown field\(s\) \['kernel'\] in similarity"):
        _spec(similarity={"kernel": "rbf"})
