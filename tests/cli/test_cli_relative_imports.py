"""The CLI's modules import each other relatively (see cli/__init__.py): mypy checks the
folder as the package ``cli``, so an absolute ``featstore.cli`` import would reach it as Any
and leave the commands it uses unchecked, with no error to say so."""

from __future__ import annotations

import ast
from pathlib import Path

CLI = Path(__file__).resolve().parents[2] / "cli"


def _absolute_cli_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [n for n in names if n == "featstore.cli" or n.startswith("featstore.cli.")]
    return found


def test_the_check_sees_an_absolute_import() -> None:
    assert _absolute_cli_imports("from featstore.cli.common import json_option") == [
        "featstore.cli.common"
    ]
    assert _absolute_cli_imports("import featstore.cli.main") == ["featstore.cli.main"]
    assert _absolute_cli_imports("from .common import json_option") == []


def test_cli_modules_import_each_other_relatively() -> None:
    modules = sorted(CLI.glob("*.py"))
    assert len(modules) > 10  # the folder was found
    bad = {p.name: _absolute_cli_imports(p.read_text()) for p in modules}
    assert {name: found for name, found in bad.items() if found} == {}
