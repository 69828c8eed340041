"""Instance-retrieval datasets: database images, queries and ground truth.

Each loader returns a :class:`~featstore.datasets.Dataset` whose ``extra["retrieval"]``
holds the protocol (read by :mod:`featstore.evaluate.retrieval.task`)::

    {"protocol": "oxford"|"revisited"|"holidays"|"ukbench"|"generic",
     "queries": [row, ...], "query_names": [...], "database": [row, ...],
     "gnd": [{"positives": [...], "junk": [...], "easy": [...], "hard": [...]}, ...],
     "bbox": [[x0, y0, x1, y1] or None, ...], "skipped_queries": [{"query", "reason"}]}

Rows are indices into the dataset's store order. Ground truth that names an image the
database lacks is refused with a DatasetError naming it; a query without positives is
left out and listed in ``skipped_queries``, as the benchmarks' own code does.

Sources (``retrieval_dataset_from_source``): ``oxford:ROOT`` (Oxford5k/Paris6k gt files),
``revisited:GND.pkl`` (roxford5k/rparis6k, images in ``jpg/`` beside it),
``holidays:FOLDER``, ``ukbench:FOLDER``, ``retrieval-json:FILE.json``, and the built-in
``builtin:copydays`` (:mod:`featstore.datasets.retrieval_copydays`); all registered in
:mod:`featstore.datasets.registry` by ``featstore/datasets/defaults.py``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featstore.datasets.core import Dataset, build_dataset
from featstore.datasets.images import check_and_hash_all, is_image_file
from featstore.datasets.safe_pickle import load_pickle
from featstore.errors import DatasetError, ManifestError, shown
from featstore.progress import Progress

__all__ = [
    "PROTOCOLS",
    "RETRIEVAL_SCHEMES",
    "load_holidays",
    "load_oxford",
    "load_retrieval_json",
    "load_revisited",
    "load_ukbench",
    "retrieval_dataset_from_source",
    "retrieval_info",
]

log = logging.getLogger(__name__)
PROTOCOLS = ("oxford", "revisited", "holidays", "ukbench", "generic")
OXFORD_QUERY_PREFIX = "oxc1_"  # Oxford5k query files prefix image names with it


@dataclass
class RetrievalQuery:
    """One query as read from a ground-truth file (image names, not rows yet)."""

    name: str  # the query's name (e.g. "all_souls_1"); the image may differ
    image: str  # id of the query image
    positives: list[str]
    junk: list[str] = field(default_factory=list)
    easy: list[str] = field(default_factory=list)
    hard: list[str] = field(default_factory=list)
    bbox: list[float] | None = None
    where: str = ""  # for error messages: the file it came from


def retrieval_info(dataset: Dataset) -> dict[str, Any]:
    """The dataset's retrieval protocol; DatasetError if it is not a retrieval set."""
    info = dataset.extra.get("retrieval") if isinstance(dataset.extra, dict) else None
    if not info or not isinstance(info, dict):
        raise DatasetError(
            f"dataset {dataset.name!r} has no retrieval ground truth; register a retrieval "
            f"source ({', '.join(RETRIEVAL_SCHEMES)}: or builtin:copydays)"
        )
    return info


# --- assembling -------------------------------------------------------------------------
def _image_files(folder: str, exclude: str | None = None) -> dict[str, str]:
    """Image id (path relative to ``folder`` without extension) -> path, sorted by id."""
    if not os.path.isdir(folder):
        raise DatasetError(f"image folder {folder} does not exist")
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and os.path.join(root, d) != exclude
        )
        for name in sorted(files):
            if not is_image_file(name):
                continue
            path = os.path.join(root, name)
            image_id = os.path.splitext(os.path.relpath(path, folder))[0].replace(os.sep, "/")
            if image_id in found:
                raise DatasetError(
                    f"two images share the id {image_id!r}: {found[image_id]} and {path}; "
                    "retrieval ids are file names without extension"
                )
            found[image_id] = path
    if not found:
        raise DatasetError(f"no images found in {folder}")
    return dict(sorted(found.items()))


def _rows_of(
    names: Sequence[str], row_of: dict[str, int], query: RetrievalQuery, what: str
) -> list[int]:
    rows = []
    for name in names:
        if name not in row_of:
            raise DatasetError(
                f"ground truth of query {query.name!r} ({what}{', ' + query.where if query.where else ''}) "
                f"names image {name!r}, which is not in the database"
            )
        rows.append(row_of[name])
    return sorted(set(rows))


