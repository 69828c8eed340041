"""Issue 20, item 2: every stored object proves what it claims when it is read.

Each reproduction of the issue damages one object on purpose, through the store's files,
on local Zarr and on HDF5 where the object exists there: labels edited under an unchanged
dataset id, a result record copied over another key or edited, a chunk swapped with its
done marker between entries or indices, an entry folder copied under another key, a done
marker that is a folder and a record nested 100,000 deep. Objects of the older format are
reported as unbound and bound by `featstore upgrade`.
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from featstore.cli.main import cli

from featstore import open_store
from featstore.datasets import register_dataset
from featstore.errors import DamagedChunkError, DamagedEntryError
from featstore.evaluate.results import load_current_result
from featstore.store.checksum import chunk_checksum
from tests.eval_helpers import add_dataset, add_features, blobs, interleave_splits

BACKENDS = ["zarr", "hdf5"]


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    code, out = result.exit_code, result.output
    del result
    gc.collect()  # an in-process command that exited 1 may still hold its HDF5 file open
    return code, out


def _one_line_error(code: int, out: str) -> None:
    """A refusal as the CLI must give it: exit 1, `Error: ...` on one line, no traceback."""
    assert code == 1, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, out


@pytest.fixture(params=BACKENDS)
def made(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A store with one dataset (24 images, 2 classes) and two entries of it (3 chunks each)."""
    url = str(tmp_path / ("s.zarr" if request.param == "zarr" else "s.h5"))
    x, y = blobs([12, 12], dim=6)
    with open_store(url) as store:
        ds = add_dataset(store, "good", y, interleave_splits(y))
        a = add_features(store, ds, x, layer="fc", chunk_rows=8)
        b = add_features(store, ds, x * 2, layer="fc2", chunk_rows=8)
    return {"url": url, "backend": request.param, "ds": ds, "a": a.key, "b": b.key, "x": x}


def _evaluate(url: str, *extra: str) -> tuple[int, str]:
    args = ["evaluate", "-d", "good", "-m", "toynet", "-l", "fc", "--task", "classify"]
    return _run(*args, "--store", url, *extra)


def _evaluate_json(url: str, *extra: str) -> dict[str, Any]:
    code, out = _evaluate(url, "--json", *extra)
    assert code == 0, out
    lines = out.splitlines()  # a warning line (stderr) may come before the JSON
    (record,) = json.loads("\n".join(lines[lines.index("[") :]))
    return record


# --- datasets --------------------------------------------------------------------------------
def _edit_labels(made: dict[str, Any]) -> None:
    """Swap the two classes of the test split, in the store, leaving the dataset's id as is."""
    ds = made["ds"]
    labels = np.asarray(ds.labels).copy()
    test = ds.split_indices("test")
    labels[test] = 1 - labels[test]
    if made["backend"] == "zarr":
        array = zarr.open_array(f"{made['url']}/datasets/{ds.id}/labels", mode="r+")
        array[...] = labels
    else:
        with h5py.File(made["url"], "a") as f:
            f[f"datasets/{ds.id}/labels"][...] = labels


def test_labels_edited_under_an_unchanged_id_are_never_scored(made):
    url, ds = made["url"], made["ds"]
    assert _evaluate_json(url, "--classifier", "logreg")["metrics"]["accuracy"] == 1.0
    _edit_labels(made)
    for extra in ([], ["--force"]):
        code, out = _evaluate(url, "--classifier", "logreg", *extra)
        _one_line_error(code, out)
        assert f"dataset {ds.id}" in out
        assert "fingerprint" in out
        assert "featstore datasets add good SOURCE --replace" in out
    code, out = _run("verify", "--store", url)
    assert code == 1
    assert f"dataset {ds.id}: DAMAGED" in out
    assert "fingerprint" in out
    with open_store(url) as store:
        with pytest.raises(DamagedEntryError, match=ds.id):
            store.get_dataset("good")
        register_dataset(store, ds, replace=True)  # what `datasets add --replace` does
        assert store.get_dataset("good").fingerprint == ds.fingerprint
    assert _run("verify", "--store", url)[0] == 0
    assert _evaluate_json(url, "--classifier", "logreg")["metrics"]["accuracy"] == 1.0


# --- result records --------------------------------------------------------------------------
def _records(url: str) -> dict[str, str]:
    """Classifier name -> result key."""
    with open_store(url, mode="r") as store:
        return {store.get_result(k)["classifier"]["name"]: k for k in store.result_keys()}


