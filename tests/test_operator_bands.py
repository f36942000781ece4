"""Psi, its SVD and spectrum statistics; IsoCLIP bands (book notation page, eq-psi, eq-svd,
eq-band, eq-iso-projectors; official ``apply_iso``)."""

from __future__ import annotations

import math

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from isoclip.method.bands import Band, band_basis, iso_projectors
from isoclip.method.operator import (
    effective_rank,
    log_slope,
    normalized_spectrum,
    psi,
    psi_image,
    psi_text,
    spectrum_stats,
    svd,
    window_isotropy,
)
from isoclip.method.projectors import (
    Projectors,
    augment_features,
    encode_image_preproj,
    encode_text_preproj,
    get_projectors,
)
from isoclip.models.loading import register_configs

register_configs()


def apply_iso_reference(W_image: torch.Tensor, W_text: torch.Tensor, k_top: int,
                        k_bottom: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``apply_iso`` (IsoCLIP ``src/retrieval.py`` l.39-66), transcribed.

    ``W_image`` [d, d_i] and ``W_text`` [d, d_t] are the transposed code-convention matrices
    (retrieval.py:140-142); returns ``(W_image_iso [d_i, d], W_text_iso [d_t, d])`` used as
    ``f @ W_image_iso``.
    """
    Psi = W_image.T @ W_text
    U, S, Vh = torch.linalg.svd(Psi, full_matrices=False)
    V = Vh.T
    r = len(S)
    if not k_top + k_bottom < r:
        raise ValueError("k_top + k_bottom must be < r")
    U_k = U[:, k_top:r - k_bottom]
    V_k = V[:, k_top:r - k_bottom]
    W_text_iso = (W_text @ V_k @ V_k.T).T
    W_image_iso = (W_image @ U_k @ U_k.T).T
    return W_image_iso, W_text_iso


def random_projectors(d: int, d_i: int, d_t: int, seed: int = 0, bias: bool = False) -> Projectors:
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    return Projectors(rnd(d, d_i), rnd(d, d_t), rnd(d) if bias else None,
                      rnd(d) if bias else None)


def cos_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


Tiny = tuple[Projectors, torch.Tensor, torch.Tensor]


@pytest.fixture(scope="module")
def tiny() -> Tiny:
    """The tiny config (random init): projectors in float64 and 12 image/text features."""
    torch.manual_seed(0)
    model = open_clip.create_model("isoclip-tiny-vit", pretrained=None).eval()
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(12, 3, 32, 32, generator=gen)
    tokens = torch.randint(1, 1000, (12, model.context_length), generator=gen)
    with torch.no_grad():
        f = encode_image_preproj(model, images).double()
        g = encode_text_preproj(model, tokens).double()
    return get_projectors(model).double(), f, g


# ------------------------------------------------------------------------------ operators / SVD

@pytest.mark.parametrize("dims", [(8, 12, 10), (10, 6, 9), (16, 24, 16)])
def test_svd_of_psi(dims: tuple[int, int, int]) -> None:
    d, d_i, d_t = dims
    P = random_projectors(d, d_i, d_t)
    dec = svd(P)
    r = min(d_i, d_t)
    assert dec.U.shape == (d_i, r) and dec.S.shape == (r,) and dec.V.shape == (d_t, r)
    assert dec.r == r and dec.S.dtype == torch.float64
    assert bool((dec.S[:-1] >= dec.S[1:]).all()), "S must be non-increasing"
    torch.testing.assert_close(dec.U @ torch.diag(dec.S) @ dec.V.T, psi(P))
    torch.testing.assert_close(dec.U.T @ dec.U, torch.eye(r, dtype=torch.float64))
    torch.testing.assert_close(dec.V.T @ dec.V, torch.eye(r, dtype=torch.float64))
    # rank(Psi) <= d: the trailing singular values vanish when d < r
    assert (dec.S[d:] < 1e-10 * dec.S[0]).all()


def test_operators_give_the_cosines(tiny: Tiny) -> None:
    """Poster §3: inter cos = f^T Psi g / (|W_i f||W_t g|), intra cos = f^T Psi_i f' / (...)."""
    P, f, g = tiny
    u, v = P.project_image(f), P.project_text(g)
    nu, nv = u.norm(dim=1), v.norm(dim=1)
    torch.testing.assert_close(f @ psi(P) @ g.T / (nu[:, None] * nv), cos_matrix(u, v))
    torch.testing.assert_close(f @ psi_image(P) @ f.T / (nu[:, None] * nu), cos_matrix(u, u))
    torch.testing.assert_close(g @ psi_text(P) @ g.T / (nv[:, None] * nv), cos_matrix(v, v))
    assert psi(P).shape == (96, 64) and psi_image(P).shape == (96, 96)


# -------------------------------------------------------------------------------------- bands

def test_band_validation() -> None:
    assert Band(3, 4) == Band(np.int64(3), 4)
    assert type(Band(np.int64(3), 4).k_top) is int
    with pytest.raises(ValueError, match="non-negative"):
        Band(-1, 0)
    with pytest.raises(TypeError):
        Band(1.5, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Band(True, 0)
    with pytest.raises(AttributeError):
        Band(1, 2).k_top = 3  # type: ignore[misc]


@pytest.mark.parametrize("band", [Band(0, 0), Band(5, 0), Band(0, 7), Band(10, 20), Band(63, 0)])
def test_kept_directions_and_basis(tiny: Tiny, band: Band) -> None:
    P, _, _ = tiny
    dec = svd(P)
    r = dec.r
    assert r == 64
    U_S, V_S = band_basis(dec, band)
    kept = r - band.k_top - band.k_bottom
    assert band.kept(r) == kept and U_S.shape == (96, kept) and V_S.shape == (64, kept)
    assert torch.equal(U_S, dec.U[:, band.k_top:r - band.k_bottom])
    assert torch.equal(V_S, dec.V[:, band.k_top:r - band.k_bottom])
    S_kept = dec.S[band.indices(r)]
    assert bool((S_kept[:-1] >= S_kept[1:]).all())
    iso = iso_projectors(P, band, dec)
    # the kept directions are untouched, the dropped ones are annihilated
    torch.testing.assert_close(iso.W_i @ U_S, P.W_i @ U_S)
    dropped = torch.cat([dec.U[:, :band.k_top], dec.U[:, r - band.k_bottom:]], dim=1)
    if dropped.shape[1]:
        assert (iso.W_i @ dropped).abs().max() < 1e-10 * P.W_i.abs().max()
    assert torch.linalg.matrix_rank(iso.W_i).item() == kept


@pytest.mark.parametrize("band", [Band(64, 0), Band(0, 64), Band(40, 24), Band(50, 50)])
def test_too_many_dropped_directions_raise(tiny: Tiny, band: Band) -> None:
    P, _, _ = tiny
    with pytest.raises(ValueError, match=r"rank r = 64"):
        iso_projectors(P, band)
    with pytest.raises(ValueError, match=r"rank r = 64"):
        band.kept(64)


def test_band_zero_reproduces_clip(tiny: Tiny) -> None:
    """With W_t of full rank, IsoCLIP(0, 0) is exactly the baseline (notation page,
    eq-iso-similarity)."""
    P, f, g = tiny
    assert torch.linalg.matrix_rank(P.W_t).item() == P.d
    iso = iso_projectors(P, Band(0, 0))
    for project, x in ((("project_image"), f), ("project_text", g)):
        base = getattr(P, project)(x)
        ours = getattr(iso, project)(x)
        assert (cos_matrix(ours, ours) - cos_matrix(base, base)).abs().max() < 1e-12
    assert (iso.W_i - P.W_i).abs().max() < 1e-12 * P.W_i.abs().max()
    assert (cos_matrix(iso.project_image(f), iso.project_text(g))
            - cos_matrix(P.project_image(f), P.project_text(g))).abs().max() < 1e-12


def test_band_zero_needs_full_rank_text_projector() -> None:
    """Counter-example: rank(W_t) < d leaves part of row(W_i) outside col(Psi)."""
    P = random_projectors(8, 12, 10)
    W_t = P.W_t.clone()
    W_t[:, 5:] = 0  # rank 5 < d = 8
    deficient = Projectors(P.W_i, W_t)
    iso = iso_projectors(deficient, Band(0, 0))
    assert (iso.W_i - P.W_i).abs().max() > 1e-3


@pytest.mark.parametrize("dims", [(16, 24, 16), (20, 12, 20), (12, 16, 20)])
@pytest.mark.parametrize("kt,kb", [(0, 0), (3, 2), (0, 5), (6, 0)])
def test_matches_official_apply_iso(dims: tuple[int, int, int], kt: int, kb: int) -> None:
    d, d_i, d_t = dims
    P = random_projectors(d, d_i, d_t, seed=kt + 10 * kb)
    W_image_iso, W_text_iso = apply_iso_reference(P.W_i, P.W_t, kt, kb)
    iso = iso_projectors(P, Band(kt, kb))
    torch.testing.assert_close(iso.W_i, W_image_iso.T, rtol=0, atol=1e-12)
    torch.testing.assert_close(iso.W_t, W_text_iso.T, rtol=0, atol=1e-12)
    f = torch.randn(5, d_i, dtype=torch.float64)
    torch.testing.assert_close(iso.project_image(f), f @ W_image_iso, rtol=0, atol=1e-12)


def test_official_and_ours_refuse_the_same_bands() -> None:
    P = random_projectors(8, 12, 10)  # r = 10
    for kt, kb in ((10, 0), (5, 5), (0, 11)):
        with pytest.raises(ValueError):
            apply_iso_reference(P.W_i, P.W_t, kt, kb)
        with pytest.raises(ValueError, match="rank r = 10"):
            iso_projectors(P, Band(kt, kb))
    apply_iso_reference(P.W_i, P.W_t, 5, 4)
    iso_projectors(P, Band(5, 4))


def test_biases_and_augmented_projectors() -> None:
    """Biases are kept unchanged; the augmented (official SigLIP) variant filters them with W."""
    P = random_projectors(8, 8, 8, bias=True)
    f = torch.randn(6, 8, dtype=torch.float64)
    iso = iso_projectors(P, Band(2, 1))
    assert iso.b_i is P.b_i and iso.b_t is P.b_t
    A = P.augmented()
    dec = svd(A)
    assert dec.r == 9 and dec.S[-1] < 1e-10 * dec.S[0]  # rank(Psi_aug) <= d = 8 < r = 9
    iso_A = iso_projectors(A, Band(0, 0), dec)
    torch.testing.assert_close(iso_A.project_image(augment_features(f)), P.project_image(f))
    W_image_iso, _ = apply_iso_reference(A.W_i, A.W_t, 2, 1)
    torch.testing.assert_close(iso_projectors(A, Band(2, 1)).project_image(augment_features(f)),
                               augment_features(f) @ W_image_iso)


def test_iso_projectors_keep_dtype_and_check_the_svd(tiny: Tiny) -> None:
    P, _, _ = tiny
    P32 = P.to(torch.float32)
    assert iso_projectors(P32, Band(3, 3)).dtype == torch.float32
    other = svd(random_projectors(64, 80, 64))
    with pytest.raises(ValueError, match="does not match"):
        iso_projectors(P, Band(0, 0), other)


# --------------------------------------------------------------------------- spectrum stats

def test_flat_spectrum() -> None:
    S = torch.full((20,), 3.0, dtype=torch.float64)
    st = spectrum_stats(S, window=5)
    torch.testing.assert_close(st.normalized, torch.ones(20, dtype=torch.float64))
    assert abs(st.effective_rank - 20) < 1e-9
    assert st.log_slope.shape == (16,) and st.log_slope.abs().max() < 1e-12
    torch.testing.assert_close(st.isotropy, torch.ones(16, dtype=torch.float64))
    torch.testing.assert_close(st.window_centers[:2], torch.tensor([2.0, 3.0], dtype=torch.float64))


def test_geometric_spectrum() -> None:
    q, w = 0.9, 4
    S = q ** torch.arange(30, dtype=torch.float64)
    torch.testing.assert_close(log_slope(S, w), torch.full((27,), math.log(q), dtype=torch.float64))
    torch.testing.assert_close(window_isotropy(S, w),
                               torch.full((27,), q ** (w - 1), dtype=torch.float64))
    torch.testing.assert_close(normalized_spectrum(2 * S), S)


def test_three_band_spectrum_is_flattest_in_the_middle() -> None:
    """A synthetic top/flat/bottom spectrum like the paper's figure: the local measures single
    out the middle band."""
    S = torch.cat([torch.linspace(10, 2, 10), torch.linspace(1.0, 0.9, 30),
                   torch.linspace(0.5, 0.01, 10)]).double()
    st = spectrum_stats(S, window=8)
    middle = (st.window_centers > 12) & (st.window_centers < 37)
    assert st.isotropy[middle].min() > st.isotropy[~middle].max()
    assert st.log_slope[middle].abs().max() < st.log_slope[~middle].abs().min()


def test_rank_deficient_spectrum_stays_finite() -> None:
    S = torch.tensor([4.0, 2.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.isfinite(log_slope(S, 2)).all()
    assert window_isotropy(S, 2)[-1] == 0 and window_isotropy(S, 2)[0] == 0.5
    assert abs(effective_rank(torch.tensor([1.0, 0.0, 0.0])) - 1) < 1e-12
    with pytest.raises(ValueError, match="window"):
        log_slope(S, 6)
    assert spectrum_stats(S, window=32).window == 5  # clipped to r


def test_sweep_recipe_from_the_bands_docstring(tiny: Tiny) -> None:
    """Project once onto U, slice per band: same intra-modal similarities as iso_projectors."""
    P, f, _ = tiny
    dec = svd(P)
    c = f @ dec.U
    G = dec.U.T @ psi_image(P) @ dec.U
    for band in (Band(0, 0), Band(10, 5), Band(30, 20)):
        s = band.indices(dec.r)
        sims = c[:, s] @ G[s, s] @ c[:, s].T
        norms = sims.diagonal().sqrt()
        u = iso_projectors(P, band, dec).project_image(f)
        torch.testing.assert_close(sims / (norms[:, None] * norms), cos_matrix(u, u))


def test_paper_scaled_band() -> None:
    from isoclip.method.bands import PAPER_BANDS, paper_scaled_band

    assert paper_scaled_band(512) == Band(150, 50)          # identity at the paper's rank
    assert paper_scaled_band(64) == Band(19, 6)             # 150*64/512 = 18.75, 50*64/512 = 6.25
    assert paper_scaled_band(768, "ViT-L-14", "openai", "text") == Band(10, 300)
    for key in PAPER_BANDS:
        for r in (2, 3, 7, 64):
            b = paper_scaled_band(r, *key)
            assert b.kept(r) >= 1
    with pytest.raises(KeyError, match="known"):
        paper_scaled_band(64, "RN50", "openai")
