"""Band-only analysis for the paper's band figure (IsoCLIP, Magistri et al., CVPR 2026: similarity
histograms and mAP per band, positive/negative overlap; book notation page, eq-overlap).

* :func:`region_bands`: the top-only, middle and bottom-only bands of a split
  ``(k_top, k_bottom)`` of the spectrum of Psi.
* :func:`pos_neg_scores`: similarities of relevant (same label) and non-relevant pairs.
* :func:`histogram_overlap`: overlap of two score distributions,
  ``sum_b min(p_b, q_b) / sum_b max(p_b, q_b)`` over shared bins of the two normalised
  histograms (a weighted Jaccard index; 1 = identical distributions, 0 = disjoint).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from isoclip.method.bands import Band

__all__ = ["histogram_overlap", "pos_neg_scores", "region_bands", "region_decay_rates"]


def region_bands(r: int, band: Band) -> dict[str, Band]:
    """``{"top", "middle", "bottom"}``: only the first ``k_top`` directions, the kept middle
    ``band`` itself, only the last ``k_bottom`` directions (an empty end is left out)."""
    band.indices(r)  # validate
    out = {}
    if band.k_top:
        out["top"] = Band(0, r - band.k_top)
    out["middle"] = band
    if band.k_bottom:
        out["bottom"] = Band(r - band.k_bottom, 0)
    return out


def region_decay_rates(S: np.ndarray | Tensor, band: Band) -> dict[str, float]:
    """Median decay of log σ per index in the top, kept and bottom regions of ``band``
    (chapter 5's flatness evidence; the regime study's decay columns).

    The decay at index j is log σ_j − log σ_(j+1) (adjacent singular values, no window; σ
    clipped at 1e-12 σ_1); the top region owns the steps inside the top band, the middle the
    steps between kept values, the bottom the rest.

    Args:
        S: [r] non-increasing singular values. band: the band that splits them.

    Returns:
        ``{"top", "mid", "bottom"}`` -> median decay (NaN for a region without steps).
    """
    s = S.numpy() if isinstance(S, Tensor) else np.asarray(S)
    r = len(s)
    rate = -np.diff(np.log(np.clip(s, s[0] * 1e-12, None)))
    sl = band.indices(r)
    regions = {"top": (0, sl.start), "mid": (sl.start, sl.stop - 1),
               "bottom": (sl.stop - 1, r - 1)}
    return {name: float(np.median(rate[lo:hi])) if hi > lo else float("nan")
            for name, (lo, hi) in regions.items()}


def pos_neg_scores(scores: Tensor, query_labels: object, gallery_labels: object,
                   same_split: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) similarities, flattened: same label vs different label pairs
    (the diagonal is excluded when ``same_split``)."""
    ql = torch.as_tensor(np.array(query_labels))
    gl = torch.as_tensor(np.array(gallery_labels))
    s = torch.as_tensor(scores)
    pos = ql[:, None] == gl[None, :]
    keep = torch.ones_like(pos)
    if same_split:
        keep.fill_diagonal_(False)
    return s[pos & keep].double().numpy(), s[~pos & keep].double().numpy()


def histogram_overlap(p: np.ndarray, q: np.ndarray, bins: int = 100) -> float:
    """``sum min(P, Q) / sum max(P, Q)`` of the density histograms of ``p`` and ``q`` on
    ``bins`` shared bins spanning both samples."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.size == 0 or q.size == 0:
        raise ValueError("histogram_overlap needs two non-empty samples")
    lo, hi = min(p.min(), q.min()), max(p.max(), q.max())
    if hi <= lo:
        return 1.0
    edges = np.linspace(lo, hi, bins + 1)
    hp = np.histogram(p, edges)[0] / p.size
    hq = np.histogram(q, edges)[0] / q.size
    return float(np.minimum(hp, hq).sum() / np.maximum(hp, hq).sum())
