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

Every value is checked before any notebook runs (:func:`check_parameters`): each notebook's
``parameters`` cell is the schema. A name no notebook declares is an error naming its close
matches; a value must have the type of the default (int; float, where ints and ``7e-2`` are
accepted; bool; str; list, item by item), and may be None only where the default is None or
the parameter's comment says what None means. ``--check`` validates and runs nothing.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import functools
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from isoclip.common.schedule import Task
from isoclip.common.types import Modality

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
PARAMS_DIR = NOTEBOOK_DIR / "params"
#: Wall seconds of each chapter and training on a cold build (a scheduling hint, committed;
#: ``<out>/.durations.json`` of the previous run takes precedence).
DURATIONS_HINT = NOTEBOOK_DIR / "durations.json"


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
    """A ``--set`` value: YAML (numbers, null, true/false, lists, quoted strings); text that is
    not a YAML scalar or list (e.g. a path holding ``": "``) is taken as the string itself."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if isinstance(value, dict) else value


def run(params: str = "default", out: str | Path = "executed", only: list[str] | None = None,
        overrides: dict[str, Any] | None = None, kernel: str = "python3",
        train_missing: bool = False, jobs: int = 1, models: bool = False) -> list[Path]:
    """Execute the selected notebooks; returns the written paths (in chapter order).

    The notebooks only load trained models (``make models`` trains them beforehand, see
    :mod:`isoclip.studies.manifest`): a chapter that needs a model missing from the cache
    fails with a message naming it, unless ``train_missing`` lets it train the model itself.

    ``jobs`` notebooks run at once, each in its own kernel process; the chapters share nothing
    but the cache, whose entries are built once under a per-key lock whichever chapter asks
    first (:func:`isoclip.common.cache.cached`), so the executed notebooks do not depend on
    ``jobs``. The longest chapters of the previous run in ``out`` start first
    (``<out>/.durations.json``), which keeps the slowest chapter from starting last. A
    failing notebook stops the run: the others that already started finish, none is started
    after it, and its error is raised.

    ``models=True`` trains the missing models of the manifest in the same run, on the same
    ``jobs`` cores (a two-thread training takes two), in spawned processes with the thread
    count each model's weights were trained with: a chapter starts as soon as the models it
    loads (the manifest's ``used_by``) are in the cache, so chapters run while the other models
    train. Trainings and chapters start by longest remaining path
    (:func:`isoclip.common.schedule.run_tasks`; durations of the previous run, else the
    committed ``notebooks/durations.json``).
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs: expected a positive int (notebooks run at once), got {jobs!r}")
    # every notebook's parameters are checked before the first one runs
    plan = check_parameters(params, only, overrides)
    # Figures must be rendered into the notebook (image/png outputs): a non-inline backend
    # inherited from the environment (e.g. MPLBACKEND=Agg) would leave glued figures empty.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    # Idle OpenMP threads of a kernel sleep instead of spinning: chapters running side by side
    # (or beside a training) then do not slow each other down; the numbers do not depend on it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out_dir = Path(out).absolute()  # relative to the current directory
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = notebook_paths(only)
    durations_file = out_dir / ".durations.json"
    durations = _read_durations(durations_file)
    hint = _read_durations(DURATIONS_HINT)

    def estimate(name: str) -> float:
        return durations.get(name, hint.get(name, 0.0))

    from concurrent.futures import Future, ThreadPoolExecutor

    from isoclip.common.schedule import run_tasks
    from isoclip.training.trainer import MODELS_ONLY_ENV

    with tempfile.TemporaryDirectory(prefix="isoclip-notebooks-") as tmp, \
            _environ(MODELS_ONLY_ENV, "0" if train_missing else "1"), \
            ThreadPoolExecutor(max_workers=jobs) as threads, \
            contextlib.ExitStack() as stack:  # the environment is read by the kernels
        model_tasks, needs = (_model_tasks(jobs, estimate, {s.stem for s in sources}, stack)
                              if models else ([], {}))

        def notebook_task(src: Path) -> Task:
            def start() -> Future[float]:
                return threads.submit(_execute_one, src, plan[src.stem], out_dir, Path(tmp),
                                      kernel)
            return Task(src.stem, start, needs=needs.get(src.stem, frozenset()),
                        estimate=estimate(src.stem))

        def done(task: Task, result: Any, seconds: float) -> None:
            if task.name.startswith("model:"):
                from isoclip.studies.manifest import trained_line

                print(f"[models] {trained_line(result, [task.name[6:]])}", flush=True)
                durations[task.name] = seconds
            else:
                durations[task.name] = float(result)  # the notebook's own wall time

        try:
            run_tasks([*model_tasks, *(notebook_task(src) for src in sources)], jobs, done)
        finally:
            _write_durations(durations_file, durations)
    return [out_dir / f"{src.stem}.ipynb" for src in sources]


def _model_tasks(jobs: int, estimate: Callable[[str], float], stems: set[str],
                 stack: contextlib.ExitStack) -> tuple[list[Task], dict[str, frozenset[str]]]:
    """The trainings of the manifest's missing models as tasks (one spawned process each), and
    for each notebook the names of the training tasks it must wait for."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from isoclip.studies import manifest

    todo = manifest.missing()
    total = len(manifest.unique_models())
    print(f"[models] {total - len(todo)} of {total} in the cache; training {len(todo)} "
          f"beside the notebooks on {jobs} core(s)", flush=True)
    if not todo:
        return [], {}
    procs = stack.enter_context(ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn")))
    tasks = [Task(f"model:{spec.name}", functools.partial(procs.submit, manifest.train_one, spec),
                  cores=spec.threads, estimate=estimate(f"model:{spec.name}"))
             for spec, _, _ in todo]
    return tasks, model_needs(todo, stems)


def model_needs(models: Sequence[tuple[Any, list[str], str]], stems: set[str]
                ) -> dict[str, frozenset[str]]:
    """For each notebook of ``stems``, the training tasks (``"model:<name>"``) among ``models``
    (entries of :func:`isoclip.studies.manifest.unique_models`) it must wait for: those
    declaring it in ``used_by`` under any of their names."""
    from isoclip.studies import manifest

    needs: dict[str, frozenset[str]] = {}
    for spec, names, _ in models:
        for stem in manifest.users(names) & stems:
            needs[stem] = needs.get(stem, frozenset()) | {f"model:{spec.name}"}
    return needs


def _execute_one(src: Path, injected: dict[str, Any], out_dir: Path, tmp: Path,
                 kernel: str) -> float:
    """Execute notebook ``src`` with parameters ``injected`` into ``out_dir``; returns the
    wall time in seconds."""
    import jupytext
    import nbformat
    import papermill as pm

    nb = jupytext.read(src)
    src_ipynb = tmp / f"{src.stem}.ipynb"
    _write_tmp(nb, src_ipynb)
    dest = out_dir / f"{src.stem}.ipynb"
    t0 = time.perf_counter()
    print(f"[notebooks] {src.stem} {injected or ''}", flush=True)
    pm.execute_notebook(str(src_ipynb), str(dest), parameters=injected,
                        kernel_name=kernel, cwd=str(ROOT), progress_bar=False)
    executed = nbformat.read(dest, as_version=4)
    for cell in executed.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(executed, dest)
    seconds = time.perf_counter() - t0
    print(f"[notebooks] {src.stem} done in {seconds:.0f} s", flush=True)
    return seconds


def _read_durations(path: Path) -> dict[str, float]:
    """Chapter -> seconds of the previous run (empty when absent or unreadable)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))}


