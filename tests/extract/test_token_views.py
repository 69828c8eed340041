"""Token views as a pooling factor: prefix tokens never enter patch statistics."""

from __future__ import annotations

import pytest
import torch

from featstore.errors import SpecError
from featstore.extract import Pooling, apply_pooling, effective_pooling, row_shape
from featstore.models.adapter import to_nld
from featstore.models.tokens import TokenLayout

REG = TokenLayout(prefix=5, has_cls=True)  # class token + 4 registers (DINOv2-reg style)


def _tokens() -> torch.Tensor:
    """(2, 5 + 4, 3): prefix tokens are huge, so leaking one into a patch mean shows."""
    x = torch.arange(2 * 9 * 3, dtype=torch.float32).reshape(2, 9, 3) / 10
    x[:, :5] = 1000.0
    x[:, 0] = -7.0
    return x


def test_patch_statistics_exclude_every_prefix_token() -> None:
    x = _tokens()
    patches = x[:, 5:]
    assert torch.equal(apply_pooling(Pooling.parse("cls"), x, REG), x[:, 0])
    torch.testing.assert_close(apply_pooling(Pooling.parse("mean"), x, REG), patches.mean(1))
    torch.testing.assert_close(apply_pooling(Pooling.parse("max"), x, REG), patches.amax(1))
    assert apply_pooling(Pooling.parse("gem"), x, REG).max() < 10
    both = apply_pooling(Pooling.parse("cls+mean"), x, REG)
    assert both.shape == (2, 6)
    assert torch.equal(both[:, :3], x[:, 0])
    assert torch.equal(apply_pooling(Pooling.parse("tokens"), x, REG), x)


def test_stored_names_and_shapes() -> None:
    shape = (9, 3)
    assert str(effective_pooling("avg", shape, REG)) == "mean"  # the key says what was computed
    assert row_shape("cls+mean", shape, "plain", REG) == (6,)
    assert row_shape("tokens", shape, "plain", REG) == (9, 3)
    assert row_shape("cls", shape, "crops:1x1,2x2", REG) == (5, 3)
    with pytest.raises(SpecError, match="keeps a map or tokens"):
        row_shape("tokens", shape, "crops:1x1,2x2", REG)
    with pytest.raises(SpecError, match="needs a spatial map"):
        effective_pooling("grid:max:2", shape, REG)
    with pytest.raises(SpecError, match="needs a class token"):
        effective_pooling("cls", shape, TokenLayout(prefix=0, has_cls=False))


def test_sequence_first_tokens_become_batch_first() -> None:
    lnd = torch.randn(9, 2, 3)  # (L, N, D) as a sequence-first transformer returns it
    got = to_nld(lnd, TokenLayout(prefix=1, layout="LND"))
    assert got.shape == (2, 9, 3)
    assert got.is_contiguous()
    assert torch.equal(apply_pooling(Pooling.parse("cls"), got, REG)[1], lnd[0, 1])


def test_layout_validation() -> None:
    with pytest.raises(SpecError, match="not one of"):
        TokenLayout(prefix=1, layout="NDL")
    with pytest.raises(SpecError, match="needs prefix >= 1"):
        TokenLayout(prefix=0, has_cls=True)
