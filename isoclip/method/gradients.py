"""Why CLIP training leaves intra-modal geometry unshaped: the gradient split.

IsoCLIP (Magistri et al., CVPR 2026), analysis of the CLIP loss gradient (poster step 2); book
notation page, eq-clip-loss, eq-dl-dcos, eq-grad-features, eq-grad-weights.

Notation (paper orientation, features as rows): ``f_i`` [d_i] image and ``g_t`` [d_t] text
pre-projection features of a batch of N pairs, ``u_i = W_i f_i``, ``v_t = W_t g_t``,
``a_i = |u_i|``, ``b_t = |v_t|``. The IsoCLIP poster writes the cosine as

    C_it = cos(f_i, g_t) = f_i^T Psi g_t / (a_i b_t),      Psi = W_i^T W_t        (poster, step 1)

and the symmetric CLIP loss with temperature tau as ``L = (L_i2t + L_t2i) / 2``, where
``L_i2t = mean_i CE(softmax_t(C_it / tau), i)`` and ``L_t2i`` is the same over columns
(open_clip ``ClipLoss`` with ``logit_scale = 1 / tau``). With ``G_it = dL/dC_it``,

    G = [(P - I) + (Q - I)] / (2 N tau),  P = softmax over t (rows), Q = softmax over i (columns)

(``(P - I)/(N tau)`` for ``L_i2t`` alone, ``(Q - I)/(N tau)`` for ``L_t2i`` alone) and, from
``dC_it/df_i = Psi g_t / (a_i b_t) - C_it Psi_i f_i / a_i^2``,

::

    dL/df_i = sum_t alpha_it Psi g_t     -  s_i  Psi_i f_i / a_i^2
              (alignment term, via Psi)     (normalization term, via Psi_i = W_i^T W_i)
    alpha_it = G_it / (a_i b_t),  s_i = sum_t G_it C_it.

For ``L_i2t`` alone this is the poster's ``dL_i2t/df_i ~ alpha_{t,i} Psi g_t - s_t Psi_i f_i /
|W_i f_i|^2`` with exact coefficients derived here (times 1/N from the batch mean; the poster gives
the form, not the coefficients). In the symmetric loss the ``L_t2i`` half (through Q) contributes to
``dL/df_i`` too. Text is symmetric: ``dL/dg_t = sum_i alpha_it Psi^T f_i - s'_t Psi_t g_t / b_t^2``
with ``s'_t = sum_i G_it C_it``. Psi_i enters only through the normalization term, which is
parallel to ``Psi_i f_i`` (the poster's message: "CLIP is trained via Psi, but intra-modal
tasks depend on Psi_i").

For the weights (from ``dC/dW_i = (v_hat - C u_hat) f^T / a``, derived here):

    dL/dW_i = W_t sum_it alpha_it g_t f_i^T   -  W_i sum_i (s_i / a_i^2) f_i f_i^T
    dL/dW_t = W_i sum_it alpha_it f_i g_t^T   -  W_t sum_t (s'_t / b_t^2) g_t g_t^T

Projectors must be bias-free here (the cosine decomposition needs ``u = W_i f``); for a head
with biases use ``P.augmented()`` with ``augment_features``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from isoclip.method.operator import psi, psi_image, psi_text
from isoclip.method.projectors import Projectors

__all__ = [
    "CosineDecomposition",
    "Direction",
    "FeatureGradients",
    "WeightGradients",
    "clip_loss_from_projectors",
    "cosine_decomposition",
    "feature_gradients",
    "gradient_term_norms",
    "weight_gradients",
]

#: Which part of the CLIP loss: the symmetric loss, or one of its two cross-entropy halves.
Direction = Literal["symmetric", "image_to_text", "text_to_image"]


def _check(P: Projectors, f: Tensor, g: Tensor) -> None:
    if P.b_i is not None or P.b_t is not None:
        raise ValueError("the Psi decomposition needs bias-free projectors; use P.augmented() "
                         "with isoclip.augment_features(f), augment_features(g)")
    if f.ndim != 2 or f.shape[1] != P.d_i or g.ndim != 2 or g.shape[1] != P.d_t:
        raise ValueError(f"expected f [N, {P.d_i}] and g [M, {P.d_t}], got {tuple(f.shape)} "
                         f"and {tuple(g.shape)}")


@dataclass(frozen=True, eq=False)
class CosineDecomposition:
    """``cos = numerator / (image_norms[:, None] * text_norms[None, :])`` (float64).

    Attributes:
        numerator: [N, M] ``f_i^T Psi g_t``.
        image_norms: [N] ``|W_i f_i|``.
        text_norms: [M] ``|W_t g_t|``.
    """

    numerator: Tensor
    image_norms: Tensor
    text_norms: Tensor

    @property
    def cos(self) -> Tensor:
        """[N, M] cosine similarities."""
        return self.numerator / (self.image_norms[:, None] * self.text_norms[None, :])


def cosine_decomposition(P: Projectors, f: Tensor, g: Tensor) -> CosineDecomposition:
    """The poster's ``cos(f, g) = f^T Psi g / (|W_i f| |W_t g|)`` for all pairs, float64.

    Args:
        P: bias-free projectors.
        f: [N, d_i] image pre-projection features.
        g: [M, d_t] text pre-projection features.
    """
    _check(P, f, g)
    f, g = f.double(), g.double()
    return CosineDecomposition(
        numerator=f @ psi(P) @ g.T,
        image_norms=(f @ P.W_i.double().T).norm(dim=1),
        text_norms=(g @ P.W_t.double().T).norm(dim=1),
    )


def clip_loss_from_projectors(P: Projectors, f: Tensor, g: Tensor, tau: float,
                              direction: Direction = "symmetric") -> Tensor:
    """CLIP InfoNCE loss of N paired *pre-projection* features (``f[k]`` matches ``g[k]``)
    through the projectors ``P``, like open_clip's ``ClipLoss``.

    ``logits = cos(W_i f + b_i, W_t g + b_t) / tau``; ``image_to_text`` = mean cross-entropy
    over rows, ``text_to_image`` over columns, ``symmetric`` = their average. Differentiable
    (autograd) in f, g and the projector tensors; computed in their dtype. The training loss
    on already projected embeddings is :func:`isoclip.baselines.losses.clip_loss`; this one
    exposes the projectors, whose gradients :func:`feature_gradients` and
    :func:`weight_gradients` split.
    """
    u = F.normalize(P.project_image(f), dim=-1)
    v = F.normalize(P.project_text(g), dim=-1)
    logits = u @ v.T / tau
    target = torch.arange(logits.shape[0], device=logits.device)
    if direction == "image_to_text":
        return F.cross_entropy(logits, target)
    if direction == "text_to_image":
        return F.cross_entropy(logits.T, target)
    if direction == "symmetric":
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    raise ValueError(f"direction must be one of {get_args(Direction)}, got {direction!r}")


def _dloss_dcos(cos: Tensor, tau: float, direction: Direction) -> Tensor:
    """``G = dL/dC`` [N, N] for the chosen loss (see the module docstring)."""
    n = cos.shape[0]
    if cos.shape[1] != n:
        raise ValueError(f"the CLIP loss needs N paired features, got a {tuple(cos.shape)} batch")
    eye = torch.eye(n, dtype=cos.dtype, device=cos.device)
    row = (torch.softmax(cos / tau, dim=1) - eye) / (n * tau)
    col = (torch.softmax(cos / tau, dim=0) - eye) / (n * tau)
    if direction == "image_to_text":
        return row
    if direction == "text_to_image":
        return col
    if direction == "symmetric":
        return 0.5 * (row + col)
    raise ValueError(f"direction must be one of {get_args(Direction)}, got {direction!r}")


@dataclass(frozen=True, eq=False)
class _Coefficients:
    cd: CosineDecomposition
    alpha: Tensor  # [N, N] alpha_it = G_it / (a_i b_t)
    s_image: Tensor  # [N] s_i = sum_t G_it C_it
    s_text: Tensor  # [N] s'_t = sum_i G_it C_it


def _coefficients(P: Projectors, f: Tensor, g: Tensor, tau: float,
                  direction: Direction) -> _Coefficients:
    _check(P, f, g)
    cd = cosine_decomposition(P, f, g)
    cos = cd.cos
    G = _dloss_dcos(cos, tau, direction)
    return _Coefficients(cd=cd, alpha=G / (cd.image_norms[:, None] * cd.text_norms[None, :]),
                         s_image=(G * cos).sum(dim=1), s_text=(G * cos).sum(dim=0))


@dataclass(frozen=True, eq=False)
class _SplitGradient:
    """An image and a text gradient, each the sum of an alignment and a normalization term."""

    image_alignment: Tensor
    image_normalization: Tensor
    text_alignment: Tensor
    text_normalization: Tensor

    @property
    def image(self) -> Tensor:
        """The full image-side gradient (alignment + normalization)."""
        return self.image_alignment + self.image_normalization

    @property
    def text(self) -> Tensor:
        """The full text-side gradient (alignment + normalization)."""
        return self.text_alignment + self.text_normalization


@dataclass(frozen=True, eq=False)
class FeatureGradients(_SplitGradient):
    """Gradient of the CLIP loss w.r.t. the pre-projection features, split by operator (float64).

    Attributes:
        image_alignment: [N, d_i] ``sum_t alpha_it Psi g_t``.
        image_normalization: [N, d_i] ``-s_i Psi_i f_i / |W_i f_i|^2``.
        text_alignment: [N, d_t] ``sum_i alpha_it Psi^T f_i``.
        text_normalization: [N, d_t] ``-s'_t Psi_t g_t / |W_t g_t|^2``.
        image, text: [N, d_i] full ``dL/df``, [N, d_t] full ``dL/dg``.
    """


def feature_gradients(P: Projectors, f: Tensor, g: Tensor, tau: float,
                      direction: Direction = "symmetric") -> FeatureGradients:
    """``dL/df`` and ``dL/dg`` split into Psi (alignment) and Psi_i / Psi_t (normalization) terms.

    Implements the poster's gradient ``dL_i2t/df_i ~ alpha Psi g_t - s Psi_i f_i/|W_i f_i|^2`` with
    the exact coefficients derived in the module docstring, extended to the symmetric loss (notation
    page, eq-grad-features). The terms sum to autograd's gradient of
    :func:`clip_loss_from_projectors`.

    Args:
        P: bias-free projectors.
        f: [N, d_i], g: [N, d_t] paired pre-projection features.
        tau: temperature (``1 / logit_scale``).
        direction: symmetric loss (default) or one of its halves.
    """
    c = _coefficients(P, f, g, tau, direction)
    f, g = f.double(), g.double()
    Psi = psi(P)
    return FeatureGradients(
        image_alignment=(c.alpha @ g) @ Psi.T,
        image_normalization=-(c.s_image / c.cd.image_norms ** 2)[:, None] * (f @ psi_image(P)),
        text_alignment=(c.alpha.T @ f) @ Psi,
        text_normalization=-(c.s_text / c.cd.text_norms ** 2)[:, None] * (g @ psi_text(P)),
    )


@dataclass(frozen=True, eq=False)
class WeightGradients(_SplitGradient):
    """Gradient of the CLIP loss w.r.t. the projectors, split like the feature gradient (float64).

    Attributes:
        image_alignment: [d, d_i] ``W_t sum_it alpha_it g_t f_i^T``.
        image_normalization: [d, d_i] ``-W_i sum_i (s_i / |W_i f_i|^2) f_i f_i^T``.
        text_alignment: [d, d_t] ``W_i sum_it alpha_it f_i g_t^T``.
        text_normalization: [d, d_t] ``-W_t sum_t (s'_t / |W_t g_t|^2) g_t g_t^T``.
        image, text: [d, d_i] full ``dL/dW_i``, [d, d_t] full ``dL/dW_t``.
    """


def weight_gradients(P: Projectors, f: Tensor, g: Tensor, tau: float,
                     direction: Direction = "symmetric") -> WeightGradients:
    """``dL/dW_i`` and ``dL/dW_t`` split into alignment and normalization (radial) terms.

    From ``dcos/dW_i = (v_hat - cos u_hat) f^T / |u|`` (notation page, eq-grad-weights; the paper's
    own dL/dW was not checked). The terms sum to autograd's gradient of
    :func:`clip_loss_from_projectors`. Arguments as in :func:`feature_gradients`.
    """
    c = _coefficients(P, f, g, tau, direction)
    f, g = f.double(), g.double()
    W_i, W_t = P.W_i.double(), P.W_t.double()
    cross = g.T @ c.alpha.T @ f  # [d_t, d_i] sum_it alpha_it g_t f_i^T
    return WeightGradients(
        image_alignment=W_t @ cross,
        image_normalization=-W_i @ (f.T * (c.s_image / c.cd.image_norms ** 2)) @ f,
        text_alignment=W_i @ cross.T,
        text_normalization=-W_t @ (g.T * (c.s_text / c.cd.text_norms ** 2)) @ g,
    )


def gradient_term_norms(P: Projectors, f: Tensor, g: Tensor, tau: float,
                        direction: Direction = "symmetric") -> dict[str, float]:
    """Frobenius norms of every gradient term for one batch (e.g. to plot over checkpoints).

    Keys: ``{image,text}_feature_{alignment,normalization,total}`` (norm over the whole
    [N, d_i] / [N, d_t] batch gradient) and ``W_{i,t}_{alignment,normalization,total}``.
    """
    fg = feature_gradients(P, f, g, tau, direction)
    wg = weight_gradients(P, f, g, tau, direction)
    out: dict[str, float] = {}
    for prefix, grads in (("image_feature", (fg.image_alignment, fg.image_normalization)),
                          ("text_feature", (fg.text_alignment, fg.text_normalization)),
                          ("W_i", (wg.image_alignment, wg.image_normalization)),
                          ("W_t", (wg.text_alignment, wg.text_normalization))):
        align, norm = grads
        out[f"{prefix}_alignment"] = float(align.norm())
        out[f"{prefix}_normalization"] = float(norm.norm())
        out[f"{prefix}_total"] = float((align + norm).norm())
    return out