def _write_durations(path: Path, durations: dict[str, float]) -> None:
    import json

    from isoclip.common.cache import atomic_write_bytes

    try:
        atomic_write_bytes(path, json.dumps(durations, indent=1, sort_keys=True).encode())
    except OSError:
        pass  # only a scheduling hint


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
            if "datasets" in names:
                example += " 'datasets=[cub2011, oxford_pets]' data_root=/path/to/datasets"
            elif "data_root" in names:
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
                '<div class="highlight"><pre style="white-space:pre-wrap;">'
                f"{html.escape(self.command)}</pre></div>"
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


class ParameterError(ValueError):
    """A notebook parameter (``--set`` or a parameter set file) is unknown or of the wrong
    type; the message names it, where it came from and what was expected."""


#: Parameters that name the data a chapter evaluates (one name, or a list of names):
#: ``"embedded"`` and the embedded sets and suites (``"synthetic"``, ``"emoji/all"``, ...) are
#: built in; any other name is a paper dataset read from ``data_root``.
DATASET_PARAMETERS = ("datasets", "text_datasets", "dataset", "text_dataset")
#: The modality of the paper datasets each of :data:`DATASET_PARAMETERS` takes.
_DATASET_MODALITY: dict[str, Modality] = {"datasets": "image", "dataset": "image",
                                          "text_datasets": "text", "text_dataset": "text"}
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_KINDS = {bool: "bool", int: "int", float: "float", str: "str", list: "list", tuple: "list"}


