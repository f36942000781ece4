"""Spectral band selection: IsoCLIP's isotropic projectors (poster step 3; papers.md A.a-A.b).

With ``Psi = W_i^T W_t = U diag(S) V^T`` (S non-increasing, r = min(d_i, d_t) singular values,
as in the official ``apply_iso``), a :class:`Band` ``(k_top, k_bottom)`` drops the ``k_top``
largest and ``k_bottom`` smallest singular directions and keeps ``S = {k_top, ...,
r - k_bottom - 1}`` (0-based), i.e. ``r - k_top - k_bottom`` directions:

    W_i_hat = W_i U_S U_S^T        W_t_hat = W_t V_S V_S^T

Intra-modal retrieval then uses ``cos(W_i_hat f, W_i_hat f')``.

Composable pieces for a fast (k_top, k_bottom) sweep: compute ``dec = svd(P)`` once, then
``band_basis(dec, band)`` or ``band.indices(dec.r)`` slice its columns, and
``iso_projectors(P, band, dec)`` reuses it. E.g. with coordinates ``c = f @ dec.U`` [N, r] and
``G = dec.U.T @ psi_image(P) @ dec.U`` [r, r] computed once, the band's intra-modal
similarities are ``c[:, s] @ G[s, s] @ c'[:, s].T`` normalised, with ``s = band.indices(r)``
(because ``W_i_hat f = W_i U_S c_S``).

Biases: a bias is a constant offset in the shared space, not a function of the features, so
``iso_projectors`` keeps ``b_i``/``b_t`` unchanged (``Band(0, 0)`` then reproduces the
model exactly). To filter the bias together with W, as the official code does for SigLIP,
pass ``P.augmented()`` and feed ``augment_features(f)`` (papers.md A.c).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .operator import SVD, svd
from .projectors import Projectors

__all__ = ["Band", "band_basis", "iso_projectors", "paper_scaled_band", "PAPER_BANDS",
           "BandScorer", "sweep_bands", "best_band", "naive_band_metrics", "select_band",
           "SELECT_METHODS", "agreement_sweep", "naive_agreement", "grid_bands"]

#: The official per-backbone bands (k_top, k_bottom) of the IsoCLIP scripts, with the rank r of
#: Psi they apply to (papers.md A.b: ``exp_img-img_retrieval/*.sh``, ``exp_txt-txt_retrieval``).
PAPER_BANDS: dict[tuple[str, str, str], tuple[int, int, int]] = {
    # (model, pretrained, task): (k_top, k_bottom, r)
    ("ViT-B-32", "openai", "image"): (150, 50, 512),
    ("ViT-B-32", "openai", "text"): (20, 100, 512),
    ("ViT-B-16", "openai", "image"): (200, 50, 512),
    ("ViT-B-16", "openai", "text"): (10, 50, 512),
    ("ViT-L-14", "openai", "image"): (250, 200, 768),
    ("ViT-L-14", "openai", "text"): (10, 300, 768),
    ("ViT-B-16", "datacomp_xl_s13b_b90k", "image"): (100, 100, 512),
    ("ViT-B-16", "datacomp_xl_s13b_b90k", "text"): (2, 150, 512),
    ("ViT-B-32", "datacomp_xl_s13b_b90k", "image"): (50, 50, 512),
}


@dataclass(frozen=True)
class Band:
    """Numbers of singular directions of Psi dropped at the top and at the bottom.

    ``Band(0, 0)`` keeps everything. Validation against the rank happens in
    :meth:`indices`, which needs r.
    """

    k_top: int
    k_bottom: int

    def __post_init__(self) -> None:
        for name in ("k_top", "k_bottom"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"Band.{name} must be an int, got {type(v).__name__} {v!r}")
            if v < 0:
                raise ValueError(f"Band.{name} must be non-negative, got {v}")
            object.__setattr__(self, name, int(v))

    def indices(self, r: int) -> slice:
        """0-based slice of the kept singular directions out of ``r``.

        Raises:
            ValueError: ``k_top + k_bottom >= r`` (nothing would be kept).
        """
        if self.k_top + self.k_bottom >= r:
            raise ValueError(
                f"{self}: k_top + k_bottom = {self.k_top + self.k_bottom} must be smaller than "
                f"the rank r = {r} (number of singular values of Psi, min(d_i, d_t))")
        return slice(self.k_top, r - self.k_bottom)

    def kept(self, r: int) -> int:
        """Number of kept directions, ``r - k_top - k_bottom`` (validated like :meth:`indices`)."""
        s = self.indices(r)
        return s.stop - s.start


def band_basis(dec: SVD, band: Band) -> tuple[Tensor, Tensor]:
    """``(U_S [d_i, k], V_S [d_t, k])``: the kept singular vectors, k = r - k_top - k_bottom."""
    s = band.indices(dec.r)
    return dec.U[:, s], dec.V[:, s]


def iso_projectors(P: Projectors, band: Band, dec: SVD | None = None) -> Projectors:
    """IsoCLIP projectors ``W_i U_S U_S^T`` and ``W_t V_S V_S^T`` for ``band``.

    Args:
        P: the model's projectors (e.g. ``get_projectors(model)``; ``P.augmented()`` for the
            official SigLIP treatment of biases).
        band: which singular directions of Psi to drop.
        dec: ``svd(P)`` if already computed (it must be the SVD of ``psi(P)``).

    Returns:
        Projectors with the same shapes, biases and dtype as ``P`` (computed in float64).

    Raises:
        ValueError: ``k_top + k_bottom >= r``, or ``dec`` shapes do not match ``P``.
    """
    dec = svd(P) if dec is None else dec
    if dec.U.shape[0] != P.d_i or dec.V.shape[0] != P.d_t:
        raise ValueError(f"SVD with U {tuple(dec.U.shape)}, V {tuple(dec.V.shape)} does not match "
                         f"projectors with d_i={P.d_i}, d_t={P.d_t}")
    U_S, V_S = band_basis(dec, band)
    W_i = (P.W_i.double() @ U_S) @ U_S.T
    W_t = (P.W_t.double() @ V_S) @ V_S.T
    return Projectors(W_i=W_i.to(P.dtype), W_t=W_t.to(P.dtype), b_i=P.b_i, b_t=P.b_t,
                      image_linearized=P.image_linearized)


def paper_scaled_band(r: int, model: str = "ViT-B-32", pretrained: str = "openai",
                      task: str = "image") -> Band:
    """The paper's band for ``(model, pretrained, task)`` rescaled to rank ``r``.

    ``k = round(k_paper * r / r_paper)`` for both ends (at least one direction is kept). This is a
    reference for comparing spectra of different sizes (e.g. drawing the ViT-B/32 band on a
    64-rank tiny model), not a band chosen for the model at hand.

    Raises:
        KeyError: no official band for that backbone/task (the message lists the known ones).
    """
    key = (model, pretrained, task)
    if key not in PAPER_BANDS:
        raise KeyError(f"no official IsoCLIP band for {key}; known: {sorted(PAPER_BANDS)}")
    k_top, k_bottom, r_paper = PAPER_BANDS[key]
    top, bottom = round(k_top * r / r_paper), round(k_bottom * r / r_paper)
    while top + bottom >= r and (top or bottom):
        if top >= bottom:
            top -= 1
        else:
            bottom -= 1
    return Band(top, bottom)


# ---------------------------------------------------------------------------------------------
# fast (k_top, k_bottom) sweep

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
        from .evaluate.retrieval import Relevance, as_labels
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
            from .evaluate.retrieval import query_metrics_scores  # noqa: PLC0415
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
    from .evaluate.retrieval import evaluate, evaluate_scores  # noqa: PLC0415
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


# ---------------------------------------------------------------------------------------------
# automatic band selection

#: Methods of :func:`select_band`.
SELECT_METHODS = ("isotropy", "agreement", "paper")


def _pair_features(P: Projectors, image_preproj: Tensor, text_preproj: Tensor
                   ) -> tuple[Tensor, Tensor]:
    """Validated float64 calibration pairs [N, d_i], [N, d_t]."""
    fi = torch.as_tensor(image_preproj).detach().cpu().double()
    ft = torch.as_tensor(text_preproj).detach().cpu().double()
    if fi.ndim != 2 or fi.shape[1] != P.d_i:
        raise ValueError(f"image_preproj: expected [N, {P.d_i}] pre-projection image features, "
                         f"got shape {tuple(fi.shape)}")
    if ft.ndim != 2 or ft.shape[1] != P.d_t:
        raise ValueError(f"text_preproj: expected [N, {P.d_t}] pre-projection text features, "
                         f"got shape {tuple(ft.shape)}")
    if fi.shape[0] != ft.shape[0]:
        raise ValueError(f"image_preproj and text_preproj must be paired (row n = one image and "
                         f"its caption): got {fi.shape[0]} images and {ft.shape[0]} texts")
    if fi.shape[0] < 3:
        raise ValueError(f"calibration pairs: need at least 3, got {fi.shape[0]}")
    if not (torch.isfinite(fi).all() and torch.isfinite(ft).all()):
        raise ValueError("calibration features contain NaN or inf")
    return fi, ft


def _cross_target(P: Projectors, fi: Tensor, ft: Tensor, modality: str) -> Tensor:
    """[N, N] cross-modal cosines of the full model: row n = item n of ``modality`` against
    every item of the other modality."""
    x = P.project_image(fi.to(P.dtype)).double()
    y = P.project_text(ft.to(P.dtype)).double()
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
    y = y / y.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return x @ y.T if modality == "image" else y @ x.T


def _offdiag_rows(a: Tensor) -> Tensor:
    """[N, N] -> [N, N-1]: each row without its diagonal entry."""
    n = a.shape[0]
    return a.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)


def _mean_row_corr(a: Tensor, b: Tensor) -> float:
    """Mean over rows of the Pearson correlation between rows of ``a`` and ``b`` [N, M]."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)
    return float(((a * b).sum(1) / den).mean())


