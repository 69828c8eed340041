"""`featstore sweep` in a process of its own, on fake features (no network), for the Ctrl-C test.

Usage: python interrupt_driver.py STORE SPEC [sweep options ...]. The store must hold the
dataset; entries are written by a fake extractor (deterministic class centres + noise).
"""

from __future__ import annotations

import sys

import numpy as np
from featstore.cli.main import cli

from featstore.keys import make_key
from featstore.sweep import plan as plan_mod
from featstore.sweep import run as run_mod
from featstore.sweep.plan import factor_planner

DIM = 96


def fake_extract(store, ds, group, options, progress):
    y = np.asarray(ds.labels)
    for e in group.missing:
        rng = np.random.default_rng(abs(hash((e.layer, e.pooling, e.view))) % 2**32)
        centres = np.random.default_rng(7).normal(size=(int(y.max()) + 1, DIM))
        x = centres[y] + 2.0 * rng.normal(size=(ds.n, DIM))
        attrs = {
            "kind": "features",
            "images": ds.images_id,
            "dataset_name": ds.name,
            "model": {"name": group.network, "source": "random", "weights_sha256": "0" * 64},
            "model_name": group.network,
            "layer": e.layer,
            "preprocess": {},
            "view": e.view,
            "pooling": e.pooling,
            "dtype": "float32",
            "compute_dtype": "float32",
        }
        key = make_key(
            "feat",
            {k: v for k, v in attrs.items() if k not in ("kind", "dataset_name", "model_name")},
        )
        entry = store.create_entry(key, attrs, x.shape, dtype="float32", chunk_rows=256)
        for i in entry.missing_chunks():
            a, b = entry.chunk_bounds(i)
            entry.write_chunk(i, x[a:b].astype(np.float32))
    return {"forward_batches": 1}


if __name__ == "__main__":
    plan_mod.extract_planner = factor_planner  # the fake network is not in the registry
    run_mod._call_extract = fake_extract
    store, spec, *rest = sys.argv[1:]
    cli.main(["sweep", spec, "--store", store, *rest], prog_name="featstore")
