"""No code runs from a dataset's pickle: the restricted unpickler against crafted payloads,
and through the CLI (CIFAR batches at registration and at extraction, revisited ground truth).
"""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import benchmark_replicas as rep
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_image
from featstore.cli.main import cli

from featstore.datasets.benchmarks import arrays
from featstore.datasets.safe_pickle import load_pickle, loads_pickle
from featstore.errors import DatasetError, UnsafePickleError
from featstore.store import open_store


class Payload:
    """Pickles as ``func(*args)``: what a crafted file runs on a plain pickle.load."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, Payload]:
    touch = f"touch {marker}"
    payloads = {
        "os.system": Payload(os.system, touch),
        "subprocess.call": Payload(subprocess.call, ["touch", str(marker)]),
        "builtins.eval": Payload(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
    }
    if hasattr(os, "system") and os.name == "posix":
        import posix

        payloads["posix.system"] = Payload(posix.system, touch)
    return payloads


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_code_payloads_are_refused_and_do_not_run(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    for name, payload in _payloads(marker).items():
        data = pickle.dumps({"data": payload}, protocol=protocol)
        with pytest.raises(UnsafePickleError) as info:
            loads_pickle(data, source="crafted.pkl")
        message = str(info.value)
        assert message.startswith("crafted.pkl is refused: its pickle asks for '"), message
        assert "\n" not in message
        assert not marker.exists(), name
    # the plain unpickler would have run it: the payloads are real
    pickle.loads(pickle.dumps(_payloads(marker)["os.system"], protocol=protocol))
    assert marker.exists()


def _global(module: str, name: str, stack: bool) -> bytes:
    """A pickle that only looks up module.name (GLOBAL, or STACK_GLOBAL of protocol 4)."""
    if not stack:
        return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    m, n = module.encode(), name.encode()
    return b"\x80\x04\x8c" + bytes([len(m)]) + m + b"\x8c" + bytes([len(n)]) + n + b"\x93."


@pytest.mark.parametrize("stack", [False, True], ids=["GLOBAL", "STACK_GLOBAL"])
@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("os", "system"),
        ("posix", "system"),
        ("builtins", "getattr"),
        ("builtins", "eval"),
        ("builtins", "__import__"),
        ("__builtin__", "eval"),
        ("numpy", "load"),
        ("numpy", "frombuffer"),
        ("numpy.testing", "assert_equal"),
        ("numpy._core.multiarray", "empty"),
        ("numpy.core.multiarray", "fromfile"),
        ("numpy.lib.format", "read_array"),
        ("copyreg", "_reconstructor"),
        ("_codecs", "decode"),
    ],
)
def test_globals_beyond_data_are_refused(module: str, name: str, stack: bool) -> None:
    with pytest.raises(UnsafePickleError, match=rf"asks for '{module}\.{name}', which is code"):
        loads_pickle(_global(module, name, stack), source="x.pkl")


def test_a_refused_module_is_never_imported(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "sidefx_mod_for_safe_pickle.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef run():\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnsafePickleError):
        loads_pickle(_global("sidefx_mod_for_safe_pickle", "run", False), source="x.pkl")
    assert not marker.exists()
    assert "sidefx_mod_for_safe_pickle" not in sys.modules


def test_numpy_helpers_cannot_allocate_or_build_other_types() -> None:
    # ndarray itself is not callable from a pickle (an object array of any size would be filled)
    call_ndarray = b"\x80\x02cnumpy\nndarray\nJ\x00\xe1\xf5\x05\x85R."
    with pytest.raises(DatasetError, match=r"x.pkl is not a readable pickle"):
        loads_pickle(call_ndarray, source="x.pkl")
    # _reconstruct seeds only a tiny plain ndarray
    big_seed = (
        b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        b"J\x00\xe1\xf5\x05\x85cnumpy\ndtype\nX\x01\x00\x00\x00O\x85R\x87R."
    )
    with pytest.raises(DatasetError, match="seed array larger than numpy writes"):
        loads_pickle(big_seed, source="x.pkl")
    other_type = (
        b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncbuiltins\nset\n"
        b"K\x00\x85X\x01\x00\x00\x00b\x87R."
    )
    with pytest.raises(DatasetError, match=r"only allowed for numpy.ndarray"):
        loads_pickle(other_type, source="x.pkl")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_like_batches_load(protocol: int) -> None:
    data = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)
    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [0, 2, 1, 1],
        b"data": data,
        b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"],
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "scalar": np.float32(1.5),
        "objects": np.array([[1], "a"], dtype=object),
        "misc": (1 + 2j, {1, 2}, frozenset([3]), None, True, 2**70, 1.25),
    }
    loaded = loads_pickle(pickle.dumps(batch, protocol=protocol), source="b", encoding="latin1")
    assert loaded[b"labels"] == [0, 2, 1, 1]
    assert loaded[b"filenames"][3] == b"d.png"
    assert loaded[b"data"].dtype == np.uint8
    assert np.array_equal(loaded[b"data"], data)
    assert np.array_equal(loaded["fortran"], batch["fortran"])
    assert loaded["scalar"] == np.float32(1.5)
    assert type(loaded["scalar"]) is np.float32
    assert loaded["objects"][0] == [1]
    assert loaded["objects"][1] == "a"
    assert loaded["misc"] == batch["misc"]


# A batch as Python 2 wrote the official CIFAR files: protocol 2, byte strings (SHORT_BINSTRING),
# numpy.core.multiarray._reconstruct; read with encoding="latin1" as featstore does.
PY2_BATCH = (
    b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\n"
    b"q\x03K\x00\x85U\x01b\x87Rq\x04(K\x01K\x02K\x03\x86cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01"
    b"\x87Rq\x06(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x06\x00\x01\xfe"
    b"\x03\x04\x05tbU\x06labelsq\x07]q\x08(K\x00K\x01eu."
)


def test_a_python2_batch_loads_with_latin1() -> None:
    batch = loads_pickle(PY2_BATCH, source="py2", encoding="latin1")
    assert batch["labels"] == [0, 1]
    assert batch["data"].dtype == np.uint8
    assert batch["data"].tolist() == [[0, 1, 254], [3, 4, 5]]
    assert batch == {"data": batch["data"], "labels": [0, 1]}
    raw = loads_pickle(PY2_BATCH, source="py2", encoding="bytes")
    assert set(raw) == {b"data", b"labels"}


def test_damaged_pickle_is_a_dataset_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"a": list(range(100))})[:20])
    with pytest.raises(DatasetError, match=rf"^{path} is not a readable pickle \(") as info:
        load_pickle(path)
    assert not isinstance(info.value, UnsafePickleError)


# --- through the CLI ---------------------------------------------------------------------------
def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def _crafted_batch(path: Path, marker: Path) -> None:
    batch = {"labels": [0], "data": Payload(os.system, f"touch {marker}")}
    path.write_bytes(pickle.dumps(batch, protocol=2))


def test_cli_refuses_a_crafted_cifar_batch_at_registration(tmp_path: Path) -> None:
    folder = rep.cifar10(tmp_path / "c")
    marker = tmp_path / "pwned"
    _crafted_batch(folder / "data_batch_3", marker)
    store = tmp_path / "s.zarr"
    result = _invoke("datasets", "add", "e", f"cifar10:{folder}", "--store", str(store))
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: {folder / 'data_batch_3'} is refused: its pickle asks for 'posix.system', "
        "which is code, not data (featstore loads only containers, numbers, strings and numpy "
        "arrays from a pickle); use the official, untouched files\n"
    )
    assert not marker.exists()
    assert not store.exists()  # a refused source creates nothing


def test_cli_refuses_a_crafted_cifar_meta_at_registration(tmp_path: Path) -> None:
    folder = rep.cifar10(tmp_path / "c")
    marker = tmp_path / "pwned"
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": Payload(os.system, f"touch {marker}")}, protocol=4)
    )
    result = _invoke("datasets", "add", "e", f"cifar10:{folder}", "--store", str(tmp_path / "s"))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {folder / 'batches.meta'} is refused: its pickle")
    assert len(result.output.splitlines()) == 1
    assert not marker.exists()


def test_cli_refuses_a_crafted_cifar_batch_at_extraction(tmp_path: Path, monkeypatch) -> None:
    folder = rep.cifar10(tmp_path / "c", per_batch=2)
    store = str(tmp_path / "s.zarr")
    added = _invoke("datasets", "add", "c10", f"cifar10:{folder}", "--store", store)
    assert added.exit_code == 0, added.output
    marker = tmp_path / "pwned"
    _crafted_batch(folder / "data_batch_1", marker)  # swapped after registration
    monkeypatch.setattr(arrays, "_cache", type(arrays._cache)())  # a new process reads it again
    result = _invoke(
        "extract", "--store", store, "-d", "c10", "-m", "resnet18", "-l", "penultimate",
        "--weights", "random", "--resize", "32", "--batch-size", "16",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1] == (
        f"Error: {folder / 'data_batch_1'} is refused: its pickle asks for 'posix.system', "
        "which is code, not data (featstore loads only containers, numbers, strings and numpy "
        "arrays from a pickle); use the official, untouched files"
    )
    assert "Traceback" not in result.output
    assert not marker.exists()
    s = open_store(store, mode="r")
    assert not any(s.get_entry(key).is_complete for key in s.entry_keys())


def test_cli_refuses_crafted_revisited_ground_truth(tmp_path: Path) -> None:
    root = tmp_path / "rtiny"
    for i, name in enumerate(["d0", "q0"]):
        make_image(root / "jpg" / f"{name}.jpg", seed=i)
    marker = tmp_path / "pwned"
    cfg = {"imlist": ["d0"], "qimlist": ["q0"], "gnd": [Payload(os.system, f"touch {marker}")]}
    gnd = root / "gnd_rtiny.pkl"
    gnd.write_bytes(pickle.dumps(cfg))
    store = tmp_path / "s.zarr"
    result = _invoke("datasets", "add", "r", f"revisited:{gnd}", "--store", str(store))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {gnd} is refused: its pickle asks for '")
    assert len(result.output.splitlines()) == 1
    assert not marker.exists()
    assert not store.exists()


def test_crafted_label_names_are_refused_not_expanded(tmp_path: Path) -> None:
    """Shared references make a small pickle whose text is exponential: types are checked."""
    folder = rep.cifar10(tmp_path / "c")
    nested: Any = "x"
    for _ in range(60):
        nested = [nested, nested]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [nested]}, protocol=4))
    with pytest.raises(
        DatasetError, match=r"'label_names' must be a list of names, got a list of 1"
    ):
        arrays.load_cifar10("c", str(folder))
