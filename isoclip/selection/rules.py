"""Label-free band selection rules: which (k_top, k_bottom) to use without labelled
retrieval data.

- ``isotropy``: from the weights only (the singular values of Psi).
- ``agreement``: from paired image-caption calibration data (:func:`agreement_sweep`).
- ``paper``: the official per-backbone band of the IsoCLIP scripts, rescaled to the rank
  of Psi (:func:`isoclip.method.bands.paper_scaled_band`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from isoclip.common.types import check_modality
from isoclip.method.bands import PAPER_BANDS, Band, iso_projectors, paper_scaled_band
from isoclip.method.operator import SVD, svd_for
from isoclip.method.projectors import Projectors
from isoclip.selection.sweep import BandScorer, grid_bands

__all__ = ["SELECT_METHODS", "agreement_sweep", "naive_agreement", "select_band"]


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
    target: Tensor = x @ y.T if modality == "image" else y @ x.T
    return target


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
    modality = check_modality("modality", modality)
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
        ``"paper"``: the official band of ``model`` / ``pretrained`` (default ViT-B/32,
            OpenAI) for ``task`` (``"image"``/``"text"``). On a model whose rank r differs
            from that backbone's it raises unless ``rescale=True``, which returns
            :func:`paper_scaled_band` (the band's ends scaled by r / r_paper: a reference for
            drawing, not the paper's choice for this model).
    """
    dec = svd_for(P, dec)
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
        rescale = bool(kwargs.pop("rescale", False))
        key = (str(kwargs.get("model", "ViT-B-32")), str(kwargs.get("pretrained", "openai")),
               str(kwargs.get("task", "image")))
        r_paper = PAPER_BANDS[key][2] if key in PAPER_BANDS else None
        if r_paper is not None and r_paper != dec.r and not rescale:
            raise ValueError(
                f"select_band(method='paper'): the paper's band for {key} is for rank "
                f"{r_paper}, but this model's Psi has rank {dec.r}; a band rescaled to another "
                "rank is a reference, not the paper's choice: pass rescale=True to accept "
                "paper_scaled_band(), or choose with 'isotropy' / 'agreement'")
        return paper_scaled_band(dec.r, **kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown method {method!r}; known: {SELECT_METHODS}")
