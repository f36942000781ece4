"""Modality-gap and embedding-geometry metrics (Liang et al., NeurIPS 2022; Closing the Modality
Gap, ICLR 2026, official ``ispamm/ModGap`` ``metrics.py``; book notation page, eq-gap to
eq-w2-uniformity).

Every function L2-normalises its inputs first (x̂ = x/‖x‖), as all the sources do, and
computes in float64. ``x`` is the image side and ``y`` the text side where it matters.

- :func:`gap_vector` Δ = mean x̂ − mean ŷ and :func:`centroid_gap` ‖Δ‖ (Liang et al. 2022 Sec. 4.2;
  ModGap ``compute_gap``, metrics.py:249-267).
- :func:`shift_gap` x' = normalize(x̂ − λΔ), y' = normalize(ŷ + λΔ) (Liang et al. 2022 Sec. 4.2,
  embedding shift experiment; λ = 0.5 makes the two centroids coincide before renormalising).
- :func:`true_pair_cosine` mean x̂_iᵀŷ_i (ModGap ``mean_distance_of_true_pairs``,
  metrics.py:338-358).
- :func:`intra_modal_cosine` mean_{i≠j} x̂_iᵀx̂_j, the cone width (ModGap
  ``compute_mean_angular_value_of_a_modality``, metrics.py:269-288; Liang's cone effect).
- :func:`alignment` mean ‖x̂_i − ŷ_i‖^α and :func:`uniformity`
  log mean_{i<j} exp(−t‖ẑ_i − ẑ_j‖²) (Wang & Isola 2020; ModGap losses.py:146-177, α = t = 2).
- :func:`w2_uniformity` −W₂(N(μ, Σ), N(0, I/d)) on [x̂; ŷ] (ModGap ``uniformity``,
  metrics.py:290-316: biased covariance, eigenvalues + 1e-8).
- :func:`gap_report` all of them as one flat dict.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from isoclip.common.types import check_modality
from isoclip.evaluate.retrieval import as_features

__all__ = [
    "alignment",
    "centroid_gap",
    "gap_report",
    "gap_vector",
    "intra_modal_cosine",
    "shift_gap",
    "shift_rows",
    "true_pair_cosine",
    "uniformity",
    "w2_uniformity",
]


def _unit(name: str, x: Any) -> Tensor:
    return F.normalize(as_features(name, x).double(), dim=1)


def _pair(x: Any, y: Any, paired: bool) -> tuple[Tensor, Tensor]:
    xn, yn = _unit("x", x), _unit("y", y)
    if xn.shape[1] != yn.shape[1]:
        raise ValueError(f"x and y: dimensions differ ({xn.shape[1]} vs {yn.shape[1]})")
    if paired and xn.shape[0] != yn.shape[0]:
        raise ValueError(f"x and y: expected paired rows (same N), got {xn.shape[0]} and "
                         f"{yn.shape[0]}")
    return xn, yn


def gap_vector(x: Any, y: Any) -> Tensor:
    """Δ = mean x̂ − mean ŷ, float64 [d]. x: [N, d], y: [M, d]."""
    xn, yn = _pair(x, y, paired=False)
    return xn.mean(0) - yn.mean(0)


def centroid_gap(x: Any, y: Any) -> float:
    """‖mean x̂ − mean ŷ‖₂ (Liang: 0.82 for CLIP ViT-B/32 on 5k COCO pairs)."""
    return float(gap_vector(x, y).norm())


def shift_rows(z: Any, delta: Tensor, lam: float, side: str) -> Tensor:
    """One side of Liang's shift with a given gap vector Δ: normalize(ẑ − λΔ) for
    ``side="image"``, normalize(ẑ + λΔ) for ``side="text"``; float64 [N, d].

    Applies the Δ of one paired set to other rows too (query images, class weights).
    """
    check_modality("side", side)
    zn = F.normalize(torch.as_tensor(z).double(), dim=1)
    sign = -1.0 if side == "image" else 1.0
    return F.normalize(zn + sign * lam * torch.as_tensor(delta).double(), dim=1)


def shift_gap(x: Any, y: Any, lam: float) -> tuple[Tensor, Tensor]:
    """Liang's gap shift: (normalize(x̂ − λΔ), normalize(ŷ + λΔ)), float64 [N, d], [M, d].

    λ = 0 returns the normalised inputs; λ = 0.5 moves both centroids to their midpoint
    before renormalising; λ < 0 widens the gap.
    """
    xn, yn = _pair(x, y, paired=False)
    delta = xn.mean(0) - yn.mean(0)
    return shift_rows(xn, delta, lam, "image"), shift_rows(yn, delta, lam, "text")


def true_pair_cosine(x: Any, y: Any) -> float:
    """mean_i cos(x_i, y_i) over paired rows. x, y: [N, d]."""
    xn, yn = _pair(x, y, paired=True)
    return float((xn * yn).sum(1).mean())


def intra_modal_cosine(x: Any) -> float:
    """mean_{i≠j} cos(x_i, x_j), in O(N d): (‖Σ x̂_i‖² − N) / (N(N − 1)). x: [N, d], N ≥ 2."""
    xn = _unit("x", x)
    n = xn.shape[0]
    if n < 2:
        raise ValueError(f"x: need at least 2 rows for pairwise cosines, got {n}")
    s = xn.sum(0)
    return float((s @ s - n) / (n * (n - 1)))


def alignment(x: Any, y: Any, alpha: float = 2.0) -> float:
    """Wang–Isola alignment mean_i ‖x̂_i − ŷ_i‖^α (lower = better aligned). x, y: [N, d]."""
    xn, yn = _pair(x, y, paired=True)
    return float((xn - yn).norm(dim=1).pow(alpha).mean())


def uniformity(x: Any, t: float = 2.0, chunk_size: int = 2048) -> float:
    """Wang–Isola uniformity log mean_{i<j} exp(−t‖x̂_i − x̂_j‖²) (lower = more uniform).

    Computed with a chunked log-sum-exp over the N(N−1)/2 pairs (memory O(chunk_size × N)).
    x: [N, d], N ≥ 2.
    """
    xn = _unit("x", x)
    n = xn.shape[0]
    if n < 2:
        raise ValueError(f"x: need at least 2 rows for pairwise distances, got {n}")
    parts = []
    for a in range(0, n - 1, chunk_size):
        block = xn[a:a + chunk_size]
        sq = (2.0 - 2.0 * block @ xn.T).clamp_(min=0.0)  # ‖x_i − x_j‖² for unit vectors
        upper = torch.arange(n)[None, :] > torch.arange(a, a + block.shape[0])[:, None]
        parts.append(torch.logsumexp((-t * sq)[upper], dim=0))
    return float(torch.logsumexp(torch.stack(parts), dim=0) - math.log(n * (n - 1) / 2))


def w2_uniformity(x: Any, y: Any | None = None, eps: float = 1e-8) -> float:
    """−W₂ between N(μ, Σ) of [x̂; ŷ] and N(0, I/d) (ModGap; higher = more uniform).

    −sqrt(‖μ‖² + 1 + tr Σ − (2/√d) tr Σ^{1/2}), Σ the biased (1/N) covariance, Σ^{1/2}
    from the eigenvalues (+ ``eps``, clipped at 0, as ModGap's code). x: [N, d]; y: [M, d] or
    None (x alone).
    """
    z = _unit("x", x) if y is None else torch.cat(_pair(x, y, paired=False))
    d = z.shape[1]
    mu = z.mean(0)
    zc = z - mu
    cov = zc.T @ zc / z.shape[0]
    evals = torch.linalg.eigvalsh(cov)
    tr_sqrt = (evals + eps).clamp(min=0.0).sqrt().sum()
    w2sq = mu @ mu + 1.0 + torch.trace(cov) - 2.0 / math.sqrt(d) * tr_sqrt
    return -float(w2sq.clamp(min=0.0).sqrt())


def gap_report(x: Any, y: Any) -> dict[str, float]:
    """All gap metrics for paired image ``x`` [N, d] and text ``y`` [N, d] features.

    Keys: ``gap``, ``true_pair_cos``, ``intra_cos_image``, ``intra_cos_text``, ``alignment``,
    ``uniformity_image``, ``uniformity_text``, ``w2_uniformity``.
    """
    _pair(x, y, paired=True)
    return {
        "gap": centroid_gap(x, y),
        "true_pair_cos": true_pair_cosine(x, y),
        "intra_cos_image": intra_modal_cosine(x),
        "intra_cos_text": intra_modal_cosine(y),
        "alignment": alignment(x, y),
        "uniformity_image": uniformity(x),
        "uniformity_text": uniformity(y),
        "w2_uniformity": w2_uniformity(x, y),
    }
