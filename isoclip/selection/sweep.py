"""Fast (k_top, k_bottom) band sweeps: every band's intra-modal retrieval metrics from one
SVD of Psi (IsoCLIP Sec. 4, the band heat-maps; book notation page, eq-iso-projectors).

``sweep_bands`` scores a whole grid of bands on labelled query/gallery features through
:class:`BandScorer` (coordinates in Psi's singular basis computed once) and
:class:`isoclip.evaluate.retrieval.FixedLabelRanker` (the evaluator's own ranking and metric
code, with the labels prepared once); ``naive_band_metrics``
is the slow reference (project, normalise, evaluate) the tests compare it with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import torch
from torch import Tensor

from isoclip.common.threads import torch_threads
from isoclip.common.types import Modality, check_modality
from isoclip.evaluate.retrieval import FixedLabelRanker
from isoclip.method.bands import Band, iso_projectors
from isoclip.method.operator import SVD, svd_for
from isoclip.method.projectors import Projectors

__all__ = ["BandScorer", "best_band", "grid_bands", "naive_band_metrics", "sweep_bands"]


_SWEEP_METRICS = ("mAP", "mAP@R", "P@R", "R@1")


class BandScorer:
    """Intra-modal cosine similarities of every band from one projection into the SVD basis.

    With ``c = f @ U`` [N, r] (U: left singular vectors of Psi for images, right ones V for
    texts), ``A = W U`` [d, r] and the band's kept slice s, the band embedding is
    ``A[:, s] c[:, s] + b``; its dot products are ``c_s G_ss c'_s^T`` with the Gram matrix
    ``G = A^T A = U^T Psi_i U`` (plus bias terms ``h = A^T b`` and ``b^T b``, folded in as one
    extra coordinate equal to 1). Everything is computed once; a band costs two small matrix
    products on slices, never a re-projection of the features.

    Args:
        P: projectors. modality: ``"image"`` (W_i, U) or ``"text"`` (W_t, V).
        query_preproj, gallery_preproj: [Q, d_i or d_t] and [G, ...] pre-projection features.
        dec: ``svd(P)`` if already computed.
        dtype: of the similarities (float64: exact; float32: like :func:`evaluate`, faster).
    """

    def __init__(self, P: Projectors, query_preproj: Tensor, gallery_preproj: Tensor,
                 modality: Modality = "image", dec: SVD | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        check_modality("modality", modality)
        self.dec = svd_for(P, dec)
        self.r = self.dec.r
        self.modality = modality
        self.dtype = dtype
        W = (P.W_i if modality == "image" else P.W_t).double()
        b = P.b_i if modality == "image" else P.b_t
        B = self.dec.U if modality == "image" else self.dec.V
        if B.shape[0] != W.shape[1]:
            raise ValueError(f"SVD basis has {B.shape[0]} rows but the {modality} projector "
                             f"takes {W.shape[1]}-dim features")
        A = W @ B  # [d, r]
        r = self.r
        G = torch.zeros(r + 1, r + 1, dtype=torch.float64)
        G[:r, :r] = A.T @ A
        if b is not None:
            h = A.T @ b.double()
            G[:r, r] = h
            G[r, :r] = h
            G[r, r] = b.double() @ b.double()
        self.has_bias = b is not None
        self.G = G

        def coords(name: str, f: Tensor) -> Tensor:
            f = torch.as_tensor(f).detach().cpu().double()
            if f.ndim != 2 or f.shape[1] != W.shape[1]:
                raise ValueError(f"{name}: expected [N, {W.shape[1]}] {modality} features, got "
                                 f"shape {tuple(f.shape)}")
            return torch.cat([f @ B, f.new_ones(f.shape[0], 1)], dim=1)

        self.cq = coords("query_preproj", query_preproj)
        self.cg = coords("gallery_preproj", gallery_preproj)

    def _index(self, band: Band) -> Tensor:
        s = band.indices(self.r)
        idx = torch.arange(s.start, s.stop)
        return torch.cat([idx, torch.tensor([self.r])]) if self.has_bias else idx

    def scores(self, band: Band) -> Tensor:
        """[Q, G] cosine similarities of the band's embeddings, in ``dtype``."""
        idx = self._index(band)
        Gs = self.G[idx][:, idx]
        cq, cg = self.cq[:, idx], self.cg[:, idx]
        qG = cq @ Gs
        nq = (qG * cq).sum(1).clamp_min(0).sqrt()
        ng = ((cg @ Gs) * cg).sum(1).clamp_min(0).sqrt()
        tiny = torch.finfo(torch.float64).tiny
        s = (qG / nq.clamp_min(tiny)[:, None]) @ (cg / ng.clamp_min(tiny)[:, None]).T
        return s.to(self.dtype)


def grid_bands(r: int, k_top_values: Iterable[int] | None = None,
               k_bottom_values: Iterable[int] | None = None) -> list[Band]:
    """The valid bands of a ``(k_top, k_bottom)`` grid (default ``range(r)`` each), skipping
    ``k_top + k_bottom >= r``, in grid order (k_top outer)."""
    tops = list(range(r)) if k_top_values is None else [int(k) for k in k_top_values]
    bottoms = list(range(r)) if k_bottom_values is None else [int(k) for k in k_bottom_values]
    return [Band(kt, kb) for kt in tops for kb in bottoms if kt + kb < r]