def build_retrieval_dataset(
    name: str,
    images: dict[str, str],
    queries: Sequence[RetrievalQuery],
    protocol: str,
    source: dict[str, Any],
    *,
    database: Sequence[str] | None = None,
    groups: dict[str, int] | None = None,
    classes: Sequence[str] = (),
    skip_bad: bool = False,
    progress: Progress | None = None,
    image_hashes: Sequence[str] | None = None,
) -> Dataset:
    """Check ground truth against the images, hash every image, and build the Dataset.

    ``images`` maps id -> path (or builtin ref when ``image_hashes`` is given); store
    order is its order. ``database`` lists the ids searched (default: all). ``groups``
    gives an int label per id (e.g. a Holidays group).
    """
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown retrieval protocol {protocol!r}; use one of {PROTOCOLS}")
    ids = list(images)
    refs = list(images.values())
    skipped_images: list[dict[str, str]] = []
    if image_hashes is None:
        hashes, skipped_images = check_and_hash_all(refs, skip_bad, progress)
        bad = {ids[i] for i, h in enumerate(hashes) if h is None}
        keep = [i for i, h in enumerate(hashes) if h is not None]
        ids, refs = [ids[i] for i in keep], [refs[i] for i in keep]
        final_hashes = [str(hashes[i]) for i in keep]
    else:
        bad, final_hashes = set(), list(image_hashes)
    row_of = {image_id: row for row, image_id in enumerate(ids)}
    db_names = list(ids) if database is None else [d for d in database if d not in bad]
    db_rows = set()
    for d in db_names:
        if d not in row_of:
            raise DatasetError(f"database image {d!r} has no image file")
        db_rows.add(row_of[d])
    db_row_of = {n: row_of[n] for n in db_names}

    info: dict[str, Any] = {
        "protocol": protocol,
        "queries": [],
        "query_names": [],
        "gnd": [],
        "bbox": [],
        "database": sorted(db_rows),
        "skipped_queries": [],
    }
    for query in queries:
        if query.image in bad:
            info["skipped_queries"].append(
                {"query": query.name, "reason": f"query image {query.image} is bad"}
            )
            continue
        if query.image not in row_of:
            raise DatasetError(
                f"query {query.name!r}{' (' + query.where + ')' if query.where else ''} uses image "
                f"{query.image!r}, which is not among the images"
            )
        dropped = [n for n in (*query.positives, *query.easy, *query.hard, *query.junk) if n in bad]
        gnd = {
            "positives": _rows_of(
                [n for n in query.positives if n not in bad], db_row_of, query, "positives"
            ),
            "junk": _rows_of([n for n in query.junk if n not in bad], db_row_of, query, "junk"),
            "easy": _rows_of([n for n in query.easy if n not in bad], db_row_of, query, "easy"),
            "hard": _rows_of([n for n in query.hard if n not in bad], db_row_of, query, "hard"),
        }
        if not gnd["positives"]:
            reason = "no positives in the ground truth"
            if dropped:
                reason += f" (after skipping bad images {dropped[:3]})"
            info["skipped_queries"].append({"query": query.name, "reason": reason})
            log.warning("retrieval query %s skipped: %s", query.name, reason)
            continue
        info["queries"].append(row_of[query.image])
        info["query_names"].append(query.name)
        info["gnd"].append(gnd)
        info["bbox"].append([float(v) for v in query.bbox] if query.bbox is not None else None)
    if not info["queries"]:
        raise DatasetError(
            f"no usable query: every query of {source.get('path') or name} lacks positives"
        )
    query_rows = set(info["queries"])
    splits = ["query" if row in query_rows else "database" for row in range(len(ids))]
    labels = np.array([(groups or {}).get(i, -1) for i in ids], dtype=np.int32)
    return build_dataset(
        name,
        ids,
        refs,
        labels,
        splits,
        list(classes),
        final_hashes,
        source,
        skipped_images,
        extra={"retrieval": info},
    )


