"""The notebooks are executed, top to bottom, in a real Jupyter kernel, so they cannot rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.server import REPO
from tests.support.shared import HAS_SHARED, NO_SHARED, SHARED

pytestmark = [pytest.mark.shared, pytest.mark.skipif(not HAS_SHARED, reason=NO_SHARED)]

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPECTED = {  # what each one must have printed
    "01_build_index.ipynb": "photos the index has never seen",
    "02_evaluate.ipynb": "recall",
    "03_train_head.ipynb": "validation accuracy",
    "04_embedding_map.ipynb": "purity",
}


def test_every_notebook_is_tested():
    assert {p.name for p in NOTEBOOKS} == set(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path, monkeypatch, artifacts):
    monkeypatch.setenv("NOTEBOOK_WORK", str(tmp_path))
    monkeypatch.setenv("SPECIES_SHARED_DIR", str(SHARED))
    monkeypatch.setenv("MODELS_DIR", str(SHARED / "models"))
    book = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), (
        "commit it cleared"
    )
    NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    (artifacts / "notebooks").mkdir(exist_ok=True)
    nbformat.write(book, artifacts / "notebooks" / path.name)
    printed = "".join(
        output.get("text", "") for cell in book.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert EXPECTED[path.name] in printed
    images = [
        o
        for cell in book.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if "image/png" in o.get("data", {})
    ]
    assert images or path.name == "01_build_index.ipynb"
