"""Data kept in container formats: Hugging Face datasets (``hf:``) and webdataset shards (``wds:``).

``hf:DIR`` reads a dataset saved with ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``
of splits) or a folder of parquet files, with an image column and a label column.
``wds:PATTERN`` reads tar shards (``/data/train-{000..099}.tar``): the members of one
sample share a key (``<key>.jpg``, ``<key>.cls``). Images stay inside their containers and
are stored as refs (``builtin:hf/<split dir or parquet file>#<row>#<column>``,
``builtin:wds/<tar file>#<member>``) that the ``hf`` and ``wds`` image providers open
again; they are hashed over their encoded bytes, as files are.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from featstore.datasets.benchmarks.common import Entry, assemble, read_lines
from featstore.datasets.core import Dataset
from featstore.datasets.images import IMAGE_SUFFIXES
from featstore.datasets.registry import ImageProvider, provider_ref
from featstore.errors import DatasetError
from featstore.progress import Progress

SPLIT_TOKENS = ("trainval", "train", "validation", "valid", "val", "test")
IMAGE_COLUMNS = ("image", "img", "jpg", "png")
LABEL_COLUMNS = ("label", "labels", "fine_label", "cls")
HF_LAYOUT = "a folder written by save_to_disk (dataset_dict.json or state.json), or *.parquet files"


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Cache(Generic[K, V]):
    """A small per-process LRU of opened containers (tables, tar indexes), safe across threads."""

    def __init__(self, size: int) -> None:
        self.size, self.items, self.lock = size, OrderedDict[K, V](), threading.Lock()

    def get(self, key: K, load: Callable[[], V]) -> V:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
            value = load()
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
            return value


def split_of(path: str, default: str) -> str:
    """The split a file name names (``train-00000-of-00002.parquet`` -> train), else ``default``."""
    tokens: list[str] = re.findall(r"[A-Za-z]+", path)  # no groups: findall gives the matches
    for token in tokens:
        if token.lower() in SPLIT_TOKENS:
            return token.lower()
    return default


# --- Hugging Face -----------------------------------------------------------------------
_tables: _Cache[tuple[str, str | None], Any] = _Cache(4)  # pyarrow Tables (pyarrow is untyped)


def _open_table(path: str, column: str | None = None) -> Any:
    """A split as a pyarrow Table: a save_to_disk folder (memory-mapped) or a parquet file."""
    if os.path.isdir(path):
        import datasets

        def load_saved() -> Any:
            try:
                return datasets.load_from_disk(path).data.table
            except FileNotFoundError as exc:
                raise DatasetError(
                    f"{path} is not a save_to_disk dataset ({exc}); hf: reads {HF_LAYOUT}"
                ) from None

        return _tables.get((path, None), load_saved)
    import pyarrow.parquet as pq

    def load_parquet() -> Any:
        try:
            return pq.read_table(path, columns=[column] if column else None)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path} is not a readable parquet file ({exc})") from None

    return _tables.get((path, column), load_parquet)


def _hf_payload(locator: str) -> bytes:
    try:
        path, row, column = locator.rsplit("#", 2)
        index = int(row)
    except ValueError:
        raise DatasetError(
            f"hf image ref {locator!r} is not '<path>#<row>#<column>'; register it again"
        ) from None
    table = _open_table(path, column)
    if column not in table.column_names or not 0 <= index < table.num_rows:
        raise DatasetError(
            f"{path} has no row {index} in column {column!r}; register the dataset again"
        )
    return _image_bytes(table.column(column)[index].as_py(), f"{path} row {index}")


def _image_bytes(value: Any, where: str) -> bytes:
    """The encoded image in an HF image cell: ``{'bytes', 'path'}`` or raw bytes."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path") and os.path.isfile(value["path"]):
            with open(value["path"], "rb") as handle:
                return handle.read()
    elif isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise DatasetError(
        f"{where}: the image column holds no encoded image (got {type(value).__name__})"
    )


def _open_payload(payload_of: Callable[[str], bytes], kind: str) -> Callable[[str], Any]:
    def open_image(locator: str) -> Any:
        from featstore.datasets.images import decode

        return decode(payload_of(locator), f"{kind} image {locator}")

    return open_image


HF_PROVIDER = ImageProvider("hf", _open_payload(_hf_payload, "hf"), _hf_payload)


