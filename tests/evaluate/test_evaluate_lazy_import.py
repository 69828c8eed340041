"""Importing featstore.evaluate (and its public names) imports no torch (issue 13 item 9)."""

from __future__ import annotations

import subprocess
import sys

CODE = (
    "import sys, featstore.evaluate as e; "
    "before = 'torch' in sys.modules; "
    "e.ClassifierSpec; e.classify_arrays; "
    "print(before, 'torch' in sys.modules)"
)


def test_evaluate_package_imports_no_torch() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr


def test_unknown_name_is_attribute_error() -> None:
    import featstore.evaluate as e

    try:
        e.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:  # pragma: no cover - the lazy lookup must refuse unknown names
        raise AssertionError("featstore.evaluate.no_such_name did not raise")
