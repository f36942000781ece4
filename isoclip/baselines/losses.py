"""Training losses of the variants that attack the modality gap at training time.

Every function takes the *raw* image and text embeddings ``x``, ``y`` [B, d] of a batch of B
pairs and L2-normalises them first, as the official code does (open_clip returns normalised
features to its losses; ModGap normalises before its losses). Pair ``i`` is ``(x_i, y_i)``.

- :func:`clip_loss` — CLIP's symmetric InfoNCE ½[CE(λXYᵀ) + CE(λYXᵀ)] (Radford et al. 2021;
  IsoCLIP's L_CLIP; book notation page, eq-clip-loss). Re-exported by
  :mod:`isoclip.training.trainer`.
- :func:`imsep_loss` — AlignCLIP's CLIP + intra-modality separation loss (Eslami & de Melo,
  ICLR 2025, ``align_clip/loss.py`` ``ClipInModalityLoss``, l.135-273; notation page,
  eq-semantic-distance, eq-imsep).
- :func:`alignment_loss` (L_ATP), :func:`centroid_uniformity_loss` (L_CU),
  :func:`atp_cu_weights` and :func:`atp_cu_loss` — "Closing the Modality Gap Aligns
  Group-Wise Semantics" (Grassucci, Cicchetti et al., ICLR 2026; ModGap ``losses.py``
  l.8-31 and l.146-230, ``main.py`` EXP 10, ``config.yaml``; notation page, eq-atp, eq-cu,
  eq-atp-cu).
"""

from __future__ import annotations

from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "IMSEP_MODALITIES",
    "alignment_loss",
    "atp_cu_loss",
    "atp_cu_weights",
    "centroid_uniformity_loss",
    "clip_loss",
    "imsep_loss",
    "semantic_distance",
]

#: Which modalities IMSep separates (AlignCLIP's ``--separate_image`` / ``--separate_text``).
IMSEP_MODALITIES = ("image", "text", "both")
ImsepModalities = Literal["image", "text", "both"]


