"""The band-analysis chapter's study (IsoCLIP's band figure and band choice): intra-modal
retrieval tasks as pre-projection features, the paper's one-band-at-a-time analysis
(:func:`region_study`) and the mAP of each way of choosing a band (:func:`band_choices`).

Works on any model (the embedded tiny model or an open_clip model) and any class-labelled
retrieval set of the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from isoclip.method.bands import Band
from isoclip.method.operator import SVD, svd
from isoclip.method.projectors import Projectors
from isoclip.models.features import image_features, text_features
from isoclip.selection.analysis import histogram_overlap, pos_neg_scores, region_bands
from isoclip.selection.sweep import BandScorer, best_band, sweep_bands

__all__ = ["RegionStudy", "RetrievalTask", "band_choices", "region_study", "retrieval_task"]

_TITLES = {"image": "image→image", "text": "text→text"}
ModalityName = Literal["image", "text"]


@dataclass(frozen=True)
class RetrievalTask:
    """One intra-modal retrieval task as pre-projection features.

    Attributes:
        modality: ``"image"`` or ``"text"``; title: ``"image→image"`` or ``"text→text"``.
        query: [Q, d_i or d_t] query features; gallery: [G, ...] gallery features (the same
            tensor when ``same_split``: every item queries all the others).
        query_labels: [Q] class ids; gallery_labels: [G].
    """

    modality: ModalityName
    title: str
    query: Tensor
    gallery: Tensor
    query_labels: Any
    gallery_labels: Any
    same_split: bool

    @property
    def n_query(self) -> int:
        return len(self.query)

    @property
    def n_gallery(self) -> int:
        return len(self.gallery)


def retrieval_task(bundle: Any, dataset: str, data_root: Any, modality: ModalityName
                   ) -> RetrievalTask:
    """The retrieval task a chapter's parameters name (``"embedded"`` or a registered set, see
    :func:`isoclip.training.embedded.resolve_retrieval`), with ``bundle``'s features.

    Raises:
        ValueError: the set's relevance is a revisitop ground truth (rOxford, rParis), which
            the band sweep does not support, or the errors of ``resolve_retrieval``.
    """
    from isoclip.training import embedded

    data = embedded.resolve_retrieval(dataset, data_root, modality)
    if data.gnd is not None:
        raise ValueError(f"dataset {dataset!r}: relevance is given by its revisitop ground truth, "
                         "which the band sweep of this chapter does not support; use a "
                         "class-labelled image set (e.g. cub2011)")
    feat: Any = image_features if modality == "image" else text_features
    q = feat(bundle, data.query, "preproj", progress=False)
    g = q if data.same_split else feat(bundle, data.gallery, "preproj", progress=False)
    return RetrievalTask(modality, _TITLES[modality], q, g, data.query.labels,
                         data.gallery.labels, bool(data.same_split))


@dataclass(frozen=True)
class RegionStudy:
    """Result of :func:`region_study`.

    Attributes:
        table: one row per (modality, region): ``modality, region, k_top, k_bottom, kept,
            mean_sim, overlap, mAP`` (region: ``top``, ``middle``, ``bottom``).
        samples: (modality, region) → (all query-gallery cosines, positive ones, negative ones)
            as flat arrays, for the histograms.
    """

    table: pd.DataFrame
    samples: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]


def region_study(P: Projectors, tasks: Mapping[str, RetrievalTask], bands: Mapping[str, Band],
                 *, hist_bins: int = 60, dec: SVD | None = None) -> RegionStudy:
    """IsoCLIP's band figure: project onto one region of the spectrum at a time (only the top
    ``k_top`` directions, the kept middle band, only the bottom ``k_bottom``) and measure the
    mAP, the mean similarity and the overlap of the positive and negative similarity
    histograms (:func:`isoclip.selection.analysis.histogram_overlap`, ``hist_bins`` bins).

    Args:
        tasks: modality → task; bands: modality → the band whose regions are analysed.
    """
    dec = svd(P) if dec is None else dec
    rows: list[dict[str, Any]] = []
    samples: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for t in tasks.values():
        mod = t.modality
        scorer = BandScorer(P, t.query, t.gallery, mod, dec)
        for name, band in region_bands(dec.r, bands[mod]).items():
            s = scorer.scores(band)
            pos, neg = pos_neg_scores(s, t.query_labels, t.gallery_labels,
                                      same_split=t.same_split)
            m = sweep_bands(P, t.query, t.gallery, t.query_labels, t.gallery_labels, mod,
                            [band.k_top], [band.k_bottom], same_split=t.same_split,
                            dec=dec).mAP.iloc[0]
            rows.append({"modality": mod, "region": name, "k_top": band.k_top,
                             "k_bottom": band.k_bottom, "kept": band.kept(dec.r),
                             "mean_sim": float(s.mean()),
                             "overlap": histogram_overlap(pos, neg, hist_bins), "mAP": m})
            s_all = s[~torch.eye(len(s), dtype=torch.bool)] if t.same_split else s.flatten()
            samples[(mod, name)] = (s_all.numpy(), pos, neg)
    return RegionStudy(pd.DataFrame(rows), samples)


def band_choices(P: Projectors, task: RetrievalTask, sweep: pd.DataFrame,
                 candidates: Mapping[str, Band], *, dec: SVD | None = None) -> pd.DataFrame:
    """mAP of each way of choosing the band for ``task``: the *oracle* (best band of
    ``sweep``, which used the test labels: an upper bound, not a method) and every band of
    ``candidates`` (name → band, e.g. the label-free rule, the paper's band, no filtering).

    Returns:
        One row per choice, oracle first: ``choice, k_top, k_bottom, kept, mAP``.
    """
    dec = svd(P) if dec is None else dec
    extra = pd.concat([sweep_bands(P, task.query, task.gallery, task.query_labels,
                                   task.gallery_labels, task.modality, [b.k_top], [b.k_bottom],
                                   same_split=task.same_split, dec=dec)
                       for b in candidates.values()])

    def m_of(b: Band) -> float:
        hit = extra[(extra.k_top == b.k_top) & (extra.k_bottom == b.k_bottom)]
        return float(hit.mAP.iloc[0])

    oracle = best_band(sweep)
    rows = [("oracle", oracle, float(sweep.mAP.max()))]
    rows += [(name, b, m_of(b)) for name, b in candidates.items()]
    return pd.DataFrame([{"choice": name, "k_top": b.k_top, "k_bottom": b.k_bottom,
                              "kept": b.kept(dec.r), "mAP": m} for name, b, m in rows])
