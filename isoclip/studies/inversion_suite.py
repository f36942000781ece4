"""Cross the Gap's intra-modal vs inter-modal comparison over a list of datasets (chapter 3).

Cross the Gap (Mistretta et al., ICLR 2025, Sec. 4 and its retrieval tables; book notation
page, eq-oti, eq-ovi) compares, per dataset, CLIP's intra-modal retrieval (image→image,
text→text) with the inter-modal retrieval of the inverted query: OTI turns each query image
into a text feature ranked against the gallery *images*, OVI each query caption into an image
feature ranked against the gallery *texts*. :func:`inversion_suite` does it for every set of a
chapter's ``datasets`` / ``text_datasets`` lists through :func:`isoclip.studies.suite.suite_study`
(one model per set: the embedded families' own tiny models, or one real open_clip model), so
the inversions, features and rows are the ones the other chapters read from the cache; the
revisited Oxford / Paris sets (relevance: the revisitop ground truth) give Easy / Medium / Hard
rows (IsoCLIP ``compute_roxford_rparis_metrics``).

Every method of a row is scored on the *same* inverted queries (a class-balanced subset per
set: :class:`isoclip.studies.suite.InversionSettings`), so differences are paired:
CLIP (intra-modal), OTI / OVI (inter-modal), IsoCLIP with the label-free automatic band and
with the held-out band (chosen on the other half of the queries), and the per-set
mean-centring control. Averages over the fine-grained sets of a family (the paper's datasets
for a real model; ROxf / RPar enter with their Medium setting) come with stratified paired
bootstrap intervals (:func:`isoclip.studies.suite.average_gain`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from isoclip.method.operator import svd
from isoclip.method.projectors import get_projectors
from isoclip.studies.inversion import InversionStudy
from isoclip.studies.suite import (
    FAMILY_LABELS,
    InversionSettings,
    SetResult,
    average_gain,
    in_average,
)

__all__ = [
    "InversionSuite",
    "control_layout",
    "family_scope",
    "grid_stride",
    "inversion_curves_figure",
    "inversion_layout",
    "inversion_result_rows",
    "inversion_suite",
    "inversion_table",
    "inversion_verdicts",
    "inverted_view",
    "paper_numbers",
]


# ---------------------------------------------------------------------------------------------
# the study

@dataclass
class InversionSuite:
    """:func:`inversion_suite`'s output.

    Attributes:
        results: one :class:`SetResult` per (set, task[, revisitop setting]): image sets
            first, in the order asked, then caption sets.
        model, pretrained: what evaluated the sets (``"embedded"``: each embedded family's
            own tiny model).
        settings: the inversion settings.
        bundles: model label -> the model.
    """

    results: list[SetResult]
    model: str
    pretrained: str | None
    settings: InversionSettings
    bundles: dict[str, Any] = field(default_factory=dict)


def inversion_suite(datasets: str | Sequence[str], text_datasets: str | Sequence[str], *,
                    model: str = "embedded", pretrained: str | None = None,
                    inversion: InversionSettings | None = None, **kwargs: Any
                    ) -> InversionSuite:
    """CLIP, OTI / OVI, IsoCLIP and mean-centring on every image set of ``datasets`` and
    every caption set of ``text_datasets`` (suites expanded): the suite study of each task
    (:func:`isoclip.studies.suite_report.suite_by_task`), so the rows are the cached ones
    the other chapters read when their settings are the same.

    Args:
        datasets, text_datasets: registry names or suites
            (:func:`isoclip.data.registry.datasets_list`).
        model, pretrained: as in :func:`isoclip.studies.suite.suite_study`.
        inversion: the OTI / OVI settings (query subsets, steps, seeds; None: the defaults,
            chapter 3's).
        kwargs: the other settings of :func:`isoclip.studies.suite.suite_study`
            (``data_root``, ``device``, ``train``, ``stride``, ``calibration_pairs``,
            ``seed``, ...).

    Raises:
        ValueError: unknown names, or the errors of the suite study.
    """
    from isoclip.studies.suite_report import suite_by_task

    inversion = InversionSettings() if inversion is None else inversion
    studies = suite_by_task(datasets, text_datasets, model=model, pretrained=pretrained,
                            inversion=inversion, **kwargs)
    results = [r for mod in ("image", "text") if mod in studies
               for r in studies[mod].task(mod)]
    bundles = {k: b for st in studies.values() for k, b in st.bundles.items()}
    return InversionSuite(results=results, model=model, pretrained=pretrained,
                          settings=inversion, bundles=bundles)


# ---------------------------------------------------------------------------------------------
# tables

#: Methods of a row, scored on the inverted queries (the inversion's own column is added).
ROW_METHODS = ("CLIP", "mean-centred", "IsoCLIP (automatic)", "IsoCLIP (held-out)")


def inverted_view(r: SetResult) -> SetResult | None:
    """The set restricted to its inverted queries: ``ap`` holds :data:`ROW_METHODS` and the
    inversion (``"OTI"`` / ``"OVI"``) on those rows (None: nothing was inverted)."""
    if r.inv_rows is None or r.inv_ap is None or r.inversion is None or not len(r.inv_rows):
        return None
    ap = {m: r.ap[m][r.inv_rows] for m in ROW_METHODS}
    ap[r.inversion] = r.inv_ap
    return replace(r, n_query=len(r.inv_rows), ap=ap, meta=dict(r.meta))


def inversion_table(suite: InversionSuite, *, n_boot: int = 2000, seed: int = 0
                    ) -> pd.DataFrame:
    """One row per (task, set[, setting]) on its inverted queries, then per (task, family) the
    average over its :func:`isoclip.studies.suite.in_average` sets with paired intervals.

    Columns: ``task`` (``"image"`` / ``"text"``), ``family``, ``set``, ``name``, ``variant``,
    ``kind`` (``"set"``, ``"whole"``, ``"average"``), ``in_average``, ``n`` (inverted
    queries), ``n_sets``, ``inversion``, the mAP of :data:`ROW_METHODS` and of the inversion
    (column ``"inverted"``), ``d_inv``, ``d_auto``, ``d_held``, ``d_centred`` (gains over CLIP
    on the same queries) and, on average rows, ``<d>_lo`` / ``<d>_hi`` (95 % intervals).
    """
    rows: list[dict[str, Any]] = []
    diffs = {"d_inv": None, "d_auto": "IsoCLIP (automatic)", "d_held": "IsoCLIP (held-out)",
             "d_centred": "mean-centred"}
    for task in ("image", "text"):
        views = [(r, v) for r in suite.results if r.modality == task
                 for v in [inverted_view(r)] if v is not None]
        for fam in dict.fromkeys(v.meta.get("family", "") for _, v in views):
            part = [v for _, v in views if v.meta.get("family", "") == fam]
            for v in part:
                inv = str(v.inversion)
                row: dict[str, Any] = {
                    "task": task, "family": fam, "set": str(v.meta.get("label", v.name)), "name": v.name,
                    "variant": v.meta.get("protocol") or "",
                    "kind": "whole" if v.meta.get("fine_grained") is False else "set",
                    "in_average": in_average(v), "n": v.n_query, "n_sets": 1,
                    "inversion": inv, **{m: v.mean(m) for m in ROW_METHODS},
                    "inverted": v.mean(inv)}
                for d, m in diffs.items():
                    a, b = _paired_mean(v.ap["CLIP"], v.ap[m or inv])
                    row[d] = b - a
                rows.append(row)
            avg = [v for v in part if in_average(v)]
            if not avg:
                continue
            inv = str(avg[0].inversion)
            sets = pd.DataFrame([r for r in rows if r["task"] == task and r["family"] == fam
                                 and r["in_average"]])
            row = {"task": task, "family": fam,
                   "set": f"average ({len(avg)} {'datasets' if fam == 'paper' else 'fine-grained sets'})",
                   "name": "", "variant": "", "kind": "average", "in_average": False,
                   "n": int(sets["n"].sum()), "n_sets": len(avg), "inversion": inv,
                   **{m: float(sets[m].mean()) for m in (*ROW_METHODS, "inverted")}}
            for d, m in diffs.items():
                g = average_gain(avg, m or inv, "CLIP", n_boot=n_boot, seed=seed)
                row[d], row[f"{d}_lo"], row[f"{d}_hi"] = g["delta"], g["lo"], g["hi"]
            rows.append(row)
    return pd.DataFrame(rows)


def _paired_mean(a: Tensor, b: Tensor) -> tuple[float, float]:
    ok = ~(torch.isnan(a) | torch.isnan(b))
    if not bool(ok.any()):
        return math.nan, math.nan
    return float(a[ok].mean()), float(b[ok].mean())


def inversion_layout(table: pd.DataFrame, task: str, *,
                     paper: pd.DataFrame | None = None, decimals: int = 1) -> pd.DataFrame:
    """One task of :func:`inversion_table` in the papers' layout: rows (family, set), columns
    queries, CLIP, OTI / OVI, Δ, IsoCLIP automatic / held-out with their Δ, mean-centred with
    its Δ; average rows give each Δ with its 95 % interval. ``paper``: the papers' reported
    averages for the backbone (:func:`isoclip.studies.results.paper_averages`), added as a
    row ``"reported by <paper>"`` (methods it does not report stay empty).
    """
    t = table[table["task"] == task]
    inv = next((x for x in t["inversion"] if x), "OTI" if task == "image" else "OVI")

    def delta(r: Mapping[str, Any], d: str) -> str:
        v = r[d]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if r["kind"] == "average":
            return f"{v:+.{decimals}f} [{r[d + '_lo']:+.{decimals}f}, {r[d + '_hi']:+.{decimals}f}]"
        return f"{v:+.{decimals}f}"

    def num(v: Any) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{decimals}f}"

    rows = []
    for r in t.to_dict("records"):
        rows.append({("", "family"): FAMILY_LABELS.get(r["family"], r["family"]),
                     ("", "set"): r["set"], ("", "queries"): str(int(r["n"])),
                     ("", "CLIP"): num(r["CLIP"]), (inv, "mAP"): num(r["inverted"]),
                     (inv, "Δ"): delta(r, "d_inv"),
                     ("IsoCLIP automatic", "mAP"): num(r["IsoCLIP (automatic)"]),
                     ("IsoCLIP automatic", "Δ"): delta(r, "d_auto"),
                     ("IsoCLIP held-out", "mAP"): num(r["IsoCLIP (held-out)"]),
                     ("IsoCLIP held-out", "Δ"): delta(r, "d_held"),
                     ("mean-centred", "mAP"): num(r["mean-centred"]),
                     ("mean-centred", "Δ"): delta(r, "d_centred")})
    if paper is not None and len(paper):
        for name, grp in paper.groupby("paper", sort=False):
            vals = dict(zip(grp["method"], grp["value"]))
            row = {k: "" for k in rows[0]} if rows else {}
            row.update({("", "family"): FAMILY_LABELS["paper"],
                        ("", "set"): f"reported by {name} (average)",
                        ("", "CLIP"): num(vals.get("CLIP")), (inv, "mAP"): num(vals.get(inv)),
                        ("IsoCLIP held-out", "mAP"): num(vals.get("IsoCLIP"))})
            rows.append(row)
    out = pd.DataFrame(rows)
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out.set_index([("", "family"), ("", "set")]).rename_axis(["", "set"])


def family_scope(family: str, model: str, pretrained: str | None) -> str:
    """The model a family's verdicts were measured on (:func:`isoclip.studies.verdicts.scope`
    for a real model; the tiny default or emoji model for the embedded families)."""
    from isoclip.studies.verdicts import scope

    if model != "embedded":
        return scope(model, pretrained)
    return "on the emoji model trained here" if family == "emoji" else scope()


def inversion_verdicts(table: pd.DataFrame, model: str, pretrained: str | None) -> str:
    """One Markdown paragraph per (task, family) average: the inversion's and IsoCLIP's
    (held-out band) gain over CLIP with their intervals, read off the intervals
    (:func:`isoclip.studies.verdicts.change`), scoped to the model that was measured."""
    from isoclip.studies.verdicts import change, reproduces

    names = {"image": "image→image", "text": "text→text"}
    out = []
    for r in table[table["kind"] == "average"].to_dict("records"):
        inv = r["inversion"]
        where = family_scope(r["family"], model, pretrained)
        v_inv = change(r["d_inv_lo"], r["d_inv_hi"])
        v_iso = change(r["d_held_lo"], r["d_held_hi"])
        v_auto = change(r["d_auto_lo"], r["d_auto_hi"])
        fam = FAMILY_LABELS.get(r["family"], r["family"])
        out.append(
            f"**{names[r['task']]}, {fam}** (the {r['set'].replace('(', 'over ').rstrip(')')}, "
            f"{int(r['n'])} inverted queries): "
            f"{inv} {v_inv} CLIP's intra-modal mAP {where} ({r['d_inv']:+.2f} points, 95 % "
            f"interval {r['d_inv_lo']:+.2f} to {r['d_inv_hi']:+.2f}), so the average "
            f"{reproduces(v_inv == 'raises')} Cross the Gap's gain; IsoCLIP with the held-out "
            f"band {v_iso} it ({r['d_held']:+.2f}, {r['d_held_lo']:+.2f} to "
            f"{r['d_held_hi']:+.2f}) and with the label-free automatic band {v_auto} it "
            f"({r['d_auto']:+.2f}, {r['d_auto_lo']:+.2f} to {r['d_auto_hi']:+.2f}).")
    return "\n\n".join(out) if out else "No set had inverted queries."


def inversion_result_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Tidy rows of :func:`inversion_table`'s per-set rows for
    :func:`isoclip.studies.results.write_result`: one per (set, setting, method), task
    ``"image-image"`` / ``"text-text"``, metric ``"mAP"`` on the inverted queries."""
    methods = {"CLIP": "CLIP", "inverted": None, "IsoCLIP (automatic)": "IsoCLIP (automatic)",
               "IsoCLIP (held-out)": "IsoCLIP", "mean-centred": "mean-centred"}
    out = []
    for r in table[table["kind"] != "average"].to_dict("records"):
        for col, method in methods.items():
            v = r[col]
            if v is None or (isinstance(v, float) and not np.isfinite(v)):
                continue
            row = {"dataset": r["name"], "task": f"{r['task']}-{r['task']}",
                   "method": method or r["inversion"], "metric": "mAP", "value": float(v),
                   "in_average": bool(r["in_average"]), "queries": int(r["n"])}
            if r["variant"]:
                row["variant"] = r["variant"]
            out.append(row)
    return out