def _hf_splits(root: str, default_split: str, forced: bool) -> list[tuple[str, str]]:
    """(split name, split path) pairs; parquet files are one path each (split from the name
    unless ``forced``)."""
    dict_file = os.path.join(root, "dataset_dict.json")
    if os.path.isfile(dict_file):
        with open(dict_file, encoding="utf-8") as handle:
            names = json.load(handle).get("splits", [])
        return [(str(s), os.path.join(root, str(s))) for s in names]
    if os.path.isfile(os.path.join(root, "state.json")):
        return [(default_split, root)]
    files = sorted(glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True))
    if not files:
        raise DatasetError(
            f"no dataset_dict.json, state.json or *.parquet under {root}: hf: expects {HF_LAYOUT}"
        )
    if forced:
        return [(default_split, f) for f in files]
    return [(split_of(os.path.relpath(f, root), default_split), f) for f in files]


def _class_names(table: Any, column: str) -> list[str] | None:
    """ClassLabel names from the HF feature metadata a saved table or parquet file carries."""
    meta = (table.schema.metadata or {}).get(b"huggingface")
    if not meta:
        return None
    feature = json.loads(meta).get("info", {}).get("features", {}).get(column, {})
    names = feature.get("names") if isinstance(feature, dict) else None
    return [str(n) for n in names] if names else None


def _pick(
    columns: list[str], wanted: str | None, defaults: tuple[str, ...], what: str, where: str
) -> str:
    if wanted:
        if wanted not in columns:
            raise DatasetError(f"{where} has no column {wanted!r} (columns: {', '.join(columns)})")
        return wanted
    for name in defaults:
        if name in columns:
            return name
    raise DatasetError(
        f"{where} has no {what} column named {' or '.join(defaults)} (columns: {', '.join(columns)}); "
        f"name it with ?{what}=COLUMN"
    )


def _label_classes(values: list[Any], names: list[str] | None) -> tuple[list[int], list[str]]:
    """Class indices and names: ClassLabel names, int labels 0..max, or sorted label strings."""
    if names is not None:
        return [int(v) for v in values], names
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if min(values) < 0:
            raise DatasetError("labels must be non-negative class indices (or class names)")
        return list(values), [str(k) for k in range(max(values) + 1)]
    classes = sorted({str(v) for v in values})
    index = {c: k for k, c in enumerate(classes)}
    return [index[str(v)] for v in values], classes


