"""Done-when: a timm ViT and an HF ViT from local files extract cls and mean token
features of several blocks in one pass each, through the CLI, into keyed entries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from featstore.cli.main import cli
from PIL import Image
from token_refs import reference_view

from featstore.extract.loader import prepare
from featstore.models import get_spec
from featstore.store import open_store

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")


def _run(*args: str) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{") :]) if "--json" in args else {}


def _entries(store_url: str, summary: dict) -> dict[tuple[str, str], np.ndarray]:  # type: ignore[type-arg]
    store = open_store(store_url)
    out = {}
    for key in summary["keys"]:
        entry = store.get_entry(key)
        out[(entry.attrs["layer"], entry.attrs["pooling"])] = entry.read().astype(np.float32)
    return out


def _inputs(image_folder: Path, store_url: str, name: str) -> torch.Tensor:
    """The network inputs of the dataset's images, in store order."""
    pre = get_spec(name).preprocess
    ds = open_store(store_url).get_dataset("tiny")
    x = torch.stack(
        [prepare(Image.open(image_folder / i).convert("RGB"), pre) for i in ds.ids]
    ).float()
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    return (x * pre.scale - mean) / std


def test_timm_vit_from_a_safetensors_file(tmp_path: Path, image_folder: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    weights = tmp_path / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(weights))
    url = str(tmp_path / "s.zarr")
    _run("datasets", "add", "tiny", str(image_folder), "--store", url)
    name = "timm:vit_tiny_patch16_224"
    summary = _run(
        "extract", "-d", "tiny", "-m", name, "-l", "block2,block5", "--pool", "cls,mean",
        "--weights", str(weights), "--store", url, "--json",
    )  # fmt: skip
    assert summary["entries"] == 4
    assert summary["forward_batches"] == 1
    got = _entries(url, summary)
    x = _inputs(image_folder, url, name)
    with torch.no_grad():
        lib = vit.forward_intermediates(
            x, indices=[2, 5], output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
        )
    for layer, idx in (("block2", 0), ("block5", 1)):
        tokens = torch.cat([lib[idx][1], lib[idx][0]], dim=1)
        for view in ("cls", "mean"):
            ref = reference_view(view, tokens, prefix=1).numpy()
            np.testing.assert_allclose(got[(layer, view)], ref, rtol=1e-2, atol=1e-2)
    again = _run(
        "extract", "-d", "tiny", "-m", name, "-l", "block2,block5", "--pool", "cls,mean",
        "--weights", str(weights), "--store", url, "--json",
    )  # fmt: skip
    assert again["forward_batches"] == 0  # cached under the same keys


def test_hf_vit_from_a_save_pretrained_folder(tmp_path: Path, image_folder: Path) -> None:
    t = transformers
    torch.manual_seed(0)
    cfg = t.ViTConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8,
    )  # fmt: skip
    model = t.ViTModel(cfg).eval()
    folder = tmp_path / "vit"
    model.save_pretrained(folder)
    t.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    url = str(tmp_path / "s.zarr")
    _run("datasets", "add", "tiny", str(image_folder), "--store", url)
    name = f"hf:{folder}"
    summary = _run(
        "extract", "-d", "tiny", "-m", name, "-l", "hidden_1,hidden_3", "--pool", "cls,mean",
        "--store", url, "--json",
    )  # fmt: skip
    assert summary["entries"] == 4
    assert summary["forward_batches"] == 1
    got = _entries(url, summary)
    x = _inputs(image_folder, url, name)
    with torch.no_grad():
        hidden = model(pixel_values=x, output_hidden_states=True).hidden_states
    for layer in ("hidden_1", "hidden_3"):
        for view in ("cls", "mean"):
            ref = reference_view(view, hidden[int(layer[-1])], prefix=1).numpy()
            np.testing.assert_allclose(got[(layer, view)], ref, rtol=1e-2, atol=1e-2)
    layers = CliRunner().invoke(cli, ["models", "layers", name])
    assert layers.exit_code == 0
    assert "17 tokens x 32 (1 prefix)" in layers.output