@dataclass(frozen=True)
class ParameterSpec:
    """The type of a notebook parameter, from its default in the ``parameters`` cell.

    ``kind``: ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"list"`` or ``"any"`` (default
    None or not a literal); ``item``: the kind of a list's items when the default's items
    share one; ``nullable``: None is accepted (default None, or the comment mentions None).
    """

    notebook: str
    name: str
    kind: str
    item: str | None
    nullable: bool
    default: Any = None

    def describe(self) -> str:
        text = {"int": "an int", "float": "a float (e.g. 0.07 or 7e-2)", "bool": "true/false",
                "str": "a str", "any": "a value"}.get(self.kind)
        if self.kind == "list":
            text = f"a list of {self.item}" if self.item else "a list"
        return f"{text} or null" if self.nullable and self.kind != "any" else str(text)


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), "any")


def parameter_schema(stem: str) -> dict[str, ParameterSpec]:
    """name -> :class:`ParameterSpec` of every parameter of notebook ``stem``."""
    specs = {}
    for p in notebook_parameters(stem):
        try:
            default = ast.literal_eval(p.default)
        except (ValueError, SyntaxError):
            default = None
        kind = _kind(default) if default is not None else "any"
        item = None
        if kind == "list":
            kinds = {_kind(v) for v in default}
            item = ("float" if kinds == {"int", "float"} else
                    kinds.pop() if len(kinds) == 1 and "any" not in kinds else None)
        specs[p.name] = ParameterSpec(stem, p.name, kind, item,
                                      default is None or "None" in p.help, default)
    return specs


def _coerce(kind: str | None, value: Any) -> tuple[bool, Any]:
    """(ok, value converted to ``kind``); numbers written like ``7e-2`` become floats."""
    if isinstance(value, str) and kind in ("float", "any", None) and _NUMBER.fullmatch(value):
        return True, float(value)
    if kind in ("any", None):
        return not isinstance(value, dict), value
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool), value
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind == "list":
        return isinstance(value, list), value
    return isinstance(value, {"bool": bool, "str": str}[kind]), value


def check_value(spec: ParameterSpec, value: Any, where: str) -> Any:
    """``value`` for parameter ``spec`` (converted), or a :class:`ParameterError`."""
    def error(got: Any) -> ParameterError:
        return ParameterError(f"{where}: parameter {spec.name!r} of {spec.notebook}: expected "
                              f"{spec.describe()}, got {type(got).__name__} {got!r}")

    if value is None:
        if spec.nullable:
            return None
        raise error(value)
    ok, out = _coerce(spec.kind, value)
    if not ok:
        raise error(value)
    if spec.kind == "list" and spec.item:
        items = []
        for v in out:
            ok, v = _coerce(spec.item, v)
            if not ok:
                raise ParameterError(f"{where}: parameter {spec.name!r} of {spec.notebook}: "
                                     f"expected {spec.describe()}, got item "
                                     f"{type(v).__name__} {v!r} in {value!r}")
            items.append(v)
        out = items
    return out


