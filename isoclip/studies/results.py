"""Results as data: one JSON file per real-path run and chapter, read back for the book.

Every real-path run of a chapter can write ``<root>/<params>/<chapter>.json`` with
:func:`write_result`: the numbers per dataset and method (tidy rows), the model and pretrained
tag, the bands, the wall times, and the environment that produced them (torch, open_clip and
Python versions, device name). :func:`load_results` reads every file under a root back,
validated; :func:`dataset_table` lays one file out as the paper does (rows = datasets plus
the average, columns = methods, and IsoCLIP − CLIP), and :func:`paper_averages` finds the
papers' reported averages for the same backbone (:mod:`isoclip.studies.reference`). The
book's "Results on real models" page renders every file present: :func:`result_summary`
lists the files, :func:`result_tables` lays out each file's tables with the papers' averages
beside them, :func:`average_bars` / :func:`average_figure` draw the average-mAP bars.

Where files go: ``root`` if given, else ``$ISOCLIP_RESULTS``, else ``results/`` in the
working directory (the repository root when the notebooks run through
``python -m isoclip.notebooks``). ``results/`` is committed: a file from a GPU run, committed,
shows in the online book. CI's runs on fake data write under ``_build/`` instead.

A row (:data:`ROW_FIELDS`): ``dataset``, ``task`` (``"image-image"``, ``"text-text"``,
``"classification"``, ...), ``method`` (``"CLIP"``, ``"OTI"``, ``"IsoCLIP"``, ...), ``metric``
(``"mAP"``, ``"top-1 accuracy"``, ...), ``value`` (percent) and optionally ``variant`` (e.g.
``"E"``, ``"M"``, ``"H"`` of the revisited Oxford/Paris protocol), ``in_average`` (False for rows
the dataset average leaves out, default True), ``queries`` (number of queries evaluated).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from isoclip.common.cache import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BACKBONE_LABELS", "HEADLINE_CHAPTER", "METHOD_ORDER", "OPTIONAL_ROW_FIELDS",
           "RESULT_SCHEMA", "ROW_FIELDS", "TASK_TITLES", "ResultFile", "ResultTable",
           "average_bars", "average_figure", "backbone_label", "dataset_table", "device_name",
           "load_results", "paper_averages", "result_summary", "result_tables", "results_root",
           "run_environment", "write_result"]

#: Version of the file format; :func:`load_results` refuses other versions.
RESULT_SCHEMA = 1
#: Required fields of a row.
ROW_FIELDS = ("dataset", "task", "method", "metric", "value")
#: Optional fields of a row.
OPTIONAL_ROW_FIELDS = ("variant", "in_average", "queries")
#: Column order of the tables (other methods follow in the order they appear).
METHOD_ORDER = ("random init", "CLIP", "OTI", "OVI", "IsoCLIP")
#: (open_clip model, pretrained tag) -> backbone name of the reference numbers
#: (``isoclip/data/reference/paper_numbers.csv``).
BACKBONE_LABELS: dict[tuple[str, str], str] = {
    ("ViT-B-32", "openai"): "OpenAI ViT-B/32",
    ("ViT-B-16", "openai"): "OpenAI ViT-B/16",
    ("ViT-L-14", "openai"): "OpenAI ViT-L/14",
    ("ViT-B-16", "datacomp_xl_s13b_b90k"): "OpenCLIP ViT-B/16 DataComp-XL",
    ("ViT-B-32", "datacomp_xl_s13b_b90k"): "OpenCLIP ViT-B/32 DataComp-XL",
    ("ViT-L-14", "datacomp_xl_s13b_b90k"): "OpenCLIP ViT-L/14 DataComp-XL",
    ("PE-Core-B-16", "meta"): "PE-Core ViT-B/16",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def results_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root``, else ``$ISOCLIP_RESULTS``, else ``./results``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("ISOCLIP_RESULTS") or Path.cwd() / "results")


def device_name(device: str | torch.device | None = None) -> str:
    """A readable name of the device that computed: the GPU model, or the CPU model and the
    number of cores."""
    dev = torch.device("cuda" if device in (None, "auto") and torch.cuda.is_available()
                       else "cpu" if device in (None, "auto") else device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({os.cpu_count()} cores)"


def run_environment(device: str | torch.device | None = None) -> dict[str, Any]:
    """Versions and device of this process: ``torch``, ``open_clip``, ``python``,
    ``isoclip``, ``cuda`` (None on CPU), ``platform``, ``device``."""
    import open_clip

    try:
        isoclip_version = metadata.version("isoclip")
    except metadata.PackageNotFoundError:  # pragma: no cover - not installed
        isoclip_version = "unknown"
    return {"torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": sys.version.split()[0], "isoclip": isoclip_version,
            "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "platform": platform.platform(), "device": device_name(device)}


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"{what}: expected a file-name-safe name (letters, digits, '.', '_', "
                         f"'+', '-'), got {value!r}")


def _rows(rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else \
        [dict(r) for r in rows]
    if not records:
        raise ValueError("rows: expected at least one row")
    out = []
    for i, r in enumerate(records):
        missing = [f for f in ROW_FIELDS if f not in r]
        if missing:
            raise ValueError(f"rows[{i}]: missing {missing} (a row needs {list(ROW_FIELDS)})")
        extra = sorted(set(r) - set(ROW_FIELDS) - set(OPTIONAL_ROW_FIELDS))
        if extra:
            raise ValueError(f"rows[{i}]: unknown fields {extra}; allowed: "
                             f"{list(ROW_FIELDS) + list(OPTIONAL_ROW_FIELDS)}")
        try:
            value = float(r["value"])
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"rows[{i}]: value must be a finite number, got {r['value']!r}")
        row: dict[str, Any] = {f: str(r[f]) for f in ROW_FIELDS[:4]}
        row["value"] = value
        if r.get("variant") not in (None, ""):
            row["variant"] = str(r["variant"])
        if "in_average" in r:
            row["in_average"] = bool(r["in_average"])
        if r.get("queries") is not None:
            row["queries"] = int(r["queries"])
        out.append(row)
    return out


def write_result(
    chapter: str,
    rows: pd.DataFrame | Sequence[Mapping[str, Any]],
    *,
    model: str,
    pretrained: str | None,
    params: str | None = None,
    bands: Mapping[str, Sequence[int]] | None = None,
    wall_seconds: Mapping[str, float] | None = None,
    device: str | torch.device | None = None,
    settings: Mapping[str, Any] | None = None,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``<root>/<params>/<chapter>.json`` atomically; returns its path.

    Args:
        chapter: the notebook's name, e.g. ``"07_intra_modal_retrieval"``.
        rows: tidy rows (see the module docstring), a DataFrame or a list of mappings.
        model, pretrained: the open_clip name and tag (None: random init).
        params: the parameter set's name (None: ``$ISOCLIP_PARAMS``, else
            ``<model>-<pretrained>``).
        bands: task -> ``(k_top, k_bottom)`` of the IsoCLIP bands used.
        wall_seconds: stage -> wall time in seconds (features, inversion, sweep, ...).
        device: the device that computed (its name is recorded).
        settings: other parameters worth keeping (query budget, steps, ...); JSON-able.
        root: results folder (:func:`results_root`).

    Raises:
        ValueError: a bad row or name (named in the message).
    """
    params = params or os.environ.get("ISOCLIP_PARAMS") or f"{model}-{pretrained or 'random'}"
    _check_name("chapter", chapter)
    _check_name("params", params)
    body = {
        "schema": RESULT_SCHEMA,
        "chapter": chapter,
        "params": params,
        "model": model,
        "pretrained": pretrained,
        "bands": {k: [int(v) for v in band] for k, band in (bands or {}).items()},
        "wall_seconds": {k: float(v) for k, v in (wall_seconds or {}).items()},
        "settings": dict(settings or {}),
        "environment": run_environment(device),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": _rows(rows),
    }
    path = results_root(root) / params / f"{chapter}.json"
    atomic_write_bytes(path, (json.dumps(body, indent=1, sort_keys=False) + "\n").encode())
    return path


