"""Result records: the key of an evaluation, and saving, loading and finding records.

A result key is a content hash of everything that decides an evaluation's outcome
(feature keys, transform, task, classifier spec, protocol, seed), so asking again for the
same setting is a lookup, and two teammates computing it land on the same record. These
helpers are task-agnostic: classification, retrieval and transferability all use them.

Record fields (DESIGN.md, "Store format"): key, kind="result", task, dataset_id, dataset_name,
features, factors, transform, classifier, protocol, seed, metrics, per_class, chosen,
timings, versions, created, content. Records are plain JSON: NaN becomes null.

``content`` binds a record to the bytes it was computed from: for each feature entry it
read, the entry's content checksum (a digest of its chunks' checksums, see
:meth:`featstore.store.Entry.content_checksum`). A lookup (:func:`load_current_result`)
serves a record only while every entry still has that checksum, so an entry recomputed
with other bytes, or a record computed before chunks were verified, is recomputed.

``checksum`` seals the record itself (:func:`featstore.store.proofs.seal_record`: sha256 of
every other field, ``key`` included): a record is served only when it says it is the
record of the key it is stored under and its content still has that checksum. An edited
record, or one copied over another key, is recomputed (never served); so is a record of
the older format without a checksum, until ``featstore upgrade`` seals it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

import numpy as np

from featstore.errors import DamagedEntryError, EntryNotFoundError, EvaluationError, StoreError
from featstore.keys import make_key
from featstore.store.listing import gc_paused
from featstore.store.proofs import DAMAGED, OK, RECORD_CHECKSUM, record_state, seal_record

if TYPE_CHECKING:
    from featstore.store.base import Store

logger = logging.getLogger(__name__)

__all__ = [
    "REQUIRED_FIELDS",
    "ResultRecord",
    "bind_record",
    "build_record",
    "collect_records",
    "content_checksums",
    "find_results",
    "load_current_result",
    "load_result",
    "make_result_key",
    "package_versions",
    "records_by_key",
    "save_result",
    "to_json",
]

RESULT_PREFIX = "res"
REQUIRED_FIELDS = (
    "key",
    "kind",
    "task",
    "dataset_id",
    "features",
    "transform",
    "classifier",
    "protocol",
    "seed",
    "metrics",
)
DEFAULT_PACKAGES = ("featstore", "numpy", "scikit-learn", "scipy")


class ResultRecord(TypedDict):
    """A result record: what :func:`build_record` makes, a store keeps (plain JSON, in this
    key order) and the report, the sweep and the API read. A record of an older featstore
    may lack the fields added since (readers ask those with ``.get``)."""

    key: str
    kind: str  # "result"
    task: str
    dataset_id: str
    dataset_name: str
    features: list[str]  # feature entry keys, in column order
    factors: dict[str, Any]  # model, layer, pooling, view ... (featstore.settings)
    transform: str
    classifier: dict[str, Any]
    protocol: dict[str, Any]
    seed: int
    metrics: dict[str, Any]  # name -> score (None where it was NaN)
    per_class: dict[str, Any]
    chosen: dict[str, Any]
    timings: dict[str, Any]
    versions: dict[str, str]
    created: str  # ISO 8601, UTC, seconds
    # a task's own fields (build_record's ``extra``)
    sizes: NotRequired[dict[str, Any]]
    warnings: NotRequired[list[str]]
    queries: NotRequired[dict[str, Any]]  # retrieval
    pair_labels: NotRequired[list[str]]  # similarity
    # the proofs a saved record carries (bind_record, then the store's seal)
    content: NotRequired[dict[str, str | None]]  # entry key -> content checksum
    checksum: NotRequired[str]
    # on a record a task returns, never stored
    cached: NotRequired[bool]
    recomputed_because: NotRequired[str]
    not_saved: NotRequired[str]
    finetune: NotRequired[dict[str, Any]]  # a fine-tuned network's provenance (reports)


def make_result_key(
    features: Sequence[str],
    transform: str,
    task: str,
    classifier: Mapping[str, Any],
    protocol: Mapping[str, Any],
    seed: int,
    *,
    dataset: str | None = None,
) -> str:
    """The content key of an evaluation (``res-<hash>``).

    ``transform`` should be canonical (e.g. ``featstore.evaluate.features.transforms.canonical_spec``) so
    that equal chains give equal keys; feature order is kept (it is the column order of a
    concatenation). ``dataset`` is the evaluated dataset's fingerprint (its ids, labels,
    splits and images): feature keys hold only the images, so a relabelled, re-split or
    subset copy reads the same entries and must still get its own result.
    """
    value: dict[str, Any] = {
        "features": [str(f) for f in features],
        "transform": str(transform),
        "task": str(task),
        "classifier": to_json(dict(classifier)),
        "protocol": to_json(dict(protocol)),
        "seed": int(seed),
    }
    if dataset is not None:
        value["dataset"] = str(dataset)
    return make_key(RESULT_PREFIX, value)


def to_json(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays unwrapped, tuples as lists, NaN/inf as None."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def package_versions(packages: Sequence[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (missing ones are left out)."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def build_record(
    *,
    key: str,
    task: str,
    dataset_id: str,
    dataset_name: str,
    features: Sequence[str],
    factors: Mapping[str, Any],
    transform: str,
    classifier: Mapping[str, Any],
    protocol: Mapping[str, Any],
    seed: int,
    metrics: Mapping[str, float],
    per_class: Mapping[str, Any] | None = None,
    chosen: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
    extra_packages: Sequence[str] = (),
    **extra: Any,
) -> ResultRecord:
    """A complete result record with versions and creation time filled in."""
    record = {
        "key": key,
        "kind": "result",
        "task": task,
        "dataset_id": dataset_id,
        "dataset_name": dataset_name,
        "features": list(features),
        "factors": dict(factors),
        "transform": transform,
        "classifier": dict(classifier),
        "protocol": dict(protocol),
        "seed": int(seed),
        "metrics": dict(metrics),
        "per_class": dict(per_class or {}),
        "chosen": dict(chosen or {}),
        "timings": dict(timings or {}),
        "versions": package_versions(tuple(DEFAULT_PACKAGES) + tuple(extra_packages)),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra)
    out: ResultRecord = to_json(record)
    return out


def save_result(store: Store, record: Mapping[str, Any]) -> str:
    """Check ``record`` has every required field and put it under its key; returns the key."""
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing:
        raise EvaluationError(
            f"result record lacks the fields {missing}; build it with build_record"
        )
    if record.get("kind") != "result":
        raise EvaluationError(f"result record must have kind='result', not {record.get('kind')!r}")
    key = str(record["key"])
    if not key.startswith(RESULT_PREFIX + "-"):
        raise EvaluationError(
            f"result key {key!r} must start with {RESULT_PREFIX!r}-; use make_result_key"
        )
    record = bind_record(store, record)
    record.pop("cached", None)
    record.pop("recomputed_because", None)
    store.put_result(key, seal_record(to_json(record)))
    return key


def bind_record(store: Store, record: Mapping[str, Any]) -> ResultRecord:
    """``record`` with ``content``: the checksum of each feature entry it lists (kept if set)."""
    out = cast("ResultRecord", dict(record))
    if "content" not in out:
        out["content"] = content_checksums(store, out.get("features") or [])
    return out


def content_checksums(store: Store, keys: Iterable[str]) -> dict[str, str | None]:
    """The content checksum of each feature entry (None for one that cannot be checked)."""
    out: dict[str, str | None] = {}
    for key in dict.fromkeys(str(k) for k in keys):
        try:
            out[key] = store.get_entry(key).content_checksum()
        except StoreError:  # not an entry here (or unreadable): binds to nothing
            out[key] = None
    return out


def stale_reason(store: Store, record: Mapping[str, Any]) -> str | None:
    """Why ``record`` must not be served (its entries' bytes changed ...), or None."""
    bound = record.get("content")
    features = [str(k) for k in record.get("features") or []]
    if not isinstance(bound, Mapping) or any(k not in bound for k in features):
        return "it records no checksums of the features it read (made by an older featstore)"
    now = content_checksums(store, features)
    for key in features:
        if now[key] is None or bound[key] is None:
            return f"entry {key} cannot be checked (missing, incomplete or damaged)"
        if now[key] != bound[key]:
            return f"entry {key} changed since it was computed (recomputed or repaired)"
    return None


def read_result(store: Store, key: str) -> tuple[ResultRecord | None, str, str | None]:
    """(record, state, why) of the record under ``key``: state ``ok``, ``unbound`` (older
    format, no checksum: the record is returned) or ``damaged`` (torn, edited, or not the
    record of ``key``: no record); (None, "missing", None) when there is none. The record
    comes without its checksum field, as it was computed."""
    if not store.has_result(key):
        return None, "missing", None
    try:
        record = dict(store.get_result(key))
    except EntryNotFoundError:  # removed meanwhile
        return None, "missing", None
    except DamagedEntryError as exc:
        return None, DAMAGED, str(exc)
    return _checked(key, record)


def _checked(key: str, record: dict[str, Any]) -> tuple[ResultRecord | None, str, str | None]:
    """:func:`read_result`'s answer for a record just read: its key and seal checked."""
    state, why = record_state(key, record)
    if state == DAMAGED:
        return None, state, why
    record.pop(RECORD_CHECKSUM, None)  # a proof of the stored bytes, not part of the result
    return cast("ResultRecord", record), state, why  # sealed by save_result (or older format)


def load_results(store: Store) -> dict[str, ResultRecord]:
    """Every record of the store that proves itself (key and seal), read and checked in a
    batch (:meth:`featstore.store.Store.get_checked_results`); the others are logged and
    left out. Records come without their checksum field, as :func:`read_result` gives them."""
    out: dict[str, ResultRecord] = {}
    with gc_paused():  # thousands of records: see gc_paused
        for key, (record, state, why) in store.get_checked_results().items():
            if state == DAMAGED or record is None:
                logger.warning("not using a damaged result record: %s", why)
                continue
            served = dict(record)
            served.pop(RECORD_CHECKSUM, None)
            out[key] = cast("ResultRecord", served)  # proven by its seal just above
    return out


def load_result(store: Store, key: str) -> ResultRecord | None:
    """The record under ``key``, or None when there is none or it does not prove itself
    (torn, edited, copied from another key: logged; `featstore verify` names it)."""
    record, state, why = read_result(store, key)
    if state == DAMAGED:
        logger.warning("not using a damaged result record: %s", why)
    return record


def load_current_result(store: Store, key: str) -> tuple[ResultRecord | None, str | None]:
    """(record, None) when the record under ``key`` may be served as cached; (None, why)
    when it exists but does not prove itself (damaged, or older format without a checksum)
    or its entries' bytes are not those it was computed from; (None, None) when there is
    none. The cache lookup of every task: a (None, why) record is recomputed and replaced."""
    record, state, why = read_result(store, key)
    if state != OK or record is None:
        return None, why
    why = stale_reason(store, record)
    return (None, why) if why else (record, None)


def _field(record: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    if name in record:
        return True, record[name]
    factors = record.get("factors") or {}
    if name in factors:
        return True, factors[name]
    if name == "dataset":
        return True, (record.get("dataset_name"), record.get("dataset_id"))
    return False, None


def _matches(record: Mapping[str, Any], name: str, wanted: Any) -> bool:
    found, value = _field(record, name)
    if not found:
        return False
    if callable(wanted):
        return bool(wanted(value))
    if name == "dataset":
        return wanted in value
    if isinstance(value, Mapping) and isinstance(wanted, str):  # classifier="svm", model="resnet18"
        return value.get("name") == wanted
    same: bool = to_json(value) == to_json(wanted)
    return same


def _fingerprint_of(record: Mapping[str, Any]) -> str | None:
    """The dataset fingerprint (12 hex digits) a record was computed on, from its dataset id
    (``<name>-<fingerprint>``): the same for every name of the same images, labels, splits."""
    dataset_id = str(record.get("dataset_id") or "")
    _, _, tail = dataset_id.rpartition("-")
    return tail or None


def _dataset_names(store: Store, asked: Iterable[str]) -> dict[str, list[str]]:
    """Fingerprint prefix -> the names asked for that registered dataset (name or id given)."""
    from featstore.datasets.core import FINGERPRINT_LENGTH

    out: dict[str, list[str]] = {}
    for name in dict.fromkeys(asked):
        try:
            ds = store.get_dataset(name)
        except (StoreError, LookupError, ValueError):
            continue  # not registered (any more): matched by the name in the record
        out.setdefault(ds.fingerprint[:FINGERPRINT_LENGTH], []).append(ds.name)
    return out


def _by_dataset(
    store: Store, records: Iterable[ResultRecord], asked: Iterable[str]
) -> list[ResultRecord]:
    """The records of the datasets ``asked``, found by content (the dataset's fingerprint),
    not by the name stored in the record, and reported under the name asked for.

    The same images registered as ``flowers`` and ``flowers12`` share result keys, so a
    record computed under one name is the other's result too.
    """
    asked = list(asked)
    names = _dataset_names(store, asked)
    out: list[ResultRecord] = []
    for r in records:
        fp = _fingerprint_of(r)
        if fp in names:
            out.extend({**r, "dataset_name": n} for n in names[fp])
        elif {r.get("dataset_name"), r.get("dataset_id")} & set(asked):
            out.append(r)
    return out


def find_results(store: Store, **filters: Any) -> list[ResultRecord]:
    """Records whose fields match every filter (None filters are ignored).

    A filter names a top-level field (task, dataset_id, dataset_name, transform, seed ...)
    or a factor (model, layer, pooling, view ...); a string matches a dict-valued field by
    its ``name`` (``classifier="svm"``); a callable is used as a predicate on the value.
    ``dataset`` (a registered name or id) matches by content: the records of any name of
    the same dataset, with ``dataset_name`` the name asked for. Records are returned sorted
    by creation time.
    """
    wanted: dict[str, Any | Callable[[Any], bool]] = {
        k: v for k, v in filters.items() if v is not None
    }
    dataset = wanted.pop("dataset", None)
    out = []
    for record in load_results(store).values():
        if record.get("kind", "result") != "result":
            continue
        if all(_matches(record, name, value) for name, value in wanted.items()):
            out.append(record)
    if dataset is not None:
        out = (
            [r for r in out if _matches(r, "dataset", dataset)]
            if callable(dataset)
            else _by_dataset(store, out, [str(dataset)])
        )
    return sorted(out, key=lambda r: (str(r.get("created", "")), str(r.get("key", ""))))


def collect_records(
    store: Store, *, datasets: Iterable[str] | None = None, tasks: Iterable[str] | None = None
) -> list[ResultRecord]:
    """Result records of the store, optionally only of some datasets and tasks.

    A dataset (name or id) is matched by content, as :func:`find_results` does: the
    records of every name of the same dataset, reported under the name asked for.
    """
    wanted_tasks = set(tasks) if tasks is not None else None
    out = [r for r in find_results(store) if wanted_tasks is None or r.get("task") in wanted_tasks]
    return out if datasets is None else _by_dataset(store, out, datasets)


def records_by_key(
    store: Store, keys: Iterable[str], datasets: Iterable[str]
) -> list[ResultRecord]:
    """The records under ``keys`` that belong to ``datasets``, as :func:`collect_records`
    returns them (by content, under the name asked for, by creation time), reading only
    those records instead of every record of the store."""
    out = []
    for key in dict.fromkeys(str(k) for k in keys):
        record = load_result(store, key)
        if record is not None and record.get("kind", "result") == "result":
            out.append(record)
    out.sort(key=lambda r: (str(r.get("created", "")), str(r.get("key", ""))))
    return _by_dataset(store, out, datasets)
