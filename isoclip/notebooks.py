"""Execute the book's jupytext notebooks with papermill.

``python -m isoclip.notebooks --params default --out executed`` converts every
``notebooks/NN_slug.md`` (jupytext MyST) to ``.ipynb``, injects the parameters of the named set
``notebooks/params/<name>.yaml`` (only those each notebook declares in its ``parameters`` cell),
executes it with papermill and writes ``<out>/NN_slug.ipynb``. Papermill's injected-parameters
cell is tagged ``remove-cell`` so the book shows no parameter plumbing.

A parameter set is YAML::

    # comment: what this set reproduces
    common:            # applied to every notebook that declares the parameter
      seed: 0
    notebooks:         # per-notebook overrides
      05_spectrum:
        model: ViT-B-32
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
PARAMS_DIR = NOTEBOOK_DIR / "params"


def load_params(name_or_path: str) -> dict[str, Any]:
    """Parameter set by name (``notebooks/params/<name>.yaml``) or by path."""
    p = Path(name_or_path)
    if not p.suffix:
        p = PARAMS_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        known = sorted(q.stem for q in PARAMS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"--params {name_or_path!r}: no file {p}; known sets: {known}")
    data = yaml.safe_load(p.read_text()) or {}
    unknown = set(data) - {"common", "notebooks", "description"}
    if unknown:
        raise ValueError(f"{p}: unknown top-level keys {sorted(unknown)}; "
                         "expected 'common', 'notebooks', 'description'")
    return data


def notebook_paths(selected: list[str] | None = None) -> list[Path]:
    paths = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.md"))
    if selected:
        wanted = set(selected)
        paths = [p for p in paths if p.stem in wanted or p.stem[:2] in wanted]
        if not paths:
            raise ValueError(f"--only {selected}: no notebook matches; have "
                             f"{[p.stem for p in sorted(NOTEBOOK_DIR.glob('[0-9][0-9]_*.md'))]}")
    return paths


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def run(params: str = "default", out: str | Path = "executed", only: list[str] | None = None,
        overrides: dict[str, Any] | None = None, kernel: str = "python3",
        train_missing: bool = False) -> list[Path]:
    """Execute the selected notebooks; returns the written paths.

    The notebooks only load trained models (``make models`` trains them beforehand, see
    :mod:`isoclip.studies.manifest`): a chapter that needs a model missing from the cache
    fails with a message naming it, unless ``train_missing`` lets it train the model itself.
    """
    from isoclip.training.trainer import MODELS_ONLY_ENV
    import jupytext
    import nbformat
    import papermill as pm

    # Figures must be rendered into the notebook (image/png outputs): a non-inline backend
    # inherited from the environment (e.g. MPLBACKEND=Agg) would leave glued figures empty.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    data = load_params(params)
    out_dir = Path(out)
    if not out_dir.is_absolute():
        out_dir = ROOT / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    tmp_dir = Path(tempfile.mkdtemp(prefix="isoclip-notebooks-"))
    for src in notebook_paths(only):
        nb = jupytext.read(src)
        src_ipynb = tmp_dir / f"{src.stem}.ipynb"
        declared = pm.inspect_notebook(_write_tmp(nb, src_ipynb))
        per_notebook = (data.get("notebooks") or {}).get(src.stem) or {}
        values = {**(data.get("common") or {}), **per_notebook, **(overrides or {})}
        injected = {k: v for k, v in values.items() if k in declared}
        dest = out_dir / f"{src.stem}.ipynb"
        t0 = time.perf_counter()
        print(f"[notebooks] {src.stem} {injected or ''}", flush=True)
        with _environ(MODELS_ONLY_ENV, "0" if train_missing else "1"):  # the kernel's
            pm.execute_notebook(str(src_ipynb), str(dest), parameters=injected,
                                kernel_name=kernel, cwd=str(ROOT), progress_bar=False)
        src_ipynb.unlink()
        executed = nbformat.read(dest, as_version=4)
        for cell in executed.cells:
            tags = cell.get("metadata", {}).get("tags", [])
            if "injected-parameters" in tags and "remove-cell" not in tags:
                tags.append("remove-cell")
        nbformat.write(executed, dest)
        print(f"[notebooks] {src.stem} done in {time.perf_counter() - t0:.0f} s", flush=True)
        written.append(dest)
    tmp_dir.rmdir()
    return written


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """Set environment variable ``name`` inside the block, restored on exit."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _write_tmp(nb: Any, path: Path) -> str:
    import nbformat

    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return str(path)


