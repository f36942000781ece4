"""Ablations of IsoCLIP's band (the IsoCLIP paper's ablation table): training-free
baselines (whitening, pre-projection, mean-centring) and band controls (only-top,
only-bottom, random band), on the same queries with paired intervals.

:func:`ablation_metrics` runs them on one set's features; :func:`ablation_suite` on every set
of a chapter's ``datasets`` / ``text_datasets`` lists, each with its model (the embedded
families' own tiny models, or one open_clip model on the paper's datasets; same-split sets
all→all, revisited Oxford / Paris by its E / M / H protocols), and
:func:`ablation_suite_table` lays them out one row per set with the family averages and their
stratified paired intervals (:func:`isoclip.studies.suite.average_gain`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from isoclip.common.types import Modality
from isoclip.data.world.synthetic import SyntheticWorld
from isoclip.models.loading import ModelBundle
from isoclip.studies.world import world_features

__all__ = [
    "ABLATION_ROWS",
    "SUITE_COLUMNS",
    "AblationSuite",
    "ablation_ap",
    "ablation_family_gains",
    "ablation_figure",
    "ablation_glue",
    "ablation_metrics",
    "ablation_result_rows",
    "ablation_rows",
    "ablation_study",
    "ablation_suite",
    "ablation_suite_table",
    "ablation_table",
    "band_glue",
    "chosen_band",
    "primary_rows",
]


#: Rows of the ablation table: (key, label). Keys of ``baselines.ablation_transforms`` plus
#: ``"full_band"`` (IsoCLIP with the band (0, 0), which must equal CLIP).
ABLATION_ROWS: tuple[tuple[str, str], ...] = (
    ("clip", "CLIP"),
    ("pre_projection", "pre-projection features f"),
    ("mean_centred", "mean-centred"),
    ("zca", "ZCA whitening"),
    ("drop_top_only", "remove top band only"),
    ("drop_bottom_only", "remove bottom band only"),
    ("random_band", "random band, same width"),
    ("full_band", "full band (0, 0)"),
    ("isoclip", "IsoCLIP"),
)


def ablation_ap(P: Any, query: Tensor, gallery: Tensor, query_labels: Any,
                gallery_labels: Any, band: Any, modality: Modality, *,
                seeds: Sequence[int] = (0, 1, 2, 3, 4), eps: float | None = None,
                same_split: bool = False,
                ap_of: Callable[[Tensor, Tensor], Tensor] | None = None
                ) -> tuple[dict[str, Tensor], list[float]]:
    """Per-query AP (percent) of every ablation of :data:`ABLATION_ROWS` for one modality.

    Args:
        P, query, gallery, query_labels, gallery_labels, band, modality, seeds, eps: as in
            :func:`ablation_metrics`.
        same_split: query i is gallery item i (all→all, CUB): removed from its own ranking.
        ap_of: ``(query', gallery') -> [Nq]`` per-query AP in percent of transformed features
            (default: :func:`isoclip.evaluate.retrieval.query_metrics` with the labels and
            ``same_split``); e.g. a revisited Oxford/Paris setting
            (:func:`isoclip.evaluate.retrieval.evaluate_revisited_scores`).

    Returns:
        ``(ap, random_means)``: key -> [Nq] float64 AP (NaN: no relevant item; the random band
        averaged over the seeds, query by query) and the random band's mAP of each seed.

    Raises:
        ValueError: no seeds, or the errors of
            :func:`isoclip.baselines.whitening.ablation_transforms`.
    """
    import torch

    from isoclip.baselines.whitening import (
        ZCA_EPS,
        ablation_transforms,
        projected,
        random_band_projectors,
    )
    from isoclip.evaluate.retrieval import query_metrics
    from isoclip.method.bands import Band, iso_projectors

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed for the random band")
    transforms = dict(ablation_transforms(P, band, modality, eps=ZCA_EPS if eps is None else eps))
    transforms["full_band"] = projected(iso_projectors(P, Band(0, 0)), modality)

    def ap(q: Tensor, g: Tensor) -> Tensor:
        if ap_of is not None:
            return ap_of(q, g)
        return 100.0 * query_metrics(q, g, query_labels, gallery_labels, same_split)["mAP"]

    out: dict[str, Tensor] = {}
    means: list[float] = []
    for key, _ in ABLATION_ROWS:
        if key == "random_band":
            per_seed = [ap(*projected(random_band_projectors(P, band, s), modality)(query, gallery))
                        for s in seeds]
            means = [float(np.nanmean(a.numpy())) for a in per_seed]
            out[key] = torch.stack(per_seed).mean(0)
        else:
            out[key] = ap(*transforms[key](query, gallery))
    return out, means


def ablation_rows(ap: Mapping[str, Tensor], random_means: Sequence[float], band: Any, r: int,
                  modality: Modality, *, n_boot: int = 2000, boot_seed: int = 0
                  ) -> pd.DataFrame:
    """The table rows of :func:`ablation_metrics` from per-query AP (:func:`ablation_ap`):
    mAP (the random band: mean and sample sd over its seeds), and the paired difference with
    CLIP with its 95 % bootstrap interval over the queries."""
    from isoclip.evaluate.stats import paired_bootstrap

    kept = band.kept(r)
    bands = {"drop_top_only": (f"({band.k_top}, 0)", r - band.k_top),
             "drop_bottom_only": (f"(0, {band.k_bottom})", r - band.k_bottom),
             "random_band": (f"random {kept}-dim", kept), "full_band": ("(0, 0)", r),
             "isoclip": (f"({band.k_top}, {band.k_bottom})", kept)}
    rows = []
    for key, label in ABLATION_ROWS:
        per_query = ap[key]
        values = list(random_means) if key == "random_band" else \
            [float(np.nanmean(per_query.numpy()))]
        diff = paired_bootstrap(ap["clip"], per_query, n_boot=n_boot, seed=boot_seed)
        text, k = bands.get(key, ("", None))
        rows.append({"modality": modality, "key": key, "method": label, "band": text,
                     "kept": k, "mAP": float(np.mean(values)),
                     "sd": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                     "runs": len(values), "delta": diff["delta"], "lo": diff["lo"],
                     "hi": diff["hi"]})
    return pd.DataFrame(rows)


def ablation_metrics(P: Any, query: Tensor, gallery: Tensor, query_labels: Any,
                     gallery_labels: Any, band: Any, modality: Modality, *,
                     seeds: Sequence[int] = (0, 1, 2, 3, 4), eps: float | None = None,
                     n_boot: int = 2000, boot_seed: int = 0, same_split: bool = False,
                     ap_of: Callable[[Tensor, Tensor], Tensor] | None = None) -> pd.DataFrame:
    """mAP of every ablation of :data:`ABLATION_ROWS` for one modality, and its paired
    difference with CLIP.

    Args:
        P: the model's projectors (``isoclip.method.projectors.get_projectors``).
        query, gallery: [Nq, k], [Ng, k] **pre-projection** features of one modality
            (k = d_i for ``"image"``, d_t for ``"text"``).
        query_labels, gallery_labels: [Nq], [Ng]; relevant = same label.
        band: IsoCLIP's :class:`isoclip.method.bands.Band` for this modality; it also defines the
            remove-top-only / remove-bottom-only bands and the random band's width.
        modality: ``"image"`` or ``"text"``.
        seeds: seeds of the random band (one draw each; the row reports mean and sd).
        eps: relative ridge of the ZCA whitening (None: ``baselines.ZCA_EPS``).
        n_boot, boot_seed: bootstrap of the paired differences with CLIP
            (:func:`isoclip.evaluate.stats.paired_bootstrap` over the queries' AP).
        same_split, ap_of: as in :func:`ablation_ap`.

    Returns:
        One row per ablation, in table order: ``modality, key, method, band, kept`` (number of
        singular directions kept, for band rows), ``mAP`` (mean over seeds for the random
        band), ``sd`` (sample sd over seeds; NaN elsewhere or with one seed), ``runs``, and
        ``delta, lo, hi``: mAP minus CLIP's with a 95 % paired bootstrap interval over the
        queries (for the random band, each query's AP is first averaged over the seeds).

    Raises:
        ValueError: no seeds, or the errors of :func:`isoclip.baselines.whitening.ablation_transforms`.
    """
    ap, means = ablation_ap(P, query, gallery, query_labels, gallery_labels, band, modality,
                            seeds=seeds, eps=eps, same_split=same_split, ap_of=ap_of)
    return ablation_rows(ap, means, band, min(P.d_i, P.d_t), modality, n_boot=n_boot,
                         boot_seed=boot_seed)


def ablation_study(bundle: ModelBundle, world: SyntheticWorld, *, image_band: Any = None,
                   text_band: Any = None, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                   eps: float | None = None) -> pd.DataFrame:
    """:func:`ablation_metrics` for image→image (query → gallery images) and text→text
    (held-out-template captions) on a synthetic world, concatenated.

    ``image_band`` / ``text_band`` default to the paper's ViT-B/32 image-image and text-text
    bands scaled to the rank of Psi (:func:`isoclip.method.bands.paper_scaled_band`).
    """
    from isoclip.method.bands import paper_scaled_band
    from isoclip.method.projectors import get_projectors

    P = get_projectors(bundle.model)
    r = min(P.d_i, P.d_t)
    image_band = image_band or paper_scaled_band(r, task="image")
    text_band = text_band or paper_scaled_band(r, task="text")
    f = world_features(bundle, world, "preproj")
    # labels copied: the world's arrays are read-only, which torch.from_numpy warns about
    ql, gl = np.array(world.query.labels), np.array(world.gallery.labels)
    tql, tgl = np.array(world.text_query.labels), np.array(world.text_gallery.labels)
    return pd.concat([
        ablation_metrics(P, f.query_images, f.gallery_images, ql, gl, image_band, "image",
                         seeds=seeds, eps=eps),
        ablation_metrics(P, *f.text_task(), tql, tgl, text_band, "text",
                         seeds=seeds, eps=eps),
    ], ignore_index=True)


def ablation_table(tidy: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """:func:`ablation_study` output as the book's table: one row per method and, per task, a
    band, an mAP (``mean ± sd`` for the random band) and a ``Δ vs CLIP [95 % interval]``
    column (empty for CLIP itself)."""
    def fmt(row: pd.Series) -> str:
        value = f"{row['mAP']:.{digits}f}"
        return value if np.isnan(row["sd"]) else f"{value} ± {row['sd']:.{digits}f}"

    def fmt_delta(row: pd.Series) -> str:
        if row["key"] == "clip":
            return ""
        return f"{row['delta']:+.{digits}f} [{row['lo']:+.{digits}f}, {row['hi']:+.{digits}f}]"

    names = {"image": "image→image", "text": "text→text"}
    out = pd.DataFrame(index=pd.Index([label for _, label in ABLATION_ROWS], name="method"))
    for modality, grp in tidy.groupby("modality", sort=False):
        g = grp.set_index("method")
        name = names.get(modality, modality)
        out[f"{name} band"] = g["band"]
        out[f"{name} mAP"] = g.apply(fmt, axis=1)
        out[f"{name} Δ vs CLIP"] = g.apply(fmt_delta, axis=1)
    return out.dropna(how="all")


# ---------------------------------------------------------------------------------------------
# over a list of datasets

@dataclass
class AblationSuite:
    """:func:`ablation_suite`'s output.

    Attributes:
        rows: :func:`ablation_rows` of every (task, set[, revisitop protocol]) with the
            columns ``set`` (row label), ``name``, ``family``, ``kind`` (``"set"`` /
            ``"whole"``), ``in_average`` (:func:`isoclip.studies.suite.in_average`), ``n``
            (queries), ``model`` (which model evaluated the set), ``band_origin``.
        results: the same sets as :class:`isoclip.studies.suite.SetResult` whose ``ap`` maps
            each ablation key to its per-query AP (for averages with intervals).
        bands: (model label, task) -> the IsoCLIP band used; ``origins``: where it came from.
        dims: model label -> ``(d_i, d_t)`` of its projectors (rank of Psi: the smaller).
    """

    rows: pd.DataFrame
    results: list[Any]
    bands: dict[tuple[str, str], Any] = field(default_factory=dict)
    origins: dict[tuple[str, str], str] = field(default_factory=dict)
    dims: dict[str, tuple[int, int]] = field(default_factory=dict)


def chosen_band(model: str, pretrained: str | None, modality: Modality, r: int,
                k_top: int | None = None, k_bottom: int | None = None) -> tuple[Any, str]:
    """IsoCLIP's band of the ablations and where it comes from: the paper's band of the
    backbone (:func:`isoclip.studies.verdicts.paper_band`; for the tiny models the paper's
    ViT-B/32 band of the task scaled to rank ``r``), with ``k_top`` / ``k_bottom`` replaced
    where given."""
    from isoclip.method.bands import Band
    from isoclip.studies.verdicts import paper_band

    pb = paper_band(model, pretrained, modality, r)
    if k_top is None and k_bottom is None:
        origin = ("the paper's band of this backbone" if pb.published else
                  f"the paper's ViT-B/32 {modality}-{modality} band scaled to r")
        return pb.band, origin
    band = Band(pb.band.k_top if k_top is None else int(k_top),
                pb.band.k_bottom if k_bottom is None else int(k_bottom))
    return band, "set by the parameters"


def ablation_suite(datasets: str | Sequence[str], text_datasets: str | Sequence[str], *,
                   model: str = "embedded", pretrained: str | None = None,
                   data_root: Any = None, device: str = "cpu",
                   bands: Mapping[str, tuple[int | None, int | None]] | None = None,
                   seeds: Sequence[int] = (0, 1, 2, 3, 4), eps: float | None = None,
                   n_boot: int = 2000, train: Any = None,
                   progress: bool = False) -> AblationSuite:
    """:func:`ablation_metrics` on every image set of ``datasets`` and caption set of
    ``text_datasets`` (suites expanded), each with its model
    (:func:`isoclip.training.embedded.model_for_set`): the embedded families' own tiny models,
    or one open_clip model for every set.

    Features are those of :func:`isoclip.studies.suite.set_features` (a slice of an embedded
    family is cut from its whole set's features, as the suite study does); same-split sets
    (CUB) rank all→all without the query itself, revisited Oxford / Paris give E / M / H rows.

    Args:
        datasets, text_datasets: registry names or suites.
        model, pretrained, data_root, device: as in :func:`isoclip.studies.suite.suite_study`.
        bands: task -> ``(k_top, k_bottom)`` overrides of :func:`chosen_band` (None entries
            keep the paper's value).
        seeds, eps, n_boot: as in :func:`ablation_metrics`.
        train: the default tiny model's training configuration (None: the book's).
    """
    from isoclip.data import suites
    from isoclip.data.registry import datasets_list, load_dataset
    from isoclip.method.projectors import get_projectors
    from isoclip.studies.suite import (
        REVISITED_SETTINGS,
        RevisitedRanker,
        SetResult,
        _cosine_ap,
        _slice,
        in_average,
        set_features,
        set_meta,
    )
    from isoclip.training import embedded as emb

    bundles: dict[str, ModelBundle] = {}
    wholes: dict[tuple[str, str, str], Any] = {}
    out = AblationSuite(rows=pd.DataFrame(), results=[])
    frames = []
    tasks: tuple[tuple[str | Sequence[str], Modality], ...] = ((datasets, "image"),
                                                              (text_datasets, "text"))
    for names, modality in tasks:
        for name in datasets_list(names if isinstance(names, str) else list(names), modality):
            key = emb.model_for_set(name, model)
            if key not in bundles:
                bundles[key] = emb.resolve_model(
                    key, pretrained, device=device, progress=progress,
                    **({"train": train} if train is not None and key == "embedded" else {}))
            bundle = bundles[key]
            P = get_projectors(bundle.model)
            r = min(P.d_i, P.d_t)
            out.dims[key] = (P.d_i, P.d_t)
            if (key, modality) not in out.bands:
                k_top, k_bottom = (bands or {}).get(modality, (None, None))
                out.bands[(key, modality)], out.origins[(key, modality)] = chosen_band(
                    "embedded" if key.startswith("embedded") else model, pretrained, modality,
                    r, k_top, k_bottom)
            band = out.bands[(key, modality)]
            whole = suites.whole_set(name)
            wk = (key, whole, modality)
            if wk not in wholes:
                wdata = load_dataset(whole, modality, data_root)
                wholes[wk] = (wdata, set_features(bundle, wdata, calibration_pairs=0))
            wdata, wfeats = wholes[wk]
            if name == whole:
                data, feats = wdata, wfeats
            else:
                data = load_dataset(name, modality, data_root)
                feats = _slice(wfeats, suites.rows_in_whole(name, modality))
            meta = set_meta(name, key)
            protocols: list[tuple[str, Any]] = [("", None)]
            if data.gnd is not None:
                protocols = [(abbr, RevisitedRanker(data.gnd, len(data.gallery), setting))
                             for setting, abbr in REVISITED_SETTINGS.items()]
            for abbr, ranker in protocols:
                def ap_of(q: Tensor, g: Tensor, ranker: Any = ranker) -> Tensor:
                    return _cosine_ap(ranker, q, g)

                ap, means = ablation_ap(P, feats.query_pre, feats.gallery_pre,
                                        data.query.labels, data.gallery.labels, band, modality,
                                        seeds=seeds, eps=eps, same_split=data.same_split,
                                        ap_of=None if ranker is None else ap_of)
                label = f"{name} ({abbr})" if abbr else str(meta["label"])
                res = SetResult(name=label, modality=modality, n_query=len(data.query),
                                n_gallery=len(data.gallery), same_split=data.same_split,
                                ap=ap, bands={"isoclip": band},
                                meta={**meta, "label": label,
                                      **({"protocol": abbr} if abbr else {})})
                out.results.append(res)
                df = ablation_rows(ap, means, band, r, modality, n_boot=n_boot)
                df.insert(0, "set", label)
                df.insert(1, "name", name)
                df.insert(2, "family", meta["family"])
                df.insert(3, "kind", "whole" if meta["fine_grained"] is False else "set")
                df.insert(4, "in_average", in_average(res))
                df.insert(5, "n", len(data.query))
                df.insert(6, "n_gallery", len(data.gallery))
                df.insert(7, "model", key)
                df["protocol"] = abbr
                frames.append(df)
    out.rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out


#: Columns of the per-dataset ablation table: (key, short label).
SUITE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("clip", "CLIP"), ("pre_projection", "pre-proj. f"), ("mean_centred", "mean-centred"),
    ("zca", "ZCA"), ("drop_top_only", "top only"), ("drop_bottom_only", "bottom only"),
    ("random_band", "random band"), ("isoclip", "IsoCLIP"),
)


def ablation_suite_table(suite: AblationSuite, modality: Modality, *, decimals: int = 1,
                         n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One task of :func:`ablation_suite` in the papers' layout: rows (family, set), then per
    family the average over its :func:`isoclip.studies.suite.in_average` sets; columns the mAP
    of :data:`SUITE_COLUMNS` (the random band: mean over its seeds), ``Δ IsoCLIP − CLIP`` and
    ``Δ IsoCLIP − random band`` (average rows: with the 95 % stratified paired bootstrap
    interval of :func:`isoclip.studies.suite.average_gain`)."""
    from isoclip.studies.suite import FAMILY_LABELS, average_gain

    rows = suite.rows[suite.rows["modality"] == modality]
    res = [r for r in suite.results if r.modality == modality]
    out = []

    def fmt(v: float) -> str:
        return "" if np.isnan(v) else f"{v:.{decimals}f}"

    def gap(d: Mapping[str, float]) -> str:
        return f"{d['delta']:+.{decimals}f} [{d['lo']:+.{decimals}f}, {d['hi']:+.{decimals}f}]"

    for fam in dict.fromkeys(rows["family"]):
        part = rows[rows["family"] == fam]
        for label, g in part.groupby("set", sort=False):
            m = g.set_index("key")["mAP"]
            row: dict[str, Any] = {"family": FAMILY_LABELS.get(fam, fam), "set": label,
                                   "queries": str(int(g["n"].iloc[0]))}
            row.update({short: fmt(float(m[k])) for k, short in SUITE_COLUMNS})
            row["Δ IsoCLIP − CLIP"] = f"{float(m['isoclip'] - m['clip']):+.{decimals}f}"
            row["Δ IsoCLIP − random"] = f"{float(m['isoclip'] - m['random_band']):+.{decimals}f}"
            out.append(row)
        avg = [r for r in res if r.meta.get("family") == fam and _in_avg(suite, r.name, modality)]
        if avg:
            sel = part[part["in_average"]]
            means = sel.groupby("key")["mAP"].mean()
            kind = "datasets" if fam == "paper" else "fine-grained sets"
            row = {"family": FAMILY_LABELS.get(fam, fam),
                   "set": f"average ({len(avg)} {kind})",
                   "queries": str(int(sel.drop_duplicates("set")["n"].sum()))}
            row.update({short: fmt(float(means[k])) for k, short in SUITE_COLUMNS})
            row["Δ IsoCLIP − CLIP"] = gap(average_gain(avg, "isoclip", "clip", n_boot=n_boot,
                                                       seed=seed))
            row["Δ IsoCLIP − random"] = gap(average_gain(avg, "isoclip", "random_band",
                                                         n_boot=n_boot, seed=seed))
            out.append(row)
    return pd.DataFrame(out).set_index(["family", "set"]).rename_axis(["", "set"])


def _in_avg(suite: AblationSuite, label: str, modality: str) -> bool:
    sel = suite.rows[(suite.rows["set"] == label) & (suite.rows["modality"] == modality)]
    return bool(len(sel)) and bool(sel["in_average"].iloc[0])


def ablation_family_gains(suite: AblationSuite, *, n_boot: int = 2000, seed: int = 0
                          ) -> pd.DataFrame:
    """Per (task, family), the average over its averaged sets of each ablation's gain over
    CLIP and of IsoCLIP's over the random band, with 95 % stratified paired intervals
    (:func:`isoclip.studies.suite.average_gain`): columns ``modality, family, key, baseline,
    delta, lo, hi, n_sets``."""
    from isoclip.studies.suite import average_gain

    rows = []
    for modality in dict.fromkeys(suite.rows["modality"]) if len(suite.rows) else ():
        res = [r for r in suite.results if r.modality == modality]
        for fam in dict.fromkeys(r.meta.get("family") for r in res):
            avg = [r for r in res if r.meta.get("family") == fam
                   and _in_avg(suite, r.name, modality)]
            if not avg:
                continue
            pairs = [(k, "clip") for k, _ in ABLATION_ROWS if k not in ("clip", "full_band")]
            for key, base in [*pairs, ("isoclip", "random_band")]:
                rows.append({"modality": modality, "family": fam, "key": key, "baseline": base,
                             **average_gain(avg, key, base, n_boot=n_boot, seed=seed)})
    return pd.DataFrame(rows)


def primary_rows(suite: AblationSuite) -> pd.DataFrame:
    """The rows of the first image set and the first caption set of :func:`ablation_suite`
    (a revisited set by its Medium protocol): the sets chapter 10 discusses in detail, in
    :func:`ablation_study`'s format (plus its ``set`` and ``n`` columns)."""
    rows = suite.rows
    out = []
    for modality in dict.fromkeys(rows["modality"]):
        part = rows[(rows["modality"] == modality) & rows["protocol"].isin(["", "M"])]
        first = part["set"].iloc[0]
        out.append(part[part["set"] == first])
    return pd.concat(out, ignore_index=True)


def band_glue(suite: AblationSuite, tidy: pd.DataFrame, model: str = "embedded",
              pretrained: str | None = None) -> dict[str, Any]:
    """The values chapter 10's prose quotes about the bands and sets of :func:`primary_rows`:
    rank and projector widths of the image set's model, each task's band, the directions it
    keeps and where it comes from, the number of random-band seeds, the sets and their sizes,
    and the model the verdicts hold on (``verdict_scope``)."""
    from isoclip.studies.inversion_suite import family_scope

    first = tidy.iloc[0]
    scaled = "scaled" in str(suite.origins[(first["model"], "image")])
    g: dict[str, Any] = {
        "verdict_scope": family_scope(str(first["family"]), model, pretrained),
        "band_kind": "a band scaled from ViT-B/32, not chosen for it" if scaled else
        "the band of the parameters or the paper's band for this backbone",
        "band_note": ("The paper sets its bands per backbone and per task by hand; scaling the "
                      "ViT-B/32 ones to a rank-{r} operator is a reference point, not a band "
                      "tuned for this model." if scaled else
                      "The paper sets its bands per backbone and per task by hand; these are "
                      "the bands it reports for this backbone, or those of the parameters."),
        "text_queries": "held-out-template captions" if model == "embedded" else
        "query captions",
        "relevance": "same class" if model == "embedded" else
        "same class for images, same source image for captions; ROxf/RPar: the revisitop "
        "ground truth"}
    for mod, tag in (("image", "img"), ("text", "txt")):
        row = tidy[tidy["modality"] == mod].iloc[0]
        d_i, d_t = suite.dims[row["model"]]
        band = suite.bands[(row["model"], mod)]
        if mod == "image":
            g.update({"r": min(d_i, d_t), "d_i": d_i, "d_t": d_t,
                      "n_query": int(row["n"]), "n_gallery": int(row["n_gallery"]),
                      "image_set": row["name"] + (f" ({row['protocol']})" if row["protocol"]
                                                  else "")})
        else:
            g.update({"n_text_query": int(row["n"]), "n_text_gallery": int(row["n_gallery"]),
                      "text_set": row["name"]})
        g.update({f"{tag}_k_top": band.k_top, f"{tag}_k_bottom": band.k_bottom,
                  f"{tag}_kept": band.kept(min(d_i, d_t)),
                  f"{mod}_band_origin": suite.origins[(row["model"], mod)]})
    g["n_seeds"] = int(tidy.loc[tidy["key"] == "random_band", "runs"].iloc[0])
    g["band_note"] = g["band_note"].format(r=g["r"])
    return g


def _side(lo: float, hi: float) -> str:
    from isoclip.studies.verdicts import change

    return {"raises": "above", "lowers": "below"}.get(change(lo, hi),
                                                        "not measurably different from")


def ablation_verdicts(suite: AblationSuite, model: str, pretrained: str | None, *,
                      n_boot: int = 2000, seed: int = 0) -> str:
    """One Markdown paragraph per (task, family) average (:func:`ablation_family_gains`):
    whether IsoCLIP's band raises CLIP's mAP, whether it beats the random band of the same
    width, and which ablations raise it, each read off its paired interval and scoped to the
    model it was measured on."""
    from isoclip.studies.inversion_suite import family_scope
    from isoclip.studies.suite import FAMILY_LABELS
    from isoclip.studies.verdicts import change

    gains = ablation_family_gains(suite, n_boot=n_boot, seed=seed)
    labels = dict(ABLATION_ROWS)
    names = {"image": "image→image", "text": "text→text"}
    out = []
    if not len(gains):
        return "No family has fine-grained sets to average here."
    for (mod, fam), g in gains.groupby(["modality", "family"], sort=False):
        t = g.set_index(["key", "baseline"])
        iso, rnd = t.loc[("isoclip", "clip")], t.loc[("isoclip", "random_band")]
        better = [labels[k] for (k, b), r in t.iterrows()
                  if b == "clip" and change(r["lo"], r["hi"]) == "raises"]
        out.append(
            f"**{names[str(mod)]}, {FAMILY_LABELS.get(str(fam), fam)}** (average over "
            f"{int(iso['n_sets'])} {'datasets' if fam == 'paper' else 'fine-grained sets'}, "
            f"{family_scope(str(fam), model, pretrained)}): IsoCLIP's "
            f"band {change(iso['lo'], iso['hi'])} CLIP's mAP ({iso['delta']:+.2f}, 95 % interval "
            f"{iso['lo']:+.2f} to {iso['hi']:+.2f}); against a random band of the same width "
            f"it scores {rnd['delta']:+.2f} mAP ({rnd['lo']:+.2f} to {rnd['hi']:+.2f}), "
            f"{_side(rnd['lo'], rnd['hi'])} the random band. Rows significantly above CLIP on "
            f"average: {'; '.join(better) if better else 'none'}.")
    return "\n\n".join(out)


def ablation_result_rows(suite: AblationSuite) -> list[dict[str, Any]]:
    """Tidy rows of every set's ablations for :func:`isoclip.studies.results.write_result`:
    task ``"image-image"`` / ``"text-text"``, method = the ablation's label, metric ``"mAP"``
    (the random band: mean over its seeds), the revisitop protocol as ``variant``."""
    out = []
    for r in suite.rows.to_dict("records"):
        row = {"dataset": r["name"], "task": f"{r['modality']}-{r['modality']}",
               "method": r["method"], "metric": "mAP", "value": float(r["mAP"]),
               "in_average": bool(r["in_average"]), "queries": int(r["n"])}
        if r["protocol"]:
            row["variant"] = r["protocol"]
        out.append(row)
    return out


def ablation_glue(tidy: pd.DataFrame) -> dict[str, Any]:
    """Every value chapter 10's prose quotes about one image and one text set's ablations
    (:func:`ablation_study` or :func:`primary_rows`): per task (prefix ``img_`` / ``txt_``)
    each method's mAP, the random band's sd, IsoCLIP's change with its interval and verdict
    (read off the paired interval, :func:`isoclip.studies.verdicts.change`), how many seed
    standard deviations IsoCLIP lands above or below the random band, the full band's error
    against CLIP, and the list of rows significantly above CLIP."""
    from isoclip.studies import verdicts

    g: dict[str, Any] = {}
    for mod, tag in (("image", "img"), ("text", "txt")):
        t = tidy[tidy["modality"] == mod].set_index("key")
        for key in ("clip", "pre_projection", "mean_centred", "zca", "drop_top_only",
                    "drop_bottom_only", "full_band", "isoclip"):
            g[f"{tag}_{key}"] = float(t.loc[key, "mAP"])
        rnd, sd = float(t.loc["random_band", "mAP"]), float(t.loc["random_band", "sd"])
        clip, iso = float(t.loc["clip", "mAP"]), float(t.loc["isoclip", "mAP"])
        g.update({f"{tag}_random": rnd, f"{tag}_random_sd": sd, f"{tag}_iso_delta": iso - clip,
                  f"{tag}_iso_lo": float(t.loc["isoclip", "lo"]),
                  f"{tag}_iso_hi": float(t.loc["isoclip", "hi"]),
                  f"{tag}_full_err": abs(float(t.loc["full_band", "mAP"]) - clip)})
        for key, name in (("isoclip", "iso"), ("drop_top_only", "top"),
                          ("drop_bottom_only", "bottom"), ("zca", "zca"),
                          ("mean_centred", "centred"), ("pre_projection", "pre")):
            g[f"{tag}_{name}_verdict"] = verdicts.change(t.loc[key, "lo"], t.loc[key, "hi"])
        z = (iso - rnd) / sd if sd > 0 else float("nan")  # in units of the seeds' sd
        g[f"{tag}_iso_vs_random"] = "above" if iso > rnd else "below"
        g[f"{tag}_iso_vs_random_z"] = abs(z)
        compared = t[t["lo"].notna()]  # the rows compared with CLIP
        better = [r.method for r in compared.itertuples()
                  if verdicts.change(r.lo, r.hi) == "raises"]
        g[f"{tag}_better"] = ", ".join(better) if better else "none"
    return g


def ablation_figure(tidy: pd.DataFrame) -> Any:
    """Horizontal bars of every ablation's mAP per task (the random band: mean with the seeds'
    sd), CLIP's mAP dashed."""
    from isoclip.studies import plotting

    colours = {"CLIP": plotting.METHOD_COLOURS["CLIP"],
               "IsoCLIP": plotting.METHOD_COLOURS["IsoCLIP"],
               "ZCA whitening": plotting.METHOD_COLOURS["whitening"],
               "pre-projection features f": plotting.METHOD_COLOURS["pre-projection"]}
    fig, axes = plotting.page_figure(1, 2, aspect=0.5, sharey=True)
    for ax, (mod, title) in zip(axes, (("image", "image→image"), ("text", "text→text"))):
        g = tidy[tidy["modality"] == mod].reset_index(drop=True)
        y = np.arange(len(g))
        ax.barh(y, g["mAP"], xerr=g["sd"].fillna(0),
                color=[colours.get(x, "0.6") for x in g["method"]])
        ax.axvline(g.loc[g["key"] == "clip", "mAP"].iloc[0], color="k", lw=0.8, ls="--")
        ax.set(title=title, xlabel="mAP (%)")
        ax.set_yticks(y, g["method"])
        ax.grid(axis="y", visible=False)
    axes[0].invert_yaxis()
    return fig
