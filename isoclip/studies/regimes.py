"""The regime study (the "When does IsoCLIP help?" chapter): where do CLIP's intra-modal
misalignment and IsoCLIP's band structure appear in models we can train?

:func:`run_regime` trains (or loads from the cache) one tiny CLIP on one synthetic world and
returns every diagnostic of the study as a flat dict of JSON-ready values: the modality gap
and the cone, the flatness of Psi's spectrum, CLIP's image→image and text→text mAP, and the
mAP of IsoCLIP's oracle band (best band of a strided sweep, chosen on the test queries) and of
its automatic band (:func:`isoclip.selection.rules.select_band` ``"isotropy"``, no labels), the
label-free agreement band chosen on unlabelled image-caption pairs of the domain
(:func:`domain_agreement_band`), the domain's mean-centred embeddings (each group centred on
its own gallery mean, :func:`isoclip.baselines.whitening.mean_center`), and OTI's gain over CLIP
(:func:`oti_gains`).
``benchmarks/regime_study.py`` runs a grid of them.

Sub-domains (:data:`DOMAINS`). The paper's retrieval sets are fine-grained slices of what CLIP was
trained on (CUB: birds only, Cars, Aircraft, Pets, Flowers), searched with a model trained on
everything; the top band of Psi gives CUB images similarities of about 0.9-0.95 (IsoCLIP, Magistri
et al., CVPR 2026, band-analysis figure). Every retrieval metric is therefore measured three ways:
over the whole world (keys without a domain), and with each query ranked only against the gallery
items that share its main object's shape (``in_shape_``: relevance is then the colour) or its colour
(``in_colour_``: relevance is the shape), by :func:`grouped_sweep` and :func:`grouped_query_ap`. One
band is chosen for all groups of a domain.

Flatness of the spectrum (``S`` = singular values of Psi, ``rank`` = min(r, d) non-null ones,
``rate_j = log σ_j − log σ_{j+1}`` the per-index decay of log σ, as in chapter 5):

* ``flatness_mid_ratio``: median decay rate in the middle half of the spectrum (indices
  ``rank/4 .. 3·rank/4``) divided by the median decay rate in the two outer quarters. Below 1:
  the middle decays more slowly than the ends (the paper's flat middle band, anisotropic top
  and bottom); about 1: a uniform (e.g. exponential) decay; above 1: the middle is steeper.
  Band-independent, so comparable across runs.
* ``flatness_iso_capacity``: the automatic band's objective ``kept · σ_min / σ_max``
  divided by ``rank``, in (0, 1]; 1 means a perfectly flat spectrum.
* ``effective_rank_frac``: :func:`isoclip.method.operator.effective_rank` of the non-null values
  divided by ``rank``.
* ``decay_top``, ``decay_mid``, ``decay_bottom``: chapter 5's median decay rates inside the
  automatic band's top / middle / bottom regions (NaN for an empty region).

The oracle band is optimistic (chosen on the evaluation queries); ``*_oracle_heldout_mAP``
is an honest version: the band is chosen on the even-indexed queries and scored on the odd
ones and vice versa, and the two scores are averaged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from isoclip.baselines.whitening import mean_center
from isoclip.common.types import Modality, check_modality
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.stream import train_stream
from isoclip.data.world.synthetic import SyntheticWorld, make_world
from isoclip.method.bands import Band
from isoclip.method.operator import SVD, effective_rank, svd, svd_for
from isoclip.method.projectors import Projectors, get_projectors
from isoclip.selection.analysis import region_decay_rates
from isoclip.selection.rules import select_band
from isoclip.selection.sweep import best_band, sweep_bands
from isoclip.studies.verdicts import GOAL_GAP_TO_ORACLE, MIN_GAIN, NOTABLE_GAIN
from isoclip.studies.world import (
    calibration_indices,
    calibration_pairs,
    sanity_metrics,
    world_features,
)
from isoclip.training.trainer import TrainConfig, load_or_train

__all__ = [  # noqa: RUF022 - grouped by topic, as the module reads
    # one run of the study
    "run_regime", "REGIME_KEYS", "spectrum_flatness", "band_metrics", "oti_gains",
    # sub-domain retrieval
    "DOMAINS", "DOMAIN_LABELS", "domain_groups", "class_groups", "grouped_sweep",
    "combine_sweeps", "grouped_query_ap", "domain_agreement_band",
    # what the bands hold
    "direction_factor_share", "mean_pair_cosine",
    # the committed study (chapter 13)
    "load_study", "config_from_row", "rerun_check", "RERUN_TOLERANCES",
    "REAL_CLIP_DIAGNOSTICS", "clip_likeness", "study_summary", "MIN_GAIN", "verify_rerun",
]

_BAND_KEY_NAMES = ("full_band_mAP", "oracle_band", "oracle_mAP", "oracle_heldout_mAP",
                   "top_only_band", "top_only_mAP", "bottom_only_band", "bottom_only_mAP",
                   "auto_mAP", "agree_band", "agree_mAP")

#: Training pairs (seeded, :func:`isoclip.studies.world.calibration_indices`) from which the
#: agreement band of each domain is chosen.
CALIBRATION_PAIRS = 1000

#: Keys of :func:`run_regime`'s result besides the two configurations, in table order.
REGIME_KEYS = (
    "train_seconds", "final_temperature", "final_loss", "zero_shot_acc", "i2t_mAP", "t2i_mAP",
    "gap", "true_pair_cos", "cone_image", "cone_text", "rank", "flatness_mid_ratio",
    "flatness_iso_capacity", "effective_rank_frac", "decay_top", "decay_mid", "decay_bottom",
    "auto_band", "sweep_stride",
    *(f"{task}_{dom}{k}" for dom in ("", "in_shape_", "in_colour_") for task in ("i2i", "t2t")
      for k in ("mAP", *_BAND_KEY_NAMES, "centred_mAP")),
    "oti_queries",
    *(f"oti_{dom}{k}" for dom in ("", "in_shape_", "in_colour_") for k in ("gain", "lo", "hi")),
)


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def spectrum_flatness(S: Tensor, rank: int | None = None, band: Band | None = None
                      ) -> dict[str, float]:
    """Flatness measures of a spectrum (see the module docstring for the definitions).

    Args:
        S: [r] singular values, non-increasing.
        rank: number of non-null singular values to consider (default r); for Psi this is
            min(r, d) since Psi = W_iᵀW_t has rank ≤ d.
        band: the band whose top / middle / bottom regions give ``decay_*`` (default: the
            isotropy band of the first ``rank`` values).

    Returns:
        ``flatness_mid_ratio``, ``flatness_iso_capacity``, ``effective_rank_frac``,
        ``decay_top``, ``decay_mid``, ``decay_bottom``.

    Raises:
        ValueError: S not 1-D, not non-increasing, negative, or rank outside [4, r].
    """
    from isoclip.selection.rules import _isotropy_band

    S = torch.as_tensor(S).double()
    if S.ndim != 1:
        raise ValueError(f"S: expected a 1-D tensor of singular values, got shape "
                         f"{tuple(S.shape)}")
    if bool((S < 0).any()) or bool((S[1:] > S[:-1] * (1 + 1e-12)).any()):
        raise ValueError("S: expected non-negative, non-increasing singular values")
    r = int(S.shape[0])
    rank = r if rank is None else int(rank)
    if not 4 <= rank <= r:
        raise ValueError(f"rank: expected an int in [4, {r}] (len(S)), got {rank}")
    s = S[:rank].numpy()
    rate = -np.diff(np.log(np.clip(s, s[0] * 1e-12, None)))  # [rank - 1]
    q1, q3 = rank // 4, (3 * rank) // 4
    mid = _median(rate[q1:q3])
    ends = _median(np.concatenate([rate[:q1], rate[q3:]]))
    ratio = mid / ends if ends > 0 else float("nan")
    iso = band if band is not None else _isotropy_band(S[:rank])
    sl = iso.indices(rank)
    capacity = (sl.stop - sl.start) * float(s[sl.stop - 1] / s[sl.start]) / rank
    decay = region_decay_rates(s, iso)
    return {
        "flatness_mid_ratio": ratio,
        "flatness_iso_capacity": capacity,
        "effective_rank_frac": effective_rank(S[:rank]) / rank,
        "decay_top": decay["top"],
        "decay_mid": decay["mid"],
        "decay_bottom": decay["bottom"],
    }


def domain_groups(labels: Any, class_groups: Any) -> np.ndarray:
    """The sub-domain of each item: ``class_groups[label]``.

    Args:
        labels: [N] integer class labels.
        class_groups: [C] group id of each class (e.g. the shape of each (shape, colour)
            class: "within one shape" is a fine-grained sub-domain, as CUB is "birds only").

    Returns:
        [N] int64 group ids.

    Raises:
        ValueError: a label outside ``[0, C)``.
    """
    y = np.asarray(labels).astype(np.int64)
    g = np.asarray(class_groups).astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= len(g)):
        raise ValueError(f"labels: expected class ids in [0, {len(g)}) (len(class_groups)), got "
                         f"range [{y.min()}, {y.max()}]")
    return g[y]


def _check_groups(name: str, groups: Any, n: int) -> np.ndarray:
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"{name}: expected one group id per row ({n}), got shape {g.shape}")
    return g


def _resolve_groups(query_groups: Any, gallery_groups: Any, n_query: int, n_gallery: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Checked [Q], [G] group ids; both None: a single group."""
    if (query_groups is None) != (gallery_groups is None):
        raise ValueError("query_groups and gallery_groups: give both or neither")
    if query_groups is None:
        return np.zeros(n_query, dtype=np.int64), np.zeros(n_gallery, dtype=np.int64)
    return (_check_groups("query_groups", query_groups, n_query),
            _check_groups("gallery_groups", gallery_groups, n_gallery))