@dataclass(frozen=True)
class ResultFile:
    """One result file, validated.

    Attributes:
        path: where it was read.
        meta: every top-level field but ``rows`` (``chapter``, ``params``, ``model``,
            ``pretrained``, ``bands``, ``wall_seconds``, ``settings``, ``environment``,
            ``created``).
        rows: the rows as a DataFrame with :data:`ROW_FIELDS`, ``variant`` ("" when none),
            ``in_average`` and ``queries`` (missing: NA).
    """

    path: Path
    meta: dict[str, Any]
    rows: pd.DataFrame

    @property
    def label(self) -> str:
        """``"<params> / <chapter>"``."""
        return f"{self.meta['params']} / {self.meta['chapter']}"


def _read(path: Path) -> ResultFile:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable JSON result file ({e})") from e
    if not isinstance(body, dict) or body.get("schema") != RESULT_SCHEMA:
        raise ValueError(f"{path}: expected a result file of schema {RESULT_SCHEMA}, got "
                         f"schema {body.get('schema') if isinstance(body, dict) else None!r}")
    missing = [k for k in ("chapter", "params", "model", "pretrained", "rows") if k not in body]
    if missing:
        raise ValueError(f"{path}: missing fields {missing}")
    try:
        rows = pd.DataFrame(_rows(body["rows"]))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    rows["variant"] = rows["variant"].fillna("") if "variant" in rows else ""
    rows["in_average"] = rows["in_average"].fillna(True).astype(bool) \
        if "in_average" in rows else True
    rows["queries"] = rows["queries"].astype("Int64") if "queries" in rows else pd.NA
    meta = {k: v for k, v in body.items() if k != "rows"}
    return ResultFile(path=path, meta=meta, rows=rows)


