"""Results as data: one JSON file per real-path run and chapter, read back for the book.

Every real-path run of a chapter can write ``<root>/<params>/<chapter>.json`` with
:func:`write_result`: the numbers per dataset and method (tidy rows), the model and pretrained
tag, the bands, the wall times, and the environment that produced them (torch, open_clip and
Python versions, device name). :func:`load_results` reads every file under a root back,
validated; :func:`dataset_table` lays one file out as the paper does (rows = datasets plus
the average, columns = methods, and IsoCLIP − CLIP), and :func:`paper_averages` finds the
papers' reported averages for the same backbone (:mod:`isoclip.studies.reference`). The
book's "Results on real models" page renders every file present.

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
from typing import Any

import pandas as pd
import torch

from isoclip.common.cache import atomic_write_bytes

__all__ = ["BACKBONE_LABELS", "METHOD_ORDER", "OPTIONAL_ROW_FIELDS", "RESULT_SCHEMA",
           "ROW_FIELDS", "ResultFile", "backbone_label", "dataset_table", "device_name",
           "load_results", "paper_averages", "results_root", "run_environment", "write_result"]

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


def load_results(root: str | os.PathLike[str] | None = None) -> list[ResultFile]:
    """Every ``<params>/<chapter>.json`` under ``root`` (:func:`results_root`), sorted by path;
    an empty list when the folder does not exist.

    Raises:
        ValueError: a file that is not a valid result file (named in the message).
    """
    base = results_root(root)
    if not base.is_dir():
        return []
    return [_read(p) for p in sorted(base.glob("*/*.json"))]


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
    d["row"] = [f"{ds} ({v})" if v else ds for ds, v in zip(d["dataset"], d["variant"])]
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
