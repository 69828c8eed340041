"""Issue 24 item 3: a listing proves each record's seal over its stored bytes.

Records are stored seal first with a tab after each integral float (proofs.record_bytes),
so check_result hashes the bytes instead of re-serialising the record. That shortcut must
give exactly record_state's answer: damaged bytes of every kind are still refused, and the
records served are those record_state would serve.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featstore.errors import DamagedEntryError
from featstore.evaluate.results import find_results
from featstore.store import open_store, proofs
from featstore.store.maintenance import verify_store
from featstore.store.proofs import (
    DAMAGED,
    OK,
    check_result,
    parse_result,
    record_bytes,
    seal_record,
)

KEY = "res-" + "0" * 20


def _oracle(key: str, raw: bytes) -> tuple[str, dict[str, Any] | None]:
    """What the per-record path answers: parse, then record_state (re-serialising)."""
    try:
        record = parse_result(key, "x", raw)
    except DamagedEntryError:
        return DAMAGED, None
    state, _ = proofs.record_state(key, record)
    return state, (None if state == DAMAGED else record)


def _no_reserialising(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(record: Any) -> str:
        raise AssertionError("the record was re-serialised")

    monkeypatch.setattr(proofs, "record_checksum", refuse)


def test_a_sealed_record_is_stored_seal_first_and_reads_back_as_written(monkeypatch) -> None:
    record = seal_record(
        {
            "key": KEY,
            "kind": "result",
            "seed": 3,
            "metrics": {"accuracy": 1.0, "loss": 0.25},
            "note": "grid [1e-06 .. 1e+05], 1.0, tab\t",
            "grid": [1.0, 2, [3.0]],
        }
    )
    raw = record_bytes(record)
    assert raw.startswith(b'{"checksum":"' + record["checksum"].encode() + b'",')
    assert b'"accuracy":1.0\t,' in raw
    assert b'"loss":0.25}' in raw
    assert b"[1.0\t,2,[3.0\t]]" in raw
    _no_reserialising(monkeypatch)
    got = check_result(KEY, "x", raw)
    assert got.state == OK
    assert got.record == record
    assert type(got.record["metrics"]["accuracy"]) is float  # not turned into an int


def test_an_older_layout_is_checked_by_re_serialising() -> None:
    record = seal_record({"key": KEY, "kind": "result", "seed": 3, "acc": 1.0})
    old = json.dumps(record, sort_keys=True).encode()  # what featstore wrote before
    assert check_result(KEY, "x", old) == (record, OK, None)
    edited = old.replace(b'"seed": 3', b'"seed": 4')
    assert check_result(KEY, "x", edited).state == DAMAGED


def _tamperings(raw: bytes, other_seal: str) -> dict[str, bytes]:
    return {
        "a value edited": raw.replace(b'"seed":3', b'"seed":4'),
        "a metric edited": raw.replace(b'"accuracy":1.0\t', b'"accuracy":0.5'),
        ".0 and a tab put into a string": raw.replace(b"x, y", b"x.0\t, y"),
        "an escaped tab put into a string": raw.replace(b"x, y", b"x.0\\t, y"),
        "the seal of another record": raw.replace(
            raw[13 : 13 + 71], other_seal.encode()
        ),  # '"sha256:' + 64 hex, in place
        "a second checksum after the first": raw[:-1] + b',"checksum":"sha256:' + b"0" * 64 + b'"}',
        "a truncated file": raw[:-10],
    }


def test_every_tampering_is_refused_as_record_state_refuses_it() -> None:
    record = seal_record(
        {"key": KEY, "kind": "result", "seed": 3, "metrics": {"accuracy": 1.0}, "note": "x, y"}
    )
    raw = record_bytes(record)
    other = seal_record({**record, "seed": 5})["checksum"]
    for what, bad in _tamperings(raw, other).items():
        assert bad != raw, what
        got = check_result(KEY, "x", bad)
        assert got.state == DAMAGED, what
        assert got.record is None, what
        assert _oracle(KEY, bad)[0] == DAMAGED, what
    # a second "checksum" member the parser keeps, under a seal made by hand over the rest
    rest = raw[raw.index(b'",') + 2 : -1] + b',"checksum":"' + other.encode() + b'"}'
    digest = hashlib.sha256(b"{" + rest.replace(b".0\t", b"")).hexdigest()
    crafted = b'{"checksum":"sha256:' + digest.encode() + b'",' + rest
    assert check_result(KEY, "x", crafted).state == DAMAGED
    assert _oracle(KEY, crafted)[0] == DAMAGED
    moved = check_result("res-" + "1" * 20, "x", raw)  # a record copied under another key
    assert moved.state == DAMAGED
    assert f"says it is '{KEY}'" in str(moved.why)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**17), 10**17)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, -2.0, 0.0, -0.0, 1e16, 0.5])
    | st.text(alphabet=st.sampled_from(list('ab.0,]}"\\\t\u00e9 ')), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet="ab.0,]", max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(st.sampled_from(["a", "b", "metrics", "seed"]), _values, max_size=4),
    at=st.integers(0, 10_000),
    cut=st.integers(0, 3),
    insert=st.sampled_from([b"", b".0\t", b".0", b"\t", b" ", b"0", b"1", b'"', b"\\t"]),
)
def test_the_byte_proof_answers_exactly_as_record_state(body, at, cut, insert) -> None:
    """Any record, any splice of its stored bytes: check_result agrees with record_state."""
    record = seal_record({**body, "key": KEY, "kind": "result"})
    raw = record_bytes(record)
    assert check_result(KEY, "x", raw) == (record, OK, None)
    at = 13 + at % max(1, len(raw) - 13)  # after '{"checksum":"': the seal can be spliced too
    spliced = raw[:at] + insert + raw[at + cut :]
    got = check_result(KEY, "x", spliced)
    state, served = _oracle(KEY, spliced)
    assert got.state == state
    assert got.record == served


def test_a_tampered_record_is_not_served_by_a_listing(tmp_path) -> None:
    store = open_store(str(tmp_path / "s.zarr"))
    keys = [f"res-{i:020x}" for i in range(3)]
    for i, key in enumerate(keys):
        store.put_result(
            key,
            seal_record(
                {
                    "key": key,
                    "kind": "result",
                    "task": "classify",
                    "seed": i,
                    "metrics": {"accuracy": 1.0},
                    "note": "x, y",
                }
            ),
        )
    path = tmp_path / "s.zarr" / "results"
    edited = (path / f"{keys[1]}.json").read_bytes().replace(b'"accuracy":1.0\t', b'"accuracy":0.5')
    (path / f"{keys[1]}.json").write_bytes(edited)
    (path / f"{keys[2]}.json").write_bytes((path / f"{keys[0]}.json").read_bytes())
    served = find_results(store)
    assert [r["key"] for r in served] == [keys[0]]
    assert served[0]["metrics"]["accuracy"] == 1.0
    assert "checksum" not in served[0]
    damaged = verify_store(store)["records"]["damaged"]
    assert set(damaged) == {keys[1], keys[2]}
    assert "does not match its checksum" in damaged[keys[1]]
    assert f"says it is '{keys[0]}'" in damaged[keys[2]]