def _raw_record(made: dict[str, Any], key: str) -> str:
    if made["backend"] == "zarr":
        return (Path(made["url"]) / "results" / f"{key}.json").read_text()
    with h5py.File(made["url"], "r") as f:
        raw = f[f"results/{key}"][()]
        return raw.decode() if isinstance(raw, bytes) else str(raw)


def _put_raw_record(made: dict[str, Any], key: str, text: str) -> None:
    if made["backend"] == "zarr":
        (Path(made["url"]) / "results" / f"{key}.json").write_text(text)
        return
    with h5py.File(made["url"], "a") as f:
        del f[f"results/{key}"]
        f.create_dataset(f"results/{key}", data=text, dtype=h5py.string_dtype())


def test_a_record_copied_over_another_key_is_not_served(made):
    url = made["url"]
    svm = _evaluate_json(url, "--classifier", "svm", "--svm-c", "1")
    logreg = _evaluate_json(url, "--classifier", "logreg")
    keys = _records(url)
    assert svm["key"] == keys["svm"] != keys["logreg"] == logreg["key"]

    def copy_over() -> None:
        _put_raw_record(made, keys["svm"], _raw_record(made, keys["logreg"]))

    copy_over()
    code, out = _run("verify", "--store", url)
    assert code == 1
    assert f"{keys['svm']}: DAMAGED record" in out
    assert f"says it is '{keys['logreg']}'" in out
    # not served: recomputed as an SVM, and the reason is said
    again = _evaluate_json(url, "--classifier", "svm", "--svm-c", "1")
    assert again["cached"] is False
    assert again["classifier"]["name"] == "svm"
    assert "says it is" in again["recomputed_because"]
    assert _run("verify", "--store", url)[0] == 0  # the recomputed record replaced it

    copy_over()
    code, out = _run("verify", "--repair", "--store", url, "--json")
    report = json.loads(out)
    assert code == 0, out
    assert {"object": f"result {keys['svm']}", "action": "removed"}.items() <= (
        report["actions"][0].items()
    )
    with open_store(url, mode="r") as store:
        assert not store.has_result(keys["svm"])
        assert store.has_result(keys["logreg"])
    rerun = _evaluate_json(url, "--classifier", "svm", "--svm-c", "1")
    assert rerun["cached"] is False
    assert "recomputed_because" not in rerun
    assert _evaluate_json(url, "--classifier", "svm", "--svm-c", "1")["cached"] is True


def test_an_edited_accuracy_is_not_served(made):
    url = made["url"]
    first = _evaluate_json(url, "--classifier", "logreg")
    (key,) = _records(url).values()
    record = json.loads(_raw_record(made, key))
    record["metrics"]["accuracy"] = 0.9999
    _put_raw_record(made, key, json.dumps(record))
    with open_store(url, mode="r") as store:
        assert load_current_result(store, key)[0] is None
    code, out = _evaluate(url, "--classifier", "logreg")
    assert code == 0
    assert "0.9999" not in out
    again = _evaluate_json(url, "--classifier", "logreg")
    assert again["metrics"]["accuracy"] == first["metrics"]["accuracy"]
    code, out = _run("verify", "--store", url)
    assert code == 0, out  # the recomputed record replaced the edited one


def test_a_deeply_nested_record_is_one_damaged_line(made):
    url = made["url"]
    _evaluate_json(url, "--classifier", "logreg")
    (key,) = _records(url).values()
    _put_raw_record(made, key, "[" * 100_000 + "]" * 100_000)
    code, out = _run("verify", "--store", url)
    assert code == 1
    assert "Traceback" not in out
    assert f"{key}: DAMAGED record" in out
    assert "nested too deeply" in out
    _one_line_error(*_run("info", key, "--store", url))
    assert "nested too deeply" in _run("info", key, "--store", url)[1]
    again = _evaluate_json(url, "--classifier", "logreg")  # recomputed, never a traceback
    assert again["cached"] is False
    assert "nested too deeply" in again["recomputed_because"]