@dataclass(frozen=True)
class Parameter:
    """One parameter of a notebook's ``parameters`` cell: name, default (as written) and the
    comment that explains it."""

    name: str
    default: str
    help: str


def notebook_parameters(stem: str) -> list[Parameter]:
    """The parameters a notebook declares in its ``parameters`` cell, in order, read from
    ``notebooks/<stem>.md`` (``stem``: the notebook's name or its two-digit number)."""
    import ast
    import io
    import tokenize

    import jupytext

    (path,) = notebook_paths([stem])
    cells = [c for c in jupytext.read(path).cells
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path.name}: expected one cell tagged 'parameters', found {len(cells)}")
    source = cells[0].source
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    params = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            default = ast.get_source_segment(source, node.value) or ""
            params.append(Parameter(node.targets[0].id, default,
                                    comments.get(node.end_lineno or node.lineno, "")))
    return params


@dataclass(frozen=True)
class RerunBox:
    """The "Re-run this chapter" box of a chapter: the command and the parameters with their
    defaults, read from the notebook's own ``parameters`` cell (so it cannot go stale)."""

    stem: str
    parameters: list[Parameter]

    @property
    def command(self) -> str:
        names = {p.name for p in self.parameters}
        if "model" in names:
            example = "model=ViT-B-32 pretrained=openai"
            if "data_root" in names:
                example += " dataset=cub2011 data_root=/path/to/datasets"
        else:
            example = "name=value" if names else ""
        tail = f" --set {example}" if example else ""
        return f".venv/bin/python -m isoclip.notebooks --only {self.stem[:2]} --out my_runs{tail}"

    @property
    def takes_a_model(self) -> bool:
        return any(p.name == "model" for p in self.parameters)

    def _scope(self) -> str:
        if self.takes_a_model:
            return ("This chapter runs on any open_clip model and pretrained tag (parameters "
                    "<code>model</code>, <code>pretrained</code>): see "
                    '<a href="../book/reproduce.html">Reproduce on real models</a>.')
        return ("This chapter runs on the embedded default only: it has no <code>model</code> "
                "parameter.")

    def _repr_html_(self) -> str:
        import html

        import pandas as pd

        from isoclip.studies.report import format_table

        rows = pd.DataFrame([(p.name, p.default, p.help) for p in self.parameters],
                            columns=["parameter", "default", "meaning"])
        table = format_table(rows, caption="Parameters of this chapter and their defaults "
                             "(override with --set name=value; values are YAML)", index=False)
        return ('<div class="admonition tip rerun-box">'
                '<p class="admonition-title">Re-run this chapter</p>'
                f'<div class="highlight"><pre>{html.escape(self.command)}</pre></div>'
                f"<p>{self._scope()} Output: <code>my_runs/{html.escape(self.stem)}.ipynb"
                "</code>.</p>"
                f"{table._repr_html_()}</div>")

    def __repr__(self) -> str:
        lines = ["Re-run this chapter:", f"  {self.command}"]
        lines += [f"  {p.name} = {p.default}  # {p.help}" for p in self.parameters]
        return "\n".join(lines)


def rerun_box(stem: str) -> RerunBox:
    """The "Re-run this chapter" box of notebook ``stem`` (name or two-digit number); the
    last expression of a hidden cell at the top of each chapter."""
    (path,) = notebook_paths([stem])
    return RerunBox(path.stem, notebook_parameters(path.stem))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="default", help="parameter set name or YAML path")
    ap.add_argument("--out", default="executed", help="output folder for executed notebooks")
    ap.add_argument("--only", nargs="*", help="notebook stems or 2-digit numbers to run")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override a parameter for every notebook (YAML value)")
    ap.add_argument("--train-missing", action="store_true",
                    help="let a notebook train a model missing from the cache (default: only "
                         "load; `make models` trains the book's models)")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        overrides[k] = _parse_value(v)
    run(args.params, args.out, args.only, overrides, train_missing=args.train_missing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
