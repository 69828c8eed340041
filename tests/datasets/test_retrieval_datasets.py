"""Retrieval dataset loaders on tiny synthetic layouts, and the built-in Copydays-style set."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from PIL import Image

from featstore.datasets import Dataset, add_dataset, dataset_from_source
from featstore.datasets import retrieval_copydays as cd
from featstore.datasets.retrieval import (
    load_holidays,
    load_oxford,
    load_retrieval_json,
    load_revisited,
    retrieval_dataset_from_source,
    retrieval_info,
)
from featstore.errors import DatasetError, ManifestError
from featstore.store import open_store


def _rows(ds, *names: str) -> list[int]:
    return sorted(ds.ids.index(n) for n in names)


# --- Oxford5k / Paris6k -----------------------------------------------------------------
def _oxford(root: Path) -> Path:
    for i, name in enumerate(
        [
            "all_souls_000001",
            "all_souls_000002",
            "all_souls_000003",
            "radcliffe_000001",
            "radcliffe_000002",
            "other_000001",
        ]
    ):
        make_image(root / "jpg" / f"{name}.jpg", seed=i)
    gt = root / "gt"
    gt.mkdir()
    (gt / "all_souls_1_query.txt").write_text("oxc1_all_souls_000001 136.5 34.1 648.5 955.7\n")
    (gt / "all_souls_1_good.txt").write_text("all_souls_000001\nall_souls_000002\n")
    (gt / "all_souls_1_ok.txt").write_text("all_souls_000003\n")
    (gt / "all_souls_1_junk.txt").write_text("other_000001\n")
    (gt / "radcliffe_1_query.txt").write_text("oxc1_radcliffe_000001 1 2 30 40\n")
    (gt / "radcliffe_1_good.txt").write_text("")
    (gt / "radcliffe_1_ok.txt").write_text("\n")
    (gt / "radcliffe_1_junk.txt").write_text("radcliffe_000002\n")
    return root


def test_oxford_layout(tmp_path: Path) -> None:
    ds = load_oxford("ox", str(_oxford(tmp_path / "oxford")))
    info = retrieval_info(ds)
    assert ds.n == 6
    assert info["protocol"] == "oxford"
    assert ds.ids[:2] == ["all_souls_000001", "all_souls_000002"]
    assert info["query_names"] == ["all_souls_1"]
    assert info["queries"] == _rows(ds, "all_souls_000001")
    g = info["gnd"][0]
    assert g["positives"] == _rows(ds, "all_souls_000001", "all_souls_000002", "all_souls_000003")
    assert g["easy"] == _rows(ds, "all_souls_000001", "all_souls_000002")
    assert g["hard"] == _rows(ds, "all_souls_000003")
    assert g["junk"] == _rows(ds, "other_000001")
    assert info["bbox"] == [[136.5, 34.1, 648.5, 955.7]]
    assert info["database"] == list(range(6))  # queries stay in the database
    assert info["skipped_queries"] == [
        {"query": "radcliffe_1", "reason": "no positives in the ground truth"}
    ]
    assert ds.split_counts() == {"query": 1, "database": 5}


def test_oxford_gt_naming_a_missing_image_is_refused(tmp_path: Path) -> None:
    root = _oxford(tmp_path / "oxford")
    (root / "gt" / "all_souls_1_ok.txt").write_text("all_souls_000003\nall_souls_000099\n")
    with pytest.raises(
        DatasetError,
        match=r"query 'all_souls_1'.*names image 'all_souls_000099', which is not in the database",
    ):
        load_oxford("ox", str(root))


def test_oxford_malformed_query_line(tmp_path: Path) -> None:
    root = _oxford(tmp_path / "oxford")
    (root / "gt" / "all_souls_1_query.txt").write_text("oxc1_all_souls_000001 1 2\n")
    with pytest.raises(ManifestError, match=r"all_souls_1_query.txt: expected 'IMAGE x0 y0 x1 y1'"):
        load_oxford("ox", str(root))


# --- revisited --------------------------------------------------------------------------
def _revisited(root: Path, gnd: list[dict]) -> Path:
    for i, name in enumerate(["d0", "d1", "d2", "d3", "q0", "q1"]):
        make_image(root / "jpg" / f"{name}.jpg", seed=10 + i)
    cfg = {"imlist": ["d0", "d1", "d2", "d3"], "qimlist": ["q0", "q1"], "gnd": gnd}
    path = root / "gnd_rtiny.pkl"
    path.write_bytes(pickle.dumps(cfg))
    return path


def test_revisited_ground_truth(tmp_path: Path) -> None:
    path = _revisited(
        tmp_path / "rtiny",
        [
            {"bbx": [1.0, 2.0, 3.0, 4.0], "easy": np.array([0]), "hard": [2], "junk": [1]},
            {"bbx": [0, 0, 5, 5], "easy": [], "hard": [], "junk": [3]},
        ],
    )
    ds = retrieval_dataset_from_source("rtiny", f"revisited:{path}")
    info = retrieval_info(ds)
    assert ds.ids == ["d0", "d1", "d2", "d3", "q0", "q1"]
    assert info["protocol"] == "revisited"
    assert info["queries"] == [4]
    assert info["query_names"] == ["q0"]
    assert info["database"] == [0, 1, 2, 3]  # queries are not in the database
    assert info["gnd"][0] == {"positives": [0, 2], "junk": [1], "easy": [0], "hard": [2]}
    assert info["bbox"] == [[1.0, 2.0, 3.0, 4.0]]
    assert [s["query"] for s in info["skipped_queries"]] == ["q1"]


def test_revisited_index_outside_imlist_is_refused(tmp_path: Path) -> None:
    path = _revisited(
        tmp_path / "rtiny",
        [
            {"bbx": None, "easy": [0], "hard": [7], "junk": []},
            {"bbx": None, "easy": [1], "hard": [], "junk": []},
        ],
    )
    with pytest.raises(
        DatasetError, match=r"gnd\[0\]\['hard'\] names image index 7, but imlist has 4 images"
    ):
        load_revisited("rtiny", str(path))


def test_revisited_missing_image_file_is_named(tmp_path: Path) -> None:
    path = _revisited(tmp_path / "rtiny", [{"easy": [0], "hard": [], "junk": []}] * 2)
    (tmp_path / "rtiny" / "jpg" / "d2.jpg").unlink()
    with pytest.raises(DatasetError, match="names image 'd2'"):
        load_revisited("rtiny", str(path))


# --- Holidays and UKBench ---------------------------------------------------------------
def test_holidays_groups_and_queries(tmp_path: Path) -> None:
    folder = tmp_path / "holidays"
    for i, number in enumerate([100000, 100001, 100002, 100100, 100101, 100200]):
        make_image(folder / f"{number}.jpg", seed=20 + i)
    ds = load_holidays("hol", str(folder))
    info = retrieval_info(ds)
    assert ds.ids == ["100000", "100001", "100002", "100100", "100101", "100200"]
    assert info["protocol"] == "holidays"
    assert info["queries"] == [0, 3]  # 100000.jpg and 100100.jpg
    assert [g["positives"] for g in info["gnd"]] == [[1, 2], [4]]
    assert info["skipped_queries"][0]["query"] == "100200"  # a group of one image
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert ds.classes == ["1000", "1001", "1002"]


def test_holidays_refuses_other_names(tmp_path: Path) -> None:
    folder = tmp_path / "holidays"
    make_image(folder / "100000.jpg", seed=1)
    make_image(folder / "holiday_a.jpg", seed=2)
    with pytest.raises(DatasetError, match=r"holiday_a.jpg does not follow the naming NNNNNN.jpg"):
        load_holidays("hol", str(folder))


def test_ukbench_groups_of_four(tmp_path: Path) -> None:
    folder = tmp_path / "ukbench"
    for i in range(8):
        make_image(folder / f"ukbench{i:05d}.jpg", seed=30 + i)
    ds = retrieval_dataset_from_source("ukb", f"ukbench:{folder}")
    info = retrieval_info(ds)
    assert info["protocol"] == "ukbench"
    assert info["queries"] == list(range(8))  # every image is a query
    assert info["gnd"][5]["positives"] == [4, 6, 7]
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


# --- generic JSON -----------------------------------------------------------------------
def test_generic_json(tmp_path: Path) -> None:
    for i, name in enumerate("abcde"):
        make_image(tmp_path / "imgs" / f"{name}.jpg", seed=40 + i)
    gt = tmp_path / "imgs" / "gt.json"
    gt.write_text(
        json.dumps(
            {
                "a.jpg": {"positives": ["b", "c.jpg"], "junk": ["d"], "bbox": [0, 0, 10, 10]},
                "e": {"positives": []},
            }
        )
    )
    ds = load_retrieval_json("gen", str(gt))
    info = retrieval_info(ds)
    assert ds.ids == ["a", "b", "c", "d", "e"]
    assert info["protocol"] == "generic"
    assert info["queries"] == [0]
    assert info["gnd"][0]["positives"] == [1, 2]
    assert info["gnd"][0]["junk"] == [3]
    assert info["bbox"] == [[0.0, 0.0, 10.0, 10.0]]
    assert info["skipped_queries"] == [{"query": "e", "reason": "no positives in the ground truth"}]


@pytest.mark.parametrize("stored", [None, {}, ["a", "b"], "generic"])
def test_a_retrieval_protocol_that_is_not_a_mapping_is_refused(
    tmp_path: Path, stored: object
) -> None:
    for i, name in enumerate("ab"):
        make_image(tmp_path / f"{name}.jpg", seed=60 + i)
    (tmp_path / "gt.json").write_text(json.dumps({"a": {"positives": ["b"]}}))
    ds = load_retrieval_json("gen", str(tmp_path / "gt.json"))
    ds = dataclasses.replace(ds, extra={"retrieval": stored})
    with pytest.raises(DatasetError, match="'gen' has no retrieval ground truth"):
        retrieval_info(ds)


def test_generic_json_unknown_positive(tmp_path: Path) -> None:
    for i, name in enumerate("ab"):
        make_image(tmp_path / f"{name}.jpg", seed=50 + i)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"a": {"positives": ["b", "zebra.jpg"]}}))
    with pytest.raises(DatasetError, match=r"query 'a'.*names image 'zebra'"):
        load_retrieval_json("gen", str(gt))


def test_sources_that_are_not_retrieval_sets(tmp_path: Path) -> None:
    assert retrieval_dataset_from_source("x", str(tmp_path)) is None
    assert retrieval_dataset_from_source("x", "builtin:digits") is None
    with pytest.raises(DatasetError, match="does not exist"):
        retrieval_dataset_from_source("x", f"holidays:{tmp_path / 'nope'}")


# --- the built-in Copydays-style set ----------------------------------------------------
@pytest.fixture(scope="module")
def copydays() -> Dataset:
    """The built-in set, built once for this module (building hashes every generated image)."""
    return dataset_from_source("copydays", "builtin:copydays")


def test_copydays_is_deterministic(copydays: Dataset) -> None:
    first = copydays
    cd._original.cache_clear()  # regenerate everything from the packaged photos
    second = dataset_from_source("copydays", "builtin:copydays")
    assert first.fingerprint == second.fingerprint
    assert first.id == second.id
    assert np.array_equal(np.asarray(first.load_image(12)), np.asarray(cd.copydays_image(12)))


def test_copydays_layout(copydays: Dataset) -> None:
    ds = copydays
    info = retrieval_info(ds)
    n_t, n_q, n_d = (
        len(cd.COPYDAYS_TRANSFORMS),
        len(cd.COPYDAYS_ORIGINALS),
        len(cd.COPYDAYS_DISTRACTORS),
    )
    per = 1 + n_t  # a query photo: its original, then its copies
    assert ds.n == n_q * per + n_d * n_t  # distractor photos bring copies only
    assert info["queries"] == [k * per for k in range(n_q)]
    assert info["query_names"] == list(cd.COPYDAYS_ORIGINALS)
    assert info["database"] == sorted(set(range(ds.n)) - set(info["queries"]))
    assert info["gnd"][1]["positives"] == list(range(per + 1, 2 * per))  # chelsea's copies
    assert ds.ids[per + 3] == "chelsea/rotate:90"
    assert ds.ids[n_q * per] == "china/crop:0.6"  # first distractor copy
    assert ds.labels[n_q * per :].tolist() == [k for k in range(n_q, n_q + n_d) for _ in range(n_t)]
    assert ds.refs[5] == "builtin:copydays/5"
    with pytest.raises(
        DatasetError, match=f"builtin:copydays has {ds.n} images, not an image {ds.n}"
    ):
        cd.copydays_image(ds.n)


def _find_window(big: np.ndarray, small: np.ndarray) -> tuple[int, int]:
    """Top-left of the one place where ``small`` sits inside ``big`` (searching exhaustively)."""
    h, w = small.shape[:2]
    rows = np.lib.stride_tricks.sliding_window_view(big, (w, 3), axis=(1, 2))[
        :, :, 0
    ]  # (H, W-w+1, w, 3)
    hits = [
        (y, x)
        for y, x in zip(*np.nonzero((rows == small[0]).all(axis=(2, 3))), strict=True)
        if y + h <= big.shape[0] and np.array_equal(big[y : y + h, x : x + w], small)
    ]
    assert len(hits) == 1, hits
    return int(hits[0][0]), int(hits[0][1])


def test_copydays_transforms_are_what_they_claim() -> None:
    def image(original: str, spec: str | None) -> np.ndarray:
        k = cd.PHOTOS.index(original)
        j = 0 if spec is None else 1 + cd.COPYDAYS_TRANSFORMS.index(spec)
        return np.asarray(cd.copydays_image(cd.copydays_layout().index((k, j))))

    astro = image("astronaut", None)
    assert astro.shape == (512, 512, 3)
    crop = image("astronaut", "crop:0.3")
    assert crop.shape == (154, 154, 3)  # round(0.3 * 512)
    y, x = _find_window(astro, crop)  # a true crop of the original
    assert 0 <= y <= 512 - 154
    assert 0 <= x <= 512 - 154
    assert np.array_equal(image("astronaut", "flip"), astro[:, ::-1])
    assert np.array_equal(image("astronaut", "rotate:90"), np.rot90(astro))
    chelsea = image("chelsea", None)
    assert chelsea.shape == (300, 451, 3)
    assert image("chelsea", "scale:0.1").shape == (30, 45, 3)  # round(300 * .1), round(451 * .1)
    assert image("chelsea", "crop:0.6").shape == (180, 271, 3)
    jpeg = image("chelsea", "jpeg:3").astype(int)
    assert jpeg.shape == chelsea.shape
    assert 0 < np.abs(jpeg - chelsea).mean() < 25
    # occlude:0.6 paints a mid-grey block of round(sqrt(0.6) * side) pixels; the rest is intact
    occluded = image("chelsea", "occlude:0.6").astype(int)
    changed = np.any(occluded != chelsea, axis=2)
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    assert (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == (232, 349)  # sqrt(.6)*300, *451
    block = occluded[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    assert np.all(block == 128)
    camera = image("camera", None)  # a grey photo made RGB
    assert np.array_equal(camera[..., 0], camera[..., 1])
    tint = image("camera", "tint:1.4,1.0,0.5").astype(int)
    gray = camera[..., 0].astype(np.float32)  # gains are applied in float32, then rounded
    assert np.array_equal(tint[..., 1], gray)
    assert np.array_equal(tint[..., 0], np.clip(np.rint(gray * np.float32(1.4)), 0, 255))
    assert np.array_equal(tint[..., 2], np.rint(gray * np.float32(0.5)))
    strong = image("text", "crop:0.35+scale:0.4+brightness:1.5+jpeg:10")
    assert strong.shape == (24, 63, 3)  # text is 172 x 448: round(.35*172)=60 -> round(.4*60)=24
    assert image("matplotlib:grace_hopper.jpg", "flip").shape[2] == 3  # a distractor photo


def test_copydays_registers_through_the_store(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.zarr"))
    ds = add_dataset(store, "copydays", "builtin:copydays")  # as `featstore datasets add` does
    back = store.get_dataset("copydays")
    assert back.id == ds.id
    assert retrieval_info(back)["gnd"] == retrieval_info(ds)["gnd"]
    assert isinstance(back.load_image(0), Image.Image)
