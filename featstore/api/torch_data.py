"""A torch Dataset over cached features that reads one block of rows at a time (imports torch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["FeatureDataset"]


class FeatureDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``(x, y)`` of each row of a :class:`featstore.api.features.Features`; the block holding
    the asked row is read (and verified) once and kept until a row of another block is asked,
    so a sequential DataLoader reads every chunk once."""

    def __init__(self, features: Any, rows_per_block: int = 256) -> None:
        if rows_per_block < 1:
            raise ValueError(f"rows_per_block must be at least 1, not {rows_per_block}")
        self.features = features
        self.rows_per_block = int(rows_per_block)
        self._block: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.features)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows")
        i = i % n
        b = i // self.rows_per_block
        if self._block is None or self._block[0] != b:
            start = b * self.rows_per_block
            self._block = (b, self.features.read(slice(start, min(start + self.rows_per_block, n))))
        x = self._block[1][i - b * self.rows_per_block]
        return torch.from_numpy(np.array(x)), torch.as_tensor(self.features.y[i])
