"""Where and in which precision the forward runs, and how many CPU threads it gets.

Compute precision is a factor of the feature key (DESIGN.md: bf16 autocast changes
features by 4-7% relative L2), so it is decided here once, explicitly:

  float32      plain fp32 (default on CPU)
  float16-amp  CUDA autocast to float16 (default on CUDA)
  bfloat16     autocast to bfloat16 (CPU with AMX, or CUDA); opt-in
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from featstore.devices import available_cpus, resolve_device
from featstore.errors import SpecError
from featstore.specs import COMPUTE_DTYPES, compute_dtype_name

__all__ = [
    "COMPUTE_DTYPES",
    "Compute",
    "compute_dtype_name",
    "configure_threads",
    "default_batch_size",
    "default_workers",
    "resolve_compute",
]


@dataclass(frozen=True)
class Compute:
    """A resolved device and precision for extraction."""

    device: str
    compute_dtype: str
    channels_last: bool

    @property
    def device_type(self) -> str:
        return torch.device(self.device).type

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"float16-amp": torch.float16, "bfloat16": torch.bfloat16}.get(self.compute_dtype)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast context for the forward (a no-op for float32)."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=dtype)


def resolve_compute(
    device: str | None = "auto",
    amp: bool | None = None,
    compute_dtype: str | None = None,
    cuda_available: bool | None = None,
) -> Compute:
    """Pick device, compute dtype and memory format.

    An explicit ``compute_dtype`` wins; otherwise ``amp`` (None = on for CUDA, off for
    CPU) selects float16 autocast on CUDA or bfloat16 autocast on CPU.
    """
    dev = resolve_device(device, cuda_available)
    is_cuda = dev.startswith("cuda")
    if compute_dtype is not None:
        cd = compute_dtype_name(compute_dtype)
        if cd == "float16-amp" and not is_cuda:
            raise SpecError("float16 autocast needs a CUDA device; on CPU use bfloat16 or float32")
    elif amp is None:
        cd = "float16-amp" if is_cuda else "float32"
    elif amp:
        cd = "float16-amp" if is_cuda else "bfloat16"
    else:
        cd = "float32"
    return Compute(device=dev, compute_dtype=cd, channels_last=is_cuda or cd != "float32")


def configure_threads(n: int | None = None) -> int:
    """Give torch as many intra-op threads as there are usable CPUs (no oversubscription)."""
    threads = n or available_cpus()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def default_batch_size(compute: Compute) -> int:
    return 64 if compute.device_type == "cuda" else 32


def default_workers(compute: Compute) -> int:
    """Loader worker processes: several on CUDA; on CPU decoding runs on a thread instead.

    On a CPU-only machine the network needs every core; worker processes would compete
    with it (DESIGN.md measured a 3x slowdown from oversubscription).
    """
    if compute.device_type == "cuda":
        return max(1, min(8, available_cpus() - 1))
    return 0
