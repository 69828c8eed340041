"""What each stored object must prove when it is read: its place (key) and its content.

- A feature entry's key is re-derived from the factors it records (the fields of
  :class:`featstore.specs.FeatureKey`; format-1 entries: dataset id and fingerprint instead
  of ``images``) and entries record the key they were created under (``key``); either
  disagreeing with the key the entry is read under means it was copied or moved there.
- A result record carries its own ``key`` and a ``checksum`` (sha256 of the canonical
  JSON of every other field): a record copied under another key, or edited, fails.
  Records are stored seal first, then the other fields as compact key-sorted JSON with a
  tab after each integral float (:func:`record_bytes`), so a listing of thousands of
  records checks each seal over the stored bytes without re-serialising the record
  (:func:`check_result`).
- A dataset's fingerprint is recomputed from its ids, labels, splits and image hashes
  (:func:`featstore.datasets.core.fingerprint`), and its id must be its name and that
  fingerprint.

Each check returns ``(state, why)``: ``"ok"``; ``"unbound"`` for an object written before it
carried the proof (older format: reported by ``featstore verify``, bound by ``featstore
upgrade``); ``"damaged"`` with why and the fix. Chunk proofs live in
:mod:`featstore.store.checksum`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from featstore.errors import DamagedEntryError
from featstore.keys import canonical_json, make_key
from featstore.specs import FeatureKey

__all__ = [
    "DAMAGED",
    "OK",
    "UNBOUND",
    "CheckedRecord",
    "check_result",
    "dataset_state",
    "entry_key_state",
    "parse_result",
    "record_bytes",
    "record_checksum",
    "record_state",
    "seal_record",
]

OK, UNBOUND, DAMAGED = "ok", "unbound", "damaged"
RECORD_CHECKSUM = "checksum"
RECORD_ALGORITHM = "sha256"

# a sealed record as record_bytes stores it: '{"checksum":"sha256:' 64 hex digits '",' rest
_SEALED = f'{{"{RECORD_CHECKSUM}":"{RECORD_ALGORITHM}:'.encode()
_SEAL_AT = len(f'{{"{RECORD_CHECKSUM}":"')
_DIGEST_END = len(_SEALED) + 64

_KEY_FIELDS = tuple(f.name for f in dataclasses.fields(FeatureKey))
_FORMAT1_FIELDS = ("dataset_id", "dataset_fingerprint", *(f for f in _KEY_FIELDS if f != "images"))


# --- feature entries -------------------------------------------------------------------------
def derived_key(attrs: Mapping[str, Any]) -> str | None:
    """The key an entry's recorded factors give, or None when it records not all of them
    (an entry made by hand, not by extraction)."""
    fields = _FORMAT1_FIELDS if "dataset_fingerprint" in attrs else _KEY_FIELDS
    if not all(name in attrs for name in fields):
        return None
    try:
        return make_key("feat", {name: attrs[name] for name in fields})
    except (TypeError, ValueError):
        return "unhashable factors"


def entry_key_state(key: str, attrs: Mapping[str, Any]) -> tuple[str, str | None]:
    """Whether the entry read under ``key`` belongs there (see the module docstring)."""
    derived = derived_key(attrs)
    recorded = attrs.get("key")
    fix = (
        f"move it back under the key it belongs to, or remove it with `featstore rm {key}` "
        "and extract again"
    )
    if derived is not None and derived != key:
        return DAMAGED, (
            f"entry {key}: its recorded factors give the key {derived}, not {key} (an entry "
            f"folder copied or moved under another key?); {fix}"
        )
    if recorded is not None and recorded != key:
        return DAMAGED, (
            f"entry {key}: it was created as {recorded!r}, not {key} (an entry folder copied "
            f"or moved under another key?); {fix}"
        )
    if derived is None and recorded is None:
        return UNBOUND, (
            f"entry {key} records neither all its factors nor its key (older format); "
            "`featstore upgrade` records its key"
        )
    return OK, None


# --- result records --------------------------------------------------------------------------
def record_fix(key: str) -> str:
    return (
        f"remove it with `featstore rm {key}` (or `featstore verify --repair`) and evaluate again"
    )


def parse_result(key: str, where: str, raw: bytes | str) -> dict[str, Any]:
    """A result record's JSON object; DamagedEntryError (one line, with the fix) when the
    bytes are not one (torn, not JSON, nested too deeply to parse, not an object). Strict
    JSON: a raw control character inside a string is not (check_result relies on it)."""
    try:
        record = json.loads(raw)
    except RecursionError:
        why = "nested too deeply to be a result record"
    except ValueError as exc:
        why = f"not JSON: {exc}"
    else:
        if isinstance(record, dict):
            return record
        why = "not a JSON object"
    raise DamagedEntryError(f"result {key}: {where} cannot be read ({why}); {record_fix(key)}")


def record_checksum(record: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` of the canonical JSON of every field but the checksum itself."""
    body = {k: v for k, v in record.items() if k != RECORD_CHECKSUM}
    digest = hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()
    return f"{RECORD_ALGORITHM}:{digest}"


