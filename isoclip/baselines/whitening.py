"""Training-free baselines and controls for intra-modal retrieval (IsoCLIP's ablations; book
notation page, eq-controls).

Every *transform* here maps pre-projection features of a query set and a gallery of the
same modality to the features whose cosine similarity ranks the gallery:

    transform(query [Nq, k], gallery [Ng, k]) -> (query' [Nq, m], gallery' [Ng, m])

(k = d_i for images, d_t for texts), so each composes with any cosine-based retrieval
evaluator, e.g. ``isoclip.evaluate.retrieval.evaluate(*transform(f_q, f_g), y_q, y_g)``.
Features are returned unnormalised, in the input dtype; statistics are computed in float64.
:func:`ablation_transforms` assembles the chapter-10 table:

==========================  =================================================================
name                        features compared by cosine
==========================  =================================================================
``clip``                    CLIP embeddings ``W f + b`` (= IsoCLIP with the full band (0, 0))
``pre_projection``          f itself (no projector)
``mean_centred``            ``W f + b`` minus the gallery mean (:func:`mean_center`)
``zca``                     ``W f + b`` ZCA-whitened with gallery statistics (:func:`zca_whiten`)
``drop_top_only``           IsoCLIP band ``(k_top, 0)``
``drop_bottom_only``        IsoCLIP band ``(0, k_bottom)``
``random_band``             ``W Q Q^T f + b``, Q a random orthonormal basis of the band's width
                            (:func:`random_band_projectors`)
``isoclip``                 IsoCLIP band ``(k_top, k_bottom)`` (``bands.iso_projectors``)
==========================  =================================================================

Choices (the IsoCLIP paper's versions of these ablations were not checked; these are ours):

* Centering and whitening act on the CLIP embeddings (the space where CLIP's similarity is
  computed), with the gallery's statistics (our choice); both query and gallery are transformed with
  the same statistics. "Per modality" means image features are centred/whitened with image
  statistics and text features with text statistics, never pooled across modalities.
* Random band: IsoCLIP keeps the span of ``r - k_top - k_bottom`` singular vectors of Psi.
  The control keeps a span of the same dimension drawn uniformly at random (Haar measure on
  the Grassmannian) in the pre-projection space of the modality, independently of Psi;
  see :func:`random_orthonormal_basis`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from isoclip.common.types import Modality, check_modality
from isoclip.method.bands import Band, iso_projectors
from isoclip.method.projectors import Projectors

__all__ = [
    "ZCA_EPS",
    "Transform",
    "Whitening",
    "ablation_transforms",
    "fit_zca",
    "mean_center",
    "pre_projection",
    "projected",
    "random_band_projectors",
    "random_orthonormal_basis",
    "zca_whiten",
]

#: A transform of (query [Nq, k], gallery [Ng, k]) into features compared by cosine.
Transform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

#: Default ridge of :func:`fit_zca`, relative to the mean covariance eigenvalue.
ZCA_EPS = 1e-5


def _check_features(name: str, x: Tensor, dim: int | None = None) -> None:
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] == 0 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected a non-empty floating tensor [N, k], got {shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name}: expected feature dimension {dim}, got {x.shape[1]}")


def _check_pair(query: Tensor, gallery: Tensor) -> None:
    _check_features("gallery", gallery)
    _check_features("query", query, gallery.shape[1])


# ---------------------------------------------------------------------------------------------
# centering and whitening

def mean_center(query: Tensor, gallery: Tensor) -> tuple[Tensor, Tensor]:
    """Subtract the gallery mean from both sets: [Nq, k], [Ng, k] -> same shapes.

    Removes the shared offset of one modality's cone (Liang et al. 2022, Sec. 2.1), which
    dominates raw cosine similarities.
    """
    _check_pair(query, gallery)
    mu = gallery.double().mean(dim=0)
    return (query.double() - mu).to(query.dtype), (gallery.double() - mu).to(gallery.dtype)


@dataclass(frozen=True, eq=False)
class Whitening:
    """A fitted ZCA whitening ``x -> (x - mean) @ W`` (W symmetric).

    Attributes:
        mean: [k] float64 mean of the fitting set.
        W: [k, k] float64 ``U diag((lambda + eps * mean(lambda))^-1/2) U^T`` from the
            eigendecomposition ``Sigma = U diag(lambda) U^T`` of the fitting set's covariance.
        eps: the relative ridge used.
    """

    mean: Tensor
    W: Tensor
    eps: float

    def __call__(self, x: Tensor) -> Tensor:
        """[N, k] -> [N, k] whitened, in the dtype of ``x``."""
        _check_features("x", x, self.W.shape[0])
        return ((x.double() - self.mean) @ self.W).to(x.dtype)


def fit_zca(gallery: Tensor, eps: float = ZCA_EPS) -> Whitening:
    """Fit ZCA whitening on ``gallery`` [N, k].

    Covariance ``Sigma = X_c^T X_c / N`` (population normalisation, X_c centred), float64.
    ``eps`` is a ridge *relative to the mean eigenvalue* ``tr(Sigma) / k``: every eigenvalue
    becomes ``lambda + eps * tr(Sigma) / k``, which makes the transform invariant to the scale
    of the features and bounded in rank-deficient directions (N <= k, or features confined to
    a subspace, where it amplifies by at most ``(eps * tr(Sigma) / k)^-1/2``). The whitened
    gallery then has covariance ``diag(lambda / (lambda + eps * tr(Sigma) / k))`` in the
    eigenbasis, i.e. the identity up to ``eps`` relative error on full-rank directions.

    Raises:
        ValueError: bad ``gallery`` shape, fewer than 2 rows, ``eps <= 0``, or a constant
            gallery (zero covariance).
    """
    _check_features("gallery", gallery)
    if gallery.shape[0] < 2:
        raise ValueError(f"gallery: need >= 2 rows to estimate a covariance, got "
                         f"{gallery.shape[0]}")
    if not eps > 0:
        raise ValueError(f"eps: expected > 0, got {eps!r}")
    x = gallery.double()
    mean = x.mean(dim=0)
    xc = x - mean
    cov = xc.T @ xc / x.shape[0]
    lam, U = torch.linalg.eigh(cov)
    lam = lam.clamp_min(0.0)
    ridge = eps * lam.mean()
    if not ridge > 0:
        raise ValueError("gallery: all rows are identical (zero covariance); cannot whiten")
    W = (U * (lam + ridge).rsqrt()) @ U.T
    return Whitening(mean=mean, W=W, eps=float(eps))


def zca_whiten(query: Tensor, gallery: Tensor, eps: float = ZCA_EPS) -> tuple[Tensor, Tensor]:
    """ZCA-whiten query [Nq, k] and gallery [Ng, k] with the gallery's statistics (see
    :func:`fit_zca` for ``eps``)."""
    _check_pair(query, gallery)
    zca = fit_zca(gallery, eps)
    return zca(query), zca(gallery)


# ---------------------------------------------------------------------------------------------
# random band

def random_orthonormal_basis(dim: int, width: int, seed: int, *,
                             dtype: torch.dtype = torch.float64) -> Tensor:
    """A Haar-random ``dim x width`` matrix with orthonormal columns, seeded.

    QR of a standard Gaussian [dim, width] matrix (float64, CPU generator seeded with
    ``seed``) with the signs of R's diagonal folded into Q, which makes Q exactly
    Haar-distributed (Mezzadri 2007); its span is a uniformly random ``width``-dimensional
    subspace of R^dim.

    Raises:
        ValueError: ``width`` not in [1, dim].
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim: expected an int >= 1, got {dim!r}")
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= dim:
        raise ValueError(f"width: expected an int in [1, dim={dim}], got {width!r}")
    generator = torch.Generator().manual_seed(seed)
    G = torch.randn(dim, width, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    signs = torch.sign(torch.diagonal(R))
    signs[signs == 0] = 1.0
    basis: Tensor = (Q * signs).to(dtype)
    return basis


def random_band_projectors(P: Projectors, band: Band, seed: int) -> Projectors:
    """The random-band control for ``band``: ``W_i Q_i Q_i^T`` and ``W_t Q_t Q_t^T``.

    ``Q_i`` [d_i, m] and ``Q_t`` [d_t, m] are independent :func:`random_orthonormal_basis`
    draws (seeds ``seed`` and ``seed + 1``) with ``m = band.kept(r)``, r = min(d_i, d_t), the
    width of the IsoCLIP band. Biases are kept, as in :func:`isoclip.method.bands.iso_projectors`.

    Raises:
        ValueError: ``k_top + k_bottom >= r``.
    """
    width = band.kept(min(P.d_i, P.d_t))
    Q_i = random_orthonormal_basis(P.d_i, width, seed)
    Q_t = random_orthonormal_basis(P.d_t, width, seed + 1)
    W_i = (P.W_i.double() @ Q_i) @ Q_i.T
    W_t = (P.W_t.double() @ Q_t) @ Q_t.T
    return Projectors(W_i=W_i.to(P.dtype), W_t=W_t.to(P.dtype), b_i=P.b_i, b_t=P.b_t,
                      image_linearized=P.image_linearized)


# ---------------------------------------------------------------------------------------------
# transforms

def projected(P: Projectors, modality: Modality) -> Transform:
    """Transform applying the ``modality`` projector of ``P`` (``f @ W.T + b``) to both sets."""
    check_modality("modality", modality)
    project = P.project_image if modality == "image" else P.project_text
    dim = P.d_i if modality == "image" else P.d_t

    def transform(query: Tensor, gallery: Tensor) -> tuple[Tensor, Tensor]:
        _check_features("gallery", gallery, dim)
        _check_features("query", query, dim)
        return project(query.to(P.dtype)), project(gallery.to(P.dtype))

    return transform


def pre_projection(query: Tensor, gallery: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine on the pre-projection features f directly: both sets returned unchanged."""
    _check_pair(query, gallery)
    return query, gallery


def ablation_transforms(P: Projectors, band: Band, modality: Modality, *, seed: int = 0,
                        eps: float = ZCA_EPS) -> dict[str, Transform]:
    """The baselines and controls of the module table for one modality, in table order.

    Args:
        P: the model's projectors (``isoclip.method.projectors.get_projectors``).
        band: IsoCLIP's band ``(k_top, k_bottom)`` for this modality; it defines the
            ``drop_top_only`` / ``drop_bottom_only`` bands and the random band's width.
        modality: ``"image"`` (features f [N, d_i]) or ``"text"`` (g [N, d_t]).
        seed: seed of the random band.
        eps: relative ridge of the ZCA whitening.

    Raises:
        ValueError: bad ``modality``, or ``band`` leaves nothing (``k_top + k_bottom >= r``).
    """
    clip = projected(P, modality)

    def centred(query: Tensor, gallery: Tensor) -> tuple[Tensor, Tensor]:
        return mean_center(*clip(query, gallery))

    def whitened(query: Tensor, gallery: Tensor) -> tuple[Tensor, Tensor]:
        return zca_whiten(*clip(query, gallery), eps=eps)

    return {
        "clip": clip,
        "pre_projection": pre_projection,
        "mean_centred": centred,
        "zca": whitened,
        "drop_top_only": projected(iso_projectors(P, Band(band.k_top, 0)), modality),
        "drop_bottom_only": projected(iso_projectors(P, Band(0, band.k_bottom)), modality),
        "random_band": projected(random_band_projectors(P, band, seed), modality),
        "isoclip": projected(iso_projectors(P, band), modality),
    }
