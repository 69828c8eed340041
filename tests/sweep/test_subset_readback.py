"""A sweep's ``subset:`` dataset is registered with the fingerprint reading it back proves."""

from __future__ import annotations

import numpy as np

from featstore.datasets import dataset_from_source
from featstore.store import open_store
from featstore.sweep.plan import subset_dataset


def test_a_subset_registered_by_a_sweep_reads_back_undamaged(tmp_path) -> None:
    full = dataset_from_source("digits", "builtin:digits")
    sub = subset_dataset(full, 50)
    assert sub.n < full.n
    assert sub.fingerprint != full.fingerprint
    store = open_store(str(tmp_path / "s.zarr"))
    store.put_dataset(sub)
    back = store.get_dataset("digits")  # refused as damaged when the fingerprint did not bind
    assert back.id == sub.id
    assert back.ids == sub.ids
    assert np.array_equal(back.labels, sub.labels)
    assert subset_dataset(full, 50).fingerprint == sub.fingerprint  # same subset, same dataset
