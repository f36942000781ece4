"""The cosine decomposition and the Psi / Psi_i split of the CLIP-loss gradient (IsoCLIP poster
step 2; book notation page, eq-cos-inter, eq-grad-features, eq-grad-weights)."""

from __future__ import annotations

import open_clip
import pytest
import torch
from open_clip.loss import ClipLoss

from isoclip.method.gradients import (
    clip_loss_from_projectors,
    cosine_decomposition,
    feature_gradients,
    gradient_term_norms,
    weight_gradients,
)
from isoclip.method.operator import psi, psi_image
from isoclip.method.projectors import (
    Projectors,
    encode_image_preproj,
    encode_text_preproj,
    get_projectors,
)
from isoclip.models.loading import register_configs

register_configs()
DIRECTIONS = ["symmetric", "image_to_text", "text_to_image"]


def batch(N: int = 7, d: int = 6, d_i: int = 9, d_t: int = 8,
          seed: int = 0) -> tuple[Projectors, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    # make positives more similar than negatives, like a partly trained model
    P = Projectors(rnd(d, d_i), rnd(d, d_t))
    f = rnd(N, d_i)
    g = (f @ P.W_i.T + 0.5 * rnd(N, d)) @ torch.linalg.pinv(P.W_t).T + 0.1 * rnd(N, d_t)
    return P, f, g


def autograd(P: Projectors, f: torch.Tensor, g: torch.Tensor, tau: float,
             direction: str) -> tuple[torch.Tensor, ...]:
    """Autograd's gradients of :func:`clip_loss_from_projectors` w.r.t. (f, g, W_i, W_t)."""
    leaves = [t.clone().requires_grad_(True) for t in (f, g, P.W_i, P.W_t)]
    f_, g_, W_i, W_t = leaves
    loss = clip_loss_from_projectors(Projectors(W_i, W_t), f_, g_, tau, direction)
    return torch.autograd.grad(loss, leaves)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8 * b.abs().max().item())


def test_cosine_decomposition() -> None:
    P, f, g = batch()
    cd = cosine_decomposition(P, f, g[:5])
    u, v = P.project_image(f), P.project_text(g[:5])
    assert cd.numerator.shape == (7, 5)
    torch.testing.assert_close(cd.numerator, u @ v.T)  # f^T Psi g = (W_i f)^T (W_t g)
    torch.testing.assert_close(cd.cos, torch.nn.functional.cosine_similarity(
        u[:, None], v[None], dim=-1))


@pytest.mark.parametrize("tau", [0.07, 1.0])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_split_sums_to_autograd(direction: str, tau: float) -> None:
    P, f, g = batch()
    df, dg, dWi, dWt = autograd(P, f, g, tau, direction)
    fg = feature_gradients(P, f, g, tau, direction)
    wg = weight_gradients(P, f, g, tau, direction)
    close(fg.image_alignment + fg.image_normalization, df)
    close(fg.text_alignment + fg.text_normalization, dg)
    close(wg.image_alignment + wg.image_normalization, dWi)
    close(wg.text_alignment + wg.text_normalization, dWt)
    close(fg.image, df)
    close(wg.text, dWt)
    # both terms matter: neither is negligible on this batch
    for a, b in ((fg.image_alignment, fg.image_normalization),
                 (wg.image_alignment, wg.image_normalization)):
        assert a.norm() > 1e-3 * b.norm() and b.norm() > 1e-3 * a.norm()


def test_exact_coefficients_for_the_image_to_text_half() -> None:
    """Notation page, eq-grad-features for L_i2t alone, written out per sample:
    alpha_{t,i} = (p_it - delta_it)/(tau a_i b_t), s = (1/tau) sum_t (p_it - delta_it) cos_it,
    times 1/N from the batch mean."""
    P, f, g = batch()
    tau, N = 0.1, f.shape[0]
    fg = feature_gradients(P, f, g, tau, "image_to_text")
    Psi, Psi_i = psi(P), psi_image(P)
    a = (f @ P.W_i.T).norm(dim=1)
    b = (g @ P.W_t.T).norm(dim=1)
    cos = (f @ Psi @ g.T) / (a[:, None] * b[None])
    p = torch.softmax(cos / tau, dim=1)
    for i in range(N):
        align = sum((p[i, t] - float(i == t)) / (tau * a[i] * b[t]) * (Psi @ g[t])
                    for t in range(N))
        s = sum((p[i, t] - float(i == t)) * cos[i, t] for t in range(N)) / tau
        close(fg.image_alignment[i], align / N)
        close(fg.image_normalization[i], -s * (Psi_i @ f[i]) / a[i] ** 2 / N)