def load_results(root: str | os.PathLike[str] | None = None,
                 params: str | Sequence[str] | None = None) -> list[ResultFile]:
    """Every ``<params>/<chapter>.json`` under ``root`` (:func:`results_root`), sorted by path;
    an empty list when the folder does not exist.

    Args:
        root: the results folder.
        params: only the files of this parameter set (or these sets); None: every set.

    Raises:
        ValueError: a file that is not a valid result file (named in the message), or a
            ``params`` name that is not a file-name-safe name.
    """
    wanted = [params] if isinstance(params, str) else params
    for name in wanted or ():
        _check_name("params", name)
    base = results_root(root)
    if not base.is_dir():
        return []
    return [_read(p) for p in sorted(base.glob("*/*.json"))
            if wanted is None or p.parent.name in wanted]


def backbone_label(model: str, pretrained: str | None) -> str | None:
    """The reference numbers' name of a backbone (:data:`BACKBONE_LABELS`), None if unknown
    (or random init)."""
    return BACKBONE_LABELS.get((model, pretrained or ""))


def _method_order(methods: Iterable[str]) -> list[str]:
    seen = list(dict.fromkeys(methods))
    return [m for m in METHOD_ORDER if m in seen] + [m for m in seen if m not in METHOD_ORDER]


def dataset_table(result: ResultFile, task: str, metric: str = "mAP",
                  baseline: str = "CLIP", method: str = "IsoCLIP") -> pd.DataFrame:
    """One file's numbers for one task and metric in the paper's layout.

    Returns:
        One row per dataset (``"dataset (variant)"`` when a variant is given) and a last row
        ``"average (n datasets)"`` (``"average (1 dataset)"``): the mean over the rows with ``in_average`` of each method
        (over the datasets that have it); columns = methods (:data:`METHOD_ORDER` first) and,
        when both exist, ``"Δ <method>−<baseline>"``. Empty when the file has no such rows.
    """
    d = result.rows[(result.rows["task"] == task) & (result.rows["metric"] == metric)].copy()
    if d.empty:
        return pd.DataFrame()
    # a variant already in the dataset's name ("roxford5k (E)") is not repeated
    d["row"] = [f"{ds} ({v})" if v and not ds.endswith(f"({v})") else ds
                for ds, v in zip(d["dataset"], d["variant"])]
    table = d.pivot_table(index="row", columns="method", values="value", aggfunc="first",
                          sort=False)
    avg_rows = d[d["in_average"]].drop_duplicates("row")["row"]
    table = table[_method_order(table.columns)]
    n = len(avg_rows)
    table.loc[f"average ({n} dataset{'s' if n != 1 else ''})"] = table.loc[list(avg_rows)].mean()
    if baseline in table and method in table:
        table[f"Δ {method}−{baseline}"] = table[method] - table[baseline]
    table.index.name = "dataset"
    table.columns.name = None
    return table


