"""The "Re-run this chapter" box: parameters read from each notebook's parameters cell agree
with papermill's own reading of it, and the box says whether the chapter takes a model."""

from __future__ import annotations

import jupytext
import nbformat
import papermill as pm
import pytest

from isoclip.notebooks import notebook_parameters, notebook_paths, rerun_box


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_parameters_match_papermill(path, tmp_path):
    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    ipynb = tmp_path / "nb.ipynb"
    nbformat.write(nb, ipynb)
    expected = pm.inspect_notebook(str(ipynb))
    got = notebook_parameters(path.stem)
    assert [p.name for p in got] == list(expected)
    for p in got:
        assert p.default == expected[p.name]["default"]
        assert p.help  # every parameter is explained by its comment


def test_box_command_and_scope():
    box = rerun_box("05")
    assert box.takes_a_model
    assert "--only 05" in box.command and "model=ViT-B-32" in box.command
    html = box._repr_html_()
    assert "Re-run this chapter" in html and "reproduce.html" in html
    assert "<table" in html and "window" in html
    plain = rerun_box("01")
    assert not plain.takes_a_model and "model=" not in plain.command
    assert "embedded default only" in plain._repr_html_()
    assert repr(plain).splitlines()[1].strip() == plain.command


def test_unknown_notebook_is_named():
    with pytest.raises(ValueError, match="--only"):
        rerun_box("99")
