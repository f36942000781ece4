"""IsoCLIP's intra-modal retrieval tables on a suite of sets, in the paper's layout.

The paper reports image→image and text→text retrieval of one model per backbone on many
datasets, one row per dataset and their average (IsoCLIP Sec. 5, Tables 1-2; columns CLIP,
OTI / OVI of Cross the Gap, IsoCLIP). :func:`suite_study` computes those rows for any list
of registered sets (:func:`isoclip.data.registry.datasets_list`): the embedded models'
fine-grained suites (:mod:`isoclip.data.suites`: one set per shape or colour of the synthetic
world, one per Unicode category of the emoji), their whole sets, or the paper's datasets.
Every method is scored per query, so averages over sets come with paired intervals.

Per set and task the methods are:

* ``CLIP``: the model's own projected features (cosine).
* ``mean-centred``: CLIP's features centred on the set's own gallery mean
  (:func:`isoclip.baselines.whitening.mean_center`): the cheapest training-free control, which
  removes the offset every item of a fine-grained set shares.
* ``IsoCLIP (automatic)``: the band of :func:`isoclip.selection.rules.select_band`
  ``"isotropy"`` (projector weights only; one band per model).
* ``IsoCLIP (agreement)``: the label-free band chosen on unlabelled image-caption pairs of the
  set's own domain (its ``calibration`` pairs: training pairs, never evaluation items).
* ``IsoCLIP (held-out)``: the best band of the sweep chosen on the even-indexed queries and
  scored on the odd ones, and vice versa; each query is scored with the band chosen without
  it. An honest estimate of what a labelled band achieves; the verdicts use it.
* ``IsoCLIP (oracle)``: the best band of the sweep on all queries (uses the test labels: an
  upper bound, never a verdict).
* ``OTI`` (images) / ``OVI`` (texts): the inversion of a class-balanced subset of the whole
  set's queries (the inversion is done once per whole set and shared by its slices: for the
  synthetic world it is chapter 3's run); scored on those queries, beside CLIP on the same ones.

The band sweep is the grid of :func:`isoclip.studies.regimes.band_metrics` (k_top and k_bottom
in steps of ``stride`` below rank = min(r, d), the r − rank null directions always dropped).
Same-split sets (CUB: all→all) are supported throughout: every method is ranked over the whole
gallery minus the query itself, and the halves of the held-out rule only split the average.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from isoclip.baselines.whitening import mean_center
from isoclip.common.cache import cached
from isoclip.common.cache import code_fingerprint as _code_fingerprint
from isoclip.common.threads import torch_threads
from isoclip.common.types import check_modality
from isoclip.data.base import ImageDataset, TextDataset
from isoclip.data.paper_datasets import RetrievalData
from isoclip.evaluate.retrieval import (
    FixedLabelRanker,
    _revisited_query,
    _revisited_settings,
    query_metrics,
)
from isoclip.evaluate.stats import balanced_subset, integer_labels
from isoclip.method.bands import Band
from isoclip.method.operator import SVD, svd
from isoclip.method.projectors import Projectors, get_projectors
from isoclip.models.features import image_features, text_features
from isoclip.models.loading import ModelBundle
from isoclip.selection.rules import select_band
from isoclip.selection.sweep import BandScorer

__all__ = ["INVERSION_PER_CLASS", "METHODS", "OTI_TEMPLATES", "REVISITED_SETTINGS", "SUITE_CODE",
           "InversionSettings", "RevisitedRanker", "SetFeatures", "SetResult", "SuiteStudy",
           "average_gain", "calibration_subset", "code_fingerprint", "evaluate_set",
           "family_averages", "in_average", "result_from_payload", "result_payload", "set_features",
           "set_key_material", "set_meta", "suite_study", "suite_table"]

#: Methods scored on every query of a set, in table order.
METHODS = ("CLIP", "mean-centred", "IsoCLIP (automatic)", "IsoCLIP (agreement)",
           "IsoCLIP (held-out)", "IsoCLIP (oracle)")


@dataclass
class SetFeatures:
    """Features of one set for one task.

    Attributes:
        query_pre, gallery_pre: [Q, d_m], [G, d_m] pre-projection features (band sweeps).
        query, gallery: [Q, d], [G, d] projected features (CLIP).
        calib_image, calib_text: [n, d_i], [n, d_t] pre-projection features of the set's
            calibration pairs (None: the set has none; the agreement rule is then skipped).
    """

    query_pre: Tensor
    gallery_pre: Tensor
    query: Tensor
    gallery: Tensor
    calib_image: Tensor | None = None
    calib_text: Tensor | None = None


def _features(bundle: ModelBundle, ds: ImageDataset | TextDataset, kind: str) -> Tensor:
    if isinstance(ds, TextDataset):
        return text_features(bundle, ds, kind, progress=False)  # type: ignore[arg-type]
    return image_features(bundle, ds, kind, progress=False)  # type: ignore[arg-type]


def calibration_subset(calibration: ImageDataset, n: int, seed: int = 0) -> ImageDataset:
    """``n`` seeded rows of a set's calibration pairs (all if it has fewer), named
    ``"<name>[calib <n>, seed <seed>]"`` (for the whole synthetic world: exactly the pairs and
    name of :func:`isoclip.studies.world.calibration_pairs`, so their features are shared)."""
    n = min(int(n), len(calibration))
    rows = np.sort(np.random.default_rng(seed).choice(len(calibration), n, replace=False))
    return calibration.subset(rows, f"{calibration.name}[calib {n}, seed {seed}]")


def set_features(bundle: ModelBundle, data: RetrievalData, *, calibration_pairs: int = 1000,
                 seed: int = 0) -> SetFeatures:
    """Extract (or load from the feature cache) everything :func:`evaluate_set` needs.

    Args:
        bundle: the model.
        data: the set (image or text side).
        calibration_pairs: pairs drawn (seeded) from ``data.calibration`` for the agreement
            rule; 0 skips it.
        seed: of that draw.
    """
    q_pre = _features(bundle, data.query, "preproj")
    q = _features(bundle, data.query, "projected")
    if data.same_split:
        g_pre, g = q_pre, q
    else:
        g_pre = _features(bundle, data.gallery, "preproj")
        g = _features(bundle, data.gallery, "projected")
    ci = ct = None
    if data.calibration is not None and calibration_pairs > 0:
        sub = calibration_subset(data.calibration, calibration_pairs, seed)
        if sub.captions is None:
            raise ValueError(f"dataset {data.name!r}: its calibration pairs have no captions")
        ci = image_features(bundle, sub, "preproj", progress=False)
        ct = text_features(bundle, sub, "preproj", progress=False)
    return SetFeatures(q_pre, g_pre, q, g, ci, ct)


@dataclass
class SetResult:
    """One set's retrieval under every method, per query.

    Attributes:
        name: the set's registry name.
        modality: ``"image"`` (image→image) or ``"text"`` (text→text).
        n_query, n_gallery: sizes; ``same_split``: all→all.
        ap: method (:data:`METHODS`) -> [Q] float64 AP in percent (NaN: no relevant item).
        bands: ``"automatic"``, ``"agreement"``, ``"oracle"``, ``"held-out (even)"`` (chosen on
            the even queries, scores the odd ones), ``"held-out (odd)"``.
        inversion: ``"OTI"``/``"OVI"`` or None; ``inv_rows``: [n] query rows it inverted;
            ``inv_ap``: [n] their AP through the inversion (CLIP's on the same rows:
            ``ap["CLIP"][inv_rows]``).
        meta: free-form descriptors for tables (family, label, fine_grained, model, ...).
    """

    name: str
    modality: str
    n_query: int
    n_gallery: int
    same_split: bool
    ap: dict[str, Tensor]
    bands: dict[str, Band]
    inversion: str | None = None
    inv_rows: Tensor | None = None
    inv_ap: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def mean(self, method: str) -> float:
        """Mean AP of ``method`` over the queries with a relevant item."""
        v = self.ap[method]
        return float(v[~torch.isnan(v)].mean())


def _grid(dec: SVD, P: Projectors, stride: int) -> list[Band]:
    rank = min(dec.r, P.d)
    null = dec.r - rank
    return [Band(kt, null + kb) for kt in range(0, rank, stride) for kb in range(0, rank, stride)
            if kt + kb < rank]


class Ranker(Protocol):
    """Per-query metrics of a [Q, G] score matrix (:class:`FixedLabelRanker`,
    :class:`RevisitedRanker`)."""

    def per_query(self, scores: Tensor) -> dict[str, Tensor]: ...


#: The revisited Oxford / Paris protocols (Radenović et al. 2018), each a row of its own.
REVISITED_SETTINGS = {"easy": "E", "medium": "M", "hard": "H"}


class RevisitedRanker:
    """Per-query AP of revisited Oxford / Paris in one protocol (``"easy"``, ``"medium"`` or
    ``"hard"``): the positives and junk of
    :func:`isoclip.evaluate.retrieval.evaluate_revisited_scores` (IsoCLIP
    ``compute_roxford_rparis_metrics``), junk dropped from the ranking; the mean over the
    queries with a positive equals its ``mAP_<setting>``.

    Args:
        gnd: Q ground-truth mappings (``easy``, ``hard``, ``junk`` gallery indices).
        n_gallery: G.
        setting: the protocol.

    Raises:
        ValueError: unknown setting, malformed ``gnd``, or no query with a positive.
    """

    def __init__(self, gnd: Sequence[Mapping[str, Any]], n_gallery: int, setting: str) -> None:
        if setting not in REVISITED_SETTINGS:
            raise ValueError(f"setting: expected one of {sorted(REVISITED_SETTINGS)}, "
                             f"got {setting!r}")
        self.setting, self.n_gallery = setting, int(n_gallery)
        self.ok_junk = [_revisited_settings(e, self.n_gallery, i)[setting]
                        for i, e in enumerate(gnd)]
        if not any(len(ok) for ok, _ in self.ok_junk):
            raise ValueError(f"gnd: no query has a positive in the {setting} setting")

    def per_query(self, scores: Tensor) -> dict[str, Tensor]:
        """``{"mAP": [Q] float64}`` AP in [0, 1] of ``scores`` [Q, G]; NaN without a positive."""
        if tuple(scores.shape) != (len(self.ok_junk), self.n_gallery):
            raise ValueError(f"scores: expected shape {(len(self.ok_junk), self.n_gallery)}, "
                             f"got {tuple(scores.shape)}")
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices.numpy()
        ap = torch.full((len(self.ok_junk),), float("nan"), dtype=torch.float64)
        for i, (ok, junk) in enumerate(self.ok_junk):
            if len(ok):
                ap[i] = _revisited_query(order[i], ok, junk, (1,))[0]
        return {"mAP": ap}


def _cosine_ap(ranker: Ranker, query: Tensor, gallery: Tensor) -> Tensor:
    """[Q] AP (percent) of the cosine similarities of ``query`` [Q, d] and ``gallery`` [G, d]."""
    s = F.normalize(query.float(), dim=1) @ F.normalize(gallery.float(), dim=1).T
    return 100.0 * ranker.per_query(s)["mAP"]


def _band_ap(scorer: BandScorer, ranker: Ranker, bands: Sequence[Band]) -> Tensor:
    """[B, Q] per-query AP (percent) of every band, bands in parallel threads."""
    def run(band: Band) -> Tensor:
        return 100.0 * ranker.per_query(scorer.scores(band))["mAP"]

    n_threads = torch.get_num_threads()
    with torch_threads(1), torch.no_grad(), ThreadPoolExecutor(n_threads) as pool:
        return torch.stack(list(pool.map(run, bands)))


def _nanmean_rows(ap: Tensor, cols: Tensor) -> Tensor:
    """[B] mean over columns ``cols`` of ``ap`` [B, Q], ignoring NaN (queries without a
    relevant item)."""
    sub = ap[:, cols]
    ok = ~torch.isnan(sub)
    return torch.where(ok, sub, torch.zeros_like(sub)).sum(1) / ok.sum(1).clamp_min(1)


def evaluate_set(P: Projectors, feats: SetFeatures, query_labels: Any, gallery_labels: Any,
                 modality: str, *, same_split: bool = False, dec: SVD | None = None,
                 stride: int = 2, auto_band: Band | None = None,
                 inverted: tuple[Tensor, Tensor] | None = None, name: str = "",
                 inversion: str | None = None, ranker: Ranker | None = None) -> SetResult:
    """Every method of :data:`METHODS` (and the inversion, if given) on one set, per query.

    Args:
        P: the model's projectors; ``dec = svd(P)`` if already computed.
        feats: :func:`set_features` of the set.
        query_labels, gallery_labels: [Q], [G]; relevant = same label.
        modality: ``"image"`` or ``"text"``.
        same_split: query i is gallery item i (removed from its own ranking).
        stride: grid step of the band sweep (k_top and k_bottom).
        auto_band: the automatic band (default ``select_band(P, "isotropy")``).
        inverted: ``(rows, features)``: query rows [n] and their inverted features [n, d]
            (OTI text features for image queries, OVI image features for text queries),
            ranked against the projected gallery.
        name, inversion: the set's name and the inversion's name (``"OTI"``/``"OVI"``).
        ranker: scores every method instead of the labels (e.g. a :class:`RevisitedRanker`:
            ``query_labels`` / ``gallery_labels`` are then unused).

    Raises:
        ValueError: stride < 1, bad modality, fewer than 2 queries, or bad labels.
    """
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: expected an int >= 1, got {stride!r}")
    check_modality("modality", modality)
    n_q = feats.query.shape[0]
    if n_q < 2:
        raise ValueError(f"query: expected at least 2 queries (held-out band), got {n_q}")
    dec = svd(P) if dec is None else dec
    ap: dict[str, Tensor] = {}
    cq, cg = mean_center(feats.query, feats.gallery)
    if ranker is None:
        ql, gl = integer_labels(query_labels), integer_labels(gallery_labels)
        ap["CLIP"] = 100.0 * query_metrics(feats.query, feats.gallery, ql, gl,
                                           same_split)["mAP"]
        ap["mean-centred"] = 100.0 * query_metrics(cq, cg, ql, gl, same_split)["mAP"]
        ranker = FixedLabelRanker(ql, gl, same_split)
    else:
        ap["CLIP"] = _cosine_ap(ranker, feats.query, feats.gallery)
        ap["mean-centred"] = _cosine_ap(ranker, cq, cg)

    scorer = BandScorer(P, feats.query_pre, feats.gallery_pre, modality, dec,  # type: ignore[arg-type]
                        dtype=torch.float32)
    grid = _grid(dec, P, stride)
    grid_ap = _band_ap(scorer, ranker, grid)  # [B, Q]
    every = torch.arange(n_q)
    halves = (every[0::2], every[1::2])
    means = _nanmean_rows(grid_ap, every)
    oracle = int(torch.argmax(means))
    heldout = torch.full((n_q,), float("nan"), dtype=torch.float64)
    bands: dict[str, Band] = {"oracle": grid[oracle]}
    for label, chooser, scored in (("held-out (even)", halves[0], halves[1]),
                                   ("held-out (odd)", halves[1], halves[0])):
        b = int(torch.argmax(_nanmean_rows(grid_ap, chooser)))
        heldout[scored] = grid_ap[b, scored]
        bands[label] = grid[b]
    auto = select_band(P, "isotropy", dec=dec) if auto_band is None else auto_band
    bands["automatic"] = auto
    ap["IsoCLIP (automatic)"] = _band_ap(scorer, ranker, [auto])[0]
    if feats.calib_image is not None and feats.calib_text is not None:
        agree = select_band(P, "agreement", dec=dec, image_preproj=feats.calib_image,
                            text_preproj=feats.calib_text, modality=modality, stride=stride)
        bands["agreement"] = agree
        ap["IsoCLIP (agreement)"] = _band_ap(scorer, ranker, [agree])[0]
    else:
        ap["IsoCLIP (agreement)"] = torch.full((n_q,), float("nan"), dtype=torch.float64)
    ap["IsoCLIP (held-out)"] = heldout
    ap["IsoCLIP (oracle)"] = grid_ap[oracle]
    result = SetResult(name=name, modality=modality, n_query=n_q,
                       n_gallery=int(feats.gallery.shape[0]), same_split=same_split, ap=ap,
                       bands=bands)
    if inverted is not None:
        rows, inv = inverted
        rows = torch.as_tensor(rows, dtype=torch.long)
        if len(rows):
            # rank the whole query set with the inverted rows substituted: the same-split
            # self-exclusion then applies to them unchanged
            gn = F.normalize(feats.gallery.float(), dim=1)
            s = F.normalize(feats.query.float(), dim=1) @ gn.T
            s[rows] = F.normalize(inv.float(), dim=1) @ gn.T
            result.inversion = inversion
            result.inv_rows = rows
            result.inv_ap = (100.0 * ranker.per_query(s)["mAP"])[rows]
    return result


# ---------------------------------------------------------------------------------------------
# tables and averages


def _paired(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    ok = ~(torch.isnan(a) | torch.isnan(b))
    return a[ok].double(), b[ok].double()


def average_gain(results: Sequence[SetResult], method: str, baseline: str = "CLIP", *,
                 n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """The mean over sets of ``method``'s mAP gain over ``baseline`` (each set weighs the same,
    as the paper's average over datasets) with a 95 % bootstrap interval: queries are resampled
    within each set (stratified, paired), the average recomputed ``n_boot`` times.

    Returns:
        ``delta`` (mAP points), ``lo``, ``hi`` (2.5 / 97.5 percentiles), ``n_sets``.

    Raises:
        ValueError: no set, or a set without a query scored by both methods.
    """
    if not results:
        raise ValueError("results: expected at least one set")
    gen = torch.Generator().manual_seed(seed)
    point = []
    boots = torch.zeros(n_boot, dtype=torch.float64)
    for r in results:
        a, b = _paired(r.ap[baseline], r.ap[method])
        if len(a) == 0:
            raise ValueError(f"set {r.name!r}: no query scored by both {baseline} and {method}")
        d = b - a
        point.append(float(d.mean()))
        idx = torch.randint(len(d), (n_boot, len(d)), generator=gen)
        boots += d[idx].mean(1)
    boots /= len(results)
    lo, hi = torch.quantile(boots, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"delta": float(np.mean(point)), "lo": lo, "hi": hi, "n_sets": len(results)}


def _inversion_cell(r: SetResult) -> tuple[float, float, int]:
    if r.inv_ap is None or r.inv_rows is None:
        return math.nan, math.nan, 0
    a, b = _paired(r.ap["CLIP"][r.inv_rows], r.inv_ap)
    if not len(a):
        return math.nan, math.nan, 0
    return float(b.mean()), float((b - a).mean()), len(a)


def suite_table(results: Sequence[SetResult]) -> pd.DataFrame:
    """One row per set (in order), then per family the mean over its fine-grained sets (for
    the paper's datasets: over every dataset, a revisited Oxford / Paris set by its Medium
    protocol, as :func:`in_average`); the whole sets stay rows of their own (never averaged in).

    Columns: ``set`` (row label), ``family``, ``kind`` (``"fine-grained"``, ``"whole"``,
    ``"average"``, ``"dataset"``), ``n`` (queries), every method of :data:`METHODS` (mAP),
    ``inversion`` (``"OTI"``/``"OVI"``), ``inv_mAP`` and ``inv_delta`` (the inversion's mAP on
    its queries and its gain over CLIP on the same queries), ``inv_n``, ``delta`` (held-out
    band − CLIP), ``delta_centred`` (mean-centred − CLIP), ``headroom`` (100 − CLIP) and
    ``near_ceiling`` (:func:`isoclip.studies.verdicts.near_ceiling`: little room to show a
    gain), ``facet`` (what an embedded set holds fixed).
    """
    from isoclip.studies.verdicts import near_ceiling

    rows = []
    for r in results:
        inv_m, inv_d, inv_n = _inversion_cell(r)
        row = {"set": r.meta.get("label", r.name), "name": r.name,
               "family": r.meta.get("family", ""), "facet": r.meta.get("facet", ""),
               "kind": ("fine-grained" if r.meta.get("fine_grained") else
                        "whole" if r.meta.get("fine_grained") is False else "dataset"),
               "n": r.n_query, **{m: r.mean(m) if not torch.isnan(r.ap[m]).all() else math.nan
                                  for m in METHODS},
               "inversion": r.inversion or "", "inv_mAP": inv_m, "inv_delta": inv_d,
               "inv_n": inv_n}
        rows.append(row)
    df = pd.DataFrame(rows)
    df["delta"] = df["IsoCLIP (held-out)"] - df["CLIP"]
    df["delta_centred"] = df["mean-centred"] - df["CLIP"]
    avg_rows = []
    df["in_average"] = [in_average(r) for r in results]
    for fam, part in df[df["in_average"]].groupby("family", sort=False):
        num = part.drop(columns="in_average").select_dtypes("number").mean()
        kind = "fine-grained sets" if (part["kind"] == "fine-grained").all() else "datasets"
        avg_rows.append({"set": f"average ({len(part)} {kind})", "name": "",
                         "family": fam, "kind": "average", **num.to_dict(),
                         "n": int(part["n"].sum()), "inv_n": int(part["inv_n"].sum()),
                         "inversion": part["inversion"].iloc[0], "in_average": False})
    out = pd.concat([df, pd.DataFrame(avg_rows)], ignore_index=True) if avg_rows else df
    out["headroom"] = 100.0 - out["CLIP"]
    out["near_ceiling"] = [near_ceiling(c) for c in out["CLIP"]]
    return out


def in_average(r: SetResult) -> bool:
    """Whether a set enters its family's average: a fine-grained embedded set, or a paper
    dataset (a revisited Oxford / Paris set by its Medium protocol only, the paper's headline
    protocol); never a whole set."""
    if r.meta.get("fine_grained") is not None:
        return bool(r.meta["fine_grained"])
    return bool(r.meta.get("protocol", "M") == "M")


def family_averages(results: Sequence[SetResult], methods: Sequence[str] = METHODS[1:], *,
                    baseline: str = "CLIP", facet: str | None = None, n_boot: int = 2000,
                    seed: int = 0) -> pd.DataFrame:
    """Per family, the fine-grained average gain over ``baseline`` of each method with its
    interval (:func:`average_gain`), over the sets of one ``facet`` if given; columns
    ``family, method, delta, lo, hi, n_sets``."""
    rows = []
    fams = dict.fromkeys(r.meta.get("family", "") for r in results)
    for fam in fams:
        sets = [r for r in results if r.meta.get("family", "") == fam
                and in_average(r) and facet in (None, r.meta.get("facet"))]
        if not sets:
            continue
        for m in methods:
            if m == baseline or all(torch.isnan(r.ap[m]).all() for r in sets):
                continue
            rows.append({"family": fam, "method": m,
                         **average_gain(sets, m, baseline, n_boot=n_boot, seed=seed)})
    return pd.DataFrame(rows)


def set_meta(name: str, model_label: str, **config: Any) -> dict[str, Any]:
    """Table descriptors of a registered set: ``family``, ``label``, ``fine_grained`` (None
    for a paper dataset), ``relevance``, ``model``."""
    from isoclip.data import suites

    if suites.is_embedded(name):
        info = suites.embedded_set(name, **config)
        return {"family": info.family, "label": info.label, "fine_grained": info.fine_grained,
                "facet": info.facet, "relevance": info.relevance, "model": model_label}
    return {"family": "paper", "label": name, "fine_grained": None, "facet": "",
            "relevance": "class", "model": model_label}


#: Queries per class inverted by OTI / OVI, by family: the synthetic world's are chapter 3's
#: (so its cached run is reused); emoji classes are the 98 subcategories; paper datasets
#: (any other name) use the ``"paper"`` entry.
INVERSION_PER_CLASS: dict[str, dict[str, int]] = {
    "synthetic": {"image": 20, "text": 4},
    "emoji": {"image": 4, "text": 2},
    "paper": {"image": 4, "text": 2},
}


#: OTI's prompt template by family, where it differs from Cross the Gap's "a photo of {}":
#: the emoji model never saw "photo", its captions say "an emoji of ...".
OTI_TEMPLATES: dict[str, str] = {"emoji": "an emoji of {}"}


@dataclass(frozen=True)
class InversionSettings:
    """OTI / OVI hyper-parameters of the suite (defaults: chapter 3's, the paper's).

    Attributes:
        per_class: family -> modality -> queries per class (:data:`INVERSION_PER_CLASS`);
            an empty mapping skips the inversions.
        templates: family -> OTI's template (:data:`OTI_TEMPLATES`; others: Cross the Gap's
            "a photo of {}").
        oti_steps, ovi_steps, num_pseudo_tokens, num_pseudo_patches, seed, batch_size,
            num_threads, subset_seed: as :func:`isoclip.studies.inversion.inversion_study`.
        queries: query budget per paper dataset (family ``"paper"``): a class-balanced
            subset of at most this many queries
            (:func:`isoclip.studies.dataset_inversion.query_budget`), ``"all"`` for every
            query; None: ``per_class["paper"]`` queries per class. Embedded sets ignore it.
    """

    per_class: Mapping[str, Mapping[str, int]] = field(
        default_factory=lambda: INVERSION_PER_CLASS)
    templates: Mapping[str, str] = field(default_factory=lambda: OTI_TEMPLATES)
    oti_steps: int = 150
    ovi_steps: int = 1000
    num_pseudo_tokens: int = 1
    num_pseudo_patches: int = 1
    seed: int = 42
    batch_size: int = 64
    num_threads: int | None = 1
    subset_seed: int = 0
    queries: int | str | None = None


def _invert_whole(bundle: ModelBundle, feats: SetFeatures, labels: Any, modality: str,
                  per_class: int | None, inv: InversionSettings, family: str = ""
                  ) -> tuple[Tensor, Tensor]:
    """``(rows, features)``: a class-balanced subset of the whole set's queries and their
    OTI (images) / OVI (texts) features, with exactly chapter 3's call (cache shared)."""
    from isoclip.baselines.inversion import OTI_TEMPLATE
    from isoclip.studies.inversion import OTI_SNAPSHOTS, OVI_SNAPSHOTS, invert

    if family == "paper" and inv.queries is not None:
        from isoclip.studies.dataset_inversion import query_budget

        rows = query_budget(labels, inv.queries, inv.subset_seed)  # type: ignore[arg-type]
    else:
        rows = balanced_subset(integer_labels(labels), per_class, inv.subset_seed)
    image = modality == "image"
    steps = inv.oti_steps if image else inv.ovi_steps
    snaps = sorted({k for k in (OTI_SNAPSHOTS if image else OVI_SNAPSHOTS) if 0 <= k <= steps}
                   | {steps})
    run = invert(bundle, feats.query[rows], "OTI" if image else "OVI", steps=steps,
                 snapshot_steps=snaps,
                 num_pseudo=inv.num_pseudo_tokens if image else inv.num_pseudo_patches,
                 seed=inv.seed, batch_size=inv.batch_size, num_threads=inv.num_threads,
                 template=inv.templates.get(family, OTI_TEMPLATE))
    return rows, run.features


