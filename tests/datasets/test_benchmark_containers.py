"""Images that live in arrays or containers: CIFAR pickle batches, Hugging Face datasets
(save_to_disk and parquet), webdataset tar shards. Each image is a provider ref that
``load_image`` opens again, hashed per image like a file.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import benchmark_replicas as rep
import numpy as np
import pytest

from featstore.datasets import dataset_from_source
from featstore.datasets.benchmarks.hub import expand_braces
from featstore.datasets.images import load_image
from featstore.datasets.registry import image_digest
from featstore.errors import BadImageError, DatasetError


def test_cifar10_batches(tmp_path: Path) -> None:
    folder = rep.cifar10(tmp_path)
    ds = dataset_from_source("c10", f"cifar10:{folder}")
    assert ds.classes == ["airplane", "automobile", "bird"]
    assert ds.split_counts() == {"train": 20, "test": 3}
    assert ds.ids[0] == "train/00000"
    assert ds.ids[-1] == "test/00002"
    assert ds.labels[:4].tolist() == [1, 2, 0, 1]  # batch 1: (1 + i) % 3
    assert ds.labels[ds.split_indices("test")].tolist() == [2, 1, 0]
    # the stored ref opens again, with the batch's pixels (row 2 of data_batch_3)
    row = ds.ids.index("train/00010")
    assert ds.refs[row].startswith("builtin:cifar/")
    assert ds.refs[row].endswith("data_batch_3#2")
    pixels = rep.cifar_pixels(3, 4)[2].reshape(3, 32, 32).transpose(1, 2, 0)
    image = load_image(ds.refs[row])
    np.testing.assert_array_equal(np.asarray(image), pixels)
    assert image_digest(image) == hashlib.sha256(b"RGB(32, 32)" + pixels.tobytes()).hexdigest()
    # the parent folder works; a copy elsewhere gets the same fingerprint
    assert dataset_from_source("c10", f"cifar10:{tmp_path}").id == ds.id
    shutil.copytree(folder, tmp_path / "copy" / "cifar-10-batches-py")
    assert dataset_from_source("c10", f"cifar10:{tmp_path / 'copy'}").fingerprint == ds.fingerprint


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    folder = rep.cifar100(tmp_path)
    fine = dataset_from_source("c100", f"cifar100:{folder}")
    assert fine.classes == ["apple", "aquarium_fish", "baby", "bear"]
    assert fine.split_counts() == {"train": 5, "test": 2}
    assert fine.labels.tolist() == [0, 1, 2, 3, 0, 3, 2]
    coarse = dataset_from_source("c100", f"cifar100:{folder}?label=coarse")
    assert coarse.classes == ["fruit", "people"]
    assert coarse.labels.tolist() == [0, 0, 1, 1, 0, 1, 1]
    assert coarse.fingerprint != fine.fingerprint


def test_cifar_errors(tmp_path: Path) -> None:
    folder = rep.cifar10(tmp_path)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match=r"no data_batch_4 under .*cifar10"):
        dataset_from_source("c10", f"cifar10:{folder}")
    with pytest.raises(
        DatasetError, match=r"no batches.meta under .*cifar10: expects cifar-10-batches-py/"
    ):
        dataset_from_source("c10", f"cifar10:{tmp_path / 'cifar-10-batches-py' / '..' / '..'}")
    (folder / "data_batch_4").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="is not a readable CIFAR pickle batch"):
        dataset_from_source("c10", f"cifar10:{folder}")


def _hf_dataset():
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])}
    )

    def split(seeds: list[int], labels: list[int]):
        from PIL import Image

        images = [
            Image.fromarray(np.random.default_rng(s).integers(0, 256, (12, 10, 3), dtype=np.uint8))
            for s in seeds
        ]
        return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)

    return datasets.DatasetDict(
        {"train": split([1, 2, 3, 4], [0, 1, 1, 0]), "test": split([5, 6], [1, 0])}
    )


def test_hf_save_to_disk(tmp_path: Path) -> None:
    _hf_dataset().save_to_disk(str(tmp_path / "hfds"))
    ds = dataset_from_source("hfd", f"hf:{tmp_path / 'hfds'}")
    assert ds.classes == ["cat", "dog"]  # ClassLabel names
    assert ds.split_counts() == {"train": 4, "test": 2}
    assert ds.labels.tolist() == [0, 1, 1, 0, 1, 0]
    assert ds.ids[4] == "test/000000"
    expected = np.random.default_rng(5).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(load_image(ds.refs[4])), expected)  # PNG: lossless
    one = dataset_from_source(
        "hfd", f"hf:{tmp_path / 'hfds' / 'test'}?split=test"
    )  # a single Dataset
    assert one.split_counts() == {"test": 2}
    assert one.ids == ds.ids[4:]


def test_hf_parquet_with_named_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "pq" / "data"
    folder.mkdir(parents=True)
    for split, seeds in (("train", [1, 2, 3]), ("test", [4, 5])):
        table = pa.table({
            "img": [{"bytes": rep.jpeg_bytes(s), "path": None} for s in seeds],
            "species": ["owl" if s % 2 else "emu" for s in seeds],
        })  # fmt: skip
        pq.write_table(table, folder / f"{split}-00000-of-00001.parquet")
    with pytest.raises(DatasetError, match=r"has no column 'picture' \(columns: img, species\)"):
        dataset_from_source("p", f"hf:{tmp_path / 'pq'}?label=species&image=picture")
    with pytest.raises(
        DatasetError, match=r"has no label column named label or labels .*\?label=COLUMN"
    ):
        dataset_from_source("p", f"hf:{tmp_path / 'pq'}")
    ds = dataset_from_source("p", f"hf:{tmp_path / 'pq'}?image=img&label=species")
    assert ds.classes == ["emu", "owl"]  # no ClassLabel names: the label strings, sorted
    assert ds.split_counts() == {"test": 2, "train": 3}  # files in name order: test-, train-
    assert ds.labels.tolist() == [0, 1, 1, 0, 1]  # test: seeds 4 (emu), 5 (owl); train: 1, 2, 3
    assert ds.source["image_column"] == "img"
    assert load_image(ds.refs[0]).size == rep.SIZE
    with pytest.raises(DatasetError, match=r"hf: takes no option 'labels'"):
        dataset_from_source("p", f"hf:{tmp_path / 'pq'}?labels=species")


def test_hf_parquet_written_by_datasets_keeps_class_names(tmp_path: Path) -> None:
    dd = _hf_dataset()
    (tmp_path / "exp").mkdir()
    for split, part in dd.items():
        part.to_parquet(str(tmp_path / "exp" / f"{split}.parquet"))
    ds = dataset_from_source("e", f"hf:{tmp_path / 'exp'}")
    assert ds.classes == ["cat", "dog"]
    assert ds.split_counts() == {"test": 2, "train": 4}
    saved = dataset_from_source("s", f"hf:{_saved(dd, tmp_path)}")
    # the same images and labels from either container: the same image hashes, so the same
    # features; fingerprints differ only by store order (test rows come first here)
    assert sorted(zip(ds.ids, ds.labels.tolist(), strict=True)) == sorted(
        zip(saved.ids, saved.labels.tolist(), strict=True)
    )


def _saved(dd, tmp_path: Path) -> Path:
    dd.save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


def test_expand_braces() -> None:
    assert expand_braces("/d/s-{000..002}.tar") == ["/d/s-000.tar", "/d/s-001.tar", "/d/s-002.tar"]
    assert expand_braces("{train,test}-{0..1}.tar") == [
        "train-0.tar",
        "train-1.tar",
        "test-0.tar",
        "test-1.tar",
    ]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_wds_shards(tmp_path: Path) -> None:
    root = rep.wds_shards(tmp_path / "shards")
    ds = dataset_from_source("w", f"wds:{root}/{{train-{{000..001}},test-000}}.tar")
    assert ds.classes == ["0", "1"]
    assert ds.split_counts() == {"train": 6, "test": 2}
    assert ds.labels.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert ds.ids[0] == "train-000_0000"
    assert ds.refs[0].endswith("train-000.tar#train-000_0000.png")
    assert load_image(ds.refs[7]).tobytes() == load_image(ds.refs[7]).tobytes()
    import io

    from PIL import Image

    expected = Image.open(io.BytesIO(rep.jpeg_bytes(1307))).convert("RGB")
    assert load_image(ds.refs[7]).tobytes() == expected.tobytes()
    assert ds.source["shards"] == 3
    forced = dataset_from_source("w", f"wds:{root}/train-000.tar?split=val")
    assert forced.split_counts() == {"val": 3}
    with pytest.raises(
        DatasetError, match=r"wds: shard .*train-002.tar does not exist \(1 of 3 missing\)"
    ):
        dataset_from_source("w", f"wds:{root}/train-{{000..002}}.tar")
    with pytest.raises(DatasetError, match=r"lacks png and .txt"):
        dataset_from_source("w", f"wds:{root}/test-000.tar?label=txt")


def test_bad_image_inside_a_container_is_named_and_skippable(tmp_path: Path) -> None:
    import io
    import tarfile

    root = tmp_path / "bad"
    root.mkdir()
    with tarfile.open(root / "train-000.tar", "w") as tar:
        for key, payload in (("a", rep.jpeg_bytes(1)), ("b", b"not an image")):
            for ext, data in (("png", payload), ("cls", b"0")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    source = f"wds:{root}/train-000.tar"
    with pytest.raises(
        BadImageError, match=r"builtin:wds/.*train-000.tar#b.png is not a readable image"
    ):
        dataset_from_source("w", source)
    ds = dataset_from_source("w", source, skip_bad=True)
    assert ds.ids == ["a"]
    assert "b.png" in ds.skipped[0]["path"]
