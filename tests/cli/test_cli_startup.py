"""Starting the CLI imports no network code: torch is imported by the commands that run one."""

from __future__ import annotations

import subprocess
import sys


def test_cli_import_does_not_import_torch() -> None:
    code = (
        "import sys, featstore.cli.main\n"
        "heavy = [m for m in ('torch', 'torchvision', 'timm', 'transformers') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