def _slice(feats: SetFeatures, rows: Mapping[str, np.ndarray]) -> SetFeatures:
    """The rows ``rows`` (:func:`isoclip.data.suites.rows_in_whole`) of a whole set's features.

    Raises:
        ValueError: the set has a gallery of its own (no ``"gallery"`` rows).
    """
    if "gallery" not in rows:
        raise ValueError("rows: no gallery rows (a set with a gallery of its own, such as "
                         "emoji/cross-style, is not a slice of its whole set's features)")
    q, g = torch.as_tensor(rows["query"]), torch.as_tensor(rows["gallery"])
    return SetFeatures(feats.query_pre[q], feats.gallery_pre[g], feats.query[q], feats.gallery[g])


def _positions(whole_rows: Tensor, set_rows: np.ndarray) -> tuple[Tensor, Tensor]:
    """``(positions in the set, positions in whole_rows)`` of the inverted whole-set rows that
    belong to a set whose rows in the whole set are ``set_rows``."""
    where = {int(w): i for i, w in enumerate(np.asarray(set_rows).tolist())}
    pairs = [(where[int(w)], j) for j, w in enumerate(whole_rows.tolist()) if int(w) in where]
    if not pairs:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    a, b = zip(*pairs)
    return torch.tensor(a, dtype=torch.long), torch.tensor(b, dtype=torch.long)


