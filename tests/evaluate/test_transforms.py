"""Transform specs, pooling from stored maps/grids, and fitted steps against scikit-learn."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from featstore.errors import SpecError, TransformError
from featstore.evaluate.features.stored_pooling import pool_rows
from featstore.evaluate.features.transform_spec import canonical_spec, parse_spec
from featstore.evaluate.features.transforms import FeatureTransform, Part
from featstore.specs import GEM_EPS
from featstore.store import open_store


@pytest.fixture
def store():
    return open_store(f"memory://transforms-{uuid.uuid4().hex}")


def put(store, key, array, pooling="avg", view="plain", chunk_rows=3):
    """A complete entry holding ``array`` (written chunk by chunk, as extraction does)."""
    array = np.asarray(array, dtype=np.float32)
    entry = store.create_entry(
        key,
        {"kind": "features", "pooling": pooling, "view": view, "layer": key},
        array.shape,
        dtype="float32",
        chunk_rows=chunk_rows,
    )
    for i in range(entry.n_chunks):
        a, b = entry.chunk_bounds(i)
        entry.write_chunk(i, array[a:b])
    return entry


# --- spec strings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("pool=max,pca=256,l2", "pool=max,pca=256,l2"),
        ("flipavg, power=0.50, L2 ,pca=128:whiten,l2", "flipavg,power=0.5,l2,pca=128:whiten,l2"),
        ("std", "std"),
        ("", "none"),
        ("none", "none"),
        ("pool=gem", "pool=gem:3"),
        ("pool=gem:3.0", "pool=gem:3"),
        ("pool=grid:1x1+2x2+3x3", "pool=grid:1x1+2x2+3x3"),
        ("power=1.0,concat,pca=4", "power=1,concat,pca=4"),
    ],
)
def test_canonical_spec(spec, canonical):
    assert canonical_spec(spec) == canonical
    assert canonical_spec(canonical) == canonical  # a fixed point


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("pca=abc", "transform step 'pca=abc': pca needs a positive number of dimensions"),
        ("pca=0", "transform step 'pca=0': pca needs a positive number of dimensions"),
        ("pca=8:white", "transform step 'pca=8:white': the only pca option is ':whiten'"),
        ("l2=3", "transform step 'l2=3': l2 takes no value"),
        ("power=x", "transform step 'power=x': 'x' is not a number"),
        ("power=-1", "transform step 'power=-1': the power must be > 0"),
        (
            "pool=sum",
            "transform step 'pool=sum': pool must be one of avg, max, gem[:p], grid:KxK+...",
        ),
        (
            "pool=grid:2x3",
            "transform step 'pool=grid:2x3': grid levels are square cells like "
            "1x1+2x2+3x3, not '2x3'",
        ),
        (
            "l2,pool=max",
            "transform spec 'l2,pool=max': pool= must be the first step (it reads the stored map)",
        ),
        (
            "pca=4,flipavg",
            "transform spec 'pca=4,flipavg': put flipavg before pca/std, which are "
            "fitted on one array per image",
        ),
        ("l2,,std", "transform spec 'l2,,std' has an empty step (two commas in a row?)"),
        ("l2,l2,concat,concat", "transform spec 'l2,l2,concat,concat' has concat more than once"),
        (
            "whiten",
            "unknown transform step 'whiten'; steps are pool=..., flipavg, power=a, l2, "
            "pca=N[:whiten], std, concat",
        ),
    ],
)
def test_bad_specs_are_refused_with_the_step_named(spec, message):
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert str(err.value) == message


# --- pooling ---------------------------------------------------------------------------


def test_pooling_a_max_grid_is_exact():
    grid = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)  # rows 0..3, 4..7, ...
    steps = {s: parse_spec(f"pool={s}")[0] for s in ("max", "grid:1x1+2x2")}
    assert pool_rows(grid, steps["max"], "grid:max:4").tolist() == [[15.0]]
    # 2x2 cells of the 4x4 grid: maxima 5, 7, 13, 15 after the 1x1 level's 15
    assert pool_rows(grid, steps["grid:1x1+2x2"], "grid:max:4").tolist() == [[15, 5, 7, 13, 15]]


def test_a_grid_level_that_does_not_divide_the_stored_grid_is_refused():
    grid = np.zeros((2, 3, 4, 4), dtype=np.float32)
    with pytest.raises(TransformError) as err:
        pool_rows(grid, parse_spec("pool=grid:1x1+3x3")[0], "grid:max:4")
    assert str(err.value) == (
        "a 3x3 grid cannot be derived exactly from the stored 4x4 max grid (pooling=grid:max:4); "
        "use levels that divide 4, or extract with a grid size that all levels divide (e.g. grid:max:3)"
    )


def test_avg_and_gem_from_an_averaged_map():
    m = np.array([1, 2, 3, 4], dtype=np.float32).reshape(1, 1, 2, 2)
    avg = pool_rows(m, parse_spec("pool=avg")[0], "map:avg:2")
    gem3 = pool_rows(m, parse_spec("pool=gem")[0], "map:avg:2")
    gem1 = pool_rows(m, parse_spec("pool=gem:1")[0], "map:avg:2")
    assert avg.tolist() == [[2.5]]
    np.testing.assert_allclose(gem3, [[25.0 ** (1 / 3)]], rtol=1e-6)  # (1+8+27+64)/4 = 25
    np.testing.assert_allclose(gem1, avg, rtol=1e-6)


def test_grid_from_an_averaged_map_uses_adaptive_cells():
    m = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    out = pool_rows(m, parse_spec("pool=grid:2x2")[0], "map:avg:3")
    # torch's adaptive cells on 3 -> 2: rows/cols [0:2] and [1:3]
    assert out.tolist() == [[4.0, 5.0, 7.0, 8.0]]


def test_gem_on_a_vector_entry_gives_the_documented_message():
    with pytest.raises(TransformError) as err:
        pool_rows(np.ones((2, 5)), parse_spec("pool=gem")[0], "avg")
    assert str(err.value) == "GeM needs a spatial map; this entry was stored with pooling=avg"
    with pytest.raises(TransformError) as err:
        pool_rows(np.ones((2, 5)), parse_spec("pool=max")[0], "none")
    assert (
        str(err.value) == "Max pooling needs a spatial map; this entry was stored with pooling=none"
    )
    # asking for the pooling that was stored is a no-op
    assert pool_rows(np.ones((2, 5)), parse_spec("pool=avg")[0], "avg").shape == (2, 5)


def test_avg_cannot_come_from_max_cells_and_maps_need_a_pool_step():
    with pytest.raises(TransformError, match="Average pooling needs an averaged map"):
        pool_rows(np.ones((1, 2, 2, 2)), parse_spec("pool=avg")[0], "grid:max:2")
    with pytest.raises(TransformError, match=r"add a pool= step to the transform"):
        pool_rows(np.ones((1, 2, 2, 2)), None, "grid:max:2")


def test_sub_patches_are_pooled_over_patches():
    patches = np.array([[[1, 5], [3, 1]]], dtype=np.float32)  # 1 image, 2 patches, D=2
    assert pool_rows(patches, parse_spec("pool=avg")[0], "avg").tolist() == [[2.0, 3.0]]
    assert pool_rows(patches, parse_spec("pool=max")[0], "avg").tolist() == [[3.0, 5.0]]


# --- chains over entries --------------------------------------------------------------


def test_power_and_l2_by_hand(store):
    e = put(store, "feat-a", [[-4.0, 9.0], [0.0, 16.0]])
    out = FeatureTransform("power=0.5").fit_transform([Part(e)], np.array([0, 1]))
    assert out.tolist() == [[-2.0, 3.0], [0.0, 4.0]]
    out = FeatureTransform("power=0.5,l2").fit_transform([Part(e)], np.array([0, 1]))
    np.testing.assert_allclose(out, [[-2 / 13**0.5, 3 / 13**0.5], [0.0, 1.0]], rtol=1e-6)


def test_flipavg_averages_the_two_views(store):
    plain = put(store, "feat-p", [[1.0, 2.0], [3.0, 4.0]])
    flip = put(store, "feat-f", [[3.0, 2.0], [5.0, 0.0]], view="flip")
    out = FeatureTransform("flipavg").fit_transform([Part(plain, flip)], np.array([0]))
    assert out.tolist() == [[2.0, 2.0], [4.0, 2.0]]
    with pytest.raises(TransformError, match="flipavg needs the flip view of entry feat-p"):
        FeatureTransform("flipavg").fit_transform([Part(plain)], np.array([0]))


def test_pca_is_fitted_on_the_training_rows_only(store):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    x[30:] *= 50.0  # test rows with a very different spread would dominate a PCA fitted on all
    e = put(store, "feat-pca", x, chunk_rows=7)
    train = np.arange(30)
    t = FeatureTransform("pca=3:whiten").fit([Part(e)], train)
    reference = PCA(n_components=3, whiten=True, random_state=0).fit(x[train])
    fitted = t.part_pipelines_[0].steps[0][1]
    np.testing.assert_allclose(fitted.components_, reference.components_, atol=1e-5)
    np.testing.assert_allclose(t.transform([Part(e)]), reference.transform(x), rtol=1e-4, atol=1e-4)
    on_all = PCA(n_components=3, random_state=0).fit(x)
    assert not np.allclose(np.abs(on_all.components_), np.abs(reference.components_), atol=1e-2)


def test_std_is_fitted_on_the_training_rows_only(store):
    x = np.array([[0.0], [2.0], [100.0]], dtype=np.float32)
    e = put(store, "feat-std", x)
    out = FeatureTransform("std").fit_transform([Part(e)], np.array([0, 1]))
    assert out.ravel().tolist() == [-1.0, 1.0, 99.0]  # mean 1, std 1 from the first two rows
    np.testing.assert_allclose(out, StandardScaler().fit(x[:2]).transform(x))


def test_pca_to_more_dimensions_than_training_samples_is_refused(store):
    e = put(store, "feat-small", np.ones((10, 8)))
    with pytest.raises(TransformError) as err:
        FeatureTransform("l2,pca=5").fit_transform([Part(e)], np.arange(4))
    assert str(err.value) == (
        "pca=5 asks for more dimensions than the data allow: 4 training samples of 8 dims give at "
        "most 4 components; choose pca=N with N <= 4"
    )


def test_concat_joins_entries_and_the_marker_moves_steps_after_the_join(store):
    a = put(store, "feat-a", [[3.0, 4.0], [1.0, 0.0]])
    b = put(store, "feat-b", [[0.0, 0.0, 2.0], [0.0, 5.0, 0.0]])
    per_entry = FeatureTransform("l2").fit_transform([Part(a), Part(b)], np.array([0, 1]))
    np.testing.assert_allclose(per_entry, [[0.6, 0.8, 0, 0, 1], [1, 0, 0, 1, 0]], rtol=1e-6)
    joined = FeatureTransform("concat,l2").fit_transform([Part(a), Part(b)], np.array([0, 1]))
    np.testing.assert_allclose(
        joined,
        [[3 / 29**0.5, 4 / 29**0.5, 0, 0, 2 / 29**0.5], [1 / 26**0.5, 0, 0, 5 / 26**0.5, 0]],
        rtol=1e-6,
    )


def test_pooling_from_stored_grids_in_a_chain(store):
    grid = np.arange(2 * 2 * 2 * 2, dtype=np.float32).reshape(2, 2, 2, 2)
    e = put(store, "feat-grid", grid, pooling="grid:max:2")
    out = FeatureTransform("pool=max").fit_transform([Part(e)], np.array([0]))
    assert out.tolist() == [[3.0, 7.0], [11.0, 15.0]]
    with pytest.raises(TransformError, match="GeM needs an averaged map"):
        FeatureTransform("pool=gem").fit_transform([Part(e)], np.array([0]))


def test_transform_before_fit_is_refused(store):
    e = put(store, "feat-a", [[1.0]])
    with pytest.raises(TransformError, match="not fitted yet"):
        FeatureTransform("l2").transform([Part(e)])


# --- chunk by chunk ---------------------------------------------------------------------


def _maps(n=50, c=6, size=3, seed=0):
    rng = np.random.default_rng(seed)
    return np.maximum(rng.standard_normal((n, c, size, size)), 0).astype(np.float32)


def test_a_chain_read_chunk_by_chunk_equals_the_chain_on_the_whole_matrix(store):
    from sklearn.preprocessing import normalize

    maps = _maps()
    e = put(store, "feat-maps", maps, pooling="none", chunk_rows=7)  # 8 chunks, last short
    train = np.arange(0, 50, 2)
    pooled = maps.mean(axis=(2, 3))
    powered = np.sign(pooled) * np.abs(pooled) ** 0.5
    pca = PCA(n_components=4, whiten=True, svd_solver="full").fit(powered[train])
    expected = normalize(pca.transform(powered))
    t = FeatureTransform("pool=avg,power=0.5,pca=4:whiten,l2")
    np.testing.assert_allclose(t.fit_transform([Part(e)], train), expected, atol=1e-4)
    rows = np.array([49, 3, 3, 20, 0])  # any order, repeats: each row lands where asked
    again = FeatureTransform("pool=avg,power=0.5,pca=4:whiten,l2").fit([Part(e)], train)
    np.testing.assert_allclose(again.transform([Part(e)], rows), expected[rows], atol=1e-4)


def test_concat_of_entries_with_other_chunk_sizes_fits_the_shared_pca_on_training_rows(store):
    from sklearn.preprocessing import normalize

    rng = np.random.default_rng(3)
    a_x, b_x = rng.normal(size=(30, 4)), rng.normal(size=(30, 5)) * 3
    a = put(store, "feat-a", a_x, chunk_rows=7)
    b = put(store, "feat-b", b_x, chunk_rows=4)
    train = np.arange(20)
    joined = np.concatenate([normalize(a_x), normalize(b_x)], axis=1)
    pca = PCA(n_components=3, whiten=True, svd_solver="full").fit(joined[train])
    t = FeatureTransform("l2,concat,pca=3:whiten")
    np.testing.assert_allclose(
        t.fit_transform([Part(a), Part(b)], train), pca.transform(joined), atol=1e-4
    )
    np.testing.assert_allclose(
        t.transform([Part(a), Part(b)], np.array([25, 1])),
        pca.transform(joined[[25, 1]]),
        atol=1e-4,
    )


def test_flipavg_over_chosen_rows_reads_the_same_rows_of_both_views(store):
    plain = put(store, "feat-p", np.arange(20.0).reshape(10, 2), chunk_rows=3)
    flip = put(store, "feat-f", -np.arange(20.0).reshape(10, 2) + 100, view="flip", chunk_rows=3)
    t = FeatureTransform("flipavg").fit([Part(plain, flip)], np.arange(5))
    assert t.transform([Part(plain, flip)], np.array([7, 2])).tolist() == [[50.0, 50.0]] * 2


def test_non_finite_values_are_counted_over_every_chunk_before_refusing(store):
    x = np.ones((20, 3), dtype=np.float32)
    x[2, 0], x[17, 1] = np.nan, np.inf  # in two different chunks
    e = put(store, "feat-nan", x, chunk_rows=5)
    with pytest.raises(TransformError) as err:
        FeatureTransform("l2").fit_transform([Part(e)], np.arange(10))
    assert "entry feat-nan holds NaN or infinite values in 2 of 20 rows" in str(err.value)


def test_progress_counts_every_pass_and_timings_say_where_the_time_went(store):
    e = put(store, "feat-p", _maps(n=20).mean(axis=(2, 3)), chunk_rows=6)  # 4 chunks
    seen = []
    t = FeatureTransform("pca=2,l2")
    t.fit_transform([Part(e)], np.arange(12), progress=lambda d, n, info: seen.append((d, n)))
    assert t.n_reads([Part(e)]) == 8  # one pass to fit the PCA, one for the output
    # the fitting pass reads only the 2 chunks holding training rows, then counts as done
    assert seen == [(d, 8) for d in (1, 2, 4, 5, 6, 7, 8)]
    assert set(t.timings_) == {"read_s", "transform_s"}
    assert all(v >= 0 for v in t.timings_.values())
    assert t.timings_["read_s"] > 0


def test_float16_rows_are_widened_bit_for_bit_and_pooled_a_few_rows_at_a_time(monkeypatch):
    import featstore.evaluate.features.stored_pooling as sp
    from featstore.evaluate.features.stored_pooling import _as_float32

    every = np.arange(65536, dtype=np.uint16).view(np.float16)  # incl. inf, NaN, subnormals
    wide = _as_float32(every.reshape(256, 256)[:, ::2])  # not contiguous, either
    assert wide.dtype == np.float32
    assert wide.shape == (256, 128)
    assert np.array_equal(
        wide.view(np.uint32), every.reshape(256, 256)[:, ::2].astype(np.float32).view(np.uint32)
    )
    maps = np.abs(np.random.default_rng(0).normal(size=(30, 4, 3, 3))).astype(np.float16)
    monkeypatch.setattr(sp, "POOL_BLOCK_BYTES", 4 * 36 * 7)  # 7 rows at a time
    pooled = pool_rows(maps, parse_spec("pool=gem")[0], "none")
    whole = np.power(
        np.power(np.maximum(maps.astype(np.float32), GEM_EPS), 3.0).mean(axis=(2, 3)), 1 / 3
    )
    np.testing.assert_array_equal(pooled, whole)  # rows pooled apart: same as all at once
