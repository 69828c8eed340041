"""The field's benchmark datasets, read from the files they ship, with their official splits.

``SCHEMES`` is the table ``featstore/datasets/defaults.py`` registers: one
:class:`~featstore.datasets.registry.Scheme` per ``SCHEME:DIR`` source, saying what it reads
and the options it takes (``?fold=K``, ``?level=family`` ...). ``PROVIDERS`` are the image
providers for images that live inside arrays or containers (CIFAR batches, HF tables,
tar shards).
"""

from __future__ import annotations

from featstore.datasets.benchmarks.arrays import CIFAR_PROVIDER, load_cifar10, load_cifar100
from featstore.datasets.benchmarks.classic import (
    load_cub200,
    load_flowers102,
    load_food101,
    load_mit67,
    load_pets,
    load_stanford40,
)
from featstore.datasets.benchmarks.folds import load_caltech101, load_dtd, load_sun397
from featstore.datasets.benchmarks.hub import HF_PROVIDER, WDS_PROVIDER, load_hf, load_wds
from featstore.datasets.benchmarks.tv_layouts import load_aircraft, load_cars
from featstore.datasets.benchmarks.voc import VOC_CLASSES, load_voc2007
from featstore.datasets.registry import Scheme

SCHEMES: tuple[Scheme, ...] = (
    Scheme("voc2007", load_voc2007, "VOCdevkit/VOC2007: Annotations/*.xml, ImageSets/Main/{trainval,test}.txt, JPEGImages/"),
    Scheme("flowers102", load_flowers102, "jpg/, imagelabels.mat, setid.mat (train / val / test)"),
    Scheme("pets", load_pets, "images/, annotations/{trainval,test}.txt (37 breeds)"),
    Scheme("cub200", load_cub200, "CUB_200_2011: images.txt, image_class_labels.txt, train_test_split.txt, classes.txt"),
    Scheme("mit67", load_mit67, "Images/, TrainImages.txt, TestImages.txt"),
    Scheme("sun397", load_sun397, "SUN397/ and Partitions/{Training,Testing}_0K.txt (?fold=1..10)", ("fold",)),
    Scheme("dtd", load_dtd, "images/, labels/{train,val,test}K.txt (?fold=1..10)", ("fold",)),
    Scheme("food101", load_food101, "images/, meta/{classes,train,test}.txt"),
    Scheme(
        "caltech101", load_caltech101,
        "101_ObjectCategories/ (?train=30 per class, the rest test, ?seed=0, ?background=0|1)",
        ("seed", "train", "background"),
    ),
    Scheme("stanford40", load_stanford40, "JPEGImages/, ImageSplits/<action>_{train,test}.txt"),
    Scheme("cars", load_cars, "torchvision's StanfordCars layout: stanford_cars/{devkit,cars_train,cars_test}"),
    Scheme(
        "aircraft", load_aircraft,
        "torchvision's FGVCAircraft layout: fgvc-aircraft-2013b/data (?level=variant|family|manufacturer)",
        ("level",),
    ),
    Scheme("cifar10", load_cifar10, "cifar-10-batches-py/: data_batch_1..5, test_batch, batches.meta"),
    Scheme("cifar100", load_cifar100, "cifar-100-python/: train, test, meta (?label=fine|coarse)", ("label",)),
    Scheme(
        "hf", load_hf, "a save_to_disk folder or *.parquet files (?image=COL&label=COL&split=NAME&id=COL)",
        ("image", "label", "split", "id"),
    ),
    Scheme(
        "wds", load_wds, "webdataset tar shards, e.g. /data/train-{000..099}.tar (?image=EXT&label=cls&split=NAME&classes=FILE)",
        ("image", "label", "split", "classes"), path_must_exist=False,
    ),
)  # fmt: skip
PROVIDERS = (CIFAR_PROVIDER, HF_PROVIDER, WDS_PROVIDER)

__all__ = ["PROVIDERS", "SCHEMES", "VOC_CLASSES"]