@dataclass
class SuiteStudy:
    """:func:`suite_study`'s output.

    Attributes:
        results: one :class:`SetResult` per (set, task), in the order asked.
        bundles: model label -> the model that evaluated its sets.
        sets: set name -> its registry descriptors (:func:`set_meta`).
    """

    results: list[SetResult]
    bundles: dict[str, ModelBundle]
    sets: dict[str, dict[str, Any]]

    def task(self, modality: str) -> list[SetResult]:
        return [r for r in self.results if r.modality == modality]


#: Modules whose code changes a :class:`SetResult` (their code without docstrings and comments
#: makes up :func:`code_fingerprint`, part of every suite cache key): the study, the band rules and
#: sweep, the metrics, the operator, the baselines, the inversions, the features and the data.
SUITE_CODE = (
    "isoclip.studies.suite", "isoclip.studies.inversion", "isoclip.selection.rules",
    "isoclip.selection.sweep", "isoclip.evaluate.retrieval", "isoclip.evaluate.stats",
    "isoclip.method.bands", "isoclip.method.operator", "isoclip.method.projectors",
    "isoclip.baselines.whitening", "isoclip.baselines.inversion",
    "isoclip.baselines.inversion_runner", "isoclip.baselines.losses",
    "isoclip.models.features", "isoclip.data.base", "isoclip.data.suites", "isoclip.data.emoji",
    "isoclip.data.registry", "isoclip.data.paper_datasets", "isoclip.data.world.config",
    "isoclip.data.world.primitives", "isoclip.data.world.synthetic",
)


