"""Training-time variants: SharedCLIP, the IMSep and ATP+CU losses, the registry, the cache key."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from isoclip.baselines.losses import (
    alignment_loss,
    atp_cu_loss,
    atp_cu_weights,
    centroid_uniformity_loss,
    clip_loss,
    imsep_loss,
    semantic_distance,
)
from isoclip.data.base import ImageDataset
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.primitives import COLOURS, SHAPES
from isoclip.data.world.synthetic import caption_attributes, make_world
from isoclip.method.projectors import encode_image_preproj, encode_text_preproj, get_projectors
from isoclip.models.loading import load_model, share_towers, towers_shared
from isoclip.training.embedded import DEFAULT_TRAIN
from isoclip.training.trainer import TrainConfig, load_or_train, train_key_material
from isoclip.training.variants import VARIANTS, variant_config, variant_names

# ---------------------------------------------------------------------------------------------
# reference implementations: explicit loops over rows and pairs


def _ce_row(logits_row: list[float], target: int) -> float:
    m = max(logits_row)
    return -(logits_row[target] - m - math.log(sum(math.exp(v - m) for v in logits_row)))


def _unit_rows(a: torch.Tensor) -> list[list[float]]:
    out = []
    for row in a.tolist():
        n = math.sqrt(sum(v * v for v in row))
        out.append([v / n for v in row])
    return out


def _dot(a: list[float], b: list[float]) -> float:
    return sum(p * q for p, q in zip(a, b))


def naive_imsep(x: torch.Tensor, y: torch.Tensor, s: torch.Tensor, scale: float, alpha: float,
                beta: float, modalities: str) -> float:
    X, Y, S = _unit_rows(x), _unit_rows(y), _unit_rows(s)
    n = len(X)
    clip = 0.0
    for i in range(n):
        clip += _ce_row([scale * _dot(X[i], Y[j]) for j in range(n)], i) / n
        clip += _ce_row([scale * _dot(Y[i], X[j]) for j in range(n)], i) / n
    sep = 0.0
    for mod, Z in (("text", Y), ("image", X)):
        if modalities not in (mod, "both"):
            continue
        for i in range(n):
            row = [scale * (_dot(X[i], Y[i]) if j == i else
                            _dot(Z[i], Z[j]) * (1.0 - _dot(S[i], S[j]))) for j in range(n)]
            sep += _ce_row(row, i) / n
    return alpha * clip + beta * sep


@pytest.mark.parametrize("modalities", ["image", "text", "both"])
def test_imsep_matches_explicit_loops(modalities: str) -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    s = torch.rand(7, 4, generator=g)
    s[3] = s[1]  # two samples with identical semantics: D = 0 between them
    out = imsep_loss(x.double(), y.double(), s.double(), torch.tensor(3.0, dtype=torch.float64),
                     alpha=1.0, beta=0.5, modalities=modalities)
    ref = naive_imsep(x, y, s, 3.0, 1.0, 0.5, modalities)
    assert out["total"].item() == pytest.approx(ref, rel=1e-10)
    assert (out["clip"] + out["imsep"]).item() == pytest.approx(ref, rel=1e-10)


def test_imsep_clip_term_has_no_half_and_d_is_zero_on_the_diagonal() -> None:
    g = torch.Generator().manual_seed(1)
    x, y, s = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g), torch.rand(6, 3,
                                                                                       generator=g)
    out = imsep_loss(x, y, s, torch.tensor(5.0), alpha=1.0, beta=0.0)
    assert out["total"].item() == pytest.approx(2 * clip_loss(x, y, torch.tensor(5.0)).item(),
                                                rel=1e-6)
    D = semantic_distance(s)
    assert torch.allclose(D.diagonal(), torch.zeros(6), atol=1e-6)
    assert torch.allclose(D, D.T)


def test_imsep_rejects_bad_arguments() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="modalities"):
        imsep_loss(x, x, x, torch.tensor(1.0), modalities="audio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="semantic_features"):
        imsep_loss(x, x, torch.randn(3, 2), torch.tensor(1.0))


def test_atp_and_cu_match_direct_formulas() -> None:
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(9, 6, generator=g).double(), torch.randn(9, 6, generator=g).double()
    X, Y = _unit_rows(x), _unit_rows(y)
    atp = sum(sum((a - b) ** 2 for a, b in zip(X[i], Y[i])) for i in range(9)) / 9
    assert alignment_loss(x, y).item() == pytest.approx(atp, rel=1e-12)
    cos = sum(_dot(X[i], Y[i]) for i in range(9)) / 9
    assert alignment_loss(x, y).item() == pytest.approx(2 - 2 * cos, rel=1e-12)  # notation eq-atp
    mu = _unit_rows(torch.tensor([[(a + b) / 2 for a, b in zip(X[i], Y[i])] for i in range(9)],
                                 dtype=torch.float64))
    pairs = [math.exp(-2 * sum((a - b) ** 2 for a, b in zip(mu[i], mu[j])))
             for i, j in itertools.combinations(range(9), 2)]
    cu = math.log(sum(pairs) / len(pairs))
    assert centroid_uniformity_loss(x, y).item() == pytest.approx(cu, rel=1e-10)
    perm = torch.randperm(9, generator=g)  # invariant to permuting the pairs (eq-cu)
    assert centroid_uniformity_loss(x[perm], y[perm]).item() == pytest.approx(cu, rel=1e-10)


def test_atp_cu_schedule_at_the_boundaries() -> None:
    T = 800  # one "epoch" = 8 steps
    assert atp_cu_weights(0, T) == (1.0, 1.0)
    assert atp_cu_weights(159, T) == (1.0, 1.0)       # epoch < 20
    assert atp_cu_weights(160, T) == (1.0, 1.0)       # β starts falling at epoch 20
    assert atp_cu_weights(360, T)[1] == pytest.approx(0.5)   # half-way to epoch 70
    assert atp_cu_weights(560, T)[1] == 0.0           # epoch 70: β = 0 from here on
    assert atp_cu_weights(399, T)[0] == 1.0           # α flat before epoch 50
    assert atp_cu_weights(600, T)[0] == pytest.approx(1.5)
    assert atp_cu_weights(799, T)[0] == pytest.approx(1 + 399 / 400)
    with pytest.raises(ValueError, match="total_steps"):
        atp_cu_weights(0, 0)


def test_atp_cu_loss_combines_the_terms() -> None:
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    out = atp_cu_loss(x, y, torch.tensor(10.0), step=600, total_steps=800)
    want = (clip_loss(x, y, torch.tensor(10.0)) + 1.5 * alignment_loss(x, y)
            + 0.0 * centroid_uniformity_loss(x, y))
    assert out["total"].item() == pytest.approx(want.item(), rel=1e-6)
    assert (out["alpha"].item(), out["beta"].item()) == (1.5, 0.0)


# ---------------------------------------------------------------------------------------------
# semantics of the synthetic captions


def test_caption_attributes_are_exact_on_the_world() -> None:
    world = make_world(WorldConfig(n_train_per_class=20, n_query_per_class=2,
                                   n_gallery_per_class=2, n_text_query_per_class=2,
                                   n_text_gallery_per_class=2, partial_frac=0.3))
    A = caption_attributes(world.train.captions)
    shapes, colours = list(SHAPES), list(COLOURS)
    for caption, label, row in zip(world.train.captions, world.train.labels, A):
        shape, colour = world.classes[label]
        want = {shapes.index(shape)} | {len(shapes) + colours.index(colour)}
        got = set(np.flatnonzero(row).tolist())
        assert got <= want and got, (caption, got, want)
        assert len(got) == (2 if len(got) == 2 else 1)
    assert (A.sum(1) == 1).any() and (A.sum(1) == 2).any()  # partial and full captions
    assert caption_attributes(["a leafy green square block."]).sum() == 2
    with pytest.raises(ValueError, match="mentions no shape or colour"):
        caption_attributes(["a photo of nothing"])


# ---------------------------------------------------------------------------------------------
# SharedCLIP


@pytest.fixture(scope="module")
def shared():
    bundle = load_model("isoclip-tiny-vit-w96", seed=0)
    share_towers(bundle.model)
    return bundle


def test_shared_clip_shares_body_and_keeps_input_embeddings(shared) -> None:
    m = shared.model
    assert towers_shared(m)
    assert m.visual.transformer is m.transformer and m.visual.ln_post is m.ln_final
    assert m.visual.proj is m.text_projection
    names = {n for n, _ in m.named_parameters()}
    for own in ("visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
                "visual.ln_pre.weight", "token_embedding.weight", "positional_embedding"):
        assert own in names, own
    assert not any(n.startswith("transformer.") for n in names)  # listed once, under visual


def test_shared_clip_projectors_are_equal_and_exact(shared) -> None:
    m = shared.model.eval()
    P = get_projectors(m)
    assert torch.equal(P.W_i, P.W_t)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = shared.tokenizer(["a red circle.", "something blue.", "a star"])
    with torch.no_grad():
        assert torch.equal(P.project_image(encode_image_preproj(m, x)), m.encode_image(x))
        assert torch.equal(P.project_text(encode_text_preproj(m, t)), m.encode_text(t))


def test_share_towers_rejects_unequal_towers() -> None:
    with pytest.raises(NotImplementedError, match="width"):
        share_towers(load_model("isoclip-tiny-vit").model)


# ---------------------------------------------------------------------------------------------
# config, registry, training


def test_default_cache_key_is_unchanged_by_the_variant_fields() -> None:
    d = DEFAULT_TRAIN.key_dict()
    assert not {"architecture", "loss", "imsep_alpha", "imsep_beta", "imsep_modalities",
                "imsep_semantics"} & set(d)
    assert d == {k: v for k, v in dataclasses.asdict(DEFAULT_TRAIN).items() if k in d}
    keys = {name: variant_config(name).key_dict() for name in variant_names()}
    assert len({str(sorted(k.items())) for k in keys.values()}) == len(keys)


def test_validation_names_argument_and_values() -> None:
    for field, bad, msg in (("architecture", "siamese", "architecture: expected one of"),
                            ("loss", "triplet", "loss: expected one of"),
                            ("imsep_modalities", "audio", "imsep_modalities: expected one of"),
                            ("imsep_semantics", "sbert", "imsep_semantics: expected one of"),
                            ("imsep_beta", -1.0, "imsep_beta: expected")):
        with pytest.raises(ValueError, match=msg):
            TrainConfig(**{field: bad})
    with pytest.raises(ValueError, match="variant: expected one of"):
        variant_config("clip-tau-2")


def test_registry_presets() -> None:
    assert variant_names()[0] == "clip" and variant_config("clip") == DEFAULT_TRAIN
    assert variant_config("clip-tau-1").temperature == 1.0
    atp = variant_config("clip-atp-cu")
    assert (atp.loss, atp.temperature) == ("atp_cu", 0.1)
    imsep = variant_config("shared-imsep", steps=5)
    assert (imsep.architecture, imsep.loss, imsep.imsep_modalities, imsep.steps) == \
        ("shared", "imsep", "image", 5)
    assert all(v.label for v in VARIANTS.values())


COLS = np.array([[220, 30, 30], [30, 200, 30], [30, 30, 220], [230, 220, 20]], np.uint8)
NAMES = ["red", "green", "blue", "yellow"]


def toy(n: int = 64) -> ImageDataset:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 4
    imgs = COLS[labels][:, None, None, :].astype(np.int16) + rng.integers(-20, 20, (n, 32, 32, 3))
    caps = [f"a {NAMES[l]} {'circle' if i % 3 else 'square'}" for i, l in enumerate(labels)]
    return ImageDataset(np.clip(imgs, 0, 255).astype(np.uint8), labels, NAMES, "toy-variants",
                        captions=caps)


@pytest.mark.parametrize("name", ["shared", "shared-imsep", "clip-atp-cu"])
def test_variants_train_deterministically_and_reload(name: str, isolated_cache) -> None:
    torch.set_num_threads(1)
    cfg = variant_config(name, steps=4, batch_size=16, log_every=1, checkpoint_fracs=(0.0, 1.0))
    ds = toy()
    a = load_or_train(ds, cfg, progress=False)
    b = load_or_train(ds, cfg, progress=False, cache=False)  # retrained: same weights
    for k, v in a.bundle.model.state_dict().items():
        assert torch.equal(v, b.bundle.model.state_dict()[k]), k
    assert np.isfinite(a.log["loss"]).all()
    if cfg.architecture == "shared":
        assert towers_shared(a.bundle.model) and towers_shared(a.model_at(0))
        P = get_projectors(a.bundle.model)
        assert torch.equal(P.W_i, P.W_t)
    if cfg.loss == "imsep":
        assert {"clip", "imsep"} <= set(a.log.columns)
    if cfg.loss == "atp_cu":
        assert {"atp", "cu", "alpha", "beta"} <= set(a.log.columns)
        assert np.allclose(a.log["temperature"], 0.1)
    assert train_key_material(ds, cfg) != train_key_material(ds, variant_config("clip"))


def test_shared_imsep_gradients_flow_through_shared_weights() -> None:
    bundle = load_model("isoclip-tiny-vit-w96", seed=0)
    m = share_towers(bundle.model).train()
    x = torch.randn(4, 3, 32, 32)
    t = bundle.tokenizer(["a red circle", "a blue star", "a red star", "something blue"])
    s = torch.from_numpy(caption_attributes(["a red circle", "a blue star", "a red star",
                                             "something blue"]))
    loss = imsep_loss(m.encode_image(x), m.encode_text(t), s, m.logit_scale.exp())["total"]
    loss.backward()
    w = m.transformer.resblocks[0].attn.in_proj_weight
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert F.normalize(m.text_projection.grad.flatten(), dim=0).isfinite().all()