def grouped_sweep(P: Projectors, query: Tensor, gallery: Tensor, query_labels: np.ndarray,
                  gallery_labels: np.ndarray, modality: Modality, k_top_values: list[int],
                  k_bottom_values: list[int], *, dec: SVD,
                  query_groups: np.ndarray | None = None,
                  gallery_groups: np.ndarray | None = None,
                  same_split: bool = False) -> pd.DataFrame:
    """:func:`isoclip.selection.sweep.sweep_bands` (float32) where each query is ranked only against the
    gallery items of its own group (sub-domain retrieval); no groups: one group.

    Args:
        P, query, gallery, query_labels, gallery_labels, modality, k_top_values,
            k_bottom_values, dec: as :func:`isoclip.selection.sweep.sweep_bands`.
        query_groups, gallery_groups: [Q], [G] group ids (both or neither).
        same_split: the queries are the gallery (CUB's all→all): query i is removed from its
            own ranking; the two group arrays must then be equal.

    Returns:
        ``k_top, k_bottom, kept, mAP, n``: ``mAP`` is the mean AP over the ``n`` queries with
        at least one relevant item in their group (the count-weighted mean of the groups'
        sweeps), so sweeps of disjoint query sets combine with :func:`combine_sweeps`.
    """
    qg, gg = _resolve_groups(query_groups, gallery_groups, len(query_labels),
                             len(gallery_labels))
    _check_same_split_groups(same_split, qg, gg)
    parts = []
    for grp in np.unique(qg):
        qi, gi = np.flatnonzero(qg == grp), np.flatnonzero(gg == grp)
        n = _n_with_relevant(query_labels[qi], gallery_labels[gi], same_split)
        if n == 0:
            continue
        df = sweep_bands(P, query[torch.as_tensor(qi)], gallery[torch.as_tensor(gi)],
                         torch.as_tensor(query_labels[qi]), torch.as_tensor(gallery_labels[gi]),
                         modality, k_top_values,
                         k_bottom_values, same_split=same_split, dec=dec, dtype=torch.float32)
        parts.append(df.assign(n=n))
    if not parts:
        raise ValueError("query_labels: no query has a relevant gallery item in its group")
    return combine_sweeps(parts)


def _check_same_split_groups(same_split: bool, qg: np.ndarray, gg: np.ndarray) -> None:
    if same_split and (len(qg) != len(gg) or bool((qg != gg).any())):
        raise ValueError("same_split=True: the queries are the gallery, so query_groups and "
                         "gallery_groups must be the same array")


def _n_with_relevant(ql: np.ndarray, gl: np.ndarray, same_split: bool) -> int:
    """Queries with a relevant item (same-split: another item of their label)."""
    if not same_split:
        return int(np.isin(ql, gl).sum())
    _, inverse, counts = np.unique(gl, return_inverse=True, return_counts=True)
    return int((counts[inverse] > 1).sum())


def grouped_band_ap(P: Projectors, query: Tensor, gallery: Tensor, query_labels: np.ndarray,
                    gallery_labels: np.ndarray, modality: Modality, bands: list[Band], *, dec: SVD,
                    query_groups: np.ndarray | None = None,
                    gallery_groups: np.ndarray | None = None,
                    same_split: bool = False) -> Tensor:
    """Per-query AP (percent, [B, Q] float64, NaN: no relevant item) of every band, each query
    ranked against its group's gallery (minus itself with ``same_split``); the per-query form
    of :func:`grouped_sweep` (its ``mAP`` is the NaN-mean of a row)."""
    from isoclip.evaluate.retrieval import FixedLabelRanker
    from isoclip.selection.sweep import BandScorer

    qg, gg = _resolve_groups(query_groups, gallery_groups, len(query_labels),
                             len(gallery_labels))
    _check_same_split_groups(same_split, qg, gg)
    out = torch.full((len(bands), len(query_labels)), float("nan"), dtype=torch.float64)
    for grp in np.unique(qg):
        qi, gi = np.flatnonzero(qg == grp), np.flatnonzero(gg == grp)
        if _n_with_relevant(query_labels[qi], gallery_labels[gi], same_split) == 0:
            continue
        scorer = BandScorer(P, query[torch.as_tensor(qi)], gallery[torch.as_tensor(gi)],
                            modality, dec, dtype=torch.float32)
        ranker = FixedLabelRanker(query_labels[qi], gallery_labels[gi], same_split)
        rows = torch.as_tensor(qi)
        with torch.no_grad():
            for b, band in enumerate(bands):
                out[b, rows] = 100.0 * ranker.per_query(scorer.scores(band))["mAP"]
    return out