# --- chunks and their done markers -----------------------------------------------------------
def _swap(made: dict[str, Any], first: tuple[str, int], second: tuple[str, int]) -> None:
    """Swap the stored bytes of two chunks together with their done markers."""
    if made["backend"] == "zarr":
        root = Path(made["url"]) / "features"
        for where in (("data", "c", "{i}", "0"), ("_done", "{i}")):
            (k1, i1), (k2, i2) = first, second
            p1 = root.joinpath(k1, *(w.format(i=i1) for w in where))
            p2 = root.joinpath(k2, *(w.format(i=i2) for w in where))
            b1, b2 = p1.read_bytes(), p2.read_bytes()
            p1.write_bytes(b2)
            p2.write_bytes(b1)
        return
    with h5py.File(made["url"], "a") as f:
        (k1, i1), (k2, i2) = first, second
        g1, g2 = f[f"features/{k1}"], f[f"features/{k2}"]
        r1, r2 = slice(i1 * 8, i1 * 8 + 8), slice(i2 * 8, i2 * 8 + 8)
        d1, d2 = g1["data"][r1], g2["data"][r2]
        g1["data"][r1], g2["data"][r2] = d2, d1
        c1, c2 = g1["_checksum"][i1], g2["_checksum"][i2]
        g1["_checksum"][i1], g2["_checksum"][i2] = c2, c1


def test_a_chunk_swapped_with_its_marker_between_entries_is_damaged(made):
    url, a, b = made["url"], made["a"], made["b"]
    _swap(made, (a, 1), (b, 1))
    with open_store(url, mode="r") as store:
        for key in (a, b):
            with pytest.raises(DamagedChunkError, match=rf"chunk 1 \(rows 8-16\) of entry {key}"):
                store.get_entry(key).read()
            assert store.get_entry(key).verify()["damaged"] == [1]
    code, out = _run("verify", "--store", url)
    assert code == 1
    assert f"{a}: DAMAGED chunks [1]" in out
    assert f"{b}: DAMAGED chunks [1]" in out
    code, out = _evaluate(url, "--classifier", "logreg")
    _one_line_error(code, out)
    assert "chunk 1 (rows 8-16)" in out
    assert "damaged" in out


def test_a_chunk_swapped_with_its_marker_between_indices_is_damaged(made):
    url, a = made["url"], made["a"]
    _swap(made, (a, 0), (a, 2))
    with open_store(url, mode="r") as store:
        entry = store.get_entry(a)
        with pytest.raises(DamagedChunkError, match=r"chunk 0 \(rows 0-8\)"):
            entry.read()
        assert entry.verify()["damaged"] == [0, 2]
        np.testing.assert_array_equal(entry.read(slice(8, 16)), made["x"][8:16])


@pytest.mark.parametrize("made", ["zarr"], indirect=True)  # HDF5 markers are array elements
def test_a_marker_that_is_a_folder_or_nested_json_is_a_damaged_chunk(made):
    url, a, b = made["url"], made["a"], made["b"]
    done = Path(url) / "features" / a / "_done"
    (done / "1").unlink()
    (done / "1").mkdir()
    (Path(url) / "features" / b / "_done" / "2").write_text("[" * 100_000 + "]" * 100_000)
    with open_store(url, mode="r") as store:
        with pytest.raises(DamagedChunkError, match=rf"chunk 1 \(rows 8-16\) of entry {a}"):
            store.get_entry(a).read()
        with pytest.raises(DamagedChunkError, match=rf"chunk 2 \(rows 16-24\) of entry {b}"):
            store.get_entry(b).read()
    code, out = _run("verify", "--store", url)
    assert code == 1
    assert "Traceback" not in out
    assert f"{a}: DAMAGED chunks [1]" in out
    assert f"{b}: DAMAGED chunks [2]" in out
    _one_line_error(*_evaluate(url, "--classifier", "logreg"))
    with open_store(url) as store:  # repairing forgets the folder like any marker
        store.get_entry(a).invalidate_chunk(1)
        assert store.get_entry(a).missing_chunks() == [1]


# --- entries ---------------------------------------------------------------------------------
def _copy_entry(url: str, backend: str, source: str, target: str) -> None:
    if backend == "zarr":
        shutil.copytree(Path(url) / "features" / source, Path(url) / "features" / target)
        return
    with h5py.File(url, "a") as f:
        f.copy(f[f"features/{source}"], f["features"], name=target)