def _unknown(name: str, known: set[str], where: str, scope: str) -> ParameterError:
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    return ParameterError(f"{where}: unknown parameter {name!r} ({scope} declares it). "
                          f"Close matches: {close or 'none'}. Known: {sorted(known)}")


def _params_file(name_or_path: str) -> Path:
    p = Path(name_or_path)
    return p if p.suffix else PARAMS_DIR / f"{name_or_path}.yaml"


def check_parameters(params: str = "default", only: list[str] | None = None,
                     overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Validate a run and return, per selected notebook, the parameters it will receive.

    The parameter set file is checked whole (every notebook), ``overrides`` (``--set``)
    against the selected notebooks; the paper datasets a :data:`DATASET_PARAMETERS` value names
    must be registered, of the parameter's modality; a ``data_root`` override needs a selected
    notebook that reads data (a paper dataset, not only ``"embedded"`` or embedded sets).

    Raises:
        FileNotFoundError: no such parameter set (the message lists the known ones).
        ParameterError: an unknown name (with close matches), a value of the wrong type, an
            unknown dataset or one of the other modality, or ``data_root`` for a run that
            reads no data.
        ValueError: ``only`` selects no notebook.
    """
    data = load_params(params)
    source = _params_file(params)
    schemas = {p.stem: parameter_schema(p.stem) for p in notebook_paths()}
    everything = set().union(*(set(s) for s in schemas.values()))
    for name, value in (data.get("common") or {}).items():
        if name not in everything:
            raise _unknown(name, everything, f"{source}: common", "no notebook")
        for schema in schemas.values():
            if name in schema:
                check_value(schema[name], value, f"{source}: common")
    sections = data.get("notebooks") or {}
    for stem, values in sections.items():
        if stem not in schemas:
            close = difflib.get_close_matches(str(stem), sorted(schemas), n=3)
            raise ParameterError(f"{source}: notebooks: no notebook {stem!r}. Close matches: "
                                 f"{close or 'none'}. Known: {sorted(schemas)}")
        for name, value in (values or {}).items():
            if name not in schemas[stem]:
                raise _unknown(name, set(schemas[stem]), f"{source}: notebooks: {stem}",
                               f"{stem} never")
            check_value(schemas[stem][name], value, f"{source}: notebooks: {stem}")
    selected = [p.stem for p in notebook_paths(only)]
    chosen = set().union(*(set(schemas[s]) for s in selected))
    for name, value in (overrides or {}).items():
        if name not in chosen:
            raise _unknown(name, chosen, "--set", "no selected notebook")
        for stem in selected:
            if name in schemas[stem]:
                check_value(schemas[stem][name], value, "--set")
    def where_of(name: str) -> str:
        return "--set" if name in (overrides or {}) else str(source)

    plan: dict[str, dict[str, Any]] = {}
    for stem in selected:
        values = {**(data.get("common") or {}), **(sections.get(stem) or {}),
                  **(overrides or {})}
        where = {k: "--set" if k in (overrides or {}) else str(source) for k in values}
        plan[stem] = {k: check_value(schemas[stem][k], v, where[k])
                      for k, v in values.items() if k in schemas[stem]}
    for stem in selected:
        for d in DATASET_PARAMETERS:
            if d in plan[stem]:
                _check_dataset_names(d, plan[stem][d], f"{where_of(d)}: {stem}")
    if (overrides or {}).get("data_root") is not None and not any(
            _paper_names(plan[s].get(d, schemas[s][d].default))
            for s in selected if "data_root" in schemas[s]
            for d in DATASET_PARAMETERS if d in schemas[s]):
        with_data = [q.stem for q in sorted(PARAMS_DIR.glob("*.yaml"))
                     if _reads_data(load_params(str(q)))]
        raise ParameterError(
            f"--set data_root: parameter set {Path(params).stem!r} reads no data in "
            f"{', '.join(selected)} (every {' / '.join(DATASET_PARAMETERS)} names built-in "
            f"data only: 'embedded', synthetic or emoji sets), so data_root would be ignored. "
            f"Use a set that reads data ({with_data}) or set datasets=[<name>, ...].")
    return plan


def _paper_names(value: Any) -> list[str]:
    """The paper datasets (read from ``data_root``) a dataset parameter's value names: every
    name but ``"embedded"`` and the embedded sets and suites."""
    from isoclip.data.suites import is_embedded

    names = value if isinstance(value, list) else [value]
    return [n for n in names
            if isinstance(n, str) and n != "embedded" and not is_embedded(n)]


def _check_dataset_names(param: str, value: Any, where: str) -> None:
    """Every paper dataset ``value`` names is registered and of ``param``'s modality."""
    from isoclip.data.registry import available_datasets

    modality = _DATASET_MODALITY[param]
    known = [i.name for i in available_datasets(modality)]
    others = {i.name for i in available_datasets()} - set(known)
    for name in _paper_names(value):
        if name not in known:
            what = (("a text set" if modality == "image" else "an image set") if name in others
                    else "not a registered dataset")
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            raise ParameterError(
                f"{where}: parameter {param!r}: {name!r} is {what}; {modality} sets: "
                f"{', '.join(known)} (or the embedded sets). Close matches: {close or 'none'}")


def _reads_data(data: dict[str, Any]) -> bool:
    return bool(params_datasets(data))


def params_datasets(params: str | dict[str, Any]) -> list[str]:
    """Every paper dataset a parameter set names (common section first, then the notebooks'
    sections; image and caption sets, in order, repeats dropped): what its ``data_root`` must
    hold. ``params``: a set's name or path, or its loaded content."""
    data = load_params(params) if isinstance(params, str) else params
    sets = [data.get("common") or {}, *((data.get("notebooks") or {}).values())]
    return list(dict.fromkeys(n for s in sets for d in DATASET_PARAMETERS
                              for n in _paper_names((s or {}).get(d))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="default", help="parameter set name or YAML path")
    ap.add_argument("--out", default="executed", help="output folder for executed notebooks")
    ap.add_argument("--only", nargs="+", help="notebook stems or 2-digit numbers to run")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override a parameter for every notebook (YAML value)")
    ap.add_argument("--train-missing", action="store_true",
                    help="let a notebook train a model missing from the cache (default: only "
                         "load; `make models` trains the book's models)")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("ISOCLIP_NOTEBOOK_JOBS", "1")),
                    help="notebooks executed at once, each in its own kernel (default 1, or "
                         "$ISOCLIP_NOTEBOOK_JOBS; `make notebooks` uses one per core)")
    ap.add_argument("--models", action="store_true",
                    help="train the manifest's missing models in the same run, each chapter "
                         "starting once its models are trained (`make notebooks` with the "
                         "default set)")
    ap.add_argument("--check", action="store_true",
                    help="validate the parameters of the selected notebooks, run nothing")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs {args.jobs}: expected a positive number of notebooks run at once")
    overrides = {}
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        overrides[k] = _parse_value(v)
    if args.check:
        plan = check_parameters(args.params, args.only, overrides)
        print(f"[notebooks] parameters valid: {', '.join(plan)}", flush=True)
        return 0
    run(args.params, args.out, args.only, overrides, train_missing=args.train_missing,
        jobs=args.jobs, models=args.models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