def combine_sweeps(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Sweeps of disjoint query sets on the same grid -> the sweep of their union (mAP is the
    ``n``-weighted mean; ``n`` adds up)."""
    keys = ["k_top", "k_bottom", "kept"]
    first = parts[0][keys]
    for p in parts[1:]:
        if not p[keys].reset_index(drop=True).equals(first.reset_index(drop=True)):
            raise ValueError("parts: sweeps on different grids")
    n = sum(p["n"].to_numpy() for p in parts)
    m = sum(p["mAP"].to_numpy() * p["n"].to_numpy() for p in parts) / n
    return first.reset_index(drop=True).assign(mAP=m, n=n)


def grouped_query_ap(query: Tensor, gallery: Tensor, query_labels: np.ndarray,
                     gallery_labels: np.ndarray, query_groups: np.ndarray | None = None,
                     gallery_groups: np.ndarray | None = None, transform: Any = None,
                     same_split: bool = False) -> Tensor:
    """Per-query AP in percent ([Q] float64, NaN: no relevant item in the query's group) with
    each query ranked only against its group's gallery (:func:`grouped_sweep`'s protocol).

    ``transform(query, gallery) -> (query, gallery)``, if given, is applied to each group's
    features before ranking (e.g. :func:`isoclip.baselines.whitening.mean_center`: centring on the
    group's own gallery mean). ``same_split``: the queries are the gallery (each query removed
    from its own ranking; the group arrays must be equal).
    """
    from isoclip.evaluate.retrieval import query_metrics

    out = torch.full((len(query_labels),), float("nan"), dtype=torch.float64)
    qg, gg = _resolve_groups(query_groups, gallery_groups, len(query_labels),
                             len(gallery_labels))
    _check_same_split_groups(same_split, qg, gg)
    for grp in np.unique(qg):
        qi, gi = np.flatnonzero(qg == grp), np.flatnonzero(gg == grp)
        if len(gi) == 0:
            continue
        q, g = query[torch.as_tensor(qi)], gallery[torch.as_tensor(gi)]
        if transform is not None:
            q, g = transform(q, g)
        if same_split and _n_with_relevant(query_labels[qi], gallery_labels[gi], True) == 0:
            continue
        m = query_metrics(q, g, query_labels[qi], gallery_labels[gi], same_split, ks=(1,))
        out[torch.as_tensor(qi)] = 100.0 * m["mAP"]
    return out


def domain_agreement_band(P: Projectors, image_preproj: Tensor, text_preproj: Tensor,
                          groups: Any = None, modality: Modality = "image", *, stride: int = 2,
                          dec: SVD | None = None) -> tuple[Band, pd.DataFrame]:
    """The label-free agreement band (:func:`isoclip.selection.rules.agreement_sweep`) of a domain
    family: the band with the highest agreement averaged over the groups, each group scored
    on its own calibration pairs.

    The calibration pairs are unlabelled image-caption pairs from the domain (for
    "within one shape": training pairs whose main object has that shape), the analogue of
    holding a few hundred captioned bird photos when searching CUB; no class labels are used.

    Args:
        P: projectors; ``dec = svd(P)`` if already computed.
        image_preproj, text_preproj: [N, d_i], [N, d_t] pre-projection features of N pairs.
        groups: [N] group id of each pair (None: one domain); groups with fewer than 3 pairs
            are skipped.
        modality: ``"image"`` or ``"text"``.
        stride: grid step in k_top and k_bottom (the same grid as :func:`band_metrics`: the
            r − rank null directions of Psi are always dropped).

    Returns:
        ``(band, sweep)``: the chosen band and the grid with the mean ``agreement``.

    Raises:
        ValueError: no group with 3 pairs, groups of the wrong length, or the errors of
            :func:`isoclip.selection.rules.agreement_sweep`.
    """
    from isoclip.selection.rules import agreement_sweep

    dec = svd_for(P, dec)
    n = len(image_preproj)
    g = np.zeros(n, dtype=np.int64) if groups is None else _check_groups("groups", groups, n)
    rank = min(dec.r, P.d)
    null = dec.r - rank
    tops = list(range(0, rank, stride))
    bottoms = [null + k for k in range(0, rank, stride)]
    parts = []
    for grp in np.unique(g):
        rows = torch.as_tensor(np.flatnonzero(g == grp))
        if len(rows) >= 3:
            parts.append(agreement_sweep(P, image_preproj[rows], text_preproj[rows], modality,
                                         tops, bottoms, dec=dec))
    if not parts:
        raise ValueError("groups: expected at least one group with 3 calibration pairs")
    sweep = parts[0][["k_top", "k_bottom", "kept"]].assign(
        agreement=np.mean([p["agreement"].to_numpy() for p in parts], axis=0))
    best = sweep.loc[sweep["agreement"].idxmax()]
    return Band(int(best["k_top"]), int(best["k_bottom"])), sweep


def band_metrics(P: Projectors, query: Tensor, gallery: Tensor, query_labels: Any,
                 gallery_labels: Any, modality: Modality, *, stride: int = 2,
                 auto_band: Band | None = None, dec: SVD | None = None,
                 query_groups: Any = None, gallery_groups: Any = None,
                 named_bands: Mapping[str, Band] | None = None,
                 same_split: bool = False) -> dict[str, Any]:
    """CLIP's, the oracle band's and the automatic band's mAP for one intra-modal task.

    Args:
        P: projectors; ``dec = svd(P)`` if already computed.
        query, gallery: [Q, k], [G, k] pre-projection features of ``modality``.
        query_labels, gallery_labels: [Q], [G]; relevant = same label.
        modality: ``"image"`` or ``"text"``.
        stride: the sweep's step in k_top and in k_bottom (1 = every band).
        auto_band: the automatic band (default ``select_band(P, "isotropy")``).
        query_groups, gallery_groups: [Q], [G] sub-domain ids (:func:`domain_groups`): each
            query is ranked only against the gallery items of its group, as when a
            fine-grained dataset (CUB: birds only) is searched with a model trained on
            everything. None: one domain.
        named_bands: more bands to score (e.g. ``{"agree": band}``): ``<name>_band`` and
            ``<name>_mAP`` are added to the result.
        same_split: the queries are the gallery (CUB's all→all protocol): each query is
            removed from its own ranking (:func:`grouped_band_ap`); the halves of the
            held-out oracle then split only the queries, never the gallery.

    Returns:
        ``clip_mAP`` (the model's own projection), ``full_band_mAP`` (band (0, 0): the
        features restricted to the r singular directions of Psi, which differs from CLIP
        when the tower is wider than r, e.g. d_i = 96 > r = 64), ``oracle_band`` /
        ``oracle_mAP`` (best of the sweep:
        k_top in ``0, stride, ...`` below rank = min(r, d), k_bottom likewise above the
        r − rank null directions of Psi, which every band drops),
        ``oracle_heldout_mAP`` (chosen on even queries, scored on odd ones and vice versa,
        averaged), ``top_only_band`` / ``top_only_mAP`` (best dropping no non-null bottom
        direction),
        ``bottom_only_band`` / ``bottom_only_mAP`` (best with k_top = 0), ``auto_band`` /
        ``auto_mAP``. Bands as ``[k_top, k_bottom]`` lists, mAP in percent. One band is
        chosen for all groups (as the paper fixes one band per backbone).

    Raises:
        ValueError: stride < 1, bad modality, fewer than 2 queries, bad groups, or the
            errors of :func:`isoclip.selection.sweep.sweep_bands`.
    """
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: expected an int >= 1, got {stride!r}")
    check_modality("modality", modality)
    if len(query) < 2:
        raise ValueError(f"query: expected at least 2 queries (held-out oracle), got "
                         f"{len(query)}")
    dec = svd_for(P, dec)
    auto = select_band(P, "isotropy", dec=dec) if auto_band is None else auto_band
    ql = np.array(np.asarray(query_labels))
    gl = np.array(np.asarray(gallery_labels))
    qg, gg = _resolve_groups(query_groups, gallery_groups, len(ql), len(gl))
    # Psi has rank <= d: its last r - rank singular directions are null and always dropped
    # (as select_band does), so band (0, null) is CLIP itself.
    rank = min(dec.r, P.d)
    null = dec.r - rank
    tops = list(range(0, rank, stride))
    bottoms = [null + k for k in range(0, rank, stride)]
    query = torch.as_tensor(query)
    gallery = torch.as_tensor(gallery)

    def sweep(rows: np.ndarray, k_tops: list[int] = tops, k_bottoms: list[int] = bottoms
              ) -> pd.DataFrame:
        if same_split:
            return _rows_sweep(rows, k_tops, k_bottoms)
        return grouped_sweep(P, query[torch.as_tensor(rows)], gallery, ql[rows], gl,
                             modality, k_tops, k_bottoms, dec=dec,
                             query_groups=qg[rows], gallery_groups=gg)

    per_query: dict[Band, Tensor] = {}

    def _rows_sweep(rows: np.ndarray, k_tops: list[int], k_bottoms: list[int]) -> pd.DataFrame:
        """Same-split sweep: per-query AP over the whole gallery, averaged over ``rows``."""
        from isoclip.selection.sweep import grid_bands

        bands = grid_bands(dec.r, k_tops, k_bottoms)
        todo = [b for b in bands if b not in per_query]
        if todo:
            ap = grouped_band_ap(P, query, gallery, ql, gl, modality, todo, dec=dec,
                                 query_groups=qg, gallery_groups=gg, same_split=True)
            per_query.update(zip(todo, ap))
        idx = torch.as_tensor(rows)
        out = []
        for b in bands:
            v = per_query[b][idx]
            ok = ~torch.isnan(v)
            out.append({"k_top": b.k_top, "k_bottom": b.k_bottom, "kept": b.kept(dec.r),
                        "mAP": float(v[ok].mean()) if bool(ok.any()) else float("nan"),
                        "n": int(ok.sum())})
        return pd.DataFrame(out)

    halves = [np.arange(0, len(ql), 2), np.arange(1, len(ql), 2)]
    sweeps = [sweep(h) for h in halves]
    full = combine_sweeps(sweeps)  # = the sweep of all queries (mAP is a mean over queries)
    full_band = full[(full.k_top == 0) & (full.k_bottom == null)]["mAP"].item()
    project = P.project_image if modality == "image" else P.project_text
    clip = float(np.nanmean(grouped_query_ap(project(query.to(P.dtype)),
                                             project(gallery.to(P.dtype)), ql, gl, qg, gg,
                                             same_split=same_split)))
    oracle = best_band(full)
    top_only, bottom_only = full[full.k_bottom == null], full[full.k_top == 0]
    heldout = []
    for chooser, scorer in ((0, 1), (1, 0)):
        b = best_band(sweeps[chooser])
        s = sweeps[scorer]
        heldout.append(s[(s.k_top == b.k_top) & (s.k_bottom == b.k_bottom)]["mAP"].item())
    auto_sweep = sweep(np.arange(len(ql)), [auto.k_top], [auto.k_bottom])
    extra: dict[str, Any] = {}
    for name, band in (named_bands or {}).items():
        one = sweep(np.arange(len(ql)), [band.k_top], [band.k_bottom])
        extra[f"{name}_band"] = [band.k_top, band.k_bottom]
        extra[f"{name}_mAP"] = float(one["mAP"].item())
    return {
        "clip_mAP": clip,
        "full_band_mAP": float(full_band),
        "oracle_band": [oracle.k_top, oracle.k_bottom],
        "oracle_mAP": float(full["mAP"].max()),
        "oracle_heldout_mAP": float(np.mean(heldout)),
        "top_only_band": [int(top_only.loc[top_only["mAP"].idxmax(), "k_top"]), null],
        "top_only_mAP": float(top_only["mAP"].max()),
        "bottom_only_band": [0, int(bottom_only.loc[bottom_only["mAP"].idxmax(), "k_bottom"])],
        "bottom_only_mAP": float(bottom_only["mAP"].max()),
        "auto_band": [auto.k_top, auto.k_bottom],
        "auto_mAP": float(auto_sweep["mAP"].item()),
        **extra,
    }


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, (np.floating, float)):
            return None if math.isnan(float(v)) else float(v)
        if isinstance(v, np.integer):
            return int(v)
        return v
    return {k: conv(v) for k, v in d.items()}


def run_regime(world_cfg: WorldConfig | Any, train_cfg: TrainConfig, *, stride: int = 2,
               oti: bool = True, progress: bool = False, cache: bool = True,
               domains: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train (or load) one model and measure every diagnostic of the regime study.

    Args:
        world_cfg: the synthetic world (its train split, or its stream of fresh pairs when
            ``train_cfg.data == "stream"``, trains the model; query/gallery and text splits
            evaluate it), or any collection with those splits (:mod:`isoclip.studies.world`:
            a :class:`isoclip.data.base.Collection`, the emoji data), trained on its
            ``train`` pairs.
        domains: sub-domains besides the whole set, name -> [C] group of each class (e.g.
            the Unicode category of each emoji subcategory); keys get the prefix
            ``<name>_``. Default: :data:`DOMAINS` for a synthetic world, none otherwise.
        train_cfg: the training configuration (cached by :func:`isoclip.training.trainer.load_or_train`).
        stride: step of the band sweep in k_top and k_bottom (2 or 4 keeps it cheap).
        oti: also measure OTI's gain (:func:`oti_gains`, 4 queries per class, cached).
        progress: tqdm bar while training.
        cache: use the training cache (features are cached by the feature extractors).

    Returns:
        A JSON-ready dict: ``world`` and ``train`` (the configurations as dicts), then every
        key of :data:`REGIME_KEYS` (the ``oti_*`` keys only with ``oti``); ``rank`` =
        min(r, d) non-null singular values of Psi;
        ``*_mAP`` in percent; bands as ``[k_top, k_bottom]``; ``train_seconds`` is the wall
        time of the run that filled the cache; ``eval_seconds`` the time of this evaluation.

    Raises:
        TypeError: a configuration of the wrong type.
        ValueError: bad ``stride`` (see :func:`band_metrics`).
    """
    synthetic = isinstance(world_cfg, WorldConfig)
    if not synthetic and not all(hasattr(world_cfg, a) for a in ("train", "query", "gallery")):
        raise TypeError(f"world_cfg: expected a WorldConfig or a collection with train / query "
                        f"/ gallery splits, got {type(world_cfg).__name__}")
    if not isinstance(train_cfg, TrainConfig):
        raise TypeError(f"train_cfg: expected a TrainConfig, got {type(train_cfg).__name__}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: expected an int >= 1, got {stride!r}")
    world: Any = make_world(world_cfg) if synthetic else world_cfg
    data: Any = train_stream(world_cfg) if synthetic and train_cfg.data == "stream" else world.train
    trained = load_or_train(data, train_cfg, progress=progress, cache=cache)
    t0 = time.perf_counter()
    result = _evaluate(trained.bundle, world, stride, oti, domains)
    log = trained.log
    out: dict[str, Any] = {
        "world": asdict(world_cfg) if synthetic else {"name": getattr(world, "name", "")},
        # ``data`` only when it is not the default: rows written before the streaming switch
        # existed (the committed study) keep comparing equal
        "train": {k: v for k, v in asdict(train_cfg).items()
                  if k != "data" or v != "fixed"},
        "train_seconds": trained.train_seconds,
        "final_temperature": float(log["temperature"].iloc[-1]),
        "final_loss": float(log["loss"].iloc[-1]),
        **result,
    }
    out["eval_seconds"] = time.perf_counter() - t0
    return _jsonable(out)


def evaluate_bundle(bundle: Any, world: SyntheticWorld | Any, stride: int = 2, oti: bool = True,
                    domains: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every diagnostic of :func:`run_regime` for an already trained model (e.g. the weights
    kept at one step of a run): the keys of :data:`REGIME_KEYS` from ``zero_shot_acc`` on,
    without the training-log keys."""
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: expected an int >= 1, got {stride!r}")
    return _evaluate(bundle, world, stride, oti, domains)


#: Sub-domains of the study: name -> position in ``world.classes`` (shape, colour) of the
#: factor held fixed. ``in_shape``: queries and gallery share the main object's shape and
#: relevance is its colour (a fine-grained domain, like CUB inside everything CLIP saw);
#: ``in_colour``: same colour, relevance is the shape.
DOMAINS: dict[str, int] = {"in_shape": 0, "in_colour": 1}



def _domains(world: SyntheticWorld | Any, domains: Mapping[str, Any] | None = None
             ) -> list[tuple[str, Any]]:
    """``(key prefix, labels -> group ids or None)`` for the whole world and each sub-domain:
    ``domains`` (name -> [C] group of each class) if given, else :data:`DOMAINS` for a
    synthetic world (one with ``classes``), else none."""
    out: list[tuple[str, Any]] = [("", lambda labels: None)]
    if domains is None:
        if not hasattr(world, "classes"):
            return out
        domains = {name: class_groups(world, factor) for name, factor in DOMAINS.items()}
    for name, groups in domains.items():
        g = np.asarray(groups)
        out.append((f"{name}_", lambda labels, g=g: domain_groups(labels, g)))
    return out


def class_groups(world: SyntheticWorld, factor: int) -> np.ndarray:
    """[C] id of each class's ``factor`` (0: shape, 1: colour of ``world.classes``)."""
    values = [c[factor] for c in world.classes]
    names = sorted(set(values))
    return np.array([names.index(v) for v in values], dtype=np.int64)


def oti_gains(bundle: Any, world: SyntheticWorld | Any, *, per_class: int = 4, seed: int = 0,
              n_boot: int = 2000, domains: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Cross the Gap's OTI against CLIP's intra-modal image→image retrieval, on a seeded
    class-balanced subset of the query images, over all gallery images and within each
    :data:`DOMAINS` sub-domain (the same inverted queries, the gallery restricted to the
    query's group).

    Returns:
        ``oti_queries`` and, for ``<dom>`` in ``"", "in_shape_", "in_colour_"``:
        ``oti_<dom>gain``, ``oti_<dom>lo``, ``oti_<dom>hi`` (mAP points, 95 % paired
        bootstrap interval over the queries).
    """
    from isoclip.evaluate.stats import balanced_subset, paired_bootstrap
    from isoclip.studies.inversion import invert

    f = world_features(bundle, world)
    ql, gl = np.array(world.query.labels), np.array(world.gallery.labels)
    sub = balanced_subset(ql, per_class, seed).numpy()
    q = f.query_images[torch.as_tensor(sub)]
    inv = invert(bundle, q, "OTI")
    out: dict[str, Any] = {"oti_queries": len(sub)}
    for dom, group_of in _domains(world, domains):
        qg, gg = group_of(ql[sub]), group_of(gl)
        intra = grouped_query_ap(q, f.gallery_images, ql[sub], gl, qg, gg)
        oti = grouped_query_ap(inv.features, f.gallery_images, ql[sub], gl, qg, gg)
        d = paired_bootstrap(intra, oti, n_boot=n_boot, seed=seed)
        out.update({f"oti_{dom}gain": d["delta"], f"oti_{dom}lo": d["lo"],
                    f"oti_{dom}hi": d["hi"]})
    return out


def _evaluate(bundle: Any, world: SyntheticWorld | Any, stride: int, oti: bool = True,
              domains: Mapping[str, Any] | None = None) -> dict[str, Any]:
    sanity = sanity_metrics(bundle, world)
    P = get_projectors(bundle.model)
    dec = svd(P)
    rank = min(dec.r, P.d)
    auto = select_band(P, "isotropy", dec=dec)
    flat = spectrum_flatness(dec.S, rank)
    f = world_features(bundle, world, "preproj")
    out: dict[str, Any] = {k: sanity[k] for k in ("zero_shot_acc", "i2t_mAP", "t2i_mAP", "gap",
                                                  "true_pair_cos", "cone_image", "cone_text")}
    out.update(rank=rank, **flat, auto_band=[auto.k_top, auto.k_bottom], sweep_stride=stride)
    tasks: list[tuple[str, Modality, Tensor, Tensor, Any, Any]] = [
        ("i2i", "image", f.query_images, f.gallery_images, world.query.labels,
         world.gallery.labels)]
    if f.text_query is not None:
        tasks.append(("t2t", "text", *f.text_task(), world.text_query.labels,
                      world.text_gallery.labels))
    calib_idx = calibration_indices(len(world.train), min(CALIBRATION_PAIRS, len(world.train)))
    ci, ct = calibration_pairs(bundle, world, n=len(calib_idx))
    doms = _domains(world, domains)
    if len(doms) > 1 and world.train.labels is None:
        raise ValueError("world.train: sub-domains need the class of each training pair "
                         "(labels) to draw each domain's calibration pairs")
    calib_labels = None if world.train.labels is None else \
        np.asarray(world.train.labels)[calib_idx]
    for dom, group_of in doms:
        for prefix, modality, q, g, ql, gl in tasks:
            qg, gg = group_of(ql), group_of(gl)
            agree, _ = domain_agreement_band(
                P, ci, ct, None if calib_labels is None else group_of(calib_labels), modality,
                stride=stride, dec=dec)
            m = band_metrics(P, q, g, ql, gl, modality, stride=stride, auto_band=auto, dec=dec,
                             query_groups=qg, gallery_groups=gg, named_bands={"agree": agree})
            out[f"{prefix}_{dom}mAP"] = m["clip_mAP"]
            for k in _BAND_KEY_NAMES:
                out[f"{prefix}_{dom}{k}"] = m[k]
            project = P.project_image if modality == "image" else P.project_text
            centred = grouped_query_ap(project(q.to(P.dtype)), project(g.to(P.dtype)),
                                       np.asarray(ql), np.asarray(gl), qg, gg,
                                       transform=mean_center)
            out[f"{prefix}_{dom}centred_mAP"] = float(np.nanmean(centred))
    if oti:
        out.update(oti_gains(bundle, world, domains=domains))
    return out


# ---------------------------------------------------------------------------------------------
# the committed study: loading, gains, the CI re-run check, the regime map (chapter 13)

#: Domain prefixes of the result keys and their labels in tables and figures.
DOMAIN_LABELS = {"": "whole world", "in_shape_": "within one shape",
                 "in_colour_": "within one colour"}


def load_study(path: Any) -> tuple[dict[str, str], pd.DataFrame]:
    """Read a regime-study JSON (``benchmarks/regime_study.py``'s output).

    Returns:
        ``(about, runs)``: the file's description of its keys, and one row per run with every
        result key plus ``world_name``, ``tau`` (``"learned"`` or the fixed value as text),
        ``d`` (shared dimension), ``d_i`` (image tower width), ``steps``, ``nuisance``,
        ``seed`` (training seed), ``n_classes`` and, for each domain prefix ``<dom>`` of
        :data:`DOMAIN_LABELS` and task ``i2i`` / ``t2t``: ``<task>_<dom>gain_<m>`` for ``m``
        in ``oracle, heldout, auto, agree, centred`` (that band's or baseline's mAP minus
        CLIP's, in points; None where the file lacks it) and ``<task>_<dom>error_cut_heldout``
        (the held-out gain in percent of CLIP's headroom ``100 − mAP``; None at 100).

    Raises:
        FileNotFoundError: no file at ``path`` (names the script that writes it).
        ValueError: not a regime-study file.
    """
    import json
    from pathlib import Path

    import open_clip

    from isoclip.models.loading import register_configs

    register_configs()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: no regime-study results at {p}; run "
                                f"`make regimes` (benchmarks/regime_study.py) to write them")
    data = json.loads(p.read_text())
    if not isinstance(data, dict) or "runs" not in data or "about" not in data:
        raise ValueError(f"path: {p} is not a regime-study file (expected keys 'about', 'runs')")
    rows = []
    for r in data["runs"]:
        cfg = open_clip.get_model_config(r["train"]["model"])
        t = r["train"]["temperature"]
        row = dict(r)
        row.update(tau="learned" if t is None else f"{t:g}", d=cfg["embed_dim"],
                   d_i=cfg["vision_cfg"]["width"], steps=r["train"]["steps"],
                   nuisance=r["world"]["nuisance"], seed=r["train"].get("seed", 0),
                   n_classes=len(r["world"]["shapes"]) * len(r["world"]["colours"]))
        for dom in DOMAIN_LABELS:
            for task in ("i2i", "t2t"):
                clip = r.get(f"{task}_{dom}mAP")
                for name, key in (("oracle", "oracle_mAP"), ("heldout", "oracle_heldout_mAP"),
                                  ("auto", "auto_mAP"), ("agree", "agree_mAP"),
                                  ("centred", "centred_mAP")):
                    v = r.get(f"{task}_{dom}{key}")
                    row[f"{task}_{dom}gain_{name}"] = (None if v is None or clip is None
                                                       else v - clip)
                ho = row[f"{task}_{dom}gain_heldout"]
                row[f"{task}_{dom}error_cut_heldout"] = (
                    None if ho is None or clip >= 100.0 - 1e-9 else 100.0 * ho / (100.0 - clip))
        rows.append(row)
    return data["about"], pd.DataFrame(rows)


#: Keys the CI re-run compares with the committed study, and their tolerances (absolute).
#: On the machine that wrote the study the re-run is bit-identical; a fresh machine retrains
#: the model, and float round-off in 800 steps of AdamW moves the numbers a little.
RERUN_TOLERANCES: dict[str, float] = {
    "zero_shot_acc": 3.0, "gap": 0.05, "cone_image": 0.05, "cone_text": 0.05,
    "i2i_mAP": 2.0, "i2i_oracle_heldout_mAP": 2.0, "t2t_mAP": 2.0,
    "i2i_in_shape_mAP": 2.0, "i2i_in_shape_oracle_heldout_mAP": 2.0,
    "i2i_in_colour_mAP": 2.0, "i2i_in_colour_oracle_heldout_mAP": 2.0,
    "oti_gain": 2.0, "oti_in_shape_gain": 2.0,
}


def config_from_row(row: Mapping[str, Any]) -> tuple[WorldConfig, TrainConfig]:
    """The world and training configurations of one study row (to re-run it)."""
    return WorldConfig(**row["world"]), TrainConfig(**row["train"])


def _plain(x: Any) -> Any:
    import json

    return json.loads(json.dumps(x))


def rerun_check(committed: Mapping[str, Any], rerun: Mapping[str, Any],
                tolerances: Mapping[str, float] = RERUN_TOLERANCES) -> pd.DataFrame:
    """Compare a re-run of one study configuration with its committed row.

    Returns:
        One row per key of ``tolerances``: ``key, committed, rerun, abs_diff, tolerance, ok``.

    Raises:
        ValueError: the configurations (``world``, ``train``) differ, or a key is missing.
    """
    for k in ("world", "train"):
        if _plain(committed.get(k)) != _plain(rerun.get(k)):
            raise ValueError(f"rerun: its {k!r} configuration differs from the committed run's")
    missing = [k for k in tolerances if k not in committed or k not in rerun]
    if missing:
        raise ValueError(f"tolerances: keys {missing} missing from the committed or re-run row")
    rows = []
    for k, tol in tolerances.items():
        a, b = float(committed[k]), float(rerun[k])
        rows.append({"key": k, "committed": a, "rerun": b, "abs_diff": abs(a - b),
                     "tolerance": tol, "ok": abs(a - b) <= tol})
    return pd.DataFrame(rows)


def verify_rerun(runs: pd.DataFrame, run: str, stride: int = 2,
                 tolerances: Mapping[str, float] = RERUN_TOLERANCES
                 ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Re-run one configuration of the committed study from scratch (training it when the
    cache is cold) and compare it with its committed row (:func:`rerun_check`).

    Returns:
        The comparison table and the fresh result of :func:`run_regime`.

    Raises:
        ValueError: ``run`` is not a run of ``runs``.
        AssertionError: a value moved more than its tolerance (the table of those values).
    """
    if run not in set(runs["run"]):
        raise ValueError(f"rerun: {run!r} is not a run of the study; runs: {list(runs['run'])}")
    committed = runs.set_index("run").loc[run].to_dict()
    committed["run"] = run
    world_cfg, train_cfg = config_from_row(committed)
    fresh = run_regime(world_cfg, train_cfg, stride=int(stride))
    check = rerun_check(committed, fresh, tolerances)
    if not check["ok"].all():
        raise AssertionError(f"the re-run of {run!r} does not reproduce the committed study:\n"
                             f"{check[~check['ok']].to_string()}")
    return check, fresh


def direction_factor_share(P: Projectors, features: Tensor, factors: Mapping[str, Any],
                           modality: Modality = "image", dec: SVD | None = None) -> pd.DataFrame:
    """How much of each singular direction of Psi a factor of the data explains.

    For direction j (column j of U for images, of V for texts) the coordinates
    ``c_j = f · u_j`` of the pre-projection features are split by each factor's groups and
    the correlation ratio ``eta² = SS_between / SS_total`` is reported (1: the coordinate is
    constant within a group, i.e. it encodes only that factor; 0: it does not vary with it).
    With the factors of a fine-grained domain (e.g. shape, held fixed by ``in_shape``
    retrieval, and colour, the relevance there) this shows what a band removes.

    Args:
        P: projectors; ``dec = svd(P)`` if already computed.
        features: [N, d_i or d_t] pre-projection features of ``modality``.
        factors: name -> [N] group id per row (e.g. ``{"shape": ..., "colour": ...}``).
        modality: ``"image"`` or ``"text"``.

    Returns:
        One row per direction: ``direction`` (0-based, by decreasing singular value),
        ``sigma_rel`` (σ_j / σ_1) and one ``eta2_<factor>`` column per factor.

    Raises:
        ValueError: bad modality, or a factor without one entry per row.
    """
    check_modality("modality", modality)
    dec = svd_for(P, dec)
    B = dec.U if modality == "image" else dec.V
    c = torch.as_tensor(features).double() @ B  # [N, r]
    c = c - c.mean(0)
    total = (c ** 2).sum(0)
    out = {"direction": np.arange(dec.r), "sigma_rel": (dec.S / dec.S[0]).numpy()}
    for name, groups in factors.items():
        g = torch.as_tensor(_check_groups(f"factors[{name!r}]", groups, c.shape[0])).long()
        _, inv = torch.unique(g, return_inverse=True)
        k = int(inv.max()) + 1
        sums = torch.zeros(k, c.shape[1], dtype=torch.float64).index_add_(0, inv, c)
        counts = torch.bincount(inv, minlength=k).double()
        between = ((sums ** 2) / counts[:, None]).sum(0)
        out[f"eta2_{name}"] = (between / total.clamp_min(1e-300)).numpy()
    return pd.DataFrame(out)


#: Real CLIP's diagnostics the study aims at (Liang et al. 2022, ViT-B/32 on COCO): mean
#: intra-modal cosine about 0.5 per modality and a centroid gap of 0.82.
REAL_CLIP_DIAGNOSTICS: dict[str, float] = {"cone_image": 0.5, "cone_text": 0.5, "gap": 0.82}


def clip_likeness(runs: pd.DataFrame,
                  target: Mapping[str, float] = REAL_CLIP_DIAGNOSTICS) -> pd.Series:
    """Distance of each run's diagnostics from real CLIP's: the sum over ``target`` of
    ``|run[key] − target[key]|`` (0 = CLIP's cone and gap). One value per row of ``runs``,
    same index.

    Raises:
        ValueError: a ``target`` key is not a column of ``runs``.
    """
    missing = [k for k in target if k not in runs]
    if missing:
        raise ValueError(f"runs: missing diagnostic columns {missing}")
    return sum((runs[k].astype(float) - v).abs() for k, v in target.items())


def study_summary(runs: pd.DataFrame, min_gain: float = MIN_GAIN) -> dict[str, Any]:
    """Every number and phrase the regime chapter states about the committed study, by name
    (the chapter glues each one): best gains per domain and the run they come from, counts of
    runs with a gain, OTI's significant runs, the agreement and automatic bands, the
    centring baseline, the flatness range, rank correlations with the diagnostics, the
    training seeds and the run closest to real CLIP (:func:`clip_likeness`).

    Args:
        runs: :func:`load_study`'s table. min_gain: gain (mAP points) below which a band
            "does not gain".
    """
    out: dict[str, Any] = {"min_gain": min_gain}

    def col(name: str) -> pd.Series:
        return runs[name].astype(float)

    def best(domain: str, task: str = "i2i") -> tuple[pd.Series, float]:
        g = col(f"{task}_{domain}gain_heldout")
        i = int(g.idxmax())
        return runs.loc[i], float(g.loc[i])

    for dom, name in (("", "whole"), ("in_shape_", "shape"), ("in_colour_", "colour")):
        r, g = best(dom)
        out[f"best_{name}_run"] = r["run"]
        out[f"best_{name}_gain"] = g
        out[f"best_{name}_oracle_gain"] = float(r[f"i2i_{dom}gain_oracle"])
        out[f"best_{name}_clip"] = float(r[f"i2i_{dom}mAP"])
        out[f"best_{name}_band"] = str(tuple(r[f"i2i_{dom}oracle_band"]))
        gains = col(f"i2i_{dom}gain_heldout")
        out[f"n_{name}_gain_1"] = int((gains >= NOTABLE_GAIN).sum())
        out[f"min_{name}_gain"] = float(gains.min())
        out[f"n_{name}_oti_sig"] = int((col(f"oti_{dom}lo") > 0).sum())
        out[f"best_{name}_oti"] = float(col(f"oti_{dom}gain").max())
        auto = col(f"i2i_{dom}gain_auto")
        out[f"n_{name}_auto_pos"] = int((auto >= min_gain).sum())
        out[f"best_{name}_auto"] = float(auto.max())
        agree, oracle = col(f"i2i_{dom}gain_agree"), col(f"i2i_{dom}gain_oracle")
        out[f"n_{name}_agree_pos"] = int((agree >= min_gain).sum())
        out[f"best_{name}_agree"] = float(agree.max())
        out[f"median_{name}_agree_to_oracle"] = float((oracle - agree).median())
        out[f"max_{name}_agree_to_oracle"] = float((oracle - agree).max())
        out[f"n_{name}_agree_within_1"] = int((oracle - agree <= GOAL_GAP_TO_ORACLE).sum())
    rt, gt = best("", "t2t")
    out["best_t2t_run"], out["best_t2t_gain"] = rt["run"], gt
    out["n_t2t_ceiling"] = int((col("t2t_mAP") >= 98.0).sum())
    out["n_shape_top_dropped"] = int(
        (runs["i2i_in_shape_oracle_band"].map(lambda b: int(b[0])) > 0).sum())
    out["n_whole_top_dropped"] = int((runs["i2i_oracle_band"].map(lambda b: int(b[0])) > 0).sum())
    flat = col("flatness_mid_ratio")
    out["flat_min"], out["flat_max"] = float(flat.min()), float(flat.max())
    shape_gain = col("i2i_in_shape_gain_heldout")
    for c in ("cone_image", "gap", "flatness_mid_ratio", "zero_shot_acc", "i2i_in_shape_mAP"):
        out[f"rho_shape_{c}"] = float(shape_gain.rank().corr(col(c).rank()))
    n_pos = int((shape_gain >= min_gain).sum())
    out["n_shape_gain_pos"] = n_pos
    out["shape_claim"] = ("gains in every run" if n_pos == len(runs) else
                          f"gains in {n_pos} of {len(runs)} runs" if n_pos else "gains in no run")
    out["n_shape_ge_1"] = int((shape_gain >= NOTABLE_GAIN).sum())
    n_whole_1 = int((col("i2i_gain_heldout") >= NOTABLE_GAIN).sum())
    out["whole_claim"] = (f"gains a point or more in {n_whole_1} of {len(runs)} runs"
                          if n_whole_1 else "gains less than one point in every run")
    out.update(_closest_to_clip(runs, best("in_shape_")[0]["run"]))
    out.update(_shape_domain_summary(runs, shape_gain, min_gain, best("in_shape_")[0]))
    return out


def _closest_to_clip(runs: pd.DataFrame, best_shape_run: str) -> dict[str, Any]:
    """The run closest to real CLIP's diagnostics, and the default run's standing."""
    likeness = clip_likeness(runs)
    closest = runs.loc[likeness.idxmin()]
    default = runs.set_index("run").loc["default-learned"]
    return {
        "closest_run": closest["run"], "closest_distance": float(likeness.min()),
        "closest_cone_image": float(closest["cone_image"]),
        "closest_cone_text": float(closest["cone_text"]), "closest_gap": float(closest["gap"]),
        "closest_zs": float(closest["zero_shot_acc"]),
        "closest_shape_gain": float(closest["i2i_in_shape_gain_heldout"]),
        "closest_train_seconds": float(closest["train_seconds"]),
        "default_distance": float(likeness[runs["run"] == "default-learned"].iloc[0]),
        "default_zs": float(default["zero_shot_acc"]),
        "default_shape_gain": float(default["i2i_in_shape_gain_heldout"]),
        "default_train_seconds": float(default["train_seconds"]),
        "default_best_phrase": "has" if best_shape_run == "default-learned" else "does not have",
    }


def _shape_domain_summary(runs: pd.DataFrame, shape_gain: pd.Series, min_gain: float,
                          best_shape: pd.Series) -> dict[str, Any]:
    """Within-shape details: top-only bands, ceilings, cones, seeds, the centring baseline,
    OTI on the compositional worlds."""
    def col(name: str) -> pd.Series:
        return runs[name].astype(float)

    out: dict[str, Any] = {}
    top_only = col("i2i_in_shape_top_only_mAP") - col("i2i_in_shape_mAP")
    out["best_shape_top_only"] = float(top_only.max())
    out["best_shape_top_only_run"] = runs.loc[int(top_only.idxmax()), "run"]
    out["n_shape_top_only_1"] = int((top_only >= NOTABLE_GAIN).sum())
    out["best_shape_error_cut"] = float(best_shape["i2i_in_shape_error_cut_heldout"])
    ceiling = col("i2i_in_shape_mAP") >= 99.5
    out["n_shape_ceiling"] = int(ceiling.sum())
    out["shape_ceiling_runs"] = ", ".join(runs.loc[ceiling, "run"])
    strong = col("cone_image") >= 0.5
    out["n_strong_cone"] = int(strong.sum())
    out["max_gain_strong_cone"] = float(shape_gain[strong].max()) if strong.any() \
        else float("nan")
    out["max_gain_weak_cone"] = float(shape_gain[~strong].max())
    seeds = runs[runs["run"].str.startswith("default-learned") & (runs["steps"] == 800)]
    seed_gain = seeds["i2i_in_shape_gain_heldout"].astype(float)
    out["n_seeds"] = len(seeds)
    out["seed_gain_min"], out["seed_gain_max"] = float(seed_gain.min()), float(seed_gain.max())
    out["seed_whole_max"] = float(seeds["i2i_gain_heldout"].astype(float).max())
    centred = col("i2i_in_shape_gain_centred")
    out["n_iso_beats_centred"] = int((shape_gain > centred + min_gain).sum())
    out["n_centred_beats_iso"] = int((centred > shape_gain + min_gain).sum())
    out["best_shape_centred"] = float(centred.max())
    out["best_shape_centred_run"] = runs.loc[int(centred.idxmax()), "run"]
    out["default_shape_centred"] = float(centred[runs["run"] == "default-learned"].iloc[0])
    colour_centred = col("i2i_in_colour_gain_centred")
    out["best_colour_centred"] = float(colour_centred.max())
    out["best_colour_centred_run"] = runs.loc[int(colour_centred.idxmax()), "run"]
    out["n_strong_centred_beats_iso"] = int((centred > shape_gain + min_gain)[strong].sum())
    comp = runs["world"].map(lambda w: w["scene"] == "compositional")
    out["n_comp"] = int(comp.sum())
    out["n_comp_oti_worse"] = int((runs.loc[comp, "oti_hi"].astype(float) < 0).sum())
    return out


def mean_pair_cosine(P: Projectors, features: Tensor, band: Band | None, groups: Any = None,
                     modality: Modality = "image", dec: SVD | None = None) -> float:
    """Mean cosine over the pairs of distinct items (of the same group, if ``groups``) of the
    band embeddings of ``features`` (None: the model's own projection). The paper reports
    that Psi's top band gives CUB image pairs similarities of 0.9-0.95 (IsoCLIP's band-analysis
    figure).

    Args:
        P: projectors. features: [N, d_i or d_t] pre-projection features of ``modality``.
        band: the band (``Band(0, r - k)``: the top k directions only).
        groups: [N] group ids; only pairs within a group count. None: all pairs.
        dec: ``svd(P)`` if already computed.

    Raises:
        ValueError: no pair to average, bad groups, or the errors of
            :class:`isoclip.selection.sweep.BandScorer`.
    """
    from isoclip.selection.sweep import BandScorer

    f = torch.as_tensor(features)
    if band is None:
        project = P.project_image if modality == "image" else P.project_text
        z = F.normalize(project(f.to(P.dtype)).double(), dim=1)
        s = z @ z.T
    else:
        s = BandScorer(P, f, f, modality, dec).scores(band).double()
    n = s.shape[0]
    g = np.zeros(n, dtype=np.int64) if groups is None else _check_groups("groups", groups, n)
    gt = torch.as_tensor(g)
    mask = (gt[:, None] == gt[None, :]) & ~torch.eye(n, dtype=torch.bool)
    if not bool(mask.any()):
        raise ValueError("groups: no pair of distinct items within a group")
    return float(s[mask].mean())
