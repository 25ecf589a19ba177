"""Every example notebook executes without a failing cell (nbclient, kernel ``python3``).

The kernel spec is written into ``tmp_path`` by ipykernel itself, pointing at this interpreter,
and put first on ``JUPYTER_PATH``: the test needs no ``jupyter kernelspec install`` on a fresh
machine and cannot pick up another interpreter's ``python3`` kernel from the user's directory.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from _cli_support import EXAMPLES, ROOT

nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")

NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))
CELL_TIMEOUT_S = 60


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``python3`` kernel on this interpreter, found before any other, with silo importable."""
    kernels = tmp_path / "jupyter" / "kernels"
    kernels.mkdir(parents=True)
    kernelspec.write_kernel_spec(kernels / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("MPLBACKEND", "Agg")


def test_every_notebook_is_covered() -> None:
    assert NOTEBOOKS == ["error_handling.ipynb", "fed_avg.ipynb", "quickstart.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, name


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", NOTEBOOKS)
@pytest.mark.usefixtures("kernel_env")
def test_notebook_runs(name: str) -> None:
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(EXAMPLES)}},
    )
    client.execute()
    errors = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors, errors
