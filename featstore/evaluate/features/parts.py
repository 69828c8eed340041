"""What an evaluation reads: a setting's parts (an entry, and its flip twin for flipavg).

Defined apart from the transforms (which need scikit-learn) so that choosing entries, and a
cached lookup, import neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["ArraySource", "Part"]


class ArraySource(Protocol):
    """What a transform reads: a feature entry (featstore.store.Entry), a RowView, or alike."""

    key: str
    attrs: dict[str, Any]
    shape: tuple[int, ...]

    @property
    def n_chunks(self) -> int: ...

    def read(self, rows: Any = None) -> np.ndarray: ...

    def read_blocks(self, rows: Any = None) -> Iterator[tuple[Any, np.ndarray]]: ...


@dataclass(frozen=True)
class Part:
    """One member of a setting: an entry, and its flip-view twin when flipavg needs one."""

    plain: ArraySource
    flip: ArraySource | None = None

    @property
    def keys(self) -> list[str]:
        return [self.plain.key] + ([self.flip.key] if self.flip is not None else [])
