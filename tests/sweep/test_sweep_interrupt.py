"""Ctrl-C stops a parallel sweep within seconds, queued cells included; nothing computed after
the interrupt is written; the rerun continues from the cells that were done."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from featstore.datasets import build_dataset
from featstore.store import open_store

DRIVER = Path(__file__).with_name("interrupt_driver.py")
N_CELLS = 32


def _dataset():
    n_per, labels, splits = 200, [], []
    for c in range(3):
        labels += [c] * n_per
        splits += ["train"] * 150 + ["test"] * 50
    n = len(labels)
    return build_dataset(
        "big",
        [f"i{i}" for i in range(n)],
        [f"builtin:none/{i}" for i in range(n)],
        np.asarray(labels, np.int32),
        splits,
        ["a", "b", "c"],
        [f"hash{i}" for i in range(n)],
        source={"kind": "test"},
    )


def _sweep(store: str, spec: Path, *extra: str, **kw):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, str(DRIVER), store, str(spec), "--workers", "2", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_ctrl_c_stops_the_sweep_and_the_rerun_continues(tmp_path: Path) -> None:
    store_url = str(tmp_path / "int.zarr")
    open_store(store_url).put_dataset(_dataset())
    spec = tmp_path / "int.yaml"
    spec.write_text(
        "name: int\ndatasets: [{name: big, tasks: [classify]}]\n"
        "networks: [{name: fakenet, layers: [l1, l2, l3, l4]}]\npooling: [avg, max]\n"
        "transforms: [l2, 'pca=32,l2']\nclassifiers: [svm, logreg]\nbaseline: {layer: l1}\n"
    )

    def n_records() -> int:
        return len(open_store(store_url, mode="r").result_keys())

    proc = _sweep(store_url, spec)
    lines: list[tuple[float, str]] = []  # stderr, read from the start (a full pipe would block)
    reader = threading.Thread(
        target=lambda: lines.extend((time.monotonic(), ln.decode()) for ln in proc.stderr),
        daemon=True,
    )
    reader.start()
    deadline = time.monotonic() + 240
    while n_records() == 0:  # the first cell lands
        assert proc.poll() is None, "".join(ln for _, ln in lines)
        assert time.monotonic() < deadline, "no cell finished in time"
        time.sleep(0.1)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)  # the sweep stops at once; the interpreter's teardown follows
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the sweep did not exit within 30 s of Ctrl-C")
    reader.join(timeout=5)
    assert proc.returncode == 130, "".join(ln for _, ln in lines)
    done = n_records()
    said_at, last = lines[-1]
    match = re.search(rf"interrupted; (\d+) of {N_CELLS} cells done, rerun continues\n$", last)
    assert match, "".join(ln for _, ln in lines)
    # a worker may finish a cell just before the parent reads it: at most one per worker
    assert int(match.group(1)) <= done <= int(match.group(1)) + 2
    assert said_at - t0 < 3
    assert 0 < done < N_CELLS
    time.sleep(3)  # terminated workers write nothing more
    assert n_records() == done

    rerun = _sweep(store_url, spec, "--json")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["cached_results"] == done
    assert summary["evaluated"] == N_CELLS - done
    assert summary["failed"] == []
    assert n_records() == N_CELLS
