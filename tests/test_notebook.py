"""The quickstart notebook executes top to bottom (with a few training steps)."""

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "experiments" / "notebooks" / "quickstart.ipynb"


def test_notebook_is_committed_without_outputs():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  code_cells = [c for c in notebook.cells if c.cell_type == "code"]
  assert code_cells
  assert all(not c.outputs and c.execution_count is None for c in code_cells)


@pytest.mark.slow
def test_quickstart_notebook_executes(monkeypatch):
  monkeypatch.setenv("WGAN_GP_NOTEBOOK_STEPS", "3")  # inherited by the kernel
  monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows figures
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(notebook, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
  outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "step 3: Wasserstein estimate" in text  # trained inline, twice
  assert text.count("step 3:") == 2
  assert "3 trials × 3 steps" in text
  figures = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(figures) == 3  # samples; gp vs clip; the vectorised λ
