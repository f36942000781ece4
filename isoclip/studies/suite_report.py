"""The suite's results as the book reports them: glue values, verdict paragraphs, the headline
table of the first results page, and the tidy rows of a real-model result file.

:func:`isoclip.studies.suite.suite_study` computes (and caches) the per-query rows of every set;
this module only reads them, so that chapters asking for the same sets share one computation
and an edit here never invalidates the suite cache. Verdicts follow the paper's protocol:
the average over the fine-grained sets (IsoCLIP Sec. 5, Tables 1-2: one model, many datasets),
with a stratified paired bootstrap interval (:func:`isoclip.studies.suite.average_gain`), the
held-out band as the labelled reference and the whole sets stated beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from isoclip.studies import verdicts
from isoclip.studies.suite import (
    SetResult,
    SuiteStudy,
    average_gain,
    in_average,
    suite_study,
    suite_table,
)

__all__ = ["FAMILY_SCOPES", "LABEL_FREE_GOAL", "METHOD_KEYS", "TASK_TAGS", "cross_style_glue",
           "cross_style_hits", "cross_style_summary", "example_set", "examples_figure", "family_label",
           "grid_stride_for", "headline_table", "inversion_gain", "same_item_hits",
           "suite_by_task", "suite_glue", "suite_result_rows", "suite_summary"]

#: Glue tag of each task.
TASK_TAGS = {"image": "img", "text": "txt"}

#: Short glue names of the suite's methods.
METHOD_KEYS = {"CLIP": "clip", "mean-centred": "centred", "IsoCLIP (automatic)": "auto",
               "IsoCLIP (agreement)": "agree", "IsoCLIP (held-out)": "heldout",
               "IsoCLIP (oracle)": "oracle"}

#: Goal of the label-free band rules on the fine-grained average: within this many mAP points
#: of the held-out band (the labelled reference).
LABEL_FREE_GOAL = 1.0

_FAMILY_LABELS = {"synthetic": "the default model's synthetic world",
                  "emoji": "the emoji model's emoji", "paper": "the paper's datasets"}

#: The model each embedded family's verdicts are about.
FAMILY_SCOPES = {"synthetic": "on the tiny model trained here", "emoji": "on the emoji model"}


def family_label(family: str) -> str:
    """Words for a family of sets in prose (``"the emoji model's emoji"``)."""
    return _FAMILY_LABELS.get(family, family)


def suite_by_task(datasets: str | Sequence[str], text_datasets: str | Sequence[str],
                  **kwargs: Any) -> dict[str, SuiteStudy]:
    """:func:`suite_study` of the image sets for image→image and of the caption sets for
    text→text (a chapter's ``datasets`` / ``text_datasets``), with the same settings
    ``kwargs``; keys ``"image"``, ``"text"`` (a task with no set is left out)."""
    out = {}
    for mod, names in (("image", datasets), ("text", text_datasets)):
        if names:
            out[mod] = suite_study(names, modalities=(mod,), **kwargs)
    return out


def _inversion_view(r: SetResult) -> SetResult | None:
    """The inverted queries of ``r`` as a set with methods ``CLIP`` and ``inversion``."""
    if r.inv_ap is None or r.inv_rows is None or not len(r.inv_rows):
        return None
    return SetResult(name=r.name, modality=r.modality, n_query=len(r.inv_rows),
                     n_gallery=r.n_gallery, same_split=r.same_split,
                     ap={"CLIP": r.ap["CLIP"][r.inv_rows], "inversion": r.inv_ap}, bands={},
                     meta=r.meta)


def inversion_gain(results: Sequence[SetResult], *, n_boot: int = 2000, seed: int = 0
                   ) -> dict[str, float]:
    """OTI / OVI over CLIP on the inverted queries of each set, averaged over the sets:
    ``mAP`` (the inversion's mean mAP), ``delta``, ``lo``, ``hi`` (paired, as
    :func:`average_gain`), ``n_sets``; NaN values when no set has inverted queries."""
    views = [v for v in map(_inversion_view, results) if v is not None]
    if not views:
        return {"mAP": math.nan, "delta": math.nan, "lo": math.nan, "hi": math.nan,
                "n_sets": 0}
    g = average_gain(views, "inversion", n_boot=n_boot, seed=seed)
    return {"mAP": float(sum(v.mean("inversion") for v in views) / len(views)), **g}


def _gains(sets: Sequence[SetResult], method: str, baseline: str, n_boot: int, seed: int
           ) -> dict[str, float] | None:
    if any(all(torch.isnan(r.ap[m]).all() for r in sets) for m in (method, baseline)):
        return None  # a method no set has (the agreement rule without calibration pairs)
    return average_gain(sets, method, baseline, n_boot=n_boot, seed=seed)


def _put_gain(out: dict[str, Any], key: str, g: Mapping[str, float] | None) -> None:
    if g is None or math.isnan(g["delta"]):
        return
    out[f"{key}_delta"] = float(g["delta"])
    out[f"{key}_lo"], out[f"{key}_hi"] = float(g["lo"]), float(g["hi"])
    out[f"{key}_ci"] = verdicts.fmt_delta(g["delta"], g["lo"], g["hi"])
    out[f"{key}_verdict"] = verdicts.change(g["lo"], g["hi"])


def suite_glue(studies: Mapping[str, SuiteStudy], *, n_boot: int = 2000, seed: int = 0,
               prefix: str = "suite") -> dict[str, Any]:
    """Every number a chapter states about the suite, as glue values.

    Keys are ``<prefix>_<family>_<task>_<name>`` with task ``img`` / ``txt``, for each family
    with sets in its average (:func:`isoclip.studies.suite.in_average`):

    * ``n_sets``, ``n_ceiling`` (averaged sets with CLIP within 5 points of 100);
    * the average mAP of each method: ``clip``, ``centred``, ``auto``, ``agree``, ``heldout``,
      ``oracle``; the inversion's ``inv_map`` on its queries;
    * the paired gains over CLIP with their intervals, for each method but CLIP and for the
      inversion (``inv``): ``<m>_delta``, ``<m>_lo``, ``<m>_hi``, ``<m>_ci`` (formatted) and
      ``<m>_verdict`` (:func:`isoclip.studies.verdicts.change`);
    * ``over_centred_*``: the held-out band over the mean-centred control;
    * ``agree_gap_*`` / ``auto_gap_*``: the held-out band over each label-free rule, with
      ``agree_goal`` / ``auto_goal`` = ``"meets"`` / ``"misses"`` the
      :data:`LABEL_FREE_GOAL` (point estimate within one mAP);
    * ``<facet>_delta``: the mean held-out gain over the sets of each facet;
      ``best_set``, ``best_delta``: the set with the largest one;
    * ``whole_set``, ``whole_clip``, ``whole_delta``: the family's whole set, if present;
    * ``family``: :func:`family_label`.

    Args:
        studies: task (``"image"`` / ``"text"``) -> its study (:func:`suite_by_task`).
        n_boot, seed: of the bootstrap intervals.
    """
    out: dict[str, Any] = {}
    for mod, study in studies.items():
        results = study.task(mod)
        if not results:
            continue
        tab = suite_table(results)
        for fam in dict.fromkeys(r.meta.get("family", "") for r in results):
            key = f"{prefix}_{fam}_{TASK_TAGS[mod]}"
            sets = [r for r in results if r.meta.get("family", "") == fam and in_average(r)]
            part = tab[tab["family"] == fam]
            whole = part[part["kind"] == "whole"]
            if len(whole):
                w = whole.iloc[0]
                out[f"{key}_whole_set"] = str(w["set"])
                out[f"{key}_whole_clip"] = float(w["CLIP"])
                out[f"{key}_whole_delta"] = float(w["delta"])
            if not sets:
                continue
            out[f"{key}_family"] = family_label(str(fam))
            avg = part[part["kind"] == "average"].iloc[0]
            rows = part[part["in_average"].astype(bool)]
            out[f"{key}_n_sets"] = len(sets)
            out[f"{key}_n_ceiling"] = int(rows["near_ceiling"].sum())
            for method, name in METHOD_KEYS.items():
                out[f"{key}_{name}"] = float(avg[method])
                if method != "CLIP":
                    _put_gain(out, f"{key}_{name}", _gains(sets, method, "CLIP", n_boot, seed))
            inv = inversion_gain(sets, n_boot=n_boot, seed=seed)
            if inv["n_sets"]:
                out[f"{key}_inv_map"] = inv["mAP"]
                _put_gain(out, f"{key}_inv", inv)
            _put_gain(out, f"{key}_over_centred",
                      _gains(sets, "IsoCLIP (held-out)", "mean-centred", n_boot, seed))
            for rule in ("agree", "auto"):
                method = next(m for m, k in METHOD_KEYS.items() if k == rule)
                g = _gains(sets, "IsoCLIP (held-out)", method, n_boot, seed)
                _put_gain(out, f"{key}_{rule}_gap", g)
                if g is not None:
                    out[f"{key}_{rule}_goal"] = verdicts.meets_target(
                        g["delta"], at_most=LABEL_FREE_GOAL)
            for facet in dict.fromkeys(str(f) for f in rows["facet"] if f):
                out[f"{key}_{facet}_delta"] = float(rows[rows["facet"] == facet]["delta"].mean())
            best = rows.loc[rows["delta"].idxmax()]
            out[f"{key}_best_set"] = str(best["set"])
            out[f"{key}_best_delta"] = float(best["delta"])
    return out


def suite_summary(values: Mapping[str, Any], mod: str, *, scope: str,
                  prefix: str = "suite") -> str:
    """A Markdown paragraph stating, per family, the fine-grained verdicts of task ``mod``
    from :func:`suite_glue` values: the held-out band against CLIP and against the
    mean-centred control, the label-free rules against the held-out band, OTI / OVI, and the
    whole set beside it; every verdict scoped with its family's model (:data:`FAMILY_SCOPES`,
    else ``scope``: :func:`isoclip.studies.verdicts.scope` of the chapter's model)."""
    tag = TASK_TAGS[mod]
    inv_name = "OTI" if mod == "image" else "OVI"
    fams = [k[len(prefix) + 1:-len(f"_{tag}_n_sets")] for k in values
            if k.startswith(f"{prefix}_") and k.endswith(f"_{tag}_n_sets")]
    parts = []
    for fam in fams:
        k = f"{prefix}_{fam}_{tag}"

        def v(name: str, fmt: str = "", k: str = k) -> str:
            return format(values[f"{k}_{name}"], fmt)

        s = (f"On {v('family')} ({v('n_sets')} sets averaged) CLIP has {v('clip', '.1f')} mAP "
             f"and the held-out band {v('heldout', '.1f')}: {v('heldout_ci')}, so it "
             f"{v('heldout_verdict')} mAP on the average {FAMILY_SCOPES.get(fam, scope)}; against the mean-centred "
             f"control ({v('centred_ci')} over CLIP) it gives {v('over_centred_ci')} "
             f"({v('over_centred_verdict')}).")
        for rule, words in (("agree", "agreement"), ("auto", "automatic")):
            if f"{k}_{rule}_gap_delta" in values:
                s += (f" The label-free {words} band gives {v(f'{rule}_ci')} over CLIP; "
                      f"the held-out band minus it is {v(f'{rule}_gap_ci')} mAP, so it "
                      f"{v(f'{rule}_goal')} the goal of coming within {LABEL_FREE_GOAL:g} "
                      "mAP of the held-out band.")
        if f"{k}_inv_delta" in values:
            s += (f" {inv_name} gives {v('inv_ci')} over CLIP on its inverted queries "
                  f"({v('inv_verdict')}).")
        if int(values[f"{k}_n_ceiling"]):
            s += (f" {v('n_ceiling')} of the sets have CLIP within 5 points of 100 (†): "
                  "little room for any gain.")
        if f"{k}_whole_clip" in values:
            s += (f" The {v('whole_set')} row, never averaged in, has CLIP "
                  f"{v('whole_clip', '.1f')} and a held-out change of "
                  f"{v('whole_delta', '+.2f')}.")
        parts.append(s)
    return "\n\n".join(parts)


def headline_table(studies: Mapping[str, SuiteStudy], *, n_boot: int = 2000, seed: int = 0
                   ) -> pd.DataFrame:
    """One row per (family, task): the fine-grained averages of the first results page.

    Columns: ``sets``, ``CLIP`` (mAP), ``OTI / OVI``, ``IsoCLIP automatic``,
    ``IsoCLIP agreement``, ``IsoCLIP held-out``: each a paired gain over CLIP with its 95 %
    interval (``"+1.23 [+0.45, +2.01]"``; the inversion on its own queries)."""
    values = suite_glue(studies, n_boot=n_boot, seed=seed, prefix="h")
    rows = []
    for mod, study in studies.items():
        tag = TASK_TAGS[mod]
        for fam in dict.fromkeys(r.meta.get("family", "") for r in study.task(mod)):
            k = f"h_{fam}_{tag}"
            if f"{k}_n_sets" not in values:
                continue
            rows.append({
                "model · sets": f"{family_label(str(fam))} ({values[f'{k}_n_sets']} sets)",
                "task": "image→image" if mod == "image" else "text→text",
                "CLIP": values[f"{k}_clip"],
                "OTI / OVI": values.get(f"{k}_inv_ci", "n/a"),
                "IsoCLIP automatic": values.get(f"{k}_auto_ci", "n/a"),
                "IsoCLIP agreement": values.get(f"{k}_agree_ci", "n/a"),
                "IsoCLIP held-out": values.get(f"{k}_heldout_ci", "n/a")})
    return pd.DataFrame(rows).set_index(["model · sets", "task"])


def suite_result_rows(studies: Mapping[str, SuiteStudy],
                      control: Mapping[str, SuiteStudy] | None = None) -> list[dict[str, Any]]:
    """Tidy rows of a result file (:func:`isoclip.studies.results.write_result`): per set
    and task, CLIP, every IsoCLIP rule, the mean-centred control and OTI / OVI (on its
    inverted queries); ``variant`` = the E/M/H protocol of ROxf/RPar; ``in_average`` as the
    tables. ``control``: the random-init study of the same sets (``"random init"`` rows:
    its CLIP and held-out band)."""
    def rows_of(study: SuiteStudy, mod: str, methods: Mapping[str, str]) -> list[dict[str, Any]]:
        out = []
        task = "image-image" if mod == "image" else "text-text"
        for r in study.task(mod):
            base = {"dataset": r.name.split(" (")[0], "task": task, "metric": "mAP",
                    "variant": r.meta.get("protocol", ""), "in_average": in_average(r)}
            for m, label in methods.items():
                if not torch.isnan(r.ap[m]).all():
                    out.append({**base, "method": label, "value": r.mean(m),
                                "queries": r.n_query})
            view = _inversion_view(r)
            if view is not None and methods is _OURS:
                out.append({**base, "method": r.inversion or "inversion",
                            "value": view.mean("inversion"), "queries": view.n_query})
        return out

    rows = []
    for mod, study in studies.items():
        rows += rows_of(study, mod, _OURS)
        if control is not None and mod in control:
            rows += rows_of(control[mod], mod, _CONTROL)
    return rows


_OURS = {"CLIP": "CLIP", "mean-centred": "mean-centred",
         "IsoCLIP (automatic)": "IsoCLIP (automatic)",
         "IsoCLIP (agreement)": "IsoCLIP (agreement)", "IsoCLIP (held-out)": "IsoCLIP",
         "IsoCLIP (oracle)": "IsoCLIP (oracle)"}
_CONTROL = {"CLIP": "random init", "IsoCLIP (held-out)": "random init (IsoCLIP)"}


def example_set(study: SuiteStudy, prefer: str = "emoji/category=animals-nature") -> str:
    """The image set whose retrievals a chapter shows: ``prefer`` when the study has it (real
    images, emoji), else its first averaged image set, else its first image set, sets whose
    gallery is not the query split first (there the query itself would top the list); never a
    revisited Oxford / Paris protocol row (its relevance is not a label).

    Raises:
        ValueError: the study has no such image set.
    """
    results = [r for r in study.task("image") if not r.meta.get("protocol")]
    if not results:
        raise ValueError("study: no labelled image set to show retrievals of")
    names = [r.name for r in results]
    if prefer in names:
        return prefer
    ranked = sorted(results, key=lambda r: (r.same_split, not in_average(r)))  # stable
    return ranked[0].name


def examples_figure(study: SuiteStudy, name: str, *, data_root: Any = None, n: int = 4,
                    k: int = 5, seed: int = 0) -> Any:
    """:func:`isoclip.studies.suite.example_retrievals_figure` of set ``name`` (query images
    and their top-``k`` under CLIP and IsoCLIP's held-out band); ``data_root`` is read for a
    paper dataset only."""
    from isoclip.data import suites
    from isoclip.studies.suite import example_retrievals_figure

    config = {} if suites.is_embedded(name) else {"data_root": data_root}
    return example_retrievals_figure(study, name, n=n, k=k, seed=seed, **config)


def same_item_hits(query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """[Q] bool: whether query ``i``'s nearest gallery item (cosine; ties: lower row first) is
    gallery row ``i`` (query [Q, d] and gallery [G, d] hold the same items in the same order,
    e.g. the same emoji in two artworks)."""
    if query.shape[0] > gallery.shape[0]:
        raise ValueError(f"gallery: expected at least as many rows as the query "
                         f"({query.shape[0]}), got {gallery.shape[0]}")
    from isoclip.studies.suite import top_k

    return top_k(query, gallery, 1)[:, 0] == torch.arange(query.shape[0])


def cross_style_hits(study: SuiteStudy, name: str = "emoji/cross-style", **config: Any
                     ) -> dict[str, float]:
    """How often the identical emoji in the other artwork is ranked first, in percent of the
    queries of cross-style set ``name``: ``CLIP`` (projected features), ``IsoCLIP
    (automatic)`` (the set's automatic band) and ``IsoCLIP (held-out)`` (each query with the
    band chosen on the other half of the queries, as the table's held-out column); ``n``:
    queries, ``dropped``: emoji left out for lack of an image in the other artwork.

    Raises:
        ValueError: ``name`` is not an image set of ``study``.
    """
    from isoclip.data.emoji import load_cross_style
    from isoclip.data.registry import load_dataset
    from isoclip.method.bands import iso_projectors
    from isoclip.method.projectors import get_projectors
    from isoclip.studies.suite import set_features

    res = next((r for r in study.task("image") if r.name == name), None)
    if res is None:
        raise ValueError(f"name: {name!r} is not an image set of this study")
    bundle = study.bundles[res.meta["model"]]
    feats = set_features(bundle, load_dataset(name, "image", **config), calibration_pairs=0)
    P = get_projectors(bundle.model)

    def iso_hits(band_name: str) -> torch.Tensor:
        iso = iso_projectors(P, res.bands[band_name])
        with torch.no_grad():
            return same_item_hits(iso.project_image(feats.query_pre.to(P.dtype)),
                                  iso.project_image(feats.gallery_pre.to(P.dtype)))

    held = iso_hits("held-out (odd)")  # even queries: the band chosen on the odd ones
    held[1::2] = iso_hits("held-out (even)")[1::2]
    out = {"CLIP": same_item_hits(feats.query, feats.gallery),
           "IsoCLIP (automatic)": iso_hits("automatic"), "IsoCLIP (held-out)": held}
    return {"n": float(res.n_query),
            "dropped": float(len(load_cross_style(config.get("emoji")).dropped)),
            **{m: 100.0 * float(h.double().mean()) for m, h in out.items()}}


def cross_style_glue(study: SuiteStudy, name: str = "emoji/cross-style", *,
                     prefix: str = "cross", **config: Any) -> dict[str, Any]:
    """Glue values of the cross-style row: ``<prefix>_<m>`` (mAP of each method of
    :data:`METHOD_KEYS`), ``<prefix>_delta`` (held-out − CLIP), ``<prefix>_all_clip`` /
    ``<prefix>_all_delta`` (the same-style ``emoji/all`` row, if in the study), ``<prefix>_n``,
    ``<prefix>_dropped``, ``<prefix>_label``, ``<prefix>_query_art`` / ``<prefix>_gallery_art``
    (the artworks, ``"Noto"``, ``"Twemoji"``) and ``<prefix>_hit_<m>``
    (:func:`cross_style_hits` for ``clip``, ``auto``, ``heldout``)."""
    from isoclip.data.emoji import ARTWORK_NAMES, load_cross_style

    tab = suite_table(study.task("image")).set_index("name")
    row = tab.loc[name]
    out: dict[str, Any] = {f"{prefix}_{k}": float(row[m]) for m, k in METHOD_KEYS.items()}
    out[f"{prefix}_delta"] = float(row["delta"])
    out[f"{prefix}_label"] = str(row["set"])
    cross = load_cross_style(config.get("emoji"))
    out[f"{prefix}_query_art"] = ARTWORK_NAMES[cross.query_style]
    out[f"{prefix}_gallery_art"] = ARTWORK_NAMES[cross.gallery_style]
    if "emoji/all" in tab.index:
        out[f"{prefix}_all_clip"] = float(tab.loc["emoji/all", "CLIP"])
        out[f"{prefix}_all_delta"] = float(tab.loc["emoji/all", "delta"])
    hits = cross_style_hits(study, name, **config)
    out[f"{prefix}_n"], out[f"{prefix}_dropped"] = int(hits["n"]), int(hits["dropped"])
    for m in ("CLIP", "IsoCLIP (automatic)", "IsoCLIP (held-out)"):
        out[f"{prefix}_hit_{METHOD_KEYS[m]}"] = hits[m]
    return out


def cross_style_summary(values: Mapping[str, Any], *, prefix: str = "cross") -> str:
    """A Markdown paragraph on the cross-style row from :func:`cross_style_glue` values
    (``""`` without them: a run without the set), scoped to the emoji model."""
    if f"{prefix}_clip" not in values:
        return ""

    def v(name: str, fmt: str = "") -> str:
        return format(values[f"{prefix}_{name}"], fmt)

    q, g = v("query_art"), v("gallery_art")
    s = (f"On the emoji model trained here, the {v('n')} {q} query images searched against "
         f"the gallery drawn in {g} (row *{v('label')}*; {v('dropped')} emoji left out for "
         f"lack of a {g} image) give CLIP {v('clip', '.1f')} mAP")
    if f"{prefix}_all_clip" in values:
        s += (f", against {v('all_clip', '.1f')} when both sides are {q} (the whole-set "
              f"row), and the held-out band changes it by {v('delta', '+.2f')} (whole set: "
              f"{v('all_delta', '+.2f')})")
    else:
        s += f", and the held-out band changes it by {v('delta', '+.2f')}"
    return s + (f". The identical emoji in the other artwork is ranked first for "
                f"{v('hit_clip', '.1f')} % of the queries with CLIP, "
                f"{v('hit_heldout', '.1f')} % with the held-out band and "
                f"{v('hit_auto', '.1f')} % with the automatic band.")


def grid_stride_for(model: str, pretrained: str | None = None, *, device: str = "cpu") -> int:
    """The band grid's default stride for a chapter's model: 2 up to rank 64 (the embedded
    models: every other band), else rank / 16 (ViT-B/32: 32, 136 bands per task), as the band
    analysis chapter."""
    if model == "embedded":
        return 2
    from isoclip.method.operator import svd
    from isoclip.method.projectors import get_projectors
    from isoclip.training.embedded import resolve_model

    rank = svd(get_projectors(resolve_model(model, pretrained, device=device).model)).r
    return 2 if rank <= 64 else max(2, rank // 16)
