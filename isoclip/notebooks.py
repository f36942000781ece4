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
import os
import sys
import tempfile
import time
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
        overrides: dict[str, Any] | None = None, kernel: str = "python3") -> list[Path]:
    """Execute the selected notebooks; returns the written paths."""
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
        pm.execute_notebook(str(src_ipynb), str(dest), parameters=injected, kernel_name=kernel,
                            cwd=str(ROOT), progress_bar=False)
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


def _write_tmp(nb: Any, path: Path) -> str:
    import nbformat

    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="default", help="parameter set name or YAML path")
    ap.add_argument("--out", default="executed", help="output folder for executed notebooks")
    ap.add_argument("--only", nargs="*", help="notebook stems or 2-digit numbers to run")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override a parameter for every notebook (YAML value)")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        overrides[k] = _parse_value(v)
    run(args.params, args.out, args.only, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