def test_an_entry_copied_under_another_key_is_never_served(made):
    url, a = made["url"], made["a"]
    other = "feat-0123456789abcdef0123"
    _copy_entry(url, made["backend"], a, other)
    code, out = _run("verify", "--store", url)
    assert code == 1
    assert f"{other}: DAMAGED entry" in out
    assert f"{a}: ok" in out
    assert f"created as '{a}'" in out
    assert f"featstore rm {other}" in out
    with open_store(url, mode="r") as store:
        with pytest.raises(DamagedEntryError, match=other):
            store.get_entry(other)
        np.testing.assert_array_equal(store.get_entry(a).read(), made["x"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_extracted_entry_copied_under_another_key(backend, tmp_path, image_folder, monkeypatch):
    """The issue's reproduction: extract says "cached" for the copy, evaluate ignores it."""
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "fscache"))
    url = str(tmp_path / ("s.zarr" if backend == "zarr" else "s.h5"))
    assert _run("datasets", "add", "flowers", str(image_folder), "--store", url)[0] == 0
    base = ["extract", "--store", url, "-d", "flowers", "-m", "resnet18", "--weights", "random"]
    base += ["--resize", "40", "--crop", "32", "--json"]
    code, out = _run(*base, "-l", "fc")
    assert code == 0, out
    (fc,) = json.loads(out)["keys"]
    code, out = _run(*base[:-1], "-l", "avgpool", "--dry-run", "--json")
    assert code == 0, out
    (avgpool,) = [e["key"] for e in json.loads(out)["entries"]]
    _copy_entry(url, backend, fc, avgpool)

    code, out = _run("verify", "--store", url)
    assert code == 1
    assert f"{avgpool}: DAMAGED entry" in out
    assert f"recorded factors give the key {fc}" in out
    code, out = _run(*base[:-1], "-l", "avgpool")
    _one_line_error(code, out)
    assert "cached" not in out
    assert avgpool in out
    assert f"featstore rm {avgpool}" in out
    code, out = _run("evaluate", "-d", "flowers", "-m", "resnet18", "-l", "avgpool", "--store", url)
    _one_line_error(code, out)
    assert "extract" in out
    # removing the copy, as the message says, lets extraction compute the real entry
    assert _run("rm", avgpool, "--store", url)[0] == 0
    code, out = _run(*base, "-l", "avgpool")
    assert code == 0
    assert json.loads(out)["forward_batches"] > 0


# --- the older format ------------------------------------------------------------------------
def _as_older_format(made: dict[str, Any]) -> str:
    """Rewrite markers, entry keys and records as the previous featstore wrote them."""
    url, x = made["url"], made["x"]
    _evaluate_json(url, "--classifier", "logreg")
    (key,) = _records(url).values()
    record = json.loads(_raw_record(made, key))
    record.pop("checksum")
    _put_raw_record(made, key, json.dumps(record))
    unbound = [chunk_checksum(x[i * 8 : i * 8 + 8].astype("float32"), "xxh3_128") for i in range(3)]
    if made["backend"] == "zarr":
        for i, value in enumerate(unbound):
            marker = {"rows": [i * 8, i * 8 + 8], "checksum": value}
            (Path(url) / "features" / made["a"] / "_done" / str(i)).write_text(json.dumps(marker))
        group = zarr.open_group(f"{url}/features/{made['a']}", mode="a")
        group.attrs.put({k: v for k, v in group.attrs.asdict().items() if k != "key"})
    else:
        with h5py.File(url, "a") as f:
            group = f[f"features/{made['a']}"]
            for i, value in enumerate(unbound):
                group["_checksum"][i] = value
            del group.attrs["key"]
    return key


def test_older_objects_are_reported_unbound_and_bound_by_upgrade(made):
    url, a = made["url"], made["a"]
    key = _as_older_format(made)
    with open_store(url, mode="r") as store:
        np.testing.assert_array_equal(store.get_entry(a).read(), made["x"])  # still read
        record, why = load_current_result(store, key)
        assert record is None
        assert "featstore upgrade" in str(why)
    code, out = _run("verify", "--store", url)
    assert code == 0, out
    assert f"{a}: ok; chunks 0-2 unbound (older format); key unbound (older format)" in out
    assert "1 result records unbound (older format" in out
    assert "run `featstore upgrade` to bind them" in out

    code, out = _run("upgrade", "--store", url)
    assert code == 0, out
    assert "3 done markers in 1 entries, 1 entry keys, 1 result records" in out
    code, out = _run("verify", "--store", url, "--json")
    report = json.loads(out)
    assert code == 0
    assert report["n_unbound"] == 0
    assert all(r["unbound"] == [] for r in report["entries"])
    assert _evaluate_json(url, "--classifier", "logreg")["cached"] is True
    code, out = _run("upgrade", "--store", url, "--json")  # twice: nothing more to do
    again = json.loads(out)
    assert again["markers_bound"] == {}
    assert again["records_sealed"] == []