def agreement_sweep(P: Projectors, image_preproj: Tensor, text_preproj: Tensor,
                    modality: str = "image", k_top_values: Iterable[int] | None = None,
                    k_bottom_values: Iterable[int] | None = None,
                    dec: SVD | None = None) -> pd.DataFrame:
    """Cross-modal agreement of every band of a grid, on paired calibration data (no labels).

    Our label-free band rule (not in the paper). For N image-caption pairs (x_n, y_n) the
    model's *inter-modal* similarities ``T[n, m] = cos(W_i f_n + b_i, W_t g_m + b_t)`` (for
    ``modality="text"``: text n against image m) are what CLIP's loss trains directly
    (through Psi, IsoCLIP §3); a band's *intra-modal* similarities ``S_band[n, m]`` (band
    embeddings of the same modality, as in :class:`BandScorer`) are not. The agreement of a
    band is the mean over n of the Pearson correlation, over m != n, between ``S_band[n, :]``
    and ``T[n, :]``: how well the band's intra-modal geometry reproduces the trained
    inter-modal one.

    Args:
        P: projectors. image_preproj, text_preproj: [N, d_i], [N, d_t] pre-projection
            features of N calibration pairs (row n: an image and its caption; N >= 3; e.g. a
            few hundred training pairs -- never the test queries).
        modality: ``"image"`` (rank image bands against image->text similarities) or
            ``"text"``.
        k_top_values, k_bottom_values: the grid (default ``range(r)`` each); pairs with
            ``k_top + k_bottom >= r`` are skipped.
        dec: ``svd(P)`` if already computed.

    Returns:
        DataFrame with columns ``k_top, k_bottom, kept, agreement`` (in [-1, 1]), grid order.
    """
    if modality not in ("image", "text"):
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
    fi, ft = _pair_features(P, image_preproj, text_preproj)
    own = fi if modality == "image" else ft
    target = _offdiag_rows(_cross_target(P, fi, ft, modality))
    scorer = BandScorer(P, own, own, modality, dec)
    r = scorer.r
    rows = []
    with torch.no_grad():
        for band in grid_bands(r, k_top_values, k_bottom_values):
            s = _offdiag_rows(scorer.scores(band).double())
            rows.append({"k_top": band.k_top, "k_bottom": band.k_bottom, "kept": band.kept(r),
                         "agreement": _mean_row_corr(s, target)})
    return pd.DataFrame(rows, columns=["k_top", "k_bottom", "kept", "agreement"])


