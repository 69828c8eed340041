"""Kill a store operation at its k-th write, for every k: the crash tests' fault injection.

Usage: python crash_worker.py SPEC_JSON

SPEC: {"op": "add" | "copy" | "import" | "upgrade", "template": DIR, "work": DIR,
"every": STRIDE (default 1), ...}. The template folder is copied to WORK/<k> and a forked
child runs the operation there with every write step counted (each zarr object written,
each rename, link, replace, file and folder removal, each folder swap); at step k the child
dies with os._exit (what kill -9 leaves: no cleanup, no flush). k = 0 runs it whole and
counts its N steps (WORK/0/steps); then k = 1, 1 + STRIDE, ... and N. Prints the JSON list
of the k that were cut (each WORK/<k> holds what that kill left).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

KILLED = 77


def _operation(spec: dict[str, Any]) -> Callable[[Path], None]:
    """The operation of ``spec``, run on one copy of the template (prepared before forking)."""
    from featstore.store import open_store

    op = spec["op"]
    if op == "add":
        from featstore.datasets import dataset_from_source

        dataset = dataset_from_source(spec["name"], spec["source"])

        def add(case: Path) -> None:
            open_store(str(case / "s.zarr")).put_dataset(dataset, replace=spec["replace"])

        return add
    if op == "copy":
        from featstore.store.copy import copy_store

        def copy(case: Path) -> None:
            src = open_store(str(case / "src.zarr"), mode="r")
            copy_store(src, open_store(str(case / "dst.zarr")))

        return copy
    if op == "import":
        from featstore.store.copy import import_hdf5

        def import_(case: Path) -> None:
            import_hdf5(case / "src.h5", open_store(str(case / "dst.zarr")))

        return import_
    if op == "upgrade":
        from featstore.store.upgrade import upgrade_store

        def upgrade(case: Path) -> None:
            upgrade_store(open_store(str(case / "s.zarr")))

        return upgrade
    raise SystemExit(f"unknown op {op}")


def _install_hooks(limit: int, counter: Any) -> None:
    """Count every write step; die at step ``limit`` (0: never) before taking it."""
    import zarr.storage._local as zarr_local

    import featstore.store.zarr_store as zarr_store

    def step() -> None:
        n = next(counter)
        if limit and n == limit:
            os._exit(KILLED)

    def wrap(owner: Any, name: str) -> None:
        real = getattr(owner, name)

        def hooked(*args: Any, **kwargs: Any) -> Any:
            step()
            return real(*args, **kwargs)

        setattr(owner, name, hooked)

    wrap(zarr_local, "_put")  # every zarr object (zarr.json, chunk) written
    for name in ("replace", "rename", "link", "remove"):  # unlink: only temporaries
        wrap(os, name)
    wrap(shutil, "rmtree")
    wrap(zarr_store, "exchange")  # the folder swap of a rewritten dataset


def _run_cut(run: Callable[[Path], None], template: Path, work: Path, k: int) -> int:
    """Run the operation on a fresh copy of the template, killed at step ``k`` (0: never);
    returns the number of steps it took (k = 0) or k."""
    case = work / str(k)
    shutil.copytree(template, case)
    pid = os.fork()
    if pid == 0:  # the child: run the operation, killed at step k
        counter = itertools.count(1)
        _install_hooks(k, counter)
        try:
            run(case)
        except BaseException as exc:  # the parent reports it
            print(f"k={k}: {type(exc).__name__}: {exc}", file=sys.stderr)
            os._exit(1)
        (case / "steps").write_text(str(next(counter) - 1))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != (KILLED if k else 0):
        raise SystemExit(f"the operation ended with exit {code} at k={k}, not killed there")
    return int((case / "steps").read_text()) if k == 0 else k


def main() -> None:
    spec = json.loads(sys.argv[1])
    template, work = Path(spec["template"]), Path(spec["work"])
    run = _operation(spec)
    # imported once here, not in every child (open_store imports its backend lazily)
    import featstore.store.hdf5_store
    import featstore.store.zarr_store  # noqa: F401

    steps = _run_cut(run, template, work, 0)
    every = int(spec.get("every", 1))
    cut = sorted(set(range(1, steps + 1, every)) | {steps})
    for k in cut:
        _run_cut(run, template, work, k)
    print(json.dumps(cut))


if __name__ == "__main__":
    main()