def code_fingerprint(modules: Sequence[str] = SUITE_CODE) -> str:
    """The code part of a suite cache key: :func:`isoclip.common.cache.code_fingerprint` of
    ``modules`` (their code without docstrings and comments, in order).

    Raises:
        ValueError: a module without a source file.
    """
    return _code_fingerprint(modules)


def _plain(obj: Any) -> Any:
    """A dataclass configuration as a dict (keys of the cache), anything else unchanged."""
    from dataclasses import is_dataclass

    return asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj


def set_key_material(model_fingerprint: str, name: str, modality: str, *, family: str,
                     data: Any, stride: int, calibration_pairs: int, seed: int,
                     inversion: InversionSettings | None, code: str) -> dict[str, Any]:
    """Everything that changes the rows :func:`suite_study` computes for one set and task:
    the model (its cache key / weights fingerprint), the set and its data (``data``: the
    embedded data's configuration, or the fingerprints of a paper set's query and gallery),
    the sweep stride, the agreement rule's calibration draw, the inversion settings of the
    set's family and task, and :func:`code_fingerprint`."""
    inv: dict[str, Any] | None = None
    if inversion is not None:
        per = inversion.per_class.get(family, {})
        inv = {k: v for k, v in asdict(inversion).items() if k not in ("per_class", "templates")}
        inv.update(per_class=per.get(modality), template=inversion.templates.get(family))
    return {"kind": "suite-set", "model": model_fingerprint, "set": name, "modality": modality,
            "data": _plain(data), "stride": int(stride), "calibration_pairs": int(calibration_pairs),
            "seed": int(seed), "inversion": inv, "code": code}