def naive_agreement(P: Projectors, image_preproj: Tensor, text_preproj: Tensor, band: Band,
                    modality: str = "image") -> float:
    """Reference for :func:`agreement_sweep` (one band, per-row numpy loop through
    :func:`iso_projectors`); for tests."""
    Pb = iso_projectors(P, band)
    fi, ft = _pair_features(P, image_preproj, text_preproj)
    x = P.project_image(fi.to(P.dtype)).double().numpy()
    y = P.project_text(ft.to(P.dtype)).double().numpy()
    own = (Pb.project_image(fi.to(P.dtype)) if modality == "image"
           else Pb.project_text(ft.to(P.dtype))).double().numpy()
    a, b = (x, y) if modality == "image" else (y, x)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    own = own / np.linalg.norm(own, axis=1, keepdims=True)
    corrs = []
    for n in range(len(a)):
        keep = np.arange(len(a)) != n
        corrs.append(np.corrcoef(own[n] @ own[keep].T, a[n] @ b[keep].T)[0, 1])
    return float(np.mean(corrs))


def _isotropy_band(S: Tensor, min_kept: int = 2) -> Band:
    """argmax over bands of ``kept * sigma_last / sigma_first`` (see :func:`select_band`)."""
    S = S.double()
    r = int(S.shape[0])
    eps = float(S[0]) * torch.finfo(torch.float64).eps
    logS = S.clamp_min(eps).log()
    start = torch.arange(r)[:, None]
    stop = torch.arange(r)[None, :]  # last kept index, inclusive
    kept = (stop - start + 1).to(torch.float64)
    obj = kept.log() + logS[None, :] - logS[:, None]
    obj = torch.where(kept >= min(min_kept, r), obj, -torch.inf)
    j = int(torch.argmax(obj))  # first maximum: smallest k_top, then smallest last index
    a, b = divmod(j, r)
    return Band(a, r - 1 - b)


