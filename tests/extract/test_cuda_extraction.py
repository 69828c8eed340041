"""CUDA extraction (marked ``gpu``; skipped where no CUDA device is present): the GPU path
with its defaults (float16 autocast, channels_last) gives the features a CPU fp32 run gives,
within half-precision error, and records its compute dtype in the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from featstore.datasets import dataset_from_source
from featstore.extract import ExtractionRequest, extract
from featstore.store import open_store

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SMALL = {"resize": 72, "crop": 64}


def test_cuda_features_match_cpu_fp32(tmp_path: Path, image_folder: Path) -> None:
    ds = dataset_from_source("tiny", str(image_folder))
    stores = {}
    for device in ("cpu", "cuda"):
        store = open_store(str(tmp_path / f"{device}.zarr"))
        store.put_dataset(ds)
        summary = extract(store, ExtractionRequest.parse("tiny", ["resnet18"], ["layer3", "penultimate"], "avg", ["plain"], weights="random", preprocess=SMALL, device=device, dtype="float32"))  # fmt: skip
        assert summary["device"].startswith(device)
        assert summary["forward_batches"] >= 1
        stores[device] = (store, summary)
    cpu_store, cpu = stores["cpu"]
    gpu_store, gpu = stores["cuda"]
    assert gpu["compute_dtype"] == "float16-amp"
    assert cpu["compute_dtype"] == "float32"
    assert set(cpu["keys"]).isdisjoint(gpu["keys"])  # the compute dtype is part of the key
    for k_cpu, k_gpu in zip(cpu["keys"], gpu["keys"], strict=True):
        a = cpu_store.get_entry(k_cpu).read().astype(np.float64)
        b = gpu_store.get_entry(k_gpu).read().astype(np.float64)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cos.min() > 0.999
