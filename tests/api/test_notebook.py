"""examples/notebook.ipynb: committed without outputs, and it runs top to bottom."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"


def test_the_committed_notebook_has_no_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"code cells {dirty} carry outputs: clear them before committing"


def test_the_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    nbclient = pytest.importorskip("nbclient", reason="dev extra: pip install -e '.[dev]'")
    import nbformat
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name=NATIVE_KERNEL_NAME,
        kernel_manager_class="jupyter_client.manager.KernelManager",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.km = client.create_kernel_manager()
    client.km.kernel_spec.argv[0] = sys.executable  # the kernel runs this test's Python
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "test accuracy" in text
    assert "rows streamed" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the results plot
    assert (tmp_path / "stores" / "notebook.zarr").is_dir()