def paper_averages(ref: pd.DataFrame, model: str, pretrained: str | None, task: str,
                   metric: str = "mAP") -> pd.DataFrame:
    """The papers' reported averages for this backbone, task and metric.

    Args:
        ref: :func:`isoclip.studies.reference.load_paper_numbers`.

    Returns:
        Rows of ``ref`` (``paper, method, value, n_datasets, source, verified, caveat``);
        empty for a backbone the papers do not report (or random init).
    """
    label = backbone_label(model, pretrained)
    cols = ["paper", "method", "value", "n_datasets", "source", "verified", "caveat"]
    if label is None:
        return pd.DataFrame(columns=cols)
    sel = ref[(ref["backbone"] == label) & (ref["task"] == task) & (ref["metric"] == metric)]
    return sel[cols].reset_index(drop=True)


# ------------------------------------------------------ the "Results on real models" page

#: Readable names of the tasks chapters write (any other task is shown under its own name);
#: the page lists the tasks of a file in this order, then the others as they appear.
TASK_TITLES: dict[str, str] = {"image-image": "image→image retrieval",
                               "text-text": "text→text retrieval",
                               "classification": "image classification"}
#: The chapter whose tables are the paper's retrieval tables: the average bars of a run come
#: from its file when the run has one.
HEADLINE_CHAPTER = "07_intra_modal_retrieval"


def result_summary(results: Sequence[ResultFile]) -> pd.DataFrame:
    """One row per result file: parameter set, chapter, model, pretrained tag ("random init"
    for None), device, torch and open_clip versions, creation time and the total of its wall
    times in seconds (None when the file records none)."""
    rows = []
    for r in results:
        env = r.meta.get("environment") or {}
        walls = r.meta.get("wall_seconds") or {}
        rows.append({"parameter set": r.meta["params"], "chapter": r.meta["chapter"],
                     "model": r.meta["model"], "pretrained": r.meta["pretrained"] or "random init",
                     "device": env.get("device"), "torch": env.get("torch"),
                     "open_clip": env.get("open_clip"), "created": r.meta.get("created"),
                     "wall time (s)": float(sum(walls.values())) if walls else None})
    return pd.DataFrame(rows, columns=["parameter set", "chapter", "model", "pretrained",
                                       "device", "torch", "open_clip", "created",
                                       "wall time (s)"])


@dataclass(frozen=True)
class ResultTable:
    """One table of the page: one file's numbers for one task and metric.

    Attributes:
        result: the file.
        task: e.g. ``"image-image"``.
        metric: e.g. ``"mAP"``.
        title: heading, e.g. ``"vit-b-32-openai: image→image retrieval, mAP"``.
        caption: the metric and its unit, the model, the IsoCLIP band and what the last row
            averages.
        table: :func:`dataset_table` of the file.
        paper: this run's averages beside the papers' reported averages for the same backbone
            (rows = methods, columns ``"this run"`` then one per paper); empty when the papers
            report none (other backbones, random init, other tasks).
    """

    result: ResultFile
    task: str
    metric: str
    title: str
    caption: str
    table: pd.DataFrame
    paper: pd.DataFrame


#: Tasks whose tables are retrieval over each dataset's query and gallery splits.
_RETRIEVAL_TASKS = ("image-image", "text-text")
_PERCENT_METRICS = ("mAP", "mP@", "R@", "top-", "accuracy", "recall", "precision")


def _unit(metric: str) -> str:
    """``" (%)"`` for the percentages chapters write (mAP, R@k, accuracy, ...), else nothing:
    other metrics name their unit themselves (``"latency (ms)"``) or have none."""
    return " (%)" if metric.startswith(_PERCENT_METRICS) or "accuracy" in metric else ""


