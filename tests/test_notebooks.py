"""The notebooks stay clean in git and thin: a parameters cell, no outputs, no function or class definitions."""

import ast
import re
from pathlib import Path

import nbformat
import pytest

from nexara_lib.config import SCHEMA

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_in_order():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert numbers[:7] == ["01", "02", "03", "04", "05", "06", "07"] and numbers == sorted(set(numbers))
    assert "09" in numbers  # the alert review (the field loop)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_thin(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    params = ast.parse(tagged[0].source)
    names = {t.id for node in params.body if isinstance(node, ast.Assign) for t in node.targets}
    assert {"run_dir", "param_files"} <= names
    assert not names - {"run_dir", "param_files"} - set(SCHEMA), "parameters cell sets unknown keys"
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "outputs are stripped"
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defs, "logic belongs in nexara_lib, not in notebooks"
    assert nb.metadata["kernelspec"]["name"] == "nexara"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_is_one_library_call_and_a_display(path):
    """A notebook section is markdown plus one stage call (and what it shows): the logic is in
    nexara_lib.stages, never spread over a cell of several library calls."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
            continue
        statements = [n for n in ast.parse(cell.source).body if not isinstance(n, (ast.Import, ast.ImportFrom))]
        assert len(statements) <= 2, f"a cell of {len(statements)} statements:\n{cell.source}"
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nexara_lib"):
                assert node.module.split(".")[1] in ("stages", "run"), (
                    f"import notebook glue from stages: {node.module}"
                )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_cites_only_files_of_the_repository(path):
    root = path.parents[1]
    text = path.read_text(encoding="utf-8")
    for name in set(re.findall(r"\b[A-Z][A-Z_]+\.md\b", text)):
        assert (root / name).is_file(), f"{path.name} cites {name}, which is not in the repository"
