"""Cached features of one dataset as arrays: X, y, ids, classes, read as evaluation reads them.

A :class:`Features` is lazy: nothing is read until ``X`` (or ``blocks``, ``read``,
``torch``) is asked for, every chunk is checked against its done marker (a damaged one
raises :class:`~featstore.errors.DamagedChunkError`), and torch is imported only by
:meth:`Features.torch` and :meth:`Features.torch_dataset`. A ``transform`` is fitted on the
dataset's training split exactly as evaluation fits it
(:class:`featstore.evaluate.features.transforms.FeatureTransform` over the same entries), so ``X`` is
the matrix an evaluation of that setting scores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from featstore.errors import EvaluationError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset as TorchDataset

    from featstore.datasets.core import Dataset

__all__ = ["Block", "Features"]

BLOCK_ROWS = 256  # rows per block of blocks() and torch_dataset() when a transform is applied


class Block(NamedTuple):
    """Rows of a :class:`Features` streamed by :meth:`Features.blocks`: ``positions`` are
    their positions in ``f.X`` (``f.X[positions]`` equals the block's X)."""

    positions: np.ndarray
    X: np.ndarray
    y: np.ndarray


class Features:
    """The cached features of one setting of a dataset, restricted to a split or rows.

    Made by :meth:`featstore.FeatureStore.features`. ``rows`` are the dataset rows (store
    order) this object holds; ``X[i]`` belongs to sample ``ids[i]`` with label ``y[i]``.
    """

    def __init__(
        self,
        dataset: Dataset,
        parts: Sequence[Any],
        rows: np.ndarray,
        *,
        split: str | None,
        transform: str,
        dtype: str | None,
        seed: int = 0,
    ) -> None:
        self.dataset = dataset
        self.parts = list(parts)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.split = split
        self.transform = transform
        self.dtype = dtype
        self.seed = seed

    # --- what it is ------------------------------------------------------------------
    @property
    def key(self) -> str:
        """The entry key the features are read from (``+``-joined for a concatenation)."""
        return "+".join(p.plain.key for p in self.parts)

    @property
    def keys(self) -> list[str]:
        """Every entry read (flip twins of a ``flipavg`` transform included)."""
        return [k for p in self.parts for k in p.keys]

    @property
    def attrs(self) -> dict[str, Any]:
        """The recorded factors of the (first) entry: model, layer, pooling, view, dtypes ..."""
        return dict(self.parts[0].plain.attrs)

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.classes)

    @cached_property
    def y(self) -> np.ndarray:
        """Labels of the rows: class indices (N,), or (N, K) for a multi-label dataset."""
        return np.asarray(self.dataset.labels)[self.rows]

    @cached_property
    def ids(self) -> list[str]:
        ids = self.dataset.ids
        return [str(ids[i]) for i in self.rows]

    @property
    def shape(self) -> tuple[int, ...]:
        """(rows, features ...) of X, known without reading a chunk when no transform applies."""
        if self.transform in ("", "none"):
            return (len(self.rows), *self.parts[0].plain.row_shape)
        return tuple(self.X.shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        a = self.parts[0].plain.attrs
        what = f"{a.get('model_name')}/{a.get('layer')}/{a.get('pooling')}/{a.get('view')}"
        return (
            f"Features({self.dataset.name!r}, {what}, split={self.split}, rows={len(self.rows)}, "
            f"transform={self.transform or 'none'}, key={self.key})"
        )

    # --- reading ---------------------------------------------------------------------
    @cached_property
    def _fitted(self) -> Any:
        """The transform fitted on the training split, as evaluation fits it (None: no transform)."""
        if self.transform in ("", "none"):
            return None
        from featstore.evaluate.features.transforms import FeatureTransform
        from featstore.evaluate.probes.protocol import split_rows

        train = split_rows(self.dataset).train
        return FeatureTransform(self.transform, seed=self.seed).fit(self.parts, train)

    def _cast(self, x: np.ndarray) -> np.ndarray:
        return x if self.dtype is None else x.astype(self.dtype, copy=False)

    def read(self, positions: slice | Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """X of some of this object's rows (positions into ``X``; all when None)."""
        rows = self.rows if positions is None else self.rows[positions]
        if self._fitted is not None:
            return self._cast(self._fitted.transform(self.parts, rows))
        if len(self.parts) > 1:
            raise EvaluationError(
                "several entries are read side by side only through a transform with concat "
                "(e.g. transform='l2,concat'); read them one by one otherwise"
            )
        return self._cast(np.asarray(self.parts[0].plain.read(rows)))

    @cached_property
    def X(self) -> np.ndarray:
        """Every row's features (float32 unless ``dtype=None`` asked for the stored dtype)."""
        return self.read()

    def blocks(self, rows_per_block: int | None = None) -> Iterator[Block]:
        """The rows one block at a time, never holding more than one block (plus one stored
        chunk): stored chunks as they are when no transform applies, else blocks of
        ``rows_per_block`` rows (default 256) transformed with the fitted transform."""
        if self._fitted is None and rows_per_block is None and len(self.parts) == 1:
            for where, block in self.parts[0].plain.read_blocks(self.rows):
                index = (
                    np.arange(len(self.rows))[where]
                    if isinstance(where, slice)
                    else np.asarray(where, dtype=np.int64)
                )
                yield Block(index, self._cast(np.asarray(block)), self.y[index])
            return
        step = int(rows_per_block or BLOCK_ROWS)
        if step < 1:
            raise EvaluationError(f"rows_per_block must be at least 1, not {step}")
        for start in range(0, len(self.rows), step):
            index = np.arange(start, min(start + step, len(self.rows)))
            yield Block(index, self.read(slice(start, index[-1] + 1)), self.y[index])

    # --- torch -------------------------------------------------------------------------
    def torch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(X, y) as tensors (reads every row; see :meth:`torch_dataset` for a large entry)."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.X)), torch.from_numpy(
            np.ascontiguousarray(self.y)
        )

    def torch_dataset(self, rows_per_block: int = BLOCK_ROWS) -> TorchDataset[Any]:
        """A map-style torch Dataset of ``(x, y)`` pairs reading one block of rows at a time
        (every chunk verified), so a DataLoader walks an entry larger than memory."""
        from featstore.api.torch_data import FeatureDataset

        return FeatureDataset(self, rows_per_block)