def seal_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` (plain JSON values) with its checksum."""
    out = {k: v for k, v in record.items() if k != RECORD_CHECKSUM}
    out[RECORD_CHECKSUM] = record_checksum(out)
    return out


def record_state(key: str, record: Mapping[str, Any]) -> tuple[str, str | None]:
    """Whether the record read under ``key`` says it is that record, unchanged."""
    fix = record_fix(key)
    recorded = record.get("key")
    if recorded != key:
        return DAMAGED, (
            f"result {key}: the record says it is {recorded!r} (a record copied or moved under "
            f"another key?); {fix}"
        )
    stored = record.get(RECORD_CHECKSUM)
    if stored is None:
        return UNBOUND, (
            f"result {key} carries no checksum (older format, written by an older featstore); "
            "`featstore upgrade` seals it"
        )
    try:
        again = record_checksum(record)
    except (TypeError, ValueError) as exc:
        again = f"unhashable ({exc})"
    if stored != again:
        return DAMAGED, (
            f"result {key}: its content does not match its checksum (edited after it was "
            f"computed?); {fix}"
        )
    return OK, None


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """The stored bytes of a result record.

    A sealed record: its checksum first, then every other field as compact key-sorted JSON
    in which each integral float (``1.0``) is followed by a tab, JSON whitespace. Dropping
    every ``.0<tab>`` then gives exactly the canonical JSON the seal hashes (integral floats
    as ints), so :func:`check_result` hashes the stored bytes instead of re-serialising the
    record, and the record still reads back with the types it was written with. A raw tab
    cannot stand inside a JSON string, so no ``.0<tab>`` is ever string content. Any other
    record (no checksum, nothing else, not UTF-8 encodable), or one this layout does not
    read back as, is stored as key-sorted JSON (checked by re-serialising it).
    """
    seal = record.get(RECORD_CHECKSUM)
    body = {k: v for k, v in record.items() if k != RECORD_CHECKSUM}
    if isinstance(seal, str) and body:
        nonce = secrets.token_hex(16)  # integral floats become '"<nonce>1.0<nonce>"' first
        text = json.dumps(
            _mark_integral_floats(body, nonce),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        text = text.replace(f'"{nonce}', "").replace(f'{nonce}"', "\t")
        text = f'{{"{RECORD_CHECKSUM}":{json.dumps(seal)},{text[1:]}'
        try:
            raw = text.encode()
            if json.loads(raw) == record:  # what it reads back as (ints equal floats)
                return raw
        except (UnicodeEncodeError, ValueError):  # a lone surrogate: no seal anyway
            pass
    return json.dumps(record, sort_keys=True).encode()


def _mark_integral_floats(value: Any, nonce: str) -> Any:
    if isinstance(value, dict):
        return {k: _mark_integral_floats(v, nonce) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark_integral_floats(v, nonce) for v in value]
    if type(value) is float:
        text = repr(value)  # "1.0"; never "-0.0" or "1e+16", which the seal writes otherwise
        if text.endswith(".0") and text != "-0.0":
            return f"{nonce}{text}{nonce}"
    return value


class CheckedRecord(NamedTuple):
    """A stored record as a listing reads it: the record (with its checksum; None when it
    is damaged) and :func:`record_state`'s answer for it."""

    record: dict[str, Any] | None
    state: str
    why: str | None


def check_result(key: str, where: str, raw: bytes) -> CheckedRecord:
    """The record stored as ``raw`` under ``key``, parsed and checked as :func:`record_state`
    checks it; (None, DAMAGED, why) when the bytes are not a record or it does not prove
    itself.

    Bytes in :func:`record_bytes`' layout are proven over themselves: the seal must be the
    sha256 of the bytes after it with every ``.0<tab>`` dropped. The parse is strict (no raw
    tab inside a string), so each dropped ``.0<tab>`` follows an integral float, and for a
    seal featstore computed that hash holds exactly when the record as parsed has that seal:
    :func:`record_state`'s answer. Any other bytes (an older layout, a hash that differs) are
    checked by :func:`record_state` itself, which re-serialises the record.
    """
    try:
        record = parse_result(key, where, raw)
    except DamagedEntryError as exc:
        return CheckedRecord(None, DAMAGED, str(exc))
    seal = record.get(RECORD_CHECKSUM)
    if record.get("key") == key and isinstance(seal, str) and _proves_seal(raw, seal):
        return CheckedRecord(record, OK, None)
    state, why = record_state(key, record)
    return CheckedRecord(None if state == DAMAGED else record, state, why)


def _proves_seal(raw: bytes, seal: str) -> bool:
    """Whether ``raw``, in record_bytes' layout, opens with ``seal`` and hashes to it."""
    if not raw.startswith(_SEALED) or raw[_DIGEST_END : _DIGEST_END + 2] != b'",':
        return False
    if seal.encode() != raw[_SEAL_AT:_DIGEST_END]:
        return False  # parsed from a later duplicate "checksum", not from this prefix
    canonical = (b"{" + raw[_DIGEST_END + 2 :]).replace(b".0\t", b"")
    return hashlib.sha256(canonical).hexdigest().encode() == raw[len(_SEALED) : _DIGEST_END]


# --- datasets -------------------------------------------------------------------------------
def dataset_state(dataset_id: str, dataset: Any) -> tuple[str, str | None]:
    """Whether a dataset read under ``dataset_id`` still gives its recorded fingerprint.

    Hashes the arrays already in memory (ids, labels, per-row split names, image hashes):
    no image is read. A format-1 registration has no image hashes to hash: unbound.
    """
    from featstore.datasets.core import fingerprint

    fix = (
        f"remove it with `featstore datasets rm {dataset_id}` and register it again with "
        f"`featstore datasets add {dataset.name} SOURCE --replace`"
    )
    if dataset.id != dataset_id:
        return DAMAGED, (
            f"dataset {dataset_id}: it records the name and fingerprint of {dataset.id} (copied "
            f"or moved under another id?); {fix}"
        )
    if dataset.image_hashes is None:
        return UNBOUND, (
            f"dataset {dataset_id} has no per-image hashes (store format 1), so its fingerprint "
            "cannot be recomputed; `featstore upgrade` adds them"
        )
    try:
        names = np.asarray(dataset.split_names, dtype=object)[np.asarray(dataset.splits, int)]
        again = fingerprint(
            list(dataset.ids),
            np.asarray(dataset.labels),
            [str(s) for s in names],
            list(dataset.image_hashes),
            dataset.extra,
        )
    except (IndexError, TypeError, ValueError) as exc:
        again = f"not computable ({exc})"
    if again != dataset.fingerprint:
        return DAMAGED, (
            f"dataset {dataset_id}: its ids, labels, splits or image hashes no longer give its "
            f"fingerprint (edited in the store?), so nothing is scored on it; {fix}"
        )
    return OK, None