def _paper_side(table: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    if paper.empty:
        return pd.DataFrame()
    side = paper.pivot_table(index="method", columns="paper", values="value", aggfunc="first")
    side = side.loc[_method_order(side.index)]
    average = table.iloc[-1]
    side.insert(0, "this run", [average.get(m, math.nan) for m in side.index])
    side.index.name = "method"
    side.columns.name = None
    return side


def result_tables(results: Sequence[ResultFile], ref: pd.DataFrame) -> list[ResultTable]:
    """Every table of the page: per file, per task (:data:`TASK_TITLES` order first) and per
    metric (in the order the rows give them), :func:`dataset_table` with its caption and the
    papers' averages beside (:func:`paper_averages`).

    Args:
        results: :func:`load_results`.
        ref: :func:`isoclip.studies.reference.load_paper_numbers`.
    """
    out = []
    for r in results:
        tasks = list(dict.fromkeys(r.rows["task"]))
        tasks = [t for t in TASK_TITLES if t in tasks] + [t for t in tasks if t not in TASK_TITLES]
        pretrained = r.meta["pretrained"] or "random init"
        for task in tasks:
            title = TASK_TITLES.get(task, task)
            for metric in dict.fromkeys(r.rows.loc[r.rows["task"] == task, "metric"]):
                table = dataset_table(r, task, metric)
                band = (r.meta.get("bands") or {}).get(task.split("-")[0])
                split = (" (query split → gallery split of each dataset's protocol)"
                         if task in _RETRIEVAL_TASKS else "")
                caption = (f"{metric}{_unit(metric)} of {title} per dataset{split}, "
                           f"{r.meta['model']} ({pretrained})"
                           + (f", IsoCLIP band k_top = {band[0]}, k_bottom = {band[1]}"
                              if band else "")
                           + "; the last row averages the rows marked for it")
                paper = paper_averages(ref, r.meta["model"], r.meta["pretrained"], task, metric)
                out.append(ResultTable(r, task, metric, f"{r.meta['params']}: {title}, {metric}",
                                       caption, table, _paper_side(table, paper)))
    return out


def average_bars(tables: Sequence[ResultTable], metric: str = "mAP") -> pd.DataFrame:
    """The bars of the average figure: per run (parameter set) and task, the average row of
    its ``metric`` table (from :data:`HEADLINE_CHAPTER` when the run has that file, else from
    the first file with the task), then the papers' averages for the same backbone.

    Returns:
        Columns ``run, task, method, source, value``; ``source`` is ``"this run"`` or
        ``"<paper> paper"``. Empty when no table has ``metric``.
    """
    chosen: dict[tuple[str, str], ResultTable] = {}
    for t in tables:
        if t.metric != metric or t.table.empty:
            continue
        key = (t.result.meta["params"], t.task)
        if key not in chosen or (t.result.meta["chapter"] == HEADLINE_CHAPTER
                                 and chosen[key].result.meta["chapter"] != HEADLINE_CHAPTER):
            chosen[key] = t
    rows = []
    for (run, task), t in chosen.items():
        title = TASK_TITLES.get(task, task)
        average = t.table.iloc[-1]
        rows += [{"run": run, "task": title, "method": m, "source": "this run",
                  "value": float(average[m])}
                 for m in t.table.columns if not m.startswith("Δ") and pd.notna(average[m])]
        for paper in t.paper.columns[1:]:
            rows += [{"run": run, "task": title, "method": m, "source": f"{paper} paper",
                      "value": float(v)} for m, v in t.paper[paper].items() if pd.notna(v)]
    return pd.DataFrame(rows, columns=["run", "task", "method", "source", "value"])


def average_figure(bars: pd.DataFrame, metric: str = "mAP") -> Figure:
    """Grouped bars of :func:`average_bars`: one panel per task, one group per run and source,
    one bar per method (OTI and OVI share a colour: they are the inversion baseline of the
    image and the text side)."""
    from isoclip.studies import plotting

    if bars.empty:
        raise ValueError("bars: expected at least one bar (average_bars found no table)")
    panels = list(dict.fromkeys(bars["task"]))
    fig, axes = plotting.page_figure(1, len(panels), squeeze=False)
    handles: dict[str, Any] = {}
    for ax, task in zip(axes[0], panels, strict=True):
        d = bars[bars["task"] == task].copy()
        d["bar"] = d["run"] + "\n" + d["source"]
        d["method"] = d["method"].replace({"OTI": "OTI / OVI", "OVI": "OTI / OVI"})
        plotting.bar_compare(d, x="bar", y="value", hue="method", ax=ax)
        ax.set(title=f"{task}: average {metric}", xlabel="",
               ylabel=f"average {metric}{_unit(metric)}")
        ax.tick_params(axis="x", labelrotation=0 if d["bar"].nunique() <= 3 else 30)
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    plotting.legend_below(fig, list(handles.values()), list(handles))
    return fig
