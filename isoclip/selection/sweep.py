"""Fast (k_top, k_bottom) band sweeps: every band's intra-modal retrieval metrics from one
SVD of Psi (IsoCLIP Sec. 4, the band heat-maps; book notation page, eq-iso-projectors).

``sweep_bands`` scores a whole grid of bands on labelled query/gallery features through
:class:`BandScorer` (coordinates in Psi's singular basis computed once) and a ranker that
shares the metric definitions of :mod:`isoclip.evaluate.retrieval`; ``naive_band_metrics``
is the slow reference (project, normalise, evaluate) the tests compare it with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from isoclip.method.bands import Band, iso_projectors
from isoclip.method.operator import SVD, svd
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
                 modality: str = "image", dec: SVD | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        if modality not in ("image", "text"):
            raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
        self.dec = svd(P) if dec is None else dec
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


class _FastRanker:
    """Per-query metrics from [Q, G] similarities with fixed labels, tuned for many calls.

    Ranks are ``1 + #(gallery items with a larger score)``; rows are sorted with numpy (its
    SIMD sort) and the relevant scores
    located by binary search. Exact whenever no relevant item ties with another item; a band
    with such a tie falls back to :func:`isoclip.evaluate.query_metrics_scores` (ties by
    gallery index), so the result always equals :func:`evaluate_scores` on the same scores.
    """

    def __init__(self, query_labels: Tensor, gallery_labels: Tensor, same_split: bool) -> None:
        from isoclip.evaluate.retrieval import Relevance, as_labels
        self.ql = torch.as_tensor(np.array(np.asarray(query_labels)))
        self.gl = torch.as_tensor(np.array(np.asarray(gallery_labels)))
        ql = as_labels("query_labels", self.ql, len(self.ql), "query")
        gl = as_labels("gallery_labels", self.gl, len(self.gl), "gallery")
        self.same_split = same_split
        if same_split and not torch.equal(ql, gl):
            raise ValueError("same_split: query and gallery labels must be identical")
        rel = Relevance(ql, gl)
        rows = torch.arange(len(ql))
        self.cols, self.valid = rel.columns(rows, rows if same_split else None)
        self.R = self.valid.sum(1)
        self.nonempty = self.R > 0
        if not bool(self.nonempty.any()):
            raise ValueError("no query has a relevant item in the gallery")

    def metrics(self, scores: Tensor, names: tuple[str, ...]) -> dict[str, float]:
        q, g = scores.shape
        s = scores.clone()
        if self.same_split:
            s.fill_diagonal_(-torch.inf)
        rel = torch.where(self.valid, s.gather(1, self.cols), -torch.inf)
        rel = torch.sort(rel, dim=1, descending=True).values  # padding last
        arr = s.numpy()
        arr.sort(axis=1)
        srt = torch.from_numpy(arr)
        n_gt = g - torch.searchsorted(srt, rel, right=True)
        n_ge = g - torch.searchsorted(srt, rel, right=False)
        if bool(((n_ge - n_gt != 1) & self.valid).any()):  # a tie: exact slow path
            from isoclip.evaluate.retrieval import query_metrics_scores  # noqa: PLC0415
            pq = query_metrics_scores(scores, self.ql, self.gl, self.same_split)
            return {n: 100.0 * float(pq[n][self.nonempty].mean()) for n in names}
        R = self.R.clamp_min(1).to(torch.float64)
        i = torch.arange(1, rel.shape[1] + 1, dtype=torch.float64)[None, :]
        rank = (n_gt + 1).to(torch.float64)
        keep = i <= self.R[:, None]
        prec = torch.where(keep, i / rank, 0.0)
        out: dict[str, float] = {}
        for n in names:
            if n == "mAP":
                v = prec.sum(1) / R
            elif n == "mAP@R":
                v = torch.where(rank <= self.R[:, None], prec, 0.0).sum(1) / R
            elif n == "P@R":
                v = (keep & (rank <= self.R[:, None])).sum(1) / R
            else:  # R@1
                v = (rank[:, 0] == 1).to(torch.float64)
            out[n] = 100.0 * float(v[self.nonempty].mean())
        return out


def grid_bands(r: int, k_top_values: Iterable[int] | None = None,
               k_bottom_values: Iterable[int] | None = None) -> list[Band]:
    """The valid bands of a ``(k_top, k_bottom)`` grid (default ``range(r)`` each), skipping
    ``k_top + k_bottom >= r``, in grid order (k_top outer)."""
    tops = list(range(r)) if k_top_values is None else [int(k) for k in k_top_values]
    bottoms = list(range(r)) if k_bottom_values is None else [int(k) for k in k_bottom_values]
    return [Band(kt, kb) for kt in tops for kb in bottoms if kt + kb < r]


def sweep_bands(P: Projectors, query_preproj: Tensor, gallery_preproj: Tensor,
                query_labels: Tensor, gallery_labels: Tensor, modality: str = "image",
                k_top_values: Iterable[int] | None = None,
                k_bottom_values: Iterable[int] | None = None, same_split: bool = False,
                metric: str | Sequence[str] = "mAP", dec: SVD | None = None,
                dtype: torch.dtype = torch.float64) -> pd.DataFrame:
    """Intra-modal retrieval metrics of every band ``(k_top, k_bottom)`` of a grid.

    Equals, band by band, ``evaluate`` of ``iso_projectors(P, band)``-projected features (the
    naive path), but projects the features once (:class:`BandScorer`) and ranks with a lean
    mAP-only ranker; see ``benchmarks/band_sweep.py`` for the speed-up.

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
    ranker = _FastRanker(query_labels, gallery_labels, same_split)
    if len(ranker.ql) != scorer.cq.shape[0] or len(ranker.gl) != scorer.cg.shape[0]:
        raise ValueError("labels must have one entry per query / gallery row")
    bands = grid_bands(r, k_top_values, k_bottom_values)

    def run(band: Band) -> dict[str, float]:
        return {"k_top": band.k_top, "k_bottom": band.k_bottom, "kept": band.kept(r),
                **ranker.metrics(scorer.scores(band), names)}

    # many small tensor ops: one torch thread each, bands in parallel (torch and numpy's sort
    # release the GIL); measured ~3x faster than intra-op threads on 2 busy cores
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad(), ThreadPoolExecutor(n_threads) as pool:
            rows = list(pool.map(run, bands))
    finally:
        torch.set_num_threads(n_threads)
    return pd.DataFrame(rows, columns=["k_top", "k_bottom", "kept", *names])


def best_band(sweep: pd.DataFrame, metric: str = "mAP") -> Band:
    """The band of ``sweep`` with the highest ``metric`` (the *oracle*: it uses the labels)."""
    row = sweep.loc[sweep[metric].idxmax()]
    return Band(int(row["k_top"]), int(row["k_bottom"]))


def naive_band_metrics(P: Projectors, query_preproj: Tensor, gallery_preproj: Tensor,
                       query_labels: Tensor, gallery_labels: Tensor, band: Band,
                       modality: str = "image", same_split: bool = False,
                       dec: SVD | None = None, exact: bool = True) -> dict[str, float]:
    """Reference path for one band: ``iso_projectors`` + project + evaluate.

    ``exact=True`` projects and takes cosines in float64 (:func:`evaluate_scores`);
    ``exact=False`` uses the model dtype and :func:`evaluate` (float32 cosines).
    """
    from isoclip.evaluate.retrieval import evaluate, evaluate_scores  # noqa: PLC0415
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