def sweep_bands(P: Projectors, query_preproj: Tensor, gallery_preproj: Tensor,
                query_labels: Tensor, gallery_labels: Tensor, modality: Modality = "image",
                k_top_values: Iterable[int] | None = None,
                k_bottom_values: Iterable[int] | None = None, same_split: bool = False,
                metric: str | Sequence[str] = "mAP", dec: SVD | None = None,
                dtype: torch.dtype = torch.float64) -> pd.DataFrame:
    """Intra-modal retrieval metrics of every band ``(k_top, k_bottom)`` of a grid.

    Equals, band by band, ``evaluate`` of ``iso_projectors(P, band)``-projected features (the
    naive path), but projects the features once (:class:`BandScorer`) and ranks every band
    with one :class:`~isoclip.evaluate.retrieval.FixedLabelRanker`, bands in parallel threads;
    see ``benchmarks/band_sweep.py`` for the speed-up.

    Args:
        P: projectors. modality: ``"image"`` (query/gallery are image features, W_i, U) or
            ``"text"`` (text features, W_t, V).
        query_preproj, gallery_preproj: pre-projection features [Q, .], [G, .].
        query_labels, gallery_labels: [Q], [G] integer labels; relevant = same label.
        k_top_values, k_bottom_values: the grid (default ``range(r)`` each); pairs with
            ``k_top + k_bottom >= r`` are skipped.
        same_split: query i is gallery item i (removed from its own gallery).
        metric: one or several of ``"mAP"``, ``"mAP@R"``, ``"P@R"``, ``"R@1"`` (percent).
        dec: ``svd(P)`` if already computed.
        dtype: similarity dtype. float64 (default) agrees with the float64 naive path to
            rounding; float32 is about twice as fast and agrees with :func:`evaluate` up to
            float32 near-ties (about 1e-4 mAP points).

    Returns:
        DataFrame with columns ``k_top, k_bottom, kept`` and one per metric, one row per
        valid band, in grid order.
    """
    names = (metric,) if isinstance(metric, str) else tuple(metric)
    bad = [n for n in names if n not in _SWEEP_METRICS]
    if bad or not names:
        raise ValueError(f"metric must be among {_SWEEP_METRICS}, got {metric!r}")
    scorer = BandScorer(P, query_preproj, gallery_preproj, modality, dec, dtype)
    r = scorer.r
    ranker = FixedLabelRanker(query_labels, gallery_labels, same_split)
    if ranker.shape != (scorer.cq.shape[0], scorer.cg.shape[0]):
        raise ValueError("labels must have one entry per query / gallery row")
    bands = grid_bands(r, k_top_values, k_bottom_values)

    def run(band: Band) -> dict[str, float]:
        return {"k_top": band.k_top, "k_bottom": band.k_bottom, "kept": band.kept(r),
                **ranker.metrics(scorer.scores(band), names)}

    # many small tensor ops: one torch thread each, bands in parallel (torch and numpy's sort
    # release the GIL); measured ~3x faster than intra-op threads on 2 busy cores
    n_threads = torch.get_num_threads()
    with torch_threads(1), torch.no_grad(), ThreadPoolExecutor(n_threads) as pool:
        rows = list(pool.map(run, bands))
    return pd.DataFrame(rows, columns=["k_top", "k_bottom", "kept", *names])


def best_band(sweep: pd.DataFrame, metric: str = "mAP") -> Band:
    """The band of ``sweep`` with the highest ``metric`` (the *oracle*: it uses the labels)."""
    row = sweep.loc[sweep[metric].idxmax()]
    return Band(int(row["k_top"]), int(row["k_bottom"]))


def naive_band_metrics(P: Projectors, query_preproj: Tensor, gallery_preproj: Tensor,
                       query_labels: Tensor, gallery_labels: Tensor, band: Band,
                       modality: Modality = "image", same_split: bool = False,
                       dec: SVD | None = None, exact: bool = True) -> dict[str, float]:
    """Reference path for one band: ``iso_projectors`` + project + evaluate.

    ``exact=True`` projects and takes cosines in float64 (:func:`evaluate_scores`);
    ``exact=False`` uses the model dtype and :func:`evaluate` (float32 cosines).
    """
    from isoclip.evaluate.retrieval import evaluate, evaluate_scores
    Pd = P.double() if exact else P
    iso = iso_projectors(Pd, band, dec)
    proj = iso.project_image if modality == "image" else iso.project_text
    q = proj(torch.as_tensor(query_preproj).to(Pd.dtype))
    g = proj(torch.as_tensor(gallery_preproj).to(Pd.dtype))
    if not exact:
        return evaluate(q, g, query_labels, gallery_labels, same_split)
    qn = q / q.norm(dim=1, keepdim=True)
    gn = g / g.norm(dim=1, keepdim=True)
    return evaluate_scores(qn @ gn.T, query_labels, gallery_labels, same_split)