def grid_stride(stride: int | None, model: str, pretrained: str | None = None, *,
                device: str = "cpu") -> int:
    """The band grid's step: ``stride`` if given; else 2 for the embedded models and for a
    model whose Psi has rank <= 64, ``rank // 16`` above (a 16 x 16 grid at most, the cost of
    a held-out band on a real CLIP's rank 512 or 768)."""
    if stride is not None:
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"grid_stride: expected None or an int >= 1, got {stride!r}")
        return stride
    if model == "embedded":
        return 2
    from isoclip.training.embedded import resolve_model

    P = get_projectors(resolve_model(model, pretrained, device=device, progress=False).model)
    rank = svd(P).r
    return 2 if rank <= 64 else max(2, rank // 16)


def paper_numbers(model: str, pretrained: str | None) -> dict[str, pd.DataFrame]:
    """task (``"image"``, ``"text"``) -> the papers' reported averages for this backbone
    (:func:`isoclip.studies.results.paper_averages`); tasks without any are left out (always
    so for the embedded models and random init)."""
    from isoclip.studies.reference import load_paper_numbers
    from isoclip.studies.results import paper_averages

    if model == "embedded":
        return {}
    ref = load_paper_numbers()
    out = {}
    for task in ("image", "text"):
        df = paper_averages(ref, model, pretrained, f"{task}-{task}")
        if len(df):
            out[task] = df
    return out


def control_layout(table: pd.DataFrame, control: pd.DataFrame, *, decimals: int = 1
                   ) -> pd.DataFrame:
    """:func:`inversion_table` of a pretrained model beside that of its random-init control
    (:mod:`isoclip.studies.controls`): rows (task, set), columns (weights, method) with the
    mAP of CLIP, the inversion and IsoCLIP (held-out band) on the inverted queries."""
    from isoclip.studies.controls import RANDOM_INIT

    cols = {"CLIP": "CLIP", "inverted": "OTI / OVI", "IsoCLIP (held-out)": "IsoCLIP held-out"}
    key = ["task", "set"]
    a = table[key + list(cols)].rename(columns={c: ("pretrained", n) for c, n in cols.items()})
    b = control[key + list(cols)].rename(columns={c: (RANDOM_INIT, n) for c, n in cols.items()})
    out = a.merge(b, on=key, how="left", sort=False)
    out["task"] = out["task"].map({"image": "image→image", "text": "text→text"})
    out = out.set_index(key).rename_axis(["", "set"])
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out.round(decimals)


def inversion_curves_figure(study: InversionStudy) -> Any:
    """mAP of the inverted queries after k optimisation steps (left: OTI image queries, right:
    OVI caption queries) with CLIP's and IsoCLIP's intra-modal mAP on the same queries, and
    below the mean cosine between the inverted features and their targets."""
    from isoclip.studies import plotting

    ret = study.retrieval.set_index(["task", "method"])
    curves = study.curves
    fig, axes = plotting.page_figure(2, 2, height=4.6, sharex="col",
                                     gridspec_kw={"height_ratios": [2.2, 1]})
    for col, (inv, task, title) in enumerate((("OTI", "image→image", "image→image through OTI"),
                                              ("OVI", "text→text", "text→text through OVI"))):
        c = curves[curves["method"] == inv]
        ax, ax_cos = axes[0, col], axes[1, col]
        ax.plot(c["step"], c["mAP"], marker="o", ms=3, color=plotting.METHOD_COLOURS[inv],
                label="inverted query (OTI / OVI)")
        ax.axhline(float(ret.loc[(task, "CLIP"), "mAP"]), color=plotting.METHOD_COLOURS["CLIP"],
                   ls="--", label="CLIP (intra-modal)")
        ax.axhline(float(ret.loc[(task, "IsoCLIP"), "mAP"]),
                   color=plotting.METHOD_COLOURS["IsoCLIP"], ls=":", label="IsoCLIP")
        ax.set(xscale="symlog", ylabel="mAP (%)", title=title)
        ax_cos.plot(c["step"], c["cos"], color="0.4", lw=1.2)
        ax_cos.set(xscale="symlog", xlabel="inversion step (symlog)", ylabel="cos to target")
    plotting.legend_below(fig, ax=axes[0, 0])
    return fig