def result_payload(r: SetResult) -> dict[str, Any]:
    """A :class:`SetResult` as plain data (tensors, numbers, strings, lists, dicts) for the
    cache (:func:`isoclip.common.cache.cached` loads nothing else)."""
    return {"name": r.name, "modality": r.modality, "n_query": r.n_query,
            "n_gallery": r.n_gallery, "same_split": r.same_split,
            "ap": {m: v.clone() for m, v in r.ap.items()},
            "bands": {k: [b.k_top, b.k_bottom] for k, b in r.bands.items()},
            "inversion": r.inversion, "inv_rows": r.inv_rows, "inv_ap": r.inv_ap,
            "meta": dict(r.meta)}


def result_from_payload(d: Mapping[str, Any]) -> SetResult:
    """The inverse of :func:`result_payload`."""
    return SetResult(name=str(d["name"]), modality=str(d["modality"]),
                     n_query=int(d["n_query"]), n_gallery=int(d["n_gallery"]),
                     same_split=bool(d["same_split"]), ap=dict(d["ap"]),
                     bands={k: Band(int(v[0]), int(v[1])) for k, v in d["bands"].items()},
                     inversion=d["inversion"], inv_rows=d["inv_rows"], inv_ap=d["inv_ap"],
                     meta=dict(d["meta"]))