def load_hf(
    name: str,
    path: str,
    *,
    skip_bad: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Dataset:
    """A Hugging Face dataset on disk; options ``image``, ``label``, ``split`` (default train), ``id``."""
    root = os.path.abspath(path)
    rows: list[tuple[str, str, int, Any]] = []  # split, path, row, label
    ids: list[str] = []
    names: list[str] | None = None
    image_col = label_col = ""
    counts: dict[str, int] = {}
    for split, split_path in _hf_splits(root, options.get("split", "train"), "split" in options):
        table = _open_table(split_path)
        where = f"hf:{split_path}"
        image_col = _pick(table.column_names, options.get("image"), IMAGE_COLUMNS, "image", where)
        label_col = _pick(table.column_names, options.get("label"), LABEL_COLUMNS, "label", where)
        names = names or _class_names(table, label_col)
        labels = table.column(label_col).to_pylist()
        if options.get("id") and options["id"] not in table.column_names:
            raise DatasetError(f"{where} has no id column {options['id']!r}")
        given_ids = table.column(options["id"]).to_pylist() if options.get("id") else None
        for row, label in enumerate(labels):
            if label is None:
                raise DatasetError(f"{where} row {row}: the label column {label_col!r} is empty")
            index = counts.get(split, 0)
            counts[split] = index + 1
            ids.append(str(given_ids[row]) if given_ids else f"{split}/{index:06d}")
            rows.append((split, split_path, row, label))
    indices, classes = _label_classes([r[3] for r in rows], names)
    entries = [
        Entry(sample_id, provider_ref("hf", f"{p}#{row}#{image_col}"), label, split)
        for sample_id, (split, p, row, _), label in zip(ids, rows, indices, strict=True)
    ]
    source = {
        "kind": "benchmark", "scheme": "hf", "root": root, "image_column": image_col,
        "label_column": label_col, "protocol": f"Hugging Face dataset: splits {', '.join(counts)} as saved",
    }  # fmt: skip
    return assemble(name, entries, classes, source, skip_bad=skip_bad, progress=progress)


# --- webdataset -------------------------------------------------------------------------
_tar_index: _Cache[str, dict[str, tuple[int, int]]] = _Cache(64)


def _top_level(text: str, opening: int) -> tuple[int, list[int]]:
    """The index of the brace closing ``text[opening]`` and the top-level commas inside."""
    depth, commas = 0, list[int]()
    for i in range(opening, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i, commas
        elif text[i] == "," and depth == 1:
            commas.append(i)
    raise DatasetError(f"wds: pattern {text!r} has an unclosed '{{'")


def expand_braces(pattern: str) -> list[str]:
    """Shell-style braces: ``a-{000..002}.tar`` (zero-padded ranges), ``{train,test}``, nested."""
    opening = pattern.find("{")
    if opening < 0:
        return [pattern]
    closing, commas = _top_level(pattern, opening)
    head, body, tail = pattern[:opening], pattern[opening + 1 : closing], pattern[closing + 1 :]
    span = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if span:
        lo, hi = span.groups()
        width = len(lo) if lo.startswith("0") else 0
        items = [str(v).zfill(width) for v in range(int(lo), int(hi) + 1)]
    else:
        bounds = [opening, *commas, closing]
        items = [pattern[a + 1 : b] for a, b in itertools.pairwise(bounds)]
    return [out for item in items for out in expand_braces(head + item + tail)]


def _members(tar_path: str) -> dict[str, tuple[int, int]]:
    """member name -> (data offset, size): read once per shard, then images are read by seek."""

    def index() -> dict[str, tuple[int, int]]:
        try:
            with tarfile.open(tar_path, "r:") as tar:
                return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError) as exc:
            raise DatasetError(
                f"{tar_path} is not a readable (uncompressed) tar shard ({exc})"
            ) from None

    return _tar_index.get(tar_path, index)


def _wds_payload(locator: str) -> bytes:
    tar_path, _, member = locator.rpartition("#")
    found = _members(tar_path).get(member)
    if found is None:
        raise DatasetError(
            f"tar shard {tar_path} has no member {member!r}; register the dataset again"
        )
    offset, size = found
    with open(tar_path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


WDS_PROVIDER = ImageProvider("wds", _open_payload(_wds_payload, "wds"), _wds_payload)
WDS_IMAGE_EXTS = tuple(s.lstrip(".") for s in IMAGE_SUFFIXES)


def load_wds(
    name: str,
    path: str,
    *,
    skip_bad: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Dataset:
    """webdataset shards; options ``image`` (extension), ``label`` (cls), ``split``, ``classes`` (file)."""
    shards = [os.path.abspath(p) for p in expand_braces(path)]
    missing = [p for p in shards if not os.path.isfile(p)]
    if missing:
        raise DatasetError(
            f"wds: shard {missing[0]} does not exist ({len(missing)} of {len(shards)} missing); "
            "wds: reads tar shards given as a pattern such as /data/train-{000..099}.tar"
        )
    label_ext = options.get("label", "cls")
    rows: list[tuple[str, str, str, str]] = []  # key, shard, image member, label text
    for shard in shards:
        samples: dict[str, dict[str, str]] = {}
        for member in _members(shard):
            folder, _, base = member.rpartition("/")
            key, dot, ext = base.partition(".")
            if dot:
                samples.setdefault(f"{folder}/{key}" if folder else key, {})[ext.lower()] = member
        for key, parts in samples.items():
            image_ext = options.get("image") or next(
                (e for e in WDS_IMAGE_EXTS if e in parts), None
            )
            if image_ext not in parts or label_ext not in parts:
                want = f"{image_ext or 'an image'} and .{label_ext}"
                raise DatasetError(
                    f"wds: sample {key!r} in {shard} lacks {want} (has {', '.join(sorted(parts))})"
                )
            text = _wds_payload(f"{shard}#{parts[label_ext]}").decode("utf-8").strip()
            rows.append((key, shard, parts[str(image_ext)], text))
    if not rows:
        raise DatasetError(f"wds: no samples in {path}")
    values: list[Any] = [int(t) if re.fullmatch(r"\d+", t) else t for _, _, _, t in rows]
    names = read_lines(options["classes"]) if options.get("classes") else None
    if names is not None and not all(isinstance(v, int) for v in values):
        index = {c: k for k, c in enumerate(names)}
        values = [index.get(str(v), -1) for v in values]
        if -1 in values:
            raise DatasetError(f"wds: a label is not among the classes in {options['classes']}")
    indices, classes = _label_classes(values, names)

    def split_for(shard: str) -> str:
        return (
            options["split"] if "split" in options else split_of(os.path.basename(shard), "train")
        )

    entries = [
        Entry(key, provider_ref("wds", f"{shard}#{member}"), label, split_for(shard))
        for (key, shard, member, _), label in zip(rows, indices, strict=True)
    ]
    source = {
        "kind": "benchmark", "scheme": "wds", "root": os.path.abspath(path), "shards": len(shards),
        "protocol": "webdataset shards: split from each shard's name (or ?split=)",
    }  # fmt: skip
    return assemble(name, entries, classes, source, skip_bad=skip_bad, progress=progress)