def test_text_to_image_half_contributes_to_image_gradient() -> None:
    P, f, g = batch()
    both = feature_gradients(P, f, g, 0.1, "symmetric")
    i2t = feature_gradients(P, f, g, 0.1, "image_to_text")
    t2i = feature_gradients(P, f, g, 0.1, "text_to_image")
    assert t2i.image.norm() > 0.1 * i2t.image.norm()
    close(both.image, 0.5 * (i2t.image + t2i.image))
    close(both.image_alignment, 0.5 * (i2t.image_alignment + t2i.image_alignment))


def test_clip_loss_matches_open_clip() -> None:
    P, f, g = batch()
    u = torch.nn.functional.normalize(P.project_image(f), dim=-1)
    v = torch.nn.functional.normalize(P.project_text(g), dim=-1)
    ref = ClipLoss()(u, v, logit_scale=torch.tensor(1 / 0.07, dtype=torch.float64))
    torch.testing.assert_close(clip_loss_from_projectors(P, f, g, 0.07), ref)


def test_on_the_tiny_model() -> None:
    """Real projectors and pre-projection features: loss equals open_clip's on the model's own
    embeddings, and the split sums to autograd through the real W_i, W_t."""
    torch.manual_seed(0)
    model = open_clip.create_model("isoclip-tiny-vit", pretrained=None).eval()
    gen = torch.Generator().manual_seed(2)
    images = torch.randn(6, 3, 32, 32, generator=gen)
    tokens = torch.randint(1, 1000, (6, model.context_length), generator=gen)
    with torch.no_grad():
        f = encode_image_preproj(model, images)
        g = encode_text_preproj(model, tokens)
        u, v, scale = model(images, tokens)
    P = get_projectors(model)
    tau = 1 / scale.item()
    torch.testing.assert_close(clip_loss_from_projectors(P, f, g, tau), ClipLoss()(u, v, scale))
    P64, f64, g64 = P.double(), f.double(), g.double()
    df, dg, dWi, dWt = autograd(P64, f64, g64, tau, "symmetric")
    fg = feature_gradients(P64, f64, g64, tau)
    wg = weight_gradients(P64, f64, g64, tau)
    close(fg.image, df)
    close(fg.text, dg)
    close(wg.image, dWi)
    close(wg.text, dWt)


def test_gradient_term_norms() -> None:
    P, f, g = batch()
    norms = gradient_term_norms(P, f, g, 0.07)
    assert set(norms) == {f"{p}_{t}" for p in ("image_feature", "text_feature", "W_i", "W_t")
                          for t in ("alignment", "normalization", "total")}
    df, dg, dWi, dWt = autograd(P, f, g, 0.07, "symmetric")
    for key, ref in (("image_feature", df), ("text_feature", dg), ("W_i", dWi), ("W_t", dWt)):
        assert abs(norms[f"{key}_total"] - ref.norm().item()) < 1e-8 * ref.norm().item()
    fg = feature_gradients(P, f, g, 0.07)
    assert abs(norms["image_feature_normalization"] - fg.image_normalization.norm().item()) < 1e-12


def test_input_checks() -> None:
    P, f, g = batch()
    biased = Projectors(P.W_i, P.W_t, b_i=torch.zeros(P.d, dtype=torch.float64))
    with pytest.raises(ValueError, match="augmented"):
        feature_gradients(biased, f, g, 0.1)
    with pytest.raises(ValueError, match="paired"):
        feature_gradients(P, f, g[:3], 0.1)
    with pytest.raises(ValueError, match=r"\[N, 9\]"):
        cosine_decomposition(P, g, g)
    with pytest.raises(ValueError, match="direction"):
        clip_loss_from_projectors(P, f, g, 0.1, "both")  # type: ignore[arg-type]
