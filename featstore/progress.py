"""The one progress callback type: the library reports, the CLI draws the bar.

Long work (registering images, extracting, fitting, sweeping) calls
``progress(done, total, info)`` after each step: ``done`` of ``total`` units, and ``info``
a small dict saying what the unit was (``{"stage": "decode"}``, ``{"setting": "fc7"}``).
The library never prints; callers pass None when nobody is watching.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Progress", "report"]


class Progress(Protocol):
    """``progress(done, total, info)``: ``done`` of ``total`` units finished."""

    def __call__(self, done: int, total: int, info: dict[str, Any], /) -> None: ...


def report(progress: Progress | None, done: int, total: int, info: dict[str, Any]) -> None:
    """Call ``progress`` when there is one."""
    if progress is not None:
        progress(done, total, info)
