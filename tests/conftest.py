"""Shared fixtures: tiny image folders made on the fly, and stores on every backend."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FLOWERS12 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flowers12"

S3_FIXTURES = {"s3_server", "s3_store", "s3_env", "make_bucket"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark what a test needs from its fixtures: ``s3`` (moto server), ``shared_data``."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & S3_FIXTURES:
            item.add_marker(pytest.mark.s3)
        if "flowers12" in names:
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture
def flowers12() -> Path:
    """The real 12-class flower images in ../shared/data (CI lays ../shared beside the clone)."""
    assert FLOWERS12.exists(), (
        f"the flowers12 images must be at {FLOWERS12} (../shared beside the checkout)"
    )
    return FLOWERS12


def make_image(path: Path, seed: int, size: tuple[int, int] = (32, 32)) -> Path:
    """A small random RGB JPEG; each seed gives different bytes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """train/ and test/ split folders with 3 classes: 4 train + 2 test images each."""
    root = tmp_path / "imgs"
    seed = 0
    for split, count in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog", "fox"):
            for i in range(count):
                make_image(root / split / cls / f"{cls}_{split}_{i}.jpg", seed)
                seed += 1
    (root / "README.txt").write_text("not an image\n")
    return root


@pytest.fixture(params=["zarr", "memory", "hdf5"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store location on each backend."""
    if request.param == "zarr":
        return str(tmp_path / "s.zarr")
    if request.param == "memory":
        return f"memory://featstore-test-{uuid.uuid4().hex}/s.zarr"
    return str(tmp_path / "s.h5")


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch the user's default store."""
    monkeypatch.delenv("FEATSTORE_STORE", raising=False)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
