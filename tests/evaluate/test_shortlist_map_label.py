"""An mAP over an IVF-PQ shortlist is labelled as such, never as a full-ranking mAP."""

from __future__ import annotations

from typing import Any

from test_retrieval_eval import SELECT, holidays  # noqa: F401 - the fixture

from featstore.evaluate.retrieval.task import evaluate_retrieval


def test_a_cut_ranking_reports_shortlist_map(holidays: tuple[Any, Any]) -> None:  # noqa: F811
    store, _ = holidays
    params = {"nlist": 2, "nprobe": 2, "rerank": 10}
    cut = evaluate_retrieval(
        store, "hol", SELECT, whiten="none", index="ivfpq", index_params=params, shortlist=2
    )
    assert "mAP@shortlist" in cut["metrics"]
    assert "mAP" not in cut["metrics"]
    assert cut["chosen"]["map_over"].startswith("the top 2 of")
    full = evaluate_retrieval(store, "hol", SELECT, whiten="none")
    assert "mAP" in full["metrics"]
    assert "map_over" not in full["chosen"]