def clip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE ½(CE(s·x yᵀ) + CE(s·y xᵀ)) on L2-normalised features [B, d]."""
    x = F.normalize(image_features, dim=-1)
    y = F.normalize(text_features, dim=-1)
    logits = logit_scale * x @ y.T
    target = torch.arange(x.shape[0], device=x.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def semantic_distance(semantic_features: Tensor) -> Tensor:
    """AlignCLIP's semantic distance D = 1 − ŝŝᵀ [B, B] (ŝ: L2-normalised rows of [B, k]).

    ``D_kk = 0``: a sample is never separated from itself; samples with the same semantics
    (D = 0) are not pushed apart at all.
    """
    s = F.normalize(semantic_features, dim=-1)
    return 1.0 - s @ s.T


def imsep_loss(image_features: Tensor, text_features: Tensor, semantic_features: Tensor,
               logit_scale: Tensor, *, alpha: float = 1.0, beta: float = 0.5,
               modalities: ImsepModalities = "image") -> dict[str, Tensor]:
    """AlignCLIP's loss: α·L_CLIP (no ½) + β·L_IMSep with semantic supervision.

    With x̂, ŷ the normalised image and text rows, λ = ``logit_scale`` and
    D = :func:`semantic_distance` (``semantic_features``)::

        I = (X̂X̂ᵀ) ∘ D + diag(x̂_kᵀŷ_k)      image separation logits
        T = (ŶŶᵀ) ∘ D + diag(x̂_kᵀŷ_k)      text separation logits
        L_IMSep = CE(λI) [+ CE(λT)]          (rows; target: the diagonal)
        total = α[CE(λX̂Ŷᵀ) + CE(λŶX̂ᵀ)] + β·L_IMSep

    exactly as ``ClipInModalityLoss.forward`` with ``nl_semantic_supervision`` (l.227-272):
    the CLIP term carries **no ½** (unlike open_clip's ``ClipLoss``), and the diagonal of
    ``(X̂X̂ᵀ) ∘ D`` (zero, since D_kk = 0) is replaced by the paired cross-modal cosine, so an
    image must be closer to its own caption than to any semantically *different* image.

    Args:
        image_features, text_features: [B, d] raw embeddings (normalised here).
        semantic_features: [B, k] semantic embeddings of the captions (normalised here); the
            official code uses SBERT ``all-mpnet-base-v2``.
        logit_scale: λ = exp(model.logit_scale), a scalar tensor.
        alpha, beta: weights (official defaults α = 1, β = 0.5).
        modalities: ``"image"`` (``--separate_image`` only: the paper's equation and
            figure), ``"text"`` (``--separate_text`` only: the class default of
            ``ClipInModalityLoss``) or ``"both"`` (the README's training command sets both
            ``--separate_image`` and ``--separate_text``, while the paper's equation and figure
            separate images only; which one produced the paper's numbers was not checked).

    Returns:
        ``{"total", "clip", "imsep"}`` scalar tensors (``clip`` and ``imsep`` already weighted).

    Raises:
        ValueError: ``modalities`` not one of :data:`IMSEP_MODALITIES`, or shapes that do not
            pair up.
    """
    if modalities not in IMSEP_MODALITIES:
        raise ValueError(f"modalities: expected one of {IMSEP_MODALITIES}, got {modalities!r}")
    if semantic_features.ndim != 2 or semantic_features.shape[0] != image_features.shape[0]:
        raise ValueError(f"semantic_features: expected [B={image_features.shape[0]}, k], got "
                         f"{tuple(semantic_features.shape)}")
    x = F.normalize(image_features, dim=-1)
    y = F.normalize(text_features, dim=-1)
    n = x.shape[0]
    target = torch.arange(n, device=x.device)
    dist = semantic_distance(semantic_features.to(x.dtype))
    paired = torch.diag((x * y).sum(-1))
    terms = []
    if modalities in ("text", "both"):
        terms.append(F.cross_entropy(logit_scale * ((y @ y.T) * dist + paired), target))
    if modalities in ("image", "both"):
        terms.append(F.cross_entropy(logit_scale * ((x @ x.T) * dist + paired), target))
    imsep = beta * cast(Tensor, sum(terms))  # terms is not empty: modalities was checked
    logits = logit_scale * x @ y.T
    clip = alpha * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    return {"total": clip + imsep, "clip": clip, "imsep": imsep}


def alignment_loss(image_features: Tensor, text_features: Tensor) -> Tensor:
    """L_ATP, "align true pairs": mean_i ‖x̂_i − ŷ_i‖²₂ (ModGap ``lalign_loss``, α = 2).

    For unit vectors this is 2 − 2·mean_i cos(x_i, y_i).
    """
    x = F.normalize(image_features, dim=-1)
    y = F.normalize(text_features, dim=-1)
    loss: Tensor = (x - y).norm(dim=1).pow(2).mean()
    return loss


def centroid_uniformity_loss(image_features: Tensor, text_features: Tensor,
                             t: float = 2.0) -> Tensor:
    """L_CU, "centroid uniformity": log mean_{i<j} exp(−t‖μ_i − μ_j‖²), t = 2.

    μ_i = normalize((x̂_i + ŷ_i)/2) is pair i's centroid **renormalised to the sphere**
    (ModGap ``compute_centroids_only`` + ``F.normalize``, then ``lunif_loss`` over
    ``torch.pdist`` pairs: Wang & Isola's uniformity). The project page's form
    log((1/N)Σ_i Σ_{j≠i} …) differs by the additive constant log(N − 1).
    """
    x = F.normalize(image_features, dim=-1)
    y = F.normalize(text_features, dim=-1)
    mu = F.normalize((x + y) / 2.0, dim=-1)
    return torch.pdist(mu, p=2).pow(2).mul(-t).exp().mean().log()


def atp_cu_weights(step: int, total_steps: int) -> tuple[float, float]:
    """(α(t), β(t)) of the released ModGap schedule at 0-based ``step`` of ``total_steps``.

    One "epoch" is ``total_steps / 100`` steps (the released code, ``losses.py`` l.8-31, assumes
    100 epochs):

    - β (on L_CU) = 1 before epoch 20, then falls linearly to 0 at epoch 70, then 0
      (``get_beta(warmup_epoch=20, decay_epoch=50)``);
    - α (on L_ATP) = 1 before epoch 50, then rises linearly to 2 at epoch 100
      (``get_alpha(warmup_epoch=50, increment_epoch=50)``; ``config.yaml``).

    The divisions use ``max(1, ·)`` as the official code does.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps: expected a positive int, got {total_steps}")
    e = total_steps / 100.0

    def ramp(warm: float, span: float) -> float:
        if step < warm * e:
            return 0.0
        if step < (warm + span) * e:
            return float(step - warm * e) / float(max(1.0, span * e))
        return 1.0

    return 1.0 + ramp(50, 50), 1.0 - ramp(20, 50)


def atp_cu_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor,
                step: int, total_steps: int) -> dict[str, Tensor]:
    """ModGap's released loss: ½[CE + CE] + α(t)·L_ATP + β(t)·L_CU (``main.py`` EXP 10).

    The contrastive term is :func:`clip_loss` (ModGap ``contrastive_loss`` averages the two
    directions); the official run fixes τ = 0.1, i.e. ``logit_scale`` = 10.

    Returns:
        ``{"total", "clip", "atp", "cu", "alpha", "beta"}`` (``atp`` and ``cu`` unweighted).
    """
    alpha, beta = atp_cu_weights(step, total_steps)
    clip = clip_loss(image_features, text_features, logit_scale)
    atp = alignment_loss(image_features, text_features)
    cu = centroid_uniformity_loss(image_features, text_features)
    total = clip + alpha * atp + beta * cu
    return {"total": total, "clip": clip, "atp": atp, "cu": cu,
            "alpha": torch.tensor(alpha), "beta": torch.tensor(beta)}
