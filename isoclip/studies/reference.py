"""The papers' reported numbers, for display beside ours (chapters 7 and 8).

``isoclip/data/reference/paper_numbers.csv`` holds the averages read off the authors' own
artefacts (the IsoCLIP CVPR 2026 poster's average-mAP bars and the Cross the Gap ICLR 2025
poster's table of averages). One row per number:

* ``paper``: ``"IsoCLIP"`` or ``"Cross the Gap"``.
* ``task``: ``"image-image"``, ``"text-text"`` or ``"zero-shot classification"``.
* ``backbone``: e.g. ``"OpenAI ViT-B/32"``.
* ``method``: ``"CLIP"`` (intra-modal baseline), ``"OTI"``, ``"OVI"``, ``"IsoCLIP"``,
  ``"zero-shot"`` or ``"zero-shot via OTI"``.
* ``metric``: ``"mAP"`` or ``"top-1 accuracy"`` (percent); ``value``: the number.
* ``n_datasets``: datasets in the average (missing where the source does not say).
* ``source``: the original artefact the number comes from (which poster, which figure or table).
* ``verified``: True when the number was read from the authors' own artefact (poster,
  teaser), False when it comes only from a secondary summary.
* ``caveat``: what is not known about the number (e.g. which datasets enter the average).
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import pandas as pd

__all__ = ["PAPER_ARTEFACTS", "REFERENCE_COLUMNS", "TASKS", "cited_artefact",
           "load_paper_numbers", "paper_comparison"]

#: Columns of the reference CSV, in order.
REFERENCE_COLUMNS = ("paper", "task", "backbone", "method", "metric", "value", "n_datasets",
                     "source", "verified", "caveat")
#: Tasks of the reference CSV.
TASKS = ("image-image", "text-text", "zero-shot classification")
#: The authors' own artefact each paper's reference numbers are read from: (GitHub repository,
#: file in it, the part of the file that holds the numbers). A ``source`` entry names it as
#: ``"<title> (<file> in <repository>), <part>"`` (:func:`cited_artefact`).
PAPER_ARTEFACTS: dict[str, tuple[str, str, str]] = {
    "IsoCLIP": ("simomagi/IsoCLIP", "assets/IsoCLIP-CVPRposter.png", "average-mAP bars"),
    "Cross the Gap": ("miccunifi/Cross-the-Gap", "assets/CrossTheGap_POSTER.pdf",
                      "table of averages"),
}

_CITATION = re.compile(r".+ \((?P<file>[^()\s]+) in (?P<repo>[\w.-]+/[\w.-]+)\), (?P<part>.+)")


def cited_artefact(source: str) -> tuple[str, str, str]:
    """(repository, file, part) cited by a ``source`` entry of the reference CSV.

    Raises:
        ValueError: ``source`` is not of the form ``"<title> (<file> in <owner>/<repo>), <part>"``.
    """
    m = _CITATION.fullmatch(source.strip())
    if m is None:
        raise ValueError(f"source: expected '<title> (<file> in <owner>/<repo>), <part>', got "
                         f"{source!r}")
    return m["repo"], m["file"], m["part"]


def load_paper_numbers(path: str | Path | Traversable | None = None) -> pd.DataFrame:
    """Load and validate the reference CSV.

    Args:
        path: a CSV with :data:`REFERENCE_COLUMNS` (None: the packaged
            ``isoclip/data/reference/paper_numbers.csv``).

    Returns:
        DataFrame with string columns, float ``value``, nullable-integer ``n_datasets``,
        bool ``verified`` and string ``caveat`` (empty when none).

    Raises:
        ValueError: missing columns, a row without a source, a value that is not a finite
            number, an unknown task, a ``verified`` entry that is not True/False, or a
            duplicated (paper, task, backbone, method, metric).
    """
    if path is None:
        path = resources.files("isoclip") / "data" / "reference" / "paper_numbers.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REFERENCE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    df = df[list(REFERENCE_COLUMNS)].copy()
    for c in ("paper", "task", "backbone", "method", "metric", "source"):
        df[c] = df[c].str.strip()
        empty = df.index[df[c] == ""].tolist()
        if empty:
            raise ValueError(f"{path}: empty {c!r} in rows {empty}")
    bad_task = sorted(set(df["task"]) - set(TASKS))
    if bad_task:
        raise ValueError(f"{path}: unknown tasks {bad_task}; known: {TASKS}")
    value = pd.to_numeric(df["value"], errors="coerce")
    if value.isna().any() or not value.between(0, 100).all():
        raise ValueError(f"{path}: values must be numbers in [0, 100], bad rows "
                         f"{df.index[value.isna() | ~value.between(0, 100)].tolist()}")
    df["value"] = value.astype(float)
    n = pd.to_numeric(df["n_datasets"].replace("", None), errors="coerce")
    if (df["n_datasets"] != "").sum() != n.notna().sum():
        raise ValueError(f"{path}: n_datasets must be an integer or empty")
    df["n_datasets"] = n.astype("Int64")
    flags = df["verified"].str.strip().str.lower()
    if not flags.isin(["true", "false"]).all():
        raise ValueError(f"{path}: verified must be True or False")
    df["verified"] = flags == "true"
    key = ["paper", "task", "backbone", "method", "metric"]
    dup = df[df.duplicated(key, keep=False)]
    if len(dup):
        raise ValueError(f"{path}: duplicated rows {dup[key].values.tolist()}")
    return df.reset_index(drop=True)


def paper_comparison(ref: pd.DataFrame, task: str, baseline: str = "CLIP") -> pd.DataFrame:
    """One row per (paper, backbone) of ``task``: each method's value, and its gain over the
    baseline in points and relative to the baseline (percent of the baseline's value).

    Returns:
        Columns ``paper, backbone, method, value, baseline, gain_points, gain_relative,
        source`` for every non-baseline method; rows without a baseline are dropped.
    """
    from isoclip.evaluate.stats import relative_gain

    d = ref[ref["task"] == task]
    base = d[d["method"] == baseline].set_index(["paper", "backbone"])["value"]
    rows = []
    for r in d[d["method"] != baseline].itertuples(index=False):
        if (r.paper, r.backbone) not in base.index:
            continue
        b = float(base.loc[(r.paper, r.backbone)])
        rows.append({"paper": r.paper, "backbone": r.backbone, "method": r.method,
                     "value": r.value, "baseline": b, "gain_points": r.value - b,
                     "gain_relative": float(relative_gain(r.value, b)), "source": r.source})
    return pd.DataFrame(rows, columns=["paper", "backbone", "method", "value", "baseline",
                                       "gain_points", "gain_relative", "source"])
