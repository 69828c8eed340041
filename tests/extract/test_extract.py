"""The extraction pipeline: cached features equal a fresh forward, reruns compute nothing,
a killed run resumes to identical features, one decode serves every network."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from click.testing import CliRunner
from PIL import Image

from featstore.datasets import dataset_from_source
from featstore.errors import (
    EntryNotFoundError,
    ExtractionError,
    InsufficientSpaceError,
    SpecError,
    UnknownLayerError,
)
from featstore.extract import ExtractionRequest, extract, lookup, plan, resolve_compute
from featstore.models import load_model
from featstore.store import open_store

SMALL = {"resize": 72, "crop": 64}
plan_mod = importlib.import_module("featstore.extract.plan")  # the module, not the function


def make_images(root: Path, n: int) -> Path:
    """n small JPEGs of varied sizes in train/test class folders (two classes)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        split = "test" if i % 4 == 3 else "train"
        cls = "a" if i % 2 else "b"
        h, w = 48 + (i % 5) * 7, 60 + (i % 3) * 11
        base = rng.integers(0, 256, size=(1, 1, 3))
        noise = rng.integers(-60, 60, size=(h, w, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        path = root / split / cls / f"img_{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=92)
    return root


@pytest.fixture(autouse=True)
def _weights_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[str, object]:
    """A local Zarr store holding a registered 24-image dataset 'tiny'."""
    ds = dataset_from_source("tiny", str(make_images(tmp_path / "imgs", 24)))
    url = str(tmp_path / "store.zarr")
    store = open_store(url)
    store.put_dataset(ds)
    return url, ds


def _fresh(
    model: str, ds: object, layer_module: str, size: dict, flip: bool = False
) -> torch.Tensor:
    """Reference activations: torchvision transforms on each PIL image, one plain fp32 forward."""
    net = load_model(model, "random").module
    from featstore.models import get_spec

    pre = get_spec(model).preprocess.override(**size)
    if pre.scale == 1.0:  # (x - 127) / 128 in 0..255 units
        norm = T.Normalize([m / 255 for m in pre.mean], [s / 255 for s in pre.std])
    else:
        norm = T.Normalize(pre.mean, pre.std)
    tf = T.Compose([T.Resize(pre.resize), T.CenterCrop(pre.crop), T.ToTensor(), norm])
    x = torch.stack([tf(ds.load_image(i)) for i in range(ds.n)])
    if flip:
        x = x.flip(-1)
    got: dict[str, torch.Tensor] = {}

    def hook(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> None:
        got["v"] = out.clone()

    handle = dict(net.named_modules())[layer_module].register_forward_hook(hook)
    with torch.no_grad():
        net(x)
    handle.remove()
    return got["v"]


def _close_fp16(cached: np.ndarray, ref: np.ndarray) -> None:
    scale = max(1e-3, float(np.abs(ref).max()))
    np.testing.assert_allclose(cached.astype(np.float32), ref, rtol=2e-3, atol=2e-3 * scale)


@pytest.mark.parametrize(
    ("model", "size", "layer", "module", "pool"),
    [
        ("resnet18", SMALL, "layer3", "layer3", "grid:max:2"),
        ("resnet18", SMALL, "penultimate", "avgpool", "avg"),
        ("alexnet", SMALL, "conv1", "features.1", "none"),
        ("alexnet", SMALL, "fc7", "classifier.5", "avg"),
        ("efficientnet_lite0", {}, "stage5", "_blocks.10", "map:avg:3"),
    ],
)
def test_cached_features_equal_fresh_forward(tiny, model, size, layer, module, pool) -> None:
    url, ds = tiny
    store = open_store(url)
    summary = extract(
        store,
        ExtractionRequest.parse(
            "tiny",
            [model],
            [layer],
            pool,
            ["plain", "flip"],
            weights="random",
            preprocess=size or None,
            chunk_rows=4,
        ),
        batch_size=5,
    )
    assert summary["forward_batches"] == 5  # ceil(24 / 5), plain and flip in the same forward
    for key in summary["keys"]:
        entry = store.get_entry(key)
        assert entry.attrs["status"] == "complete"
        assert entry.dtype == "float16"
        act = _fresh(model, ds, module, size, flip=entry.attrs["view"] == "flip")
        from featstore.extract import Pooling, apply_pooling

        _close_fp16(entry.read(), apply_pooling(Pooling.parse(entry.attrs["pooling"]), act).numpy())


def test_entry_attrs_and_keys_hold_every_factor(tiny) -> None:
    url, _ = tiny
    store = open_store(url)
    summary = extract(
        store,
        ExtractionRequest.parse(
            "tiny",
            ["resnet18"],
            ["penultimate"],
            "avg",
            ["plain"],
            weights="random",
            preprocess=SMALL,
        ),
    )
    attrs = store.get_entry(summary["keys"][0]).attrs
    for name in (
        "kind",
        "images",
        "dataset_name",
        "model",
        "model_name",
        "layer",
        "preprocess",
        "view",
        "pooling",
        "dtype",
        "compute_dtype",
        "status",
        "timings",
        "versions",
    ):
        assert name in attrs, name
    assert attrs["model"]["source"] == "random"
    assert len(attrs["model"]["weights_sha256"]) == 64
    assert (attrs["layer"], attrs["layer_target"], attrs["pooling"]) == (
        "penultimate",
        "avgpool",
        "none",
    )
    assert attrs["preprocess"]["crop"] == 64
    assert attrs["compute_dtype"] == "float32"
    base = {"weights": "random", "preprocess": SMALL}
    keys = {
        plan(store, ExtractionRequest.parse("tiny", ["resnet18"], ["penultimate"], **base))
        .entries[0]
        .key,
        plan(
            store,
            ExtractionRequest.parse(
                "tiny", ["resnet18"], ["penultimate"], weights="random", preprocess={"crop": 56}
            ),
        )
        .entries[0]
        .key,
        plan(
            store,
            ExtractionRequest.parse("tiny", ["resnet18"], ["penultimate"], **base, dtype="float32"),
        )
        .entries[0]
        .key,
        plan(
            store,
            ExtractionRequest.parse(
                "tiny", ["resnet18"], ["penultimate"], **base, compute_dtype="bfloat16"
            ),
        )
        .entries[0]
        .key,
        plan(store, ExtractionRequest.parse("tiny", ["resnet18"], ["avgpool"], **base))
        .entries[0]
        .key,
        plan(
            store,
            ExtractionRequest.parse("tiny", ["resnet18"], ["penultimate"], views=["flip"], **base),
        )
        .entries[0]
        .key,
    }
    assert summary["keys"][0] in keys
    assert len(keys) == 6


def test_rerun_computes_nothing_and_loads_no_network(tiny, monkeypatch) -> None:
    url, _ = tiny
    store = open_store(url)
    request = ExtractionRequest.parse(
        "tiny",
        ["resnet18", "alexnet"],
        ["penultimate"],
        ["avg", "max"],
        ["plain", "flip"],
        weights="random",
        preprocess=SMALL,
    )
    first = extract(store, request)
    assert first["entries"] == 4
    assert first["computed_chunks"] > 0

    def no_load(*a, **k):
        raise AssertionError("a cached run must not load a network")

    monkeypatch.setattr("featstore.extract.pipeline.load_model", no_load)
    again = extract(store, request)
    assert (again["forward_batches"], again["computed_chunks"], again["complete_before"]) == (
        0,
        0,
        4,
    )
    assert again["skipped_chunks"] == first["computed_chunks"]


def test_only_missing_chunks_are_computed(tiny) -> None:
    url, _ = tiny
    store = open_store(url)
    kw = {"weights": "random", "preprocess": SMALL, "chunk_rows": 4}
    first = extract(
        store,
        ExtractionRequest.parse("tiny", ["resnet18"], ["layer2"], "avg", ["plain"], **kw),
        batch_size=4,
    )
    entry = store.get_entry(first["keys"][0])
    before = entry.read()
    entry.invalidate_chunk(1)
    entry.invalidate_chunk(4)
    again = extract(
        store,
        ExtractionRequest.parse("tiny", ["resnet18"], ["layer2"], "avg", ["plain"], **kw),
        batch_size=4,
    )
    assert (again["computed_chunks"], again["forward_batches"], again["images"]) == (2, 2, 8)
    np.testing.assert_array_equal(store.get_entry(first["keys"][0]).read(), before)


def test_worker_processes_give_the_same_features(tiny) -> None:
    url, _ = tiny
    store = open_store(url)
    kw = {"weights": "random", "preprocess": SMALL, "chunk_rows": 8}
    threaded = extract(
        store,
        ExtractionRequest.parse("tiny", ["resnet18"], ["layer2"], "max", ["plain"], **kw),
        num_workers=0,
        batch_size=6,
    )
    reference = store.get_entry(threaded["keys"][0]).read()
    store.delete_entry(threaded["keys"][0])
    forked = extract(
        store,
        ExtractionRequest.parse("tiny", ["resnet18"], ["layer2"], "max", ["plain"], **kw),
        num_workers=2,
        batch_size=6,
    )
    assert forked["keys"] == threaded["keys"]
    assert forked["timings"]["workers"] == 2
    np.testing.assert_array_equal(store.get_entry(forked["keys"][0]).read(), reference)


def test_complete_entry_left_writing_is_marked_complete(tiny) -> None:
    url, _ = tiny
    store = open_store(url)
    kw = {"weights": "random", "preprocess": SMALL}
    key = extract(store, ExtractionRequest.parse("tiny", ["resnet18"], ["fc"], **kw))["keys"][0]
    store.get_entry(key).update_attrs(status="writing")  # killed between last chunk and status
    assert (
        extract(store, ExtractionRequest.parse("tiny", ["resnet18"], ["fc"], **kw))[
            "forward_batches"
        ]
        == 0
    )
    assert store.get_entry(key).attrs["status"] == "complete"


def test_each_image_is_decoded_once_for_all_networks(tiny, monkeypatch) -> None:
    url, ds = tiny
    calls: list[int] = []
    real = type(ds).load_image_checked
    monkeypatch.setattr(
        type(ds), "load_image_checked", lambda self, i: calls.append(i) or real(self, i)
    )
    summary = extract(
        open_store(url),
        ExtractionRequest.parse(
            ds,
            ["resnet18", "alexnet"],
            ["penultimate"],
            "avg",
            ["plain", "flip"],
            weights="random",
            preprocess=SMALL,
        ),
        batch_size=8,
    )
    assert sorted(calls) == list(range(ds.n))
    assert (
        summary["forward_batches"] == 2 * 3
    )  # two networks, three batches, flip in the same forward


def test_crops_view_patches(tiny) -> None:
    url, ds = tiny
    store = open_store(url)
    summary = extract(
        store,
        ExtractionRequest.parse(
            "tiny",
            ["resnet18"],
            ["layer4"],
            "max",
            ["crops:1x1,2x2"],
            weights="random",
            preprocess=SMALL,
        ),
        batch_size=4,
    )
    cached = store.get_entry(summary["keys"][0]).read()
    assert cached.shape == (ds.n, 5, 512)
    # patch 3 (second row, first column of the 2x2 grid) of image 7, by hand
    img = ds.load_image(7)
    w, h = img.size
    box = (0, round(h / 3), round(2 * w / 3), round(h / 3 + 2 * h / 3))
    x = T.Compose(
        [
            T.Resize((64, 64)),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )(img.crop(box))[None]
    net = load_model("resnet18", "random").module
    got = {}
    net.layer4.register_forward_hook(
        lambda m, i, o: got.__setitem__("v", o.amax(dim=(2, 3))) and None
    )
    with torch.no_grad():
        net(x)
    _close_fp16(cached[7, 3], got["v"][0].numpy())


def test_plan_refuses_when_disk_lacks_room(tiny, monkeypatch) -> None:
    url, _ = tiny
    store = open_store(url)
    p = plan(
        store,
        ExtractionRequest.parse(
            "tiny", ["resnet18"], ["layer1"], "none", ["plain"], weights="random", preprocess=SMALL
        ),
    )
    assert p.missing_bytes == 24 * 64 * 16 * 16 * 2
    assert len(p.todo) == 1
    monkeypatch.setattr(type(store), "free_bytes", lambda self: 1000)
    with pytest.raises(InsufficientSpaceError, match="free"):
        extract(
            store,
            ExtractionRequest.parse(
                "tiny",
                ["resnet18"],
                ["layer1"],
                "none",
                ["plain"],
                weights="random",
                preprocess=SMALL,
            ),
        )
    assert store.entry_keys() == []


def test_lookup_finds_what_extract_wrote(tiny) -> None:
    url, _ = tiny
    store = open_store(url)
    with pytest.raises(EntryNotFoundError, match="featstore extract -d tiny -m resnet18 -l fc"):
        lookup(store, "tiny", "resnet18", "fc", weights="random", preprocess=SMALL)
    summary = extract(
        store,
        ExtractionRequest.parse("tiny", ["resnet18"], ["fc"], weights="random", preprocess=SMALL),
    )
    assert (
        lookup(store, "tiny", "resnet18", "fc", weights="random", preprocess=SMALL).key
        == summary["keys"][0]
    )


def test_bad_requests_fail_before_anything_is_written(tiny) -> None:
    url, _ = tiny
    store = open_store(url)
    with pytest.raises(UnknownLayerError, match="featstore models layers resnet18"):
        extract(store, ExtractionRequest.parse("tiny", ["resnet18"], ["layer9"], weights="random"))
    with pytest.raises(SpecError, match="only takes 224x224"):
        extract(
            store,
            ExtractionRequest.parse(
                "tiny", ["efficientnet_lite0"], ["penultimate"], preprocess={"crop": 64}
            ),
        )
    with pytest.raises(SpecError, match="pooling"):
        extract(
            store,
            ExtractionRequest.parse(
                "tiny", ["resnet18"], ["layer4"], "grid:max:2", ["crops:2x2"], weights="random"
            ),
        )
    assert store.entry_keys() == []


def test_device_and_precision_selection() -> None:
    cpu = resolve_compute("auto", cuda_available=False)
    assert (cpu.device, cpu.compute_dtype, cpu.channels_last, cpu.autocast_dtype) == (
        "cpu",
        "float32",
        False,
        None,
    )
    gpu = resolve_compute("auto", cuda_available=True)
    assert (gpu.device, gpu.compute_dtype, gpu.channels_last) == ("cuda", "float16-amp", True)
    assert gpu.autocast_dtype == torch.float16
    assert resolve_compute("auto", amp=False, cuda_available=True).compute_dtype == "float32"
    assert resolve_compute("cpu", amp=True, cuda_available=True).compute_dtype == "bfloat16"
    assert resolve_compute("cuda:1", compute_dtype="bf16", cuda_available=True).device == "cuda:1"
    with pytest.raises(ExtractionError, match="no CUDA device"):
        resolve_compute("cuda", cuda_available=False)
    with pytest.raises(SpecError, match="needs a CUDA device"):
        resolve_compute("cpu", compute_dtype="float16-amp", cuda_available=False)
    with pytest.raises(SpecError):
        resolve_compute("tpu")


def test_bfloat16_compute_is_its_own_factor(tiny) -> None:
    url, _ = tiny
    store = open_store(url)
    kw = {"weights": "random", "preprocess": SMALL}
    fp32 = extract(store, ExtractionRequest.parse("tiny", ["resnet18"], ["penultimate"], **kw))
    bf16 = extract(
        store,
        ExtractionRequest.parse(
            "tiny", ["resnet18"], ["penultimate"], compute_dtype="bfloat16", **kw
        ),
    )
    assert fp32["keys"] != bf16["keys"]
    a = store.get_entry(fp32["keys"][0]).read().astype(np.float32)
    b = store.get_entry(bf16["keys"][0]).read().astype(np.float32)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.98
    assert store.get_entry(bf16["keys"][0]).attrs["compute_dtype"] == "bfloat16"


CHILD = textwrap.dedent("""
    import sys, time
    from featstore.extract import ExtractionRequest, extract
    from featstore.store import open_store

    def progress(done, total, info):
        print("progress", done, total, flush=True)
        if done >= total // 2:
            time.sleep(60)  # wait here to be killed; the writer thread flushes meanwhile

    request = ExtractionRequest.parse(
        "tiny", ["resnet18"], ["layer3", "penultimate"], "avg", ["plain", "flip"], weights="random",
        preprocess={"resize": 72, "crop": 64}, chunk_rows=4,
    )
    extract(open_store(sys.argv[1]), request, batch_size=4, progress=progress)
""")


def test_killed_run_resumes_to_identical_features(tiny, tmp_path) -> None:
    url, ds = tiny
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(script), url], stdout=subprocess.PIPE, text=True, env=env
    )
    for line in proc.stdout:
        done, total = map(int, line.split()[1:3])
        if done >= total // 2:
            import time

            time.sleep(3)  # let the writer finish the queued chunks
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    store = open_store(url)
    kw = {"weights": "random", "preprocess": SMALL, "chunk_rows": 4}
    p = plan(
        store,
        ExtractionRequest.parse(
            "tiny", ["resnet18"], ["layer3", "penultimate"], "avg", ["plain", "flip"], **kw
        ),
    )
    missing = [len(e.missing_chunks) for e in p.entries]
    assert all(e.exists for e in p.entries)
    assert missing == [3, 3, 3, 3]
    assert all(store.get_entry(e.key).attrs["status"] == "writing" for e in p.entries)
    resumed = extract(
        store,
        ExtractionRequest.parse(
            "tiny", ["resnet18"], ["layer3", "penultimate"], "avg", ["plain", "flip"], **kw
        ),
        batch_size=4,
    )
    assert (resumed["computed_chunks"], resumed["forward_batches"], resumed["images"]) == (
        12,
        3,
        12,
    )

    other = open_store(str(tmp_path / "uninterrupted.zarr"))
    other.put_dataset(ds)
    full = extract(
        other,
        ExtractionRequest.parse(
            "tiny", ["resnet18"], ["layer3", "penultimate"], "avg", ["plain", "flip"], **kw
        ),
        batch_size=4,
    )
    assert full["keys"] == resumed["keys"]
    for key in full["keys"]:
        assert store.get_entry(key).attrs["status"] == "complete"
        np.testing.assert_array_equal(store.get_entry(key).read(), other.get_entry(key).read())


def test_cli_extract_then_nothing_to_compute(tiny) -> None:
    from featstore.cli.main import cli

    url, _ = tiny
    args = [
        "extract",
        "--store",
        url,
        "-d",
        "tiny",
        "-m",
        "resnet18",
        "-l",
        "penultimate,layer3",
        "--weights",
        "random",
        "--resize",
        "72",
        "--crop",
        "64",
        "--view",
        "plain,flip",
        "--batch-size",
        "8",
    ]
    runner = CliRunner()
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "plan: 4 entries for dataset tiny (24 images), 0 cached" in first.output
    assert "done: 4 entries complete" in first.output
    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "nothing to compute: all 4 entries are cached" in again.output
    as_json = runner.invoke(cli, [*args, "--json"])
    assert json.loads(as_json.output)["forward_batches"] == 0
    bad = runner.invoke(
        cli,
        [
            "extract",
            "--store",
            url,
            "-d",
            "tiny",
            "-m",
            "resnet18",
            "-l",
            "layer9",
            "--weights",
            "random",
        ],
    )
    assert bad.exit_code == 1
    assert "resnet18 has no layer 'layer9'" in bad.output
    assert "featstore models layers resnet18" in bad.output


def test_cli_option_parsing() -> None:
    from featstore.extract.options import pooling_by_layer as parse_pool_options
    from featstore.extract.options import weights_by_model as parse_weights_options

    assert parse_pool_options(("max,gem:3", "layer3=grid:max:3", "layer3=avg")) == {
        "*": ["max", "gem:3"],
        "layer3": ["grid:max:3", "avg"],
    }
    assert parse_pool_options(()) == {"*": ["avg"]}
    assert parse_weights_options((), ["resnet18"]) is None
    assert parse_weights_options(("random",), ["resnet18"]) == {"*": "random"}
    assert parse_weights_options(
        ("resnet18=/w/a.pth", "alexnet=/w/b.pth"), ["resnet18", "alexnet"]
    ) == {
        "resnet18": "/w/a.pth",
        "alexnet": "/w/b.pth",
    }


def test_cli_models_list_and_layers() -> None:
    from featstore.cli.main import cli

    runner = CliRunner()
    listed = runner.invoke(cli, ["models", "list", "--json"])
    assert listed.exit_code == 0
    rows = {r["name"]: r for r in json.loads(listed.output)}
    assert rows["efficientnet_lite0"]["weights_available"] is True
    assert "vgg16" in rows
    layers = runner.invoke(cli, ["models", "layers", "alexnet"])
    assert layers.exit_code == 0
    assert "fc7          classifier.5  4096" in layers.output
    assert "features.12" in layers.output
    assert "256x6x6" in layers.output
    unknown = runner.invoke(cli, ["models", "layers", "resnet51"])
    assert unknown.exit_code == 1
    assert "Did you mean: resnet50" in unknown.output
