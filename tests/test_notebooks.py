"""The book's notebooks: one parseable parameters cell each, listed in the toc, params sets valid."""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import nbformat
import papermill as pm
import pytest
import yaml

from isoclip.notebooks import NOTEBOOK_DIR, PARAMS_DIR, load_params, notebook_paths

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = notebook_paths()


def _ipynb(path: Path, tmp_path: Path) -> Path:
    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    out = tmp_path / f"{path.stem}.ipynb"
    nbformat.write(nb, out)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_hidden_parameters_cell_fully_parsed(path: Path, tmp_path: Path) -> None:
    nb = jupytext.read(path)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: expected exactly one `parameters` cell"
    assert "remove-cell" in cells[0].metadata["tags"], f"{path.name}: tag it remove-cell"
    assigned = [n.targets[0].id for n in ast.parse(cells[0].source).body
                if isinstance(n, ast.Assign)]
    parsed = pm.inspect_notebook(str(_ipynb(path, tmp_path)))
    # papermill silently drops a parameter whose line it cannot parse (e.g. '=' in a comment)
    assert list(parsed) == assigned, f"{path.name}: papermill parsed {list(parsed)}"
    for name in assigned:
        assert parsed[name]["help"], f"{path.name}: parameter {name} needs a comment"


def test_every_notebook_in_the_toc() -> None:
    toc = (ROOT / "_toc.yml").read_text()
    for path in NOTEBOOKS:
        assert f"executed/{path.stem}" in toc, f"{path.stem} is not in _toc.yml"


@pytest.mark.parametrize("params", sorted(PARAMS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_parameter_sets_name_real_parameters(params: Path, tmp_path: Path) -> None:
    data = load_params(str(params))
    declared = {p.stem: set(pm.inspect_notebook(str(_ipynb(p, tmp_path)))) for p in NOTEBOOKS}
    everything = set().union(*declared.values())
    for k in data.get("common") or {}:
        assert k in everything, f"{params.name}: common parameter {k!r} is in no notebook"
    for nb, values in (data.get("notebooks") or {}).items():
        assert nb in declared, f"{params.name}: no notebook {nb!r}"
        for k in values or {}:
            assert k in declared[nb], f"{params.name}: {nb} has no parameter {k!r}"


def test_unknown_parameter_set_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="known sets"):
        load_params("no-such-set")


def test_toc_and_config_are_valid_yaml() -> None:
    assert yaml.safe_load((ROOT / "_toc.yml").read_text())["root"] == "book/intro"
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert NOTEBOOK_DIR.name == "notebooks"
