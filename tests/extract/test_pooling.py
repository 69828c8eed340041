"""Pooling specs and views: parsing, shapes, and the maths checked against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from featstore.errors import SpecError
from featstore.extract.pooling import (
    Pooling,
    apply_pooling,
    crop_boxes,
    effective_pooling,
    output_shape,
    parse_pooling,
    parse_view,
    row_shape,
)

# one sample, two channels, a 2x2 map:
#   channel 0 = [[1, 2], [3, 4]]     channel 1 = [[-1, 0], [0, 8]]
X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.0], [0.0, 8.0]]]])


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("none", "none"),
        ("AVG", "avg"),
        ("max", "max"),
        ("gem", "gem:3"),
        ("gem:3", "gem:3"),
        ("gem:2.5", "gem:2.5"),
        ("grid:max:6", "grid:max:6"),
        ("grid:max", "grid:max:6"),
        ("grid:3", "grid:max:3"),
        ("map:avg:7", "map:avg:7"),
        ("map:4", "map:avg:4"),
    ],
)
def test_parse_pooling_canonical(text: str, canonical: str) -> None:
    assert str(parse_pooling(text)) == canonical


@pytest.mark.parametrize(
    "bad", ["median", "gem:0", "grid:avg:3", "map:max:2", "grid:max:0", "avg:2", ""]
)
def test_parse_pooling_rejects(bad: str) -> None:
    with pytest.raises(SpecError):
        parse_pooling(bad)


@pytest.mark.parametrize("view", ["mean", "cls", "cls+mean", "tokens"])
def test_token_views_are_refused_on_conv_maps_and_undeclared_tokens(view: str) -> None:
    """'mean' is a token view (patch tokens only): a conv map or tokens without a declared
    layout must not silently get some other pooling."""
    from featstore.extract import effective_pooling

    with pytest.raises(SpecError, match="not a token layer"):
        effective_pooling(view, (64, 7, 7))
    with pytest.raises(SpecError, match="declares no token layout"):
        effective_pooling(view, (197, 768))


def test_avg_max_by_hand() -> None:
    assert apply_pooling(Pooling.parse("avg"), X).tolist() == [[2.5, 1.75]]
    assert apply_pooling(Pooling.parse("max"), X).tolist() == [[4.0, 8.0]]


def test_gem_by_hand() -> None:
    # p = 2, channel 0: sqrt((1 + 4 + 9 + 16) / 4) = sqrt(7.5)
    # channel 1: negatives and zeros clamp to eps: sqrt((64 + 3 * 1e-12) / 4) ~= 4
    got = apply_pooling(Pooling.parse("gem:2"), X)[0]
    assert got[0].item() == pytest.approx(math.sqrt(7.5), rel=1e-6)
    assert got[1].item() == pytest.approx(4.0, rel=1e-6)


def test_none_flattens_in_c_order() -> None:
    assert apply_pooling(Pooling.parse("none"), X).tolist() == [
        [1.0, 2.0, 3.0, 4.0, -1.0, 0.0, 0.0, 8.0]
    ]


def test_grid_and_map_by_hand() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)  # rows 0-3, 4-7, 8-11, 12-15
    assert apply_pooling(Pooling.parse("grid:max:2"), x)[0, 0].tolist() == [
        [5.0, 7.0],
        [13.0, 15.0],
    ]
    assert apply_pooling(Pooling.parse("map:avg:2"), x)[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert apply_pooling(Pooling.parse("grid:max:1"), x).flatten().tolist() == [15.0]


def test_coarser_max_grid_derives_from_finer() -> None:
    x = torch.randn(3, 5, 12, 12)
    fine = apply_pooling(Pooling.parse("grid:max:6"), x)
    assert torch.equal(
        apply_pooling(Pooling.parse("grid:max:3"), fine),
        apply_pooling(Pooling.parse("grid:max:3"), x),
    )
    assert torch.equal(fine.amax(dim=(2, 3)), apply_pooling(Pooling.parse("max"), x))


def test_tokens_pool_over_tokens() -> None:
    tokens = torch.tensor([[[1.0, 10.0], [3.0, 20.0]]])  # (N=1, L=2, D=2)
    assert apply_pooling(Pooling.parse("avg"), tokens).tolist() == [[2.0, 15.0]]
    assert apply_pooling(Pooling.parse("max"), tokens).tolist() == [[3.0, 20.0]]
    assert output_shape("avg", (2, 2)) == (2,)
    with pytest.raises(SpecError):
        output_shape("grid:max:2", (197, 768))


def test_vectors_and_1x1_maps_are_stored_as_they_are() -> None:
    assert str(effective_pooling("avg", (512,))) == "none"
    assert str(effective_pooling("grid:max:6", (512, 1, 1))) == "none"
    assert str(effective_pooling("gem", (512, 1, 1))) == "none"
    assert str(effective_pooling("max", (512, 7, 7))) == "max"
    x = torch.randn(2, 8, 1, 1)
    assert torch.equal(apply_pooling(Pooling.parse("avg"), x), x.reshape(2, 8))


@pytest.mark.parametrize(
    ("pool", "shape", "expected"),
    [
        ("none", (64, 7, 7), (64 * 49,)),
        ("avg", (64, 7, 7), (64,)),
        ("gem:3", (64, 7, 7), (64,)),
        ("grid:max:3", (64, 7, 7), (64, 3, 3)),
        ("map:avg:5", (64, 7, 7), (64, 5, 5)),
        ("avg", (4096,), (4096,)),
    ],
)
def test_output_shape_matches_apply(
    pool: str, shape: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    assert output_shape(pool, shape) == expected
    assert tuple(apply_pooling(Pooling.parse(pool), torch.randn(2, *shape)).shape[1:]) == expected


def test_views_parse() -> None:
    assert str(parse_view("plain")) == "plain"
    assert str(parse_view("FLIP")) == "flip"
    view = parse_view("crops:1x1,2x2,3")
    assert str(view) == "crops:1x1,2x2,3x3"
    assert view.n_patches == 1 + 4 + 9
    for bad in ("mirror", "crops:2x3", "crops:1x1,1x1", "crops:0"):
        with pytest.raises(SpecError):
            parse_view(bad)


def test_crop_boxes_by_hand() -> None:
    # 120 x 60 image; scale 2: patches of 2/3 size (80 x 40) at offsets 0 and 40 / 0 and 20
    boxes = crop_boxes(parse_view("crops:1x1,2x2"), 120, 60)
    assert boxes == [
        (0, 0, 120, 60),
        (0, 0, 80, 40),
        (40, 0, 120, 40),
        (0, 20, 80, 60),
        (40, 20, 120, 60),
    ]
    # scale 3: half-size patches (60 x 30) every quarter
    three = crop_boxes(parse_view("crops:3x3"), 120, 60)
    assert three[0] == (0, 0, 60, 30)
    assert three[4] == (30, 15, 90, 45)
    assert three[8] == (60, 30, 120, 60)


def test_row_shape_for_crops_needs_vectors() -> None:
    assert row_shape("avg", (64, 7, 7), "crops:1x1,2x2") == (5, 64)
    assert row_shape("grid:max:3", (64, 7, 7), "plain") == (64, 3, 3)
    with pytest.raises(SpecError):
        row_shape("grid:max:3", (64, 7, 7), "crops:1x1,2x2")
