"""The inter- and intra-modal operators and spectrum statistics.

IsoCLIP (Magistri et al., CVPR 2026), analysis of the projectors and spectral analysis of the
inter-modal operator (poster steps 1 and 3); book notation page, eq-psi, eq-psi-intra,
eq-cos-inter, eq-cos-intra, eq-svd, eq-spectrum, eq-local-spectrum.

With the projectors of :class:`isoclip.Projectors` (paper orientation, W_i [d, d_i],
W_t [d, d_t]) the cosine similarities of pre-projection features are

* inter-modal: ``cos(f, g) = f^T Psi g / (|W_i f| |W_t g|)`` with ``Psi = W_i^T W_t`` [d_i, d_t];
* intra-modal: ``cos(f, f') = f^T Psi_i f' / (|W_i f| |W_i f'|)`` with ``Psi_i = W_i^T W_i``,
  and likewise ``Psi_t = W_t^T W_t`` for text.

Biases are not part of these operators; for a head with biases use
``P.augmented()`` (bias as an extra column, features with a ones column), which is what the
official code does for SigLIP 2 (notation page, eq-augmented).

Everything here is computed in float64.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from isoclip.method.projectors import Projectors

__all__ = [
    "SVD",
    "SpectrumStats",
    "effective_rank",
    "log_slope",
    "normalized_spectrum",
    "projector_fingerprint",
    "psi",
    "psi_image",
    "psi_text",
    "spectrum_stats",
    "svd",
    "svd_for",
    "window_isotropy",
]


def psi(P: Projectors) -> Tensor:
    """Inter-modal operator ``Psi = W_i^T W_t`` [d_i, d_t], float64."""
    return P.W_i.double().T @ P.W_t.double()


def psi_image(P: Projectors) -> Tensor:
    """Intra-modal image operator ``Psi_i = W_i^T W_i`` [d_i, d_i], float64."""
    W = P.W_i.double()
    return W.T @ W


def psi_text(P: Projectors) -> Tensor:
    """Intra-modal text operator ``Psi_t = W_t^T W_t`` [d_t, d_t], float64."""
    W = P.W_t.double()
    return W.T @ W


class SVD(NamedTuple):
    """Thin SVD ``M = U diag(S) V^T`` with ``r = min(rows, cols)``.

    Attributes:
        U: [rows, r] left singular vectors (for Psi: the image pre-projection space).
        S: [r] singular values, non-increasing.
        V: [cols, r] right singular vectors (for Psi: the text pre-projection space).
        source: :func:`projector_fingerprint` of the projectors whose Psi this is, None for
            the SVD of a plain matrix; :func:`svd_for` checks it before the SVD is used with
            projectors.
    """

    U: Tensor
    S: Tensor
    V: Tensor
    source: str | None = None

    @property
    def r(self) -> int:
        return int(self.S.shape[0])


def svd(M: Projectors | Tensor) -> SVD:
    """Thin float64 SVD of ``Psi(P)`` (given :class:`Projectors`) or of a given matrix.

    Singular vectors belonging to equal singular values (or to the zero singular values of a
    rank-deficient matrix) are only defined up to a rotation within their subspace. The SVD
    of projectors records their :func:`projector_fingerprint` (``source``).
    """
    mat = psi(M) if isinstance(M, Projectors) else M.double()
    if mat.ndim != 2:
        raise ValueError(f"svd needs a matrix, got shape {tuple(mat.shape)}")
    U, S, Vh = torch.linalg.svd(mat, full_matrices=False)
    source = projector_fingerprint(M) if isinstance(M, Projectors) else None
    return SVD(U=U, S=S, V=Vh.mT, source=source)


def projector_fingerprint(P: Projectors) -> str:
    """Identity of the weights ``W_i, W_t`` of ``P`` (blake2b of their float64 values and
    shapes): equal for ``P`` and ``P.double()``, different as soon as one weight differs.
    Biases are left out, as they are not part of Psi."""
    h = hashlib.blake2b(digest_size=16)
    for W in (P.W_i, P.W_t):
        w = W.detach().to("cpu", torch.float64).contiguous()
        h.update(str(tuple(w.shape)).encode())
        h.update(w.numpy().tobytes())
    return h.hexdigest()


def svd_for(P: Projectors, dec: SVD | None = None) -> SVD:
    """``svd(P)``, or ``dec`` once it is checked to be the SVD of ``Psi(P)``.

    A ``dec`` computed by ``svd(P)`` (same weights, any dtype) is recognised by its
    ``source`` fingerprint. Any other ``dec`` (of other projectors, or of a plain matrix) is
    accepted only if it reconstructs ``Psi(P)``: ``|U diag(S) V^T - Psi| <= 1e-6 |Psi|``
    (Frobenius norms), which also admits projectors that differ from ``P`` only by a rotation
    of the shared space.

    Raises:
        ValueError: ``dec`` does not fit ``P`` (shapes), or is the SVD of another Psi; the
            message gives the relative reconstruction error.
    """
    if dec is None:
        return svd(P)
    if dec.U.shape[0] != P.d_i or dec.V.shape[0] != P.d_t:
        raise ValueError(f"dec: SVD with U {tuple(dec.U.shape)}, V {tuple(dec.V.shape)} does "
                         f"not match projectors with d_i={P.d_i}, d_t={P.d_t}")
    if dec.source is not None and dec.source == projector_fingerprint(P):
        return dec
    M = psi(P)
    err = float(torch.linalg.norm((dec.U.double() * dec.S.double()) @ dec.V.double().T - M))
    rel = err / max(float(torch.linalg.norm(M)), torch.finfo(torch.float64).tiny)
    if not rel <= 1e-6:
        what = "a plain matrix" if dec.source is None else "other projectors"
        raise ValueError(
            f"dec: not the SVD of these projectors (it was computed from {what}; "
            f"|U S V^T - Psi(P)| / |Psi(P)| = {rel:.3g}). Pass svd(P) of the same projectors, "
            "or None.")
    return dec


def normalized_spectrum(S: Tensor) -> Tensor:
    """``sigma_j / sigma_1`` [r] (the y-axis of the paper's spectrum figure)."""
    S = S.double()
    return S / S[0]


def effective_rank(S: Tensor) -> float:
    """Effective rank ``exp(H(p))`` with ``p_j = sigma_j / sum_k sigma_k`` (Roy & Vetterli 2007).

    Equals r for a perfectly flat spectrum and 1 for a rank-one matrix.
    """
    S = S.double()
    p = S / S.sum()
    p = p[p > 0]
    return math.exp(float(-(p * p.log()).sum()))


def _check_window(S: Tensor, window: int) -> None:
    if not 2 <= window <= S.shape[0]:
        raise ValueError(f"window must be in [2, r={S.shape[0]}], got {window}")


def _safe_log(S: Tensor) -> Tensor:
    # zero singular values are clamped to sigma_1 * eps(float64) to keep logs finite
    S = S.double()
    return S.clamp_min(S[0] * torch.finfo(torch.float64).eps).log()


def log_slope(S: Tensor, window: int) -> Tensor:
    """Local slope of ``log sigma_j`` against j: least-squares fit over each window.

    ``out[j]`` is the slope over indices ``j, ..., j + window - 1`` (length ``r - window + 1``);
    plot it at the window centre ``j + (window - 1) / 2``. Units: nats per index. Since S is
    non-increasing the slope is <= 0; a flat (isotropic) band has slope near 0 and the steep
    top/bottom bands have large negative slopes. Zero singular values are clamped to
    ``sigma_1 * 2.2e-16``.
    """
    _check_window(S, window)
    y = _safe_log(S).unfold(0, window, 1)  # [r - w + 1, w]
    x = torch.arange(window, dtype=torch.float64)
    xc = x - x.mean()
    return (y - y.mean(dim=1, keepdim=True)) @ xc / (xc @ xc)


def window_isotropy(S: Tensor, window: int) -> Tensor:
    """``sigma_min / sigma_max`` within each window: ``out[j] = sigma_{j+w-1} / sigma_j``.

    In (0, 1] (0 where the window reaches zero singular values); 1 means the operator
    scales all ``window`` directions equally (perfectly isotropic). Length ``r - window + 1``.
    """
    _check_window(S, window)
    S = S.double()
    top, bottom = S[: S.shape[0] - window + 1], S[window - 1:]
    ratio = bottom / top.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(top > 0, ratio, torch.zeros((), dtype=torch.float64))


@dataclass(frozen=True, eq=False)
class SpectrumStats:
    """Statistics of a spectrum for locating the flat middle band.

    Attributes:
        S: [r] singular values (float64, non-increasing).
        normalized: [r] ``sigma_j / sigma_1``.
        effective_rank: see :func:`effective_rank`.
        window: the window length of the local measures.
        log_slope: [r - window + 1] see :func:`log_slope`.
        isotropy: [r - window + 1] see :func:`window_isotropy`.
    """

    S: Tensor
    normalized: Tensor
    effective_rank: float
    window: int
    log_slope: Tensor
    isotropy: Tensor

    @property
    def window_centers(self) -> Tensor:
        """[r - window + 1] index of each window's centre, for plotting the local measures."""
        n = self.S.shape[0] - self.window + 1
        return torch.arange(n, dtype=torch.float64) + (self.window - 1) / 2


def spectrum_stats(S: Tensor, window: int = 32) -> SpectrumStats:
    """All statistics of a spectrum ``S`` [r] (e.g. ``svd(P).S``); ``window`` is clipped to r."""
    S = S.double()
    w = min(window, int(S.shape[0]))
    return SpectrumStats(S=S, normalized=normalized_spectrum(S), effective_rank=effective_rank(S),
                         window=w, log_slope=log_slope(S, w), isotropy=window_isotropy(S, w))
