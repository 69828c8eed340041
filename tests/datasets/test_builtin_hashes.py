"""Built-in datasets register the very hash extraction recomputes from each image, so a
built-in dataset is never reported as changed (a digits run once failed on every image)."""

from __future__ import annotations

import pytest

from featstore.datasets import dataset_from_source
from featstore.datasets.images import hash_image
from featstore.datasets.registry import provider_image_hashed


@pytest.mark.parametrize("name", ["digits", "copydays"])
def test_registered_hashes_equal_what_extraction_recomputes(name: str) -> None:
    ds = dataset_from_source(name, f"builtin:{name}")
    for row in (0, 1, ds.n // 2, ds.n - 1):
        ref = ds.refs[row]
        assert provider_image_hashed(ref)[1] == ds.image_hashes[row]  # the loader's check
        assert hash_image(ref) == ds.image_hashes[row]  # the changed-files report
