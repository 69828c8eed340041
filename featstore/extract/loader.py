"""Decoding images into network-ready uint8 batches, once per image for every network.

Each image is read and decoded once, and the bytes read are hashed and compared with the
hash recorded at registration (they are in memory already: the sha256 costs a fraction of
the decode); an item says whether its image ``changed``, and the run refuses such a batch
before any network sees it. Every distinct geometry (resize, crop, interpolation) of
the networks in a run gets its own uint8 tensor from that one decode, and crops views
get their patches. Normalisation (mean/std) happens later on the device, in float,
which also keeps host-to-device copies 4x smaller.

Batches come from a torch DataLoader with worker processes (``num_workers > 0``,
pinned memory on CUDA) or, with ``num_workers == 0``, from a background thread of this
process (Pillow releases the GIL while decoding and resizing), so decoding overlaps
the forward either way.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from featstore.extract.pooling import View, crop_boxes
from featstore.models.spec import Preprocess

if TYPE_CHECKING:
    from featstore.datasets.core import Dataset


def _size(value: int | tuple[int, int]) -> list[int]:
    return [int(v) for v in value] if isinstance(value, tuple) else [int(value)]


def prepare(image: Image.Image, pre: Preprocess) -> torch.Tensor:
    """Resize (shorter side, or exact), centre-crop, to uint8 (3, H, W): torchvision's recipe."""
    mode = InterpolationMode(pre.interpolation)
    img = TF.resize(image, _size(pre.resize), interpolation=mode, antialias=True)
    img = TF.center_crop(img, list(pre.crop_hw))
    tensor: torch.Tensor = TF.pil_to_tensor(img)  # torchvision's functional API is untyped
    return tensor


def prepare_patches(image: Image.Image, pre: Preprocess, view: View) -> torch.Tensor:
    """The crops view: each sub-patch of the whole image resized to the network input."""
    mode = InterpolationMode(pre.interpolation)
    h, w = pre.crop_hw
    patches = []
    for box in crop_boxes(view, image.width, image.height):
        patch = TF.resize(image.crop(box), [h, w], interpolation=mode, antialias=True)
        patches.append(TF.pil_to_tensor(patch))
    return torch.stack(patches)


class RowImages(torch.utils.data.Dataset[dict[str, Any]]):
    """Items {"row", "changed", "g<i>": (3,H,W) uint8, "c<j>": (P,3,H,W) uint8} for chosen rows.

    ``changed``: the image's bytes differ from those registered (it is still prepared, so a
    batch keeps its shape; the run refuses it)."""

    def __init__(
        self,
        dataset: Dataset,
        rows: Sequence[int] | np.ndarray,
        geometries: Sequence[Preprocess],
        crops: Sequence[tuple[Preprocess, View]],
    ) -> None:
        self.dataset = dataset
        self.rows = np.asarray(rows, dtype=np.int64)
        self.geometries = list(geometries)
        self.crops = list(crops)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> dict[str, Any]:
        row = int(self.rows[k])
        image, same = self.dataset.load_image_checked(row)
        if image.mode != "RGB":
            image = image.convert("RGB")
        item: dict[str, Any] = {"row": row, "changed": not same}
        for i, pre in enumerate(self.geometries):
            item[f"g{i}"] = prepare(image, pre)
        for j, (pre, view) in enumerate(self.crops):
            item[f"c{j}"] = prepare_patches(image, pre, view)
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "row": torch.tensor([it["row"] for it in items], dtype=torch.int64),
        "changed": torch.tensor([bool(it.get("changed")) for it in items], dtype=torch.bool),
    }
    for key in items[0]:
        if key not in ("row", "changed"):
            out[key] = torch.stack([it[key] for it in items])
    return out


class _ThreadBatches:
    """Batches produced by one background thread into a bounded queue."""

    _END = object()

    def __init__(self, data: RowImages, batch_size: int, depth: int = 3) -> None:
        self.data = data
        self.batch_size = batch_size
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="featstore-decode", daemon=True)

    def _run(self) -> None:
        try:
            for start in range(0, len(self.data), self.batch_size):
                if self.stop.is_set():
                    return
                stop = min(start + self.batch_size, len(self.data))
                batch = collate([self.data[k] for k in range(start, stop)])
                while not self.stop.is_set():
                    try:
                        self.queue.put(batch, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the consumer
            self.queue.put(exc)
            return
        self.queue.put(self._END)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.thread.start()
        try:
            while True:
                item = self.queue.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.stop.set()


def batches(
    data: RowImages, batch_size: int, num_workers: int = 0, pin_memory: bool = False
) -> Any:
    """An iterable of collated batches in row order."""
    if num_workers <= 0:
        return _ThreadBatches(data, batch_size)
    return torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        prefetch_factor=4,
        persistent_workers=False,
    )
