"""Cached commands read each stored object once (issue 22 item 5: interactive read path).

A fully cached sweep or report asks the store about every cell; the answers must not cost
a metadata read per cell: the catalog reads each entry once for all selections, a sweep's
lookups read each entry (metadata, done markers, content checksum) once for all the cells
that use it, and a study's table reads its own records only. The answers are those of the
one-read-per-question path.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from test_sweep_run import FakeExtractor, _spec

from featstore.evaluate.results import collect_records
from featstore.evaluate.tasks import get_task
from featstore.store.select import Catalog, Selector
from featstore.sweep.plan import factor_planner
from featstore.sweep.run import run_sweep
from featstore.sweep.study import study_records, study_result_keys

N_ENTRIES = 8  # netA: 3 layers x 2 poolings; netB: 1 layer x 2 poolings


@pytest.fixture
def swept(tmp_path: Any) -> Any:
    from test_sweep_run import _dataset

    from featstore.store import open_store

    store = open_store(str(tmp_path / "sweep.zarr"))
    store.put_dataset(_dataset())
    first = run_sweep(store, _spec(), extract_fn=FakeExtractor(), planner=factor_planner)
    assert first["failed"] == []
    assert first["evaluated"] == 32
    return store


def _count(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> Counter[str]:
    """Count the calls of ``cls.name`` by their first argument (a key)."""
    calls: Counter[str] = Counter()
    real = getattr(cls, name)

    def counting(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        calls[key] += 1
        return real(self, key, *args, **kwargs)

    monkeypatch.setattr(cls, name, counting)
    return calls


def test_a_catalog_reads_each_entry_once_and_answers_as_a_fresh_one(swept, monkeypatch) -> None:
    ds = swept.get_dataset("toy")
    selectors = [
        Selector(network=net, layer=layer, pooling=pooling, view="plain")
        for net, layers in (("netA", ("l1", "l2", "l3")), ("netB", ("l3",)))
        for layer in layers
        for pooling in ("avg", "max")
    ]
    fresh = [Catalog(swept).find(ds, sel).key for sel in selectors]  # one scan per question
    reads = _count(monkeypatch, type(swept), "get_entry")
    listings: list[int] = []
    real_listing = type(swept).list_entries

    def counting_listing(self: Any) -> Any:
        listings.append(1)
        return real_listing(self)

    monkeypatch.setattr(type(swept), "list_entries", counting_listing)
    catalog = Catalog(swept)
    shared = [catalog.find(ds, sel).key for sel in selectors]
    assert shared == fresh
    assert len(set(shared)) == N_ENTRIES
    # one batched listing of the store for all eight questions, and no entry read on its own
    assert len(listings) == 1
    assert all(n <= 1 for n in reads.values())
    assert catalog.find(ds, Selector(network="netC", layer="l1")) is None


def test_a_cached_rerun_reads_each_entry_a_fixed_number_of_times(swept, monkeypatch) -> None:
    reads = _count(monkeypatch, type(swept), "get_entry")
    records = _count(monkeypatch, type(swept), "get_result")
    again = run_sweep(swept, _spec(), extract_fn=FakeExtractor(), planner=factor_planner)
    assert again["forward_batches"] == 0
    assert again["evaluated"] == 0
    assert again["cached_results"] == 32
    assert again["failed"] == []
    # the plan scans the store once per network (2), the 32 cells' lookups read each
    # entry once more: not once per cell and transform (4 cells read each entry)
    assert len(reads) == N_ENTRIES
    assert max(reads.values()) <= 3
    assert sorted(records.values()) == [1] * 32  # each cell's record read once


def test_a_study_reads_its_own_records_only_and_finds_what_filtering_found(
    swept, monkeypatch
) -> None:
    outside = get_task("classify").evaluate(  # a teammate's evaluate run on the same data
        swept,
        "toy",
        {"model": "netA", "layer": "l2", "pooling": "avg"},
        transform="std",
        classifier="knn",
    )
    wanted = study_result_keys(swept, _spec())
    assert outside["key"] not in wanted
    assert len(wanted) == 32
    filtered = [r for r in collect_records(swept, datasets=["toy"]) if r.get("key") in wanted]
    records = _count(monkeypatch, type(swept), "get_result")
    study = study_records(swept, _spec())
    assert study == filtered
    assert outside["key"] not in records
    assert sum(records.values()) == 32
