"""Importing featstore.evaluate (and its public names) imports no torch (issue 13 item 9)."""

from __future__ import annotations

import subprocess
import sys

import pytest

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

    with pytest.raises(AttributeError, match="no_such_name"):
        e.no_such_name  # noqa: B018