# --- Oxford5k / Paris6k -----------------------------------------------------------------
def _read_names(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def load_oxford(
    name: str,
    root: str,
    *,
    images: str | None = None,
    gt: str | None = None,
    skip_bad: bool = False,
    progress: Progress | None = None,
) -> Dataset:
    """Oxford5k / Paris6k: ``<q>_query.txt`` ("oxc1_<image> x0 y0 x1 y1") with
    ``<q>_good.txt``, ``<q>_ok.txt``, ``<q>_junk.txt``.

    ``gt`` is the folder of gt files (default: found under ``root``), ``images`` the image
    folder (default: ``root`` without the gt folder). Positives are good + ok; every image
    (queries included) is in the database, as in the original protocol.
    """
    gt_dir = gt or _find_gt_dir(root)
    image_dir = images or root
    found = _image_files(image_dir, exclude=os.path.abspath(gt_dir) if gt is None else None)
    files: dict[str, str] = {}  # gt files name images by file name alone: that is the id
    for path in found.values():
        image_id = os.path.splitext(os.path.basename(path))[0]
        if image_id in files:
            raise DatasetError(f"two images are named {image_id!r}: {files[image_id]} and {path}")
        files[image_id] = path
    files = dict(sorted(files.items()))
    queries = []
    for fname in sorted(os.listdir(gt_dir)):
        if not fname.endswith("_query.txt"):
            continue
        qname = fname[: -len("_query.txt")]
        qpath = os.path.join(gt_dir, fname)
        parts = (_read_names(qpath) or [""])[0].split()
        if len(parts) != 5:
            raise ManifestError(f"{qpath}: expected 'IMAGE x0 y0 x1 y1', got {' '.join(parts)!r}")
        image = parts[0]
        if image not in files and image.startswith(OXFORD_QUERY_PREFIX):
            image = image[len(OXFORD_QUERY_PREFIX) :]
        try:
            bbox = [float(v) for v in parts[1:]]
        except ValueError:
            raise ManifestError(
                f"{qpath}: the bounding box {parts[1:]} is not four numbers"
            ) from None
        lists = {}
        for kind in ("good", "ok", "junk"):
            path = os.path.join(gt_dir, f"{qname}_{kind}.txt")
            if not os.path.exists(path):
                raise DatasetError(
                    f"{path} is missing: every {qname}_query.txt needs _good, _ok and _junk files"
                )
            lists[kind] = _read_names(path)
        queries.append(
            RetrievalQuery(
                name=qname,
                image=image,
                positives=lists["good"] + lists["ok"],
                junk=lists["junk"],
                easy=lists["good"],
                hard=lists["ok"],
                bbox=bbox,
                where=qpath,
            )
        )
    if not queries:
        raise DatasetError(f"no *_query.txt ground-truth files in {gt_dir}")
    source = {
        "kind": "retrieval",
        "format": "oxford",
        "root": os.path.abspath(root),
        "gt": os.path.abspath(gt_dir),
        "images": os.path.abspath(image_dir),
    }
    return build_retrieval_dataset(
        name, files, queries, "oxford", source, skip_bad=skip_bad, progress=progress
    )


def _names(values: Any, gnd_file: str, key: str) -> list[str]:
    """A ground-truth list of image names: strings only (an object's text could be huge)."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise DatasetError(
            f"{gnd_file}: {key!r} must be a list of image names, got {shown(values)}"
        )
    return list(values)


def _numbers(values: Any, where: str, kinds: str) -> list[Any]:
    """A flat array or list of numbers (integers when ``kinds`` is "iu") as a list."""
    if isinstance(values, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        values = np.asarray(values)
    if not isinstance(values, np.ndarray) or (values.size and values.dtype.kind not in kinds):
        want = "integer indices" if kinds == "iu" else "numbers"
        raise DatasetError(f"{where} must be an array of {want}, got {shown(values)}")
    return [int(v) if kinds == "iu" else float(v) for v in values.ravel()]


def _find_gt_dir(root: str) -> str:
    if not os.path.isdir(root):
        raise DatasetError(f"{root} does not exist or is not a folder")
    for current, dirs, files in os.walk(root):
        dirs.sort()
        if any(f.endswith("_query.txt") for f in files):
            return current
    raise DatasetError(f"no *_query.txt ground-truth files under {root}")


# --- revisited Oxford / Paris -----------------------------------------------------------
def load_revisited(
    name: str,
    gnd_file: str,
    *,
    images: str | None = None,
    skip_bad: bool = False,
    progress: Progress | None = None,
) -> Dataset:
    """roxford5k / rparis6k: ``gnd_<set>.pkl`` with ``imlist``, ``qimlist`` and ``gnd``
    (one ``{"bbx", "easy", "hard", "junk"}`` per query, indices into ``imlist``).

    Images are ``<images>/<name>.jpg`` (default: ``jpg/`` beside the file). The pickle
    format is the official one, read with the restricted unpickler: a file that names code
    is refused (:mod:`featstore.datasets.safe_pickle`).
    """
    try:
        cfg = load_pickle(gnd_file, what="ground-truth pickle")
    except FileNotFoundError:
        raise DatasetError(f"ground-truth file {gnd_file} does not exist") from None
    except IsADirectoryError:
        raise DatasetError(f"ground-truth file {gnd_file} is a folder, not a pickle") from None
    if not isinstance(cfg, dict) or not {"imlist", "qimlist", "gnd"} <= set(cfg):
        raise DatasetError(f"{gnd_file} must hold a dict with 'imlist', 'qimlist' and 'gnd'")
    imlist, qimlist = (
        _names(cfg["imlist"], gnd_file, "imlist"),
        _names(cfg["qimlist"], gnd_file, "qimlist"),
    )
    gnd = cfg["gnd"]
    if not isinstance(gnd, list) or not all(isinstance(g, dict) for g in gnd):
        raise DatasetError(
            f"{gnd_file}: 'gnd' must be a list of dicts (bbx, easy, hard, junk), got {shown(gnd)}"
        )
    if len(gnd) != len(qimlist):
        raise DatasetError(
            f"{gnd_file}: {len(qimlist)} query names but {len(gnd)} ground-truth entries"
        )
    image_dir = images or os.path.join(os.path.dirname(os.path.abspath(gnd_file)), "jpg")
    files = _image_files(image_dir)
    wanted = list(dict.fromkeys([*map(str, imlist), *map(str, qimlist)]))
    missing = [n for n in wanted if n not in files]
    if missing:
        raise DatasetError(
            f"{gnd_file} names image {missing[0]!r}, but {image_dir} has no such image"
            + (f" ({len(missing)} missing)" if len(missing) > 1 else "")
        )
    queries = []
    for i, (qname, g) in enumerate(zip(qimlist, gnd, strict=True)):
        lists = {}
        for kind in ("easy", "hard", "junk"):
            idx = _numbers(g.get(kind, []), f"{gnd_file}: gnd[{i}][{kind!r}]", "iu")
            out_of_range = [v for v in idx if not 0 <= v < len(imlist)]
            if out_of_range:
                raise DatasetError(
                    f"{gnd_file}: gnd[{i}][{kind!r}] names image index {out_of_range[0]}, but imlist "
                    f"has {len(imlist)} images (the database has no such image)"
                )
            lists[kind] = [str(imlist[v]) for v in idx]
        bbx = g.get("bbx")
        queries.append(
            RetrievalQuery(
                name=str(qname),
                image=str(qname),
                positives=lists["easy"] + lists["hard"],
                junk=lists["junk"],
                easy=lists["easy"],
                hard=lists["hard"],
                bbox=_numbers(bbx, f"{gnd_file}: gnd[{i}]['bbx']", "iuf")
                if bbx is not None
                else None,
                where=f"{gnd_file} gnd[{i}]",
            )
        )
    source = {
        "kind": "retrieval",
        "format": "revisited",
        "path": os.path.abspath(gnd_file),
        "images": os.path.abspath(image_dir),
    }
    return build_retrieval_dataset(
        name,
        {n: files[n] for n in wanted},
        queries,
        "revisited",
        source,
        database=[str(n) for n in imlist],
        skip_bad=skip_bad,
        progress=progress,
    )


# --- INRIA Holidays and UKBench ---------------------------------------------------------
def _numbered(folder: str, pattern: re.Pattern[str], expected: str) -> dict[str, tuple[int, str]]:
    out = {}
    for image_id, path in _image_files(folder).items():
        match = pattern.fullmatch(os.path.basename(image_id))
        if not match:
            raise DatasetError(f"{path} does not follow the naming {expected}")
        out[image_id] = (int(match.group(1)), path)
    return dict(sorted(out.items(), key=lambda kv: (kv[1][0], kv[0])))


def load_holidays(
    name: str, folder: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset:
    """INRIA Holidays: ``NNNNNN.jpg``, group = number // 100, the group's first image is the query.

    Every image is in the database; evaluation leaves each query out of its own ranking.
    """
    numbered = _numbered(folder, re.compile(r"(\d+)"), "NNNNNN.jpg (digits only)")
    groups: dict[int, list[str]] = {}
    for image_id, (number, _) in numbered.items():
        groups.setdefault(number // 100, []).append(image_id)
    queries = [
        RetrievalQuery(name=members[0], image=members[0], positives=members[1:])
        for _, members in sorted(groups.items())
    ]
    group_ids = sorted(groups)
    labels = {i: group_ids.index(numbered[i][0] // 100) for i in numbered}
    source = {"kind": "retrieval", "format": "holidays", "root": os.path.abspath(folder)}
    return build_retrieval_dataset(
        name,
        {i: p for i, (_, p) in numbered.items()},
        queries,
        "holidays",
        source,
        groups=labels,
        classes=[str(g) for g in group_ids],
        skip_bad=skip_bad,
        progress=progress,
    )


def load_ukbench(
    name: str, folder: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset:
    """UKBench: ``ukbenchNNNNN.jpg`` in groups of 4 consecutive numbers; every image is a query.

    The database holds every image, the query included (the N-S score counts it).
    """
    numbered = _numbered(folder, re.compile(r"ukbench(\d+)"), "ukbenchNNNNN.jpg")
    groups: dict[int, list[str]] = {}
    for image_id, (number, _) in numbered.items():
        groups.setdefault(number // 4, []).append(image_id)
    queries = [
        RetrievalQuery(name=i, image=i, positives=[m for m in groups[n // 4] if m != i])
        for i, (n, _) in numbered.items()
    ]
    group_ids = sorted(groups)
    labels = {i: group_ids.index(n // 4) for i, (n, _) in numbered.items()}
    source = {"kind": "retrieval", "format": "ukbench", "root": os.path.abspath(folder)}
    return build_retrieval_dataset(
        name,
        {i: p for i, (_, p) in numbered.items()},
        queries,
        "ukbench",
        source,
        groups=labels,
        classes=[str(g) for g in group_ids],
        skip_bad=skip_bad,
        progress=progress,
    )


# --- generic JSON -----------------------------------------------------------------------
def _strip_ext(name: str) -> str:
    name = str(name).replace(os.sep, "/")
    return os.path.splitext(name)[0] if is_image_file(name) else name


def load_retrieval_json(
    name: str,
    path: str,
    *,
    images: str | None = None,
    skip_bad: bool = False,
    progress: Progress | None = None,
) -> Dataset:
    """``{query: {"positives": [...], "junk": [...], "bbox": [x0, y0, x1, y1]}}`` over a folder.

    Names are image paths relative to ``images`` (default: the JSON's folder), with or
    without extension. Every image is in the database; each query is left out of its
    own ranking at evaluation.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            spec = json.load(handle)
    except FileNotFoundError:
        raise DatasetError(f"ground-truth file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(spec, dict) or not spec:
        raise ManifestError(
            f"{path}: expected a non-empty object {{query: {{'positives': [...], 'junk': [...]}}}}"
        )
    image_dir = images or os.path.dirname(os.path.abspath(path))
    files = _image_files(image_dir)
    queries = []
    for qname, entry in spec.items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("positives", []), list)
            or not isinstance(entry.get("junk", []), list)
        ):
            raise ManifestError(
                f"{path} query {qname!r}: expected {{'positives': [...], 'junk': [...]}}"
            )
        bbox = entry.get("bbox")
        if bbox is not None and (not isinstance(bbox, list) or len(bbox) != 4):
            raise ManifestError(f"{path} query {qname!r}: bbox must be [x0, y0, x1, y1]")
        queries.append(
            RetrievalQuery(
                name=str(qname),
                image=_strip_ext(qname),
                positives=[_strip_ext(n) for n in entry.get("positives", [])],
                junk=[_strip_ext(n) for n in entry.get("junk", [])],
                bbox=bbox,
                where=path,
            )
        )
    source = {
        "kind": "retrieval",
        "format": "json",
        "path": os.path.abspath(path),
        "images": os.path.abspath(image_dir),
    }
    return build_retrieval_dataset(
        name, files, queries, "generic", source, skip_bad=skip_bad, progress=progress
    )


# --- sources ----------------------------------------------------------------------------
RETRIEVAL_SCHEMES: dict[str, Callable[..., Dataset]] = {
    "oxford": load_oxford,
    "paris": load_oxford,
    "revisited": load_revisited,
    "holidays": load_holidays,
    "ukbench": load_ukbench,
    "retrieval-json": load_retrieval_json,
}


def retrieval_dataset_from_source(
    name: str, source: str, *, skip_bad: bool = False, progress: Progress | None = None
) -> Dataset | None:
    """The dataset for a ``scheme:PATH`` retrieval source, or None if ``source`` is not one."""
    scheme, sep, path = source.partition(":")
    if not sep or scheme not in RETRIEVAL_SCHEMES:
        return None
    if not path:
        raise DatasetError(f"retrieval source {source!r} needs a path after '{scheme}:'")
    if not os.path.exists(path):
        raise DatasetError(f"retrieval source {path} does not exist")
    return RETRIEVAL_SCHEMES[scheme](name, path, skip_bad=skip_bad, progress=progress)