def suite_study(datasets: str | Sequence[str], *, modalities: Sequence[str] = ("image", "text"),
                model: str = "embedded", pretrained: str | None = None, data_root: Any = None,
                device: str = "cpu", world: Any = None, train: Any = None, emoji: Any = None,
                emoji_train: Any = None, stride: int = 2, calibration_pairs: int = 1000,
                seed: int = 0, inversion: InversionSettings | None = InversionSettings(),
                progress: bool = False, cache: bool = True) -> SuiteStudy:
    """The retrieval rows of every set of ``datasets`` (suites expanded) for each task.

    A set with the revisited Oxford / Paris ground truth (``roxford5k``, ``rparis6k``) gives
    three rows, its Easy, Medium and Hard protocols (``"roxford5k (E)"``, ...). A set without
    a task (``emoji/cross-style`` has no text side) is skipped for that task.

    Args:
        datasets: names or suites (:func:`isoclip.data.registry.datasets_list`), e.g.
            ``["synthetic", "emoji"]``.
        modalities: the tasks, ``"image"`` (image→image) and/or ``"text"`` (text→text).
        model, pretrained, device: ``"embedded"`` evaluates each embedded set with its own
            family's model (:func:`isoclip.training.embedded.model_for_set`); an open_clip
            name evaluates every set with that model.
        data_root: folder of the paper's datasets (only for those).
        world, train: the synthetic world and the default model's training (None: the
            book's defaults); emoji, emoji_train: the emoji data and model's.
        stride: band-sweep grid step; calibration_pairs: pairs per set for the agreement
            rule (0: skip); seed: their draw.
        inversion: OTI / OVI settings (None: no inversion).
        cache: keep each set's rows in the cache (kind ``suite``, keyed by
            :func:`set_key_material`), so that chapters asking for the same set share one
            computation; False recomputes (and stores nothing).

    Raises:
        ValueError: unknown names (from the registry), or bad arguments.
    """
    from isoclip.data import suites
    from isoclip.data.registry import datasets_list, load_dataset
    from isoclip.training import embedded as emb

    world = emb.DEFAULT_WORLD if world is None else world
    train = emb.DEFAULT_TRAIN if train is None else train
    emoji = emb.DEFAULT_EMOJI if emoji is None else emoji
    emoji_train = emb.EMOJI_TRAIN if emoji_train is None else emoji_train
    config = {"world": world, "emoji": emoji}
    names = datasets_list(datasets if isinstance(datasets, str) else list(datasets), **config)
    bundles: dict[str, ModelBundle] = {}

    def bundle_for(key: str) -> ModelBundle:
        if key not in bundles:
            bundles[key] = emb.resolve_model(key, pretrained, device=device, world=world,
                                             train=train, emoji=emoji, emoji_train=emoji_train,
                                             progress=progress)
        return bundles[key]

    sets = {n: set_meta(n, emb.model_for_set(n, model), **config) for n in names}
    decs: dict[str, tuple[Projectors, SVD, Band]] = {}
    wholes: dict[tuple[str, str, str], tuple[RetrievalData, SetFeatures, Any]] = {}

    def compute(name: str, modality: str, key: str, bundle: ModelBundle,
                loaded: RetrievalData | None) -> list[SetResult]:
        if key not in decs:
            P = get_projectors(bundle.model)
            dec = svd(P)
            decs[key] = (P, dec, select_band(P, "isotropy", dec=dec))
        P, dec, auto = decs[key]
        whole_name = suites.whole_set(name)
        wk = (key, whole_name, modality)
        if wk not in wholes:
            wdata = (loaded if loaded is not None and whole_name == name else
                     load_dataset(whole_name, modality, data_root, **config))  # type: ignore[arg-type]
            wfeats = set_features(bundle, wdata, calibration_pairs=calibration_pairs, seed=seed)
            family = sets[name]["family"]
            per = {} if inversion is None else inversion.per_class.get(family, {})
            winv = (_invert_whole(bundle, wfeats, wdata.query.labels, modality,
                                  None if per[modality] is None else int(per[modality]),
                                  inversion,  # type: ignore[arg-type]
                                  family)
                    if modality in per else None)
            wholes[wk] = (wdata, wfeats, winv)
        wdata, wfeats, winv = wholes[wk]
        if name == whole_name:
            data, feats = wdata, wfeats
            inverted = winv
        else:
            data = load_dataset(name, modality, data_root, **config)  # type: ignore[arg-type]
            rows = suites.rows_in_whole(name, modality, **config)  # type: ignore[arg-type]
            if "gallery" in rows:
                feats = _slice(wfeats, rows)
            else:  # a gallery of its own (emoji/cross-style: the other artwork)
                q = torch.as_tensor(rows["query"])
                feats = SetFeatures(wfeats.query_pre[q], _features(bundle, data.gallery,
                                                                   "preproj"),
                                    wfeats.query[q], _features(bundle, data.gallery, "projected"))
            if data.calibration is not None and calibration_pairs > 0:
                sub = calibration_subset(data.calibration, calibration_pairs, seed)
                feats.calib_image = image_features(bundle, sub, "preproj", progress=False)
                feats.calib_text = text_features(bundle, sub, "preproj", progress=False)
            inverted = None
            if winv is not None:
                pos, js = _positions(winv[0], rows["query"])
                inverted = (pos, winv[1][js])
        inv_name = ("OTI" if modality == "image" else "OVI") if inverted is not None else None
        protocols: list[tuple[str, Ranker | None]] = [("", None)]
        if data.gnd is not None:
            protocols = [(abbr, RevisitedRanker(data.gnd, len(data.gallery), setting))
                         for setting, abbr in REVISITED_SETTINGS.items()]
        out = []
        for abbr, ranker in protocols:
            row_name = f"{name} ({abbr})" if abbr else name
            res = evaluate_set(P, feats, data.query.labels, data.gallery.labels, modality,
                               same_split=data.same_split, dec=dec, stride=stride,
                               auto_band=auto, inverted=inverted, name=row_name,
                               inversion=inv_name, ranker=ranker)
            res.meta = {**sets[name], **({"label": row_name, "protocol": abbr} if abbr else {})}
            out.append(res)
        return out

    code = code_fingerprint()
    results = []
    for modality in modalities:
        for name in names:
            if suites.is_embedded(name) and modality not in suites.embedded_set(
                    name, **config).modalities:
                continue  # a set without this task (emoji/cross-style: images only)
            key = emb.model_for_set(name, model)
            bundle = bundle_for(key)
            family = str(sets[name]["family"])
            loaded = None
            if suites.is_embedded(name):
                data_id: Any = {"family": family,
                                "config": world if family == "synthetic" else emoji}
            else:
                loaded = load_dataset(name, modality, data_root, **config)  # type: ignore[arg-type]
                data_id = {"query": loaded.query.fingerprint(),
                           "gallery": loaded.gallery.fingerprint()}
            material = set_key_material(bundle.fingerprint, name, modality, family=family,
                                        data=data_id, stride=stride,
                                        calibration_pairs=calibration_pairs, seed=seed,
                                        inversion=inversion, code=code)

            def build(name: str = name, modality: str = modality, key: str = key,
                      bundle: ModelBundle = bundle, loaded: Any = loaded) -> dict[str, Any]:
                return {"results": [result_payload(r) for r in
                                    compute(name, modality, key, bundle, loaded)]}

            payload = cached("suite", material, build, enabled=cache)
            results += [result_from_payload(d) for d in payload["results"]]
    return SuiteStudy(results=results, bundles=bundles, sets=sets)


