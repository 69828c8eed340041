"""A teammate for the cooperating-writers tests: runs `featstore extract --share` (the real
CLI, in this process) once per trial, each trial started together with the other writers.

Usage: python share_worker.py SPEC_JSON_FILE
SPEC: name; barrier (a folder); trials: [{"args": [...], "writers": n}]; first (the number
of the first trial, 0 by default); unit_pause (s slept
after each unit, so writers interleave as they would with a real network); hold (s: the
first unit, holding its leases, writes ``<barrier>/holding.<name>`` and sleeps this long
before it computes: the moment a test kills or pauses this writer); a trial's "after"
names such a file: the trial starts once it exists.
Prints one JSON line: per trial {"exit", "stdout", "output"}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def wait_for_all(barrier: Path, trial: int, name: str, writers: int) -> None:
    (barrier / f"{trial}.{name}").touch()
    deadline = time.monotonic() + 400
    while len(list(barrier.glob(f"{trial}.*"))) < writers:
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: the other writers of trial {trial} never came")
        time.sleep(0.05)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    barrier = Path(spec["barrier"])
    from click.testing import CliRunner
    from featstore.cli.main import cli

    import featstore.extract as fx
    import featstore.extract.distributed as dist

    real_unit, real_extract = dist.run_unit, fx.extract
    held = []

    def slow_unit(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = real_unit(*args, **kwargs)
        time.sleep(float(spec.get("unit_pause", 0.0)))
        return out

    def holding_extract(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if spec.get("hold") and not held:
            held.append(kwargs.get("work"))
            work = {k: sorted(v) for k, v in (kwargs.get("work") or {}).items()}
            (barrier / f"holding.{spec['name']}").write_text(json.dumps(work))
            time.sleep(float(spec["hold"]))
        return real_extract(*args, **kwargs)

    dist.run_unit = slow_unit
    fx.extract = holding_extract
    results = []
    for n, trial in enumerate(spec["trials"], start=int(spec.get("first", 0))):
        wait_for_all(barrier, n, spec["name"], int(trial["writers"]))
        if trial.get("after"):  # start once that writer holds its first unit
            deadline = time.monotonic() + 400
            while not (barrier / trial["after"]).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        result = CliRunner().invoke(cli, trial["args"])
        results.append(
            {"exit": result.exit_code, "stdout": result.stdout, "output": result.output[-4000:]}
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
