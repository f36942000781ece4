"""Spectral band selection: IsoCLIP's isotropic projectors (Magistri et al., CVPR 2026, spectral
selection and IsoCLIP projectors, poster step 3; official ``src/retrieval.py`` ``apply_iso``;
book notation page, eq-band, eq-iso-projectors).

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
pass ``P.augmented()`` and feed ``augment_features(f)`` (notation page, eq-augmented).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from torch import Tensor

from isoclip.method.operator import SVD, svd_for
from isoclip.method.projectors import Projectors

#: The official per-backbone bands (k_top, k_bottom) of the IsoCLIP scripts, with the rank r of
#: Psi they apply to (official ``exp_img-img_retrieval/*.sh``, ``exp_txt-txt_retrieval/*.sh``).
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
    ("PE-Core-B-16", "meta", "image"): (300, 50, 768),
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
        kept: int = s.stop - s.start
        return kept


def band_basis(dec: SVD, band: Band) -> tuple[Tensor, Tensor]:
    """``(U_S [d_i, k], V_S [d_t, k])``: the kept singular vectors, k = r - k_top - k_bottom.

    ``dec`` is taken as given; to use it with projectors ``P``, obtain it from
    ``svd_for(P, dec)`` (as :func:`iso_projectors` does), which refuses the SVD of other
    projectors."""
    s = band.indices(dec.r)
    return dec.U[:, s], dec.V[:, s]


def iso_projectors(P: Projectors, band: Band, dec: SVD | None = None) -> Projectors:
    """IsoCLIP projectors ``W_i U_S U_S^T`` and ``W_t V_S V_S^T`` for ``band``.

    Args:
        P: the model's projectors (e.g. ``get_projectors(model)``; ``P.augmented()`` for the
            official SigLIP treatment of biases).
        band: which singular directions of Psi to drop.
        dec: ``svd(P)`` if already computed (checked by :func:`isoclip.method.operator.svd_for`:
            the SVD of other projectors is refused).

    Returns:
        Projectors with the same shapes, biases and dtype as ``P`` (computed in float64).

    Raises:
        ValueError: ``k_top + k_bottom >= r``, or ``dec`` is not the SVD of ``psi(P)``.
    """
    dec = svd_for(P, dec)
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


__all__ = ["PAPER_BANDS", "Band", "band_basis", "iso_projectors", "paper_scaled_band"]