# ---------------------------------------------------------------------------------------------
# example retrievals


def top_k(query: Tensor, gallery: Tensor, k: int = 5) -> Tensor:
    """[Q, k] gallery rows of the k highest cosines of each query (ties: lower row first)."""
    s = F.normalize(query.double(), dim=1) @ F.normalize(gallery.double(), dim=1).T
    return torch.sort(-s, dim=1, stable=True).indices[:, :k]


def retrieval_examples(P: Projectors, feats: SetFeatures, band: Band, queries: Sequence[int],
                       k: int = 5) -> dict[str, Tensor]:
    """The top-``k`` gallery rows of each query in ``queries``: ``"CLIP"`` (projected
    features) and ``"IsoCLIP"`` (the band's projectors, :func:`isoclip.method.bands.iso_projectors`),
    each [len(queries), k]. Image queries only."""
    from isoclip.method.bands import iso_projectors

    rows = torch.as_tensor(list(queries), dtype=torch.long)
    iso = iso_projectors(P, band)
    with torch.no_grad():
        iq = iso.project_image(feats.query_pre[rows].to(P.dtype))
        ig = iso.project_image(feats.gallery_pre.to(P.dtype))
    return {"CLIP": top_k(feats.query[rows], feats.gallery, k), "IsoCLIP": top_k(iq, ig, k)}


