"""Which device and how many CPUs: chosen the same way for extraction and for the solvers.

``resolve_device("auto")`` is CUDA when a device is present, else the CPU; an explicit name
is checked. ``available_cpus()`` counts the CPUs this process may run on (affinity aware),
the basis of every thread count featstore sets. torch is imported only when asked.
"""

from __future__ import annotations

import os

from featstore.errors import ExtractionError, SpecError

__all__ = ["available_cpus", "resolve_device"]


def available_cpus() -> int:
    """CPUs this process may run on (affinity/cgroup aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_device(device: str | None = "auto", cuda_available: bool | None = None) -> str:
    """ "auto" -> "cuda" when a CUDA device is present, else "cpu"; explicit names are checked."""
    if cuda_available is None:
        import torch

        has_cuda = torch.cuda.is_available()
    else:
        has_cuda = cuda_available
    name = (device or "auto").strip().lower()
    if name == "auto":
        return "cuda" if has_cuda else "cpu"
    if name.startswith("cuda"):
        if not has_cuda:
            raise ExtractionError(
                f"device {device!r} was asked for, but no CUDA device is available; use --device cpu"
            )
        return name
    if name in ("cpu", "mps") or name.startswith("xpu"):
        return name
    raise SpecError(f"unknown device {device!r}; use auto, cpu or cuda[:N]")
