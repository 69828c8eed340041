"""Benchmark layouts read from replicas of their official files: classes, split counts, labels.

Every number below is worked out from what ``benchmark_replicas`` writes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import benchmark_replicas as rep
import numpy as np
import pytest

from featstore.datasets import dataset_from_source
from featstore.datasets.benchmarks import VOC_CLASSES
from featstore.errors import DatasetError


def labels_by_split(ds) -> dict[str, list[int]]:
    return {s: ds.labels[ds.split_indices(s)].tolist() for s in ds.split_names}


def test_voc2007_multilabel_with_difficult_flags(tmp_path: Path) -> None:
    voc = rep.voc2007(tmp_path)
    ds = dataset_from_source("voc", f"voc2007:{voc}")
    assert ds.classes == list(VOC_CLASSES)
    assert ds.multilabel
    assert ds.labels.shape == (16, 20)
    assert ds.split_counts() == {"trainval": 10, "test": 6}
    row = {image_id: ds.labels[i] for i, image_id in enumerate(ds.ids)}
    k = VOC_CLASSES.index
    assert row["000001"][k("dog")] == 1
    assert row["000001"][k("cat")] == -1
    assert row["000003"][k("cat")] == 1  # one non-difficult cat is enough
    assert row["000004"][k("bottle")] == -1
    assert row["000004"][k("person")] == 1
    assert ds.splits[ds.ids.index("000004")] == ds.split_names.index("test")
    assert int((row["000002"] != 0).sum()) == 3  # person, chair, bottle; the others absent
    assert ds.source["scheme"] == "voc2007"
    assert "difficult" in ds.source["protocol"]
    # the folder above (VOCdevkit) is accepted too, and gives the same dataset
    assert dataset_from_source("voc", f"voc2007:{voc.parent}").id == ds.id


def test_flowers102_from_mat_files(tmp_path: Path) -> None:
    ds = dataset_from_source("fl", f"flowers102:{rep.flowers102(tmp_path)}")
    assert ds.classes == ["1", "2", "3"]
    assert ds.split_counts() == {"train": 3, "val": 3, "test": 6}
    assert labels_by_split(ds) == {"train": [0, 1, 2], "val": [0, 1, 2], "test": [0, 1, 2, 0, 1, 2]}
    assert ds.ids[0] == "jpg/image_00001.jpg"


def test_pets_breeds_from_annotation_files(tmp_path: Path) -> None:
    ds = dataset_from_source("pets", f"pets:{rep.pets(tmp_path)}")
    assert ds.classes == rep.PETS
    assert ds.split_counts() == {"trainval": 6, "test": 3}
    assert labels_by_split(ds) == {"trainval": [0, 0, 1, 1, 2, 2], "test": [0, 1, 2]}


def test_cub200_split_file(tmp_path: Path) -> None:
    ds = dataset_from_source("cub", f"cub200:{rep.cub200(tmp_path)}")
    assert ds.classes == ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    assert ds.split_counts() == {"train": 4, "test": 2}
    assert labels_by_split(ds) == {"train": [0, 0, 1, 1], "test": [0, 1]}
    # the parent of CUB_200_2011 works as well
    assert dataset_from_source("cub", f"cub200:{tmp_path}").id == ds.id


def test_mit67_lists_leave_unlisted_images_out(tmp_path: Path) -> None:
    ds = dataset_from_source("mit", f"mit67:{rep.mit67(tmp_path)}")
    assert ds.classes == ["airport_inside", "bar", "kitchen"]
    assert ds.split_counts() == {"train": 6, "test": 3}
    assert ds.n == 9
    assert labels_by_split(ds)["test"] == [2, 1, 0]


def test_sun397_folds(tmp_path: Path) -> None:
    root = rep.sun397(tmp_path / "sun")
    first = dataset_from_source("sun", f"sun397:{root}")
    assert first.classes == ["abbey", "bakery/shop", "beach"]
    assert first.split_counts() == {"train": 6, "test": 6}
    assert first.source["fold"] == 1
    assert first.ids[0] == "a/abbey/sun_00.jpg"
    second = dataset_from_source("sun", f"sun397:{root}?fold=2")
    assert second.source["fold"] == 2
    assert "partition 2 of 10" in second.source["protocol"]
    train2 = {second.ids[i] for i in second.split_indices("train")}
    assert "a/abbey/sun_02.jpg" in train2
    assert "a/abbey/sun_00.jpg" not in train2
    assert second.fingerprint != first.fingerprint
    with pytest.raises(
        DatasetError, match=r"no Partitions/Training_03.txt under .*sun397: expects"
    ):
        dataset_from_source("sun", f"sun397:{root}?fold=3")
    with pytest.raises(DatasetError, match=r"option fold=11 is out of range \(1..10\)"):
        dataset_from_source("sun", f"sun397:{root}?fold=11")


def test_dtd_folds(tmp_path: Path) -> None:
    root = rep.dtd(tmp_path)
    ds = dataset_from_source("dtd", f"dtd:{root}")
    assert ds.classes == ["banded", "zigzagged"]
    assert ds.split_counts() == {"train": 2, "val": 2, "test": 2}
    assert ds.ids[:2] == ["banded/banded_0000.jpg", "zigzagged/zigzagged_0000.jpg"]
    two = dataset_from_source("dtd", f"dtd:{root}?fold=2")
    assert two.ids[:2] == ["banded/banded_0001.jpg", "zigzagged/zigzagged_0001.jpg"]


def test_food101_meta_lists(tmp_path: Path) -> None:
    ds = dataset_from_source("food", f"food101:{rep.food101(tmp_path)}")
    assert ds.classes == ["apple_pie", "baby_back_ribs"]
    assert ds.split_counts() == {"train": 4, "test": 2}
    assert labels_by_split(ds) == {"train": [0, 0, 1, 1], "test": [0, 1]}


def test_caltech101_seeded_per_class_protocol(tmp_path: Path) -> None:
    root = rep.caltech101(tmp_path)
    with pytest.raises(DatasetError, match=r"class Faces has 5 images, too few for 30 train"):
        dataset_from_source("cal", f"caltech101:{root}")
    ds = dataset_from_source("cal", f"caltech101:{root}?train=2")
    assert ds.classes == ["Faces", "accordion", "airplanes"]  # background left out
    assert ds.split_counts() == {"train": 6, "test": 8}  # 3 x 2 train; 3 + 1 + 4 test
    assert np.bincount(ds.labels[ds.split_indices("train")]).tolist() == [2, 2, 2]
    assert ds.source["protocol"] == (
        "Caltech-101: 2 train/class, the rest test, seed 0, background class excluded"
    )
    assert dataset_from_source("cal", f"caltech101:{root}?train=2").id == ds.id  # seeded
    bg = dataset_from_source("cal", f"caltech101:{root}?train=2&background=1")
    assert bg.classes[0] == "BACKGROUND_Google"
    assert bg.split_counts() == {"train": 8, "test": 10}

    def faces(d) -> list[str]:
        return sorted(d.ids[i] for i in d.split_indices("train") if d.ids[i].startswith("Faces/"))

    assert faces(bg) == faces(ds)  # including a class never moves another class's split
    other = [dataset_from_source("cal", f"caltech101:{root}?train=2&seed={s}") for s in (1, 2, 3)]
    assert any(faces(o) != faces(ds) for o in other)


def test_stanford40_per_action_lists(tmp_path: Path) -> None:
    ds = dataset_from_source("act", f"stanford40:{rep.stanford40(tmp_path)}")
    assert ds.classes == ["applauding", "blowing_bubbles"]
    assert ds.split_counts() == {"train": 4, "test": 2}
    assert ds.ids[0] == "JPEGImages/applauding_001.jpg"


def test_cars_through_torchvision_layout(tmp_path: Path) -> None:
    base = rep.cars(tmp_path)
    ds = dataset_from_source("cars", f"cars:{base.parent}")
    assert ds.classes == ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
    assert ds.split_counts() == {"train": 3, "test": 2}
    assert labels_by_split(ds) == {"train": [0, 1, 1], "test": [0, 1]}
    assert ds.ids[:2] == ["cars_train/00001.jpg", "cars_train/00002.jpg"]
    assert (
        dataset_from_source("cars", f"cars:{base}").id == ds.id
    )  # the stanford_cars folder itself


def test_aircraft_levels(tmp_path: Path) -> None:
    base = rep.aircraft(tmp_path)
    ds = dataset_from_source("air", f"aircraft:{base}")
    assert ds.classes == ["707-320", "727-200", "A300B4"]
    assert ds.split_counts() == {"train": 3, "val": 1, "test": 2}
    assert labels_by_split(ds) == {"train": [0, 1, 2], "val": [0], "test": [2, 1]}
    family = dataset_from_source("air", f"aircraft:{base}?level=family")
    assert family.classes == ["A300", "Boeing 707", "Boeing 727"]
    assert family.source["level"] == "family"
    maker = dataset_from_source("air", f"aircraft:{tmp_path}?level=manufacturer")
    assert maker.classes == ["Airbus", "Boeing"]
    assert labels_by_split(maker) == {"train": [1, 1, 0], "val": [1], "test": [0, 1]}
    with pytest.raises(
        DatasetError, match=r"option level='model' is not one of variant, family, manufacturer"
    ):
        dataset_from_source("air", f"aircraft:{base}?level=model")


def test_two_downloads_of_one_dataset_share_the_fingerprint(tmp_path: Path) -> None:
    mine = rep.voc2007(tmp_path / "mine")
    theirs = tmp_path / "theirs"
    shutil.copytree(tmp_path / "mine", theirs)
    a = dataset_from_source("voc", f"voc2007:{mine}")
    b = dataset_from_source("voc", f"voc2007:{theirs / 'VOCdevkit' / 'VOC2007'}")
    assert a.fingerprint == b.fingerprint
    assert a.refs != b.refs
    rep.image(theirs / "VOCdevkit/VOC2007/JPEGImages/000002.jpg", seed=4242)  # other bytes
    assert dataset_from_source("voc", f"voc2007:{theirs}").fingerprint != a.fingerprint


# --- bad layouts -------------------------------------------------------------------------
BAD_LAYOUTS = [  # scheme, builder, file to remove (relative to the source folder), message
    ("voc2007", rep.voc2007, "ImageSets/Main/trainval.txt",
     r"no ImageSets/Main/trainval.txt under .*VOC2007: voc2007: expects the VOC2007 folder inside VOCdevkit"),
    ("voc2007", rep.voc2007, "Annotations/000003.xml", r"no Annotations/000003.xml under .*every image of"),
    ("voc2007", rep.voc2007, "JPEGImages/000002.jpg", r"voc2007: ImageSets/Main lists image .*000002.jpg, which does not exist"),
    ("flowers102", rep.flowers102, "setid.mat", r"no setid.mat under .*flowers102: expects jpg/image_NNNNN.jpg"),
    ("pets", rep.pets, "annotations/test.txt", r"no annotations/test.txt under .*pets: expects images/"),
    ("cub200", rep.cub200, "train_test_split.txt", r"no train_test_split.txt under .*cub200: expects CUB_200_2011/"),
    ("mit67", rep.mit67, "TestImages.txt", r"no TestImages.txt under .*mit67: expects Images/<class>"),
    ("dtd", rep.dtd, "labels/val1.txt", r"no labels/val1.txt under .*dtd: expects images/<class>"),
    ("food101", rep.food101, "meta/classes.txt", r"no meta/classes.txt under .*food101: expects"),
    ("stanford40", rep.stanford40, "ImageSplits/blowing_bubbles_test.txt", r"no ImageSplits/blowing_bubbles_test.txt under"),
    ("caltech101", rep.caltech101, "101_ObjectCategories", r"no 101_ObjectCategories under .*caltech101: expects"),
    ("cars", rep.cars, "devkit", r"no stanford_cars/devkit under .*cars: expects stanford_cars/"),
    ("cars", rep.cars, "cars_test_annos_withlabels.mat", r"no cars_test_annos_withlabels.mat \(or cars_test/\) under"),
    ("aircraft", rep.aircraft, "data/images_variant_val.txt", r"no data/images_variant_val.txt under .*aircraft: expects"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scheme", "build", "remove", "message"),
    BAD_LAYOUTS,
    ids=[f"{b[0]}-{b[2]}" for b in BAD_LAYOUTS],
)
def test_bad_layouts_name_the_missing_file_and_the_layout(
    tmp_path: Path, scheme, build, remove, message
) -> None:
    folder = build(tmp_path)
    target = folder / remove
    shutil.rmtree(target) if target.is_dir() else os.remove(target)
    with pytest.raises(DatasetError, match=message):
        dataset_from_source("bad", f"{scheme}:{folder}")


def test_source_errors(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"voc2007: source .*nowhere does not exist; voc2007: reads VOCdevkit"
    ):
        dataset_from_source("x", f"voc2007:{tmp_path / 'nowhere'}")
    with pytest.raises(DatasetError, match=r"needs a path after 'pets:'"):
        dataset_from_source("x", "pets:")
    with pytest.raises(DatasetError, match=r"pets: takes no option 'fold' \(its options: none\)"):
        dataset_from_source("x", f"pets:{tmp_path}?fold=2")
    with pytest.raises(DatasetError, match=r"option 'fold' is not key=value"):
        dataset_from_source("x", f"dtd:{tmp_path}?fold")