def retrieval_examples_figure(query: ImageDataset, gallery: ImageDataset,
                              queries: Sequence[int], tops: Mapping[str, Tensor],
                              *, caption_of: Any = None) -> Any:
    """One row per query: the query image, then each method's top-k gallery images with a
    green frame when relevant (same label) and a red one otherwise.

    Args:
        query, gallery: the set's query and gallery images.
        queries: query rows shown; tops: method -> [len(queries), k] gallery rows
            (:func:`retrieval_examples`).
        caption_of: row -> text under the query (default: its caption, if any).
    """
    from matplotlib.patches import Rectangle

    from isoclip.studies.plotting import METHOD_COLOURS, page_figure

    methods = list(tops)
    k = int(next(iter(tops.values())).shape[1])
    n = len(queries)
    ncols = 1 + len(methods) * k
    fig, axes = page_figure(n * len(methods), ncols, height=0.78 * n * len(methods) + 0.5,
                            squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.05})
    for i, qrow in enumerate(queries):
        for j, m in enumerate(methods):
            r = i * len(methods) + j
            ax = axes[r, 0]
            ax.set_axis_off()
            if j == 0:
                ax.imshow(query.image(int(qrow)))
                cap = query.captions[int(qrow)] if query.captions else ""
                text = caption_of(int(qrow)) if caption_of else (
                    cap if isinstance(cap, str) else cap[0])
                ax.set_title(_short(text, 18), fontsize=9, loc="left")
            for c in range(1, ncols):
                axes[r, c].set_axis_off()
            for t, grow in enumerate(tops[m][i].tolist()):
                ax = axes[r, 1 + t]
                ax.imshow(gallery.image(int(grow)))
                ok = (gallery.labels is not None and query.labels is not None
                      and int(gallery.labels[grow]) == int(query.labels[qrow]))
                ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False,
                                       lw=3, edgecolor="#2ca02c" if ok else "#d62728"))
            axes[r, 1].text(-0.12, 0.5, m, transform=axes[r, 1].transAxes, rotation=90,
                            va="center", ha="right", fontsize=9,
                            color=METHOD_COLOURS.get(m, "black"))
    return fig


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------
# the paper's table layout

#: Row group labels of the embedded families (which model evaluated them).
FAMILY_LABELS = {"synthetic": "synthetic world · default model",
                 "emoji": "emoji · emoji model", "paper": "paper datasets"}


def paper_layout(table: pd.DataFrame, *, decimals: int = 1) -> pd.DataFrame:
    """:func:`suite_table` in the paper's layout: rows (family, set) with each family's
    fine-grained sets, their average, then its whole set; columns CLIP, OTI / OVI (its mAP on
    the inverted queries with its gain over CLIP on the same queries), mean-centred, IsoCLIP
    automatic / agreement / held-out, Δ (held-out − CLIP) and the oracle band (an upper
    bound). A set whose CLIP mAP is within 5 points of 100 is marked ``†`` (little headroom).
    """
    inv = next((x for x in table["inversion"] if x), "inversion")
    order = {"fine-grained": 0, "dataset": 0, "average": 1, "whole": 2}
    t = table.assign(_order=table["kind"].map(order), _pos=range(len(table)))
    t = t.sort_values(["family", "_order", "_pos"], kind="stable",
                      key=lambda c: c.map({f: i for i, f in enumerate(
                          dict.fromkeys(table["family"]))}) if c.name == "family" else c)

    def inv_cell(r: Mapping[str, Any]) -> str:
        if not r["inv_n"]:
            return ""
        return f"{r['inv_mAP']:.{decimals}f} ({r['inv_delta']:+.{decimals}f})"

    rows = []
    for r in t.to_dict("records"):
        label = str(r["set"]) + (" †" if r["near_ceiling"] and r["kind"] != "average" else "")
        rows.append({
            ("", "family"): FAMILY_LABELS.get(r["family"], r["family"]), ("", "set"): label,
            ("", "queries"): int(r["n"]), ("", "CLIP"): r["CLIP"],
            ("", f"{inv} (Δ)"): inv_cell(r), ("", "mean-centred"): r["mean-centred"],
            ("IsoCLIP", "automatic"): r["IsoCLIP (automatic)"],
            ("IsoCLIP", "agreement"): r["IsoCLIP (agreement)"],
            ("IsoCLIP", "held-out"): r["IsoCLIP (held-out)"],
            ("", "Δ"): r["delta"], ("", "oracle"): r["IsoCLIP (oracle)"]})
    out = pd.DataFrame(rows)
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out.set_index([("", "family"), ("", "set")]).rename_axis(["", "set"])


def example_retrievals_figure(study: SuiteStudy, name: str, *, n: int = 4, k: int = 5,
                              seed: int = 0, **config: Any) -> Any:
    """Query images of image set ``name`` beside their top-``k`` gallery images under CLIP and
    under IsoCLIP with the set's held-out band (the band chosen on the even queries, so the
    ``n`` queries are drawn, seeded, among the odd ones: none of them chose the band).

    Frames: green = relevant (same label), red = not. Emoji queries are titled with their
    Unicode name.

    Raises:
        ValueError: ``name`` is not an image set of ``study``.
    """
    from isoclip.data import suites
    from isoclip.data.registry import load_dataset

    res = next((r for r in study.results if r.name == name and r.modality == "image"), None)
    if res is None:
        raise ValueError(f"name: {name!r} is not an image set of this study; sets: "
                         f"{sorted({r.name for r in study.task('image')})}")
    bundle = study.bundles[res.meta["model"]]
    data = load_dataset(name, "image", **config)
    feats = set_features(bundle, data, calibration_pairs=0)
    rng = np.random.default_rng(seed)
    odd = np.arange(1, res.n_query, 2)
    queries = sorted(rng.choice(odd, min(n, len(odd)), replace=False).tolist())
    P = get_projectors(bundle.model)
    tops = retrieval_examples(P, feats, res.bands["held-out (even)"], queries, k)
    caption_of = None
    if res.meta.get("family") == "emoji":
        from isoclip.data.emoji import load_emoji

        em = load_emoji(config.get("emoji"))
        whole_rows = suites.rows_in_whole(name, "image", **config)["query"]

        def caption_of(i: int) -> str:
            return em.emoji[int(em.emoji_of["query"][whole_rows[i]])].name

    if not isinstance(data.query, ImageDataset) or not isinstance(data.gallery, ImageDataset):
        raise TypeError(f"dataset {name!r}: example retrievals need an image set")
    return retrieval_examples_figure(data.query, data.gallery, queries, tops,
                                     caption_of=caption_of)
