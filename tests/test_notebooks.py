"""The notebooks in experiments/notebooks/ run top to bottom, and each .ipynb matches its .py.

Each notebook is a jupytext pair: the percent-format ``.py`` is the one to edit, the ``.ipynb``
(outputs stripped) is generated from it with ``jupytext --sync NOTEBOOK.py``. The tour runs in
``make test``; the two that train small experiments run in ``make test-all``.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "notebooks"
NAMES = ["01_functional_api_tour", "02_write_your_own_cell", "03_analyse_a_run"]
SLOW = {"02_write_your_own_cell", "03_analyse_a_run"}


def _params():
    return [pytest.param(n, id=n, marks=[pytest.mark.slow] if n in SLOW else []) for n in NAMES]


def test_every_notebook_is_listed():
    found = {p.stem for p in NOTEBOOKS.glob("*.py")} | {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert found == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_is_in_sync_with_py(name):
    jupytext = pytest.importorskip("jupytext")
    py = jupytext.read(NOTEBOOKS / f"{name}.py")
    ipynb = jupytext.read(NOTEBOOKS / f"{name}.ipynb")
    fix = f"run: jupytext --sync experiments/notebooks/{name}.py"
    cells = lambda nb: [(c.cell_type, c.source) for c in nb.cells]  # noqa: E731
    assert cells(ipynb) == cells(py), f"{name}.ipynb differs from {name}.py; {fix}"
    assert py.metadata["jupytext"]["formats"] == "ipynb,py:percent", fix
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{name}.ipynb has outputs; strip them ({fix})"
            )


@pytest.mark.parametrize("name", _params())
def test_notebook_runs(name):
    pytest.importorskip("nbmake")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake",
         "--nbmake-timeout=900", str(NOTEBOOKS / f"{name}.ipynb")],
        capture_output=True, text=True, timeout=1200, cwd=NOTEBOOKS,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
