"""Issue 13, item 5: the evaluation read path holds the output and about one stored chunk,
never a whole entry of unpooled maps (peak traced allocations, tracemalloc).

``benchmarks/memory.py`` measures the same on a 100 MB entry; here a 7.5 MB one of
1,200 x 64 x 7 x 7 float16 maps in 19 chunks keeps the test fast.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

from featstore import open_store
from featstore.evaluate.features.transforms import FeatureTransform, Part
from featstore.store.content import RowView

N, C, S, CHUNK_ROWS = 1200, 64, 7, 64
MAPS_BYTES = N * C * S * S * 2
CHUNK_BYTES = CHUNK_ROWS * C * S * S * 2
TRAIN = np.arange(0, N, 5)


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    store = open_store(str(tmp_path_factory.mktemp("memory") / "s.zarr"))
    attrs = {"kind": "features", "pooling": "none", "view": "plain", "layer": "conv"}
    e = store.create_entry("feat-maps", attrs, (N, C, S, S), "float16", chunk_rows=CHUNK_ROWS)
    rng = np.random.default_rng(0)
    for i in range(e.n_chunks):
        a, b = e.chunk_bounds(i)
        e.write_chunk(i, np.maximum(rng.standard_normal((b - a, C, S, S)), 0))
    return e


def _peak(call: Callable[[], np.ndarray]) -> tuple[np.ndarray, int]:
    gc.collect()
    tracemalloc.start()
    try:
        out = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak


CASES: dict[str, Callable[[object], np.ndarray]] = {
    "pool=avg,l2 over every row": lambda e: FeatureTransform("pool=avg,l2").fit_transform(
        [Part(e)], TRAIN
    ),
    "pca fitted, then applied to chosen rows": lambda e: (
        FeatureTransform("pool=avg,pca=16:whiten")
        .fit([Part(e)], TRAIN)
        .transform([Part(e)], np.arange(N - 1, 0, -3))
    ),
    "a subset in another order, through a RowView": lambda e: FeatureTransform(
        "pool=max,l2"
    ).fit_transform([Part(RowView(e, np.random.default_rng(1).permutation(N)[:900]))], TRAIN[:150]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_peak_memory_is_the_output_and_about_one_chunk_never_the_entry(entry, case):
    out, peak = _peak(lambda: CASES[case](entry))
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    # zarr decodes a chunk through ~2.6x its size in buffers; pooling adds a float32 copy
    assert peak < 2.5 * out.nbytes + 6 * CHUNK_BYTES + 256 * 1024, (peak, out.nbytes)
    assert peak < MAPS_BYTES / 2  # reading the maps at once would take all of MAPS_BYTES


def test_the_bound_would_catch_a_whole_entry_read(entry):
    """The same measure on a read of the whole entry: far above both bounds."""
    out, peak = _peak(lambda: entry.read().mean(axis=(2, 3), dtype=np.float32))
    assert peak > MAPS_BYTES > 2.5 * out.nbytes + 6 * CHUNK_BYTES + 256 * 1024
