"""Tiny replicas of the benchmarks' official layouts, in their real file formats.

Each builder writes a few generated images per class plus the dataset's own annotation
files (XML, ``.mat`` via scipy.io.savemat, pickles, txt, parquet, tar) and returns the
folder. The numbers the tests assert are worked out from what each builder writes.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

SIZE = (20, 16)  # small, non-square: decoding and hashing stay cheap


def image(path: Path, seed: int, size: tuple[int, int] = SIZE) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        path, quality=90
    )
    return path


def jpeg_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


# --- VOC2007 ----------------------------------------------------------------------------
VOC_OBJECTS = {  # image id -> [(class, difficult)]; the first four are checked exactly
    "000001": [("dog", False), ("dog", True), ("cat", True)],  # dog +1, cat -1 (only difficult)
    "000002": [("person", False), ("chair", False), ("bottle", False)],
    "000003": [("cat", False), ("cat", True), ("bottle", False)],  # cat +1: one is enough
    "000004": [("bottle", True), ("person", False)],  # a test image: bottle -1
}  # bottle is in no generated image: its only test occurrence is the difficult one


def voc_objects(n_trainval: int, n_test: int) -> dict[str, list[tuple[str, bool]]]:
    from featstore.datasets.benchmarks.voc import VOC_CLASSES

    objects = dict(VOC_OBJECTS)
    others = [c for c in VOC_CLASSES if c != "bottle"]
    for i in range(5, n_trainval + n_test + 1):  # each other class appears in both splits
        objects[f"{i:06d}"] = [(others[(3 * i + j) % 19], False) for j in range(4)]
    return objects


def voc2007(root: Path, n_trainval: int = 10, n_test: int = 6) -> Path:
    """VOCdevkit/VOC2007 with ids 000001..; 000004 and the last n_test-1 ids are test."""
    objects = voc_objects(n_trainval, n_test)
    ids = sorted(objects)
    test = {"000004", *ids[len(ids) - n_test + 1 :]}
    voc = root / "VOCdevkit" / "VOC2007"
    for k, image_id in enumerate(ids):
        image(voc / "JPEGImages" / f"{image_id}.jpg", seed=1000 + k)
        parts = "".join(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{int(difficult)}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
            f"<xmax>10</xmax><ymax>10</ymax></bndbox></object>"
            for name, difficult in objects[image_id]
        )
        xml = (
            f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
            f"<size><width>20</width><height>16</height><depth>3</depth></size>{parts}</annotation>"
        )
        (voc / "Annotations").mkdir(parents=True, exist_ok=True)
        (voc / "Annotations" / f"{image_id}.xml").write_text(xml)
    write(voc / "ImageSets/Main/trainval.txt", [i for i in ids if i not in test])
    write(voc / "ImageSets/Main/test.txt", [i for i in ids if i in test])
    return voc


# --- Flowers-102 ------------------------------------------------------------------------
def flowers102(root: Path) -> Path:
    """3 classes x 4 images: ids 1..12, label = (id - 1) % 3 + 1; train 1-3, val 4-6, test 7-12."""
    folder = root / "flowers102"
    for k in range(1, 13):
        image(folder / "jpg" / f"image_{k:05d}.jpg", seed=k)
    savemat(
        folder / "imagelabels.mat", {"labels": np.array([[(k - 1) % 3 + 1 for k in range(1, 13)]])}
    )
    savemat(
        folder / "setid.mat",
        {
            "trnid": np.array([[1, 2, 3]]),
            "valid": np.array([[4, 5, 6]]),
            "tstid": np.array([[7, 8, 9, 10, 11, 12]]),
        },
    )
    return folder


# --- Oxford-IIIT Pets -------------------------------------------------------------------
PETS = ["Abyssinian", "american_bulldog", "Bengal"]


def pets(root: Path) -> Path:
    """3 breeds; trainval 2 per breed, test 1 per breed."""
    folder = root / "oxford-iiit-pet"
    lines: dict[str, list[str]] = {"trainval": [], "test": []}
    seed = 0
    for cid, breed in enumerate(PETS, start=1):
        species = 1 if breed[0].isupper() else 2
        for i in range(1, 4):
            name = f"{breed}_{i}"
            image(folder / "images" / f"{name}.jpg", seed=200 + seed)
            seed += 1
            lines["trainval" if i < 3 else "test"].append(f"{name} {cid} {species} {cid}")
    for split, rows in lines.items():
        write(folder / "annotations" / f"{split}.txt", rows)
    return folder


# --- CUB-200-2011 -----------------------------------------------------------------------
def cub200(root: Path) -> Path:
    """2 species x 3 images; image ids 1..6; train_test_split marks ids 1, 2, 4, 5 as train."""
    folder = root / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    images, labels, split = [], [], []
    for k in range(1, 7):
        cls = classes[(k - 1) // 3]
        rel = f"{cls}/{cls[4:]}_{k:04d}.jpg"
        image(folder / "images" / rel, seed=300 + k)
        images.append(f"{k} {rel}")
        labels.append(f"{k} {(k - 1) // 3 + 1}")
        split.append(f"{k} {0 if k in (3, 6) else 1}")
    write(folder / "images.txt", images)
    write(folder / "image_class_labels.txt", labels)
    write(folder / "train_test_split.txt", split)
    write(folder / "classes.txt", [f"{i} {c}" for i, c in enumerate(classes, start=1)])
    return folder


# --- MIT Indoor 67 ----------------------------------------------------------------------
def mit67(root: Path) -> Path:
    """3 scenes x 3 images: 2 train, 1 test each; one image is left out of both lists."""
    folder = root / "indoorCVPR_09"
    train, test = [], []
    for c, scene in enumerate(["kitchen", "bar", "airport_inside"]):
        for i in range(4):
            rel = f"{scene}/int{c}{i}.jpg"
            image(folder / "Images" / rel, seed=400 + 10 * c + i)
            if i < 2:
                train.append(rel)
            elif i == 2:
                test.append(rel)
    write(folder / "TrainImages.txt", train)
    write(folder / "TestImages.txt", test)
    return folder


# --- SUN397 -----------------------------------------------------------------------------
SUN_CLASSES = ["/a/abbey", "/b/bakery/shop", "/b/beach"]


def sun397(root: Path, folds: int = 2) -> Path:
    """3 classes x 4 images; fold K trains on images K-1, K and tests on the other two."""
    for c, cls in enumerate(SUN_CLASSES):
        for i in range(4):
            image(root / "SUN397" / cls.strip("/") / f"sun_{c}{i}.jpg", seed=500 + 10 * c + i)
    write(root / "Partitions" / "ClassName.txt", SUN_CLASSES)
    for fold in range(1, folds + 1):
        train = [
            f"{cls}/sun_{c}{i}.jpg"
            for c, cls in enumerate(SUN_CLASSES)
            for i in range(4)
            if i in (fold - 1, fold)
        ]
        test = [
            f"{cls}/sun_{c}{i}.jpg"
            for c, cls in enumerate(SUN_CLASSES)
            for i in range(4)
            if i not in (fold - 1, fold)
        ]
        write(root / "Partitions" / f"Training_{fold:02d}.txt", train)
        write(root / "Partitions" / f"Testing_{fold:02d}.txt", test)
    return root


# --- DTD --------------------------------------------------------------------------------
def dtd(root: Path) -> Path:
    """2 textures x 3 images; split 1: train/val/test one each; split 2: the rotation."""
    folder = root / "dtd"
    names = {c: [f"{c}/{c}_{i:04d}.jpg" for i in range(3)] for c in ("banded", "zigzagged")}
    for c, rels in names.items():
        for i, rel in enumerate(rels):
            image(folder / "images" / rel, seed=600 + 10 * len(c) + i)
    for fold in (1, 2):
        for s, split in enumerate(("train", "val", "test")):
            write(
                folder / "labels" / f"{split}{fold}.txt",
                [rels[(s + fold - 1) % 3] for rels in names.values()],
            )
    return folder


# --- Food-101 ---------------------------------------------------------------------------
def food101(root: Path) -> Path:
    """2 dishes x 3 images: 2 train, 1 test each."""
    folder = root / "food-101"
    classes = ["apple_pie", "baby_back_ribs"]
    train, test = [], []
    for c, dish in enumerate(classes):
        for i in range(3):
            image(folder / "images" / dish / f"{100 + i}.jpg", seed=700 + 10 * c + i)
            (train if i < 2 else test).append(f"{dish}/{100 + i}")
    write(folder / "meta" / "classes.txt", classes)
    write(folder / "meta" / "train.txt", train)
    write(folder / "meta" / "test.txt", test)
    return folder


# --- Caltech-101 ------------------------------------------------------------------------
CALTECH = {"BACKGROUND_Google": 4, "Faces": 5, "accordion": 3, "airplanes": 6}


def caltech101(root: Path) -> Path:
    """101_ObjectCategories with 4 folders (one the background class) of 3-6 images."""
    folder = root / "caltech101" / "101_ObjectCategories"
    for c, (cls, n) in enumerate(CALTECH.items()):
        for i in range(1, n + 1):
            image(folder / cls / f"image_{i:04d}.jpg", seed=800 + 10 * c + i)
    return root / "caltech101"


# --- Stanford 40 Actions ----------------------------------------------------------------
def stanford40(root: Path) -> Path:
    """2 actions x 3 images: 2 train, 1 test; plus the global train.txt / test.txt."""
    folder = root / "Stanford40"
    for c, action in enumerate(["applauding", "blowing_bubbles"]):
        names = [f"{action}_{i:03d}.jpg" for i in range(1, 4)]
        for i, name in enumerate(names):
            image(folder / "JPEGImages" / name, seed=900 + 10 * c + i)
        write(folder / "ImageSplits" / f"{action}_train.txt", names[:2])
        write(folder / "ImageSplits" / f"{action}_test.txt", names[2:])
    write(folder / "ImageSplits" / "train.txt", ["(all train images)"])  # not a class file
    write(folder / "ImageSplits" / "actions.txt", ["action_name number_of_images"])
    return folder


# --- Stanford Cars (torchvision layout) -------------------------------------------------
def cars(root: Path) -> Path:
    """2 models; train 3 images, test 2 images (class ids 1-based in the .mat files)."""
    base = root / "cars" / "stanford_cars"
    annos = np.dtype(
        [
            ("bbox_x1", "O"),
            ("bbox_y1", "O"),
            ("bbox_x2", "O"),
            ("bbox_y2", "O"),
            ("class", "O"),
            ("fname", "O"),
        ]
    )

    def annotations(rows: list[tuple[str, int]]) -> np.ndarray:
        out = np.zeros((1, len(rows)), dtype=annos)
        for i, (fname, cls) in enumerate(rows):
            out[0, i] = (1, 1, 10, 10, cls, fname)
        return out

    train, test = (
        [("00001.jpg", 1), ("00002.jpg", 2), ("00003.jpg", 2)],
        [("00001.jpg", 1), ("00002.jpg", 2)],
    )
    for folder, rows, offset in (("cars_train", train, 0), ("cars_test", test, 10)):
        for k, (fname, _) in enumerate(rows):
            image(base / folder / fname, seed=1100 + offset + k)
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    savemat(
        base / "devkit" / "cars_meta.mat",
        {
            "class_names": np.array(
                [["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]], dtype=object
            )
        },
    )
    savemat(base / "devkit" / "cars_train_annos.mat", {"annotations": annotations(train)})
    savemat(base / "cars_test_annos_withlabels.mat", {"annotations": annotations(test)})
    return base


# --- FGVC Aircraft (torchvision layout) -------------------------------------------------
AIRCRAFT = [  # image, variant, family, manufacturer, split
    ("0034309", "707-320", "Boeing 707", "Boeing", "train"),
    ("0034958", "727-200", "Boeing 727", "Boeing", "train"),
    ("0037511", "A300B4", "A300", "Airbus", "train"),
    ("0041975", "707-320", "Boeing 707", "Boeing", "val"),
    ("0043499", "A300B4", "A300", "Airbus", "test"),
    ("0045798", "727-200", "Boeing 727", "Boeing", "test"),
]


def aircraft(root: Path) -> Path:
    data = root / "fgvc-aircraft-2013b" / "data"
    for k, (name, *_rest) in enumerate(AIRCRAFT):
        image(data / "images" / f"{name}.jpg", seed=1200 + k)
    for level, col, file in (
        ("variant", 1, "variants"),
        ("family", 2, "families"),
        ("manufacturer", 3, "manufacturers"),
    ):
        write(data / f"{file}.txt", sorted({row[col] for row in AIRCRAFT}))
        for split in ("train", "val", "test", "trainval"):
            rows = [
                r for r in AIRCRAFT if r[4] == split or (split == "trainval" and r[4] != "test")
            ]
            write(data / f"images_{level}_{split}.txt", [f"{r[0]} {r[col]}" for r in rows])
    return root / "fgvc-aircraft-2013b"


# --- CIFAR ------------------------------------------------------------------------------
def _pickle(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(content, handle, protocol=2)


def cifar_pixels(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def cifar10(root: Path, per_batch: int = 4) -> Path:
    """5 train batches of ``per_batch`` images and a test batch of 3; labels cycle 0..2 of 3 names."""
    folder = root / "cifar-10-batches-py"
    for b in range(1, 6):
        _pickle(
            folder / f"data_batch_{b}",
            {
                "batch_label": f"training batch {b} of 5",
                "labels": [(b + i) % 3 for i in range(per_batch)],
                "data": cifar_pixels(b, per_batch),
                "filenames": [f"f{b}_{i}.png" for i in range(per_batch)],
            },
        )
    _pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": [2, 1, 0],
            "data": cifar_pixels(99, 3),
            "filenames": ["t0.png", "t1.png", "t2.png"],
        },
    )
    _pickle(
        folder / "batches.meta",
        {
            "label_names": ["airplane", "automobile", "bird"],
            "num_cases_per_batch": per_batch,
            "num_vis": 3072,
        },
    )
    return folder


def cifar100(root: Path) -> Path:
    """train 5 / test 2 images; fine labels of 4 names, coarse of 2."""
    folder = root / "cifar-100-python"
    _pickle(
        folder / "train",
        {
            "fine_labels": [0, 1, 2, 3, 0],
            "coarse_labels": [0, 0, 1, 1, 0],
            "data": cifar_pixels(7, 5),
        },
    )
    _pickle(
        folder / "test",
        {"fine_labels": [3, 2], "coarse_labels": [1, 1], "data": cifar_pixels(8, 2)},
    )
    _pickle(
        folder / "meta",
        {
            "fine_label_names": ["apple", "aquarium_fish", "baby", "bear"],
            "coarse_label_names": ["fruit", "people"],
        },
    )
    return folder


# --- webdataset -------------------------------------------------------------------------
def wds_shards(root: Path) -> Path:
    """train-000.tar, train-001.tar (3 samples each) and test-000.tar (2 samples); labels in .cls."""
    root.mkdir(parents=True, exist_ok=True)
    seed = 0
    for shard, n in (("train-000", 3), ("train-001", 3), ("test-000", 2)):
        with tarfile.open(root / f"{shard}.tar", "w") as tar:
            for i in range(n):
                key = f"{shard}_{i:04d}"
                for ext, payload in (
                    ("png", jpeg_bytes(1300 + seed)),
                    ("cls", str(seed % 2).encode()),
                ):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                seed += 1
    return root