def select_band(P: Projectors, method: str = "isotropy", *, dec: SVD | None = None,
                **kwargs: object) -> Band:
    """Choose ``(k_top, k_bottom)`` without labels: from the projector weights alone, or
    (``"agreement"``) from paired image-caption data.

    Methods:
        ``"isotropy"`` (default): the band that maximises its *isotropic capacity*
            ``kept * sigma_min / sigma_max`` over the kept singular values of Psi, i.e. the
            number of kept directions discounted by the band's condition number. A perfectly
            flat spectrum keeps everything; a steep end costs more in conditioning than its
            directions add, so it is dropped. Parameter-free; ties go to the smallest k_top.
            ``min_kept`` (default 2) excludes degenerate one-direction bands. Only the first
            min(r, d) singular values are candidates: beyond the embedding dimension d, Psi
            has a null space, which is always dropped (in ``k_bottom``).
        ``"agreement"``: the band of a (k_top, k_bottom) grid whose intra-modal similarities
            agree best with the model's inter-modal ones on paired calibration data
            (:func:`agreement_sweep`; no class labels, but data). Keywords:
            ``image_preproj``, ``text_preproj`` ([N, d_i], [N, d_t] pre-projection features
            of N image-caption pairs, required), ``modality`` (``"image"`` default or
            ``"text"``: the band depends on the task), ``stride`` (grid stride, default
            ``max(1, r // 32)``). Ties go to the smallest k_top, then k_bottom.
        ``"paper"``: :func:`paper_scaled_band` (the official ViT-B/32 band rescaled to r);
            ``task`` (``"image"``/``"text"``), ``model``, ``pretrained`` are passed on.
    """
    dec = svd(P) if dec is None else dec
    if method == "isotropy":
        # Psi = W_i^T W_t has rank <= d: when d < min(d_i, d_t) (e.g. a SharedCLIP with
        # d_i = d_t > d) its last r - d singular values are zero and always dropped, so that
        # the flat null space is never mistaken for an isotropic band.
        rank = min(dec.r, P.d)
        min_kept = int(kwargs.get("min_kept", 2))  # type: ignore[call-overload]
        band = _isotropy_band(dec.S[:rank], min_kept)
        return Band(band.k_top, band.k_bottom + dec.r - rank)
    if method == "agreement":
        unknown = set(kwargs) - {"image_preproj", "text_preproj", "modality", "stride"}
        if unknown:
            raise ValueError(f"select_band(method='agreement'): unknown keywords {sorted(unknown)}")
        if kwargs.get("image_preproj") is None or kwargs.get("text_preproj") is None:
            raise ValueError("select_band(method='agreement') needs image_preproj and "
                             "text_preproj: pre-projection features of paired calibration data "
                             "(row n = an image and its caption)")
        stride = int(kwargs.get("stride") or max(1, dec.r // 32))  # type: ignore[call-overload]
        if stride < 1:
            raise ValueError(f"stride: expected a positive int, got {stride}")
        ks = range(0, dec.r, stride)
        sw = agreement_sweep(P, kwargs["image_preproj"], kwargs["text_preproj"],  # type: ignore[arg-type]
                             str(kwargs.get("modality", "image")), ks, ks, dec=dec)
        best = sw.loc[sw["agreement"].idxmax()]
        return Band(int(best.k_top), int(best.k_bottom))
    if method == "paper":
        return paper_scaled_band(dec.r, **kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown method {method!r}; known: {SELECT_METHODS}")
