"""Projectors and pre-projection features on randomly initialised real open_clip architectures.

Exactness: ``encode_*_preproj(m, x) @ W.T + b == m.encode_*(x)`` (float32, unnormalised) for
every exactly-linear head; the SigLIP MAP head is linearized and tested for first-order
exactness instead. Sockets are blocked by the autouse fixture in ``conftest.py``.
"""

from __future__ import annotations

import copy
import itertools
import socket
from collections.abc import Iterator

import open_clip
import pytest
import torch
from timm.layers import AttentionPoolLatent
from torch import nn

from isoclip.method.projectors import (
    Projectors,
    augment_features,
    encode_image_preproj,
    encode_text_preproj,
    get_projectors,
    linearize_map_head,
)
from isoclip.models.loading import register_configs

register_configs()
TINY = "isoclip-tiny-vit"


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> None:
    """max |actual - expected| <= tol * max |expected| (scale-aware 1e-5 for float32)."""
    assert actual.shape == expected.shape
    err = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert err <= tol * scale, f"max abs error {err:.3g} > {tol} * {scale:.3g}"


def make(name: str, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return open_clip.create_model(name, pretrained=None, **kwargs).eval()


def inputs(model: nn.Module, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(n, 3, size, size, generator=gen)
    tokens = torch.randint(1, model.vocab_size, (n, model.context_length), generator=gen)
    return images, tokens


def check_exact(model: nn.Module) -> Projectors:
    images, tokens = inputs(model)
    P = get_projectors(model)
    with torch.no_grad():
        f = encode_image_preproj(model, images)
        g = encode_text_preproj(model, tokens)
        assert f.shape == (len(images), P.d_i) and g.shape == (len(tokens), P.d_t)
        assert not P.image_linearized
        assert_rel_close(P.project_image(f), model.encode_image(images))
        assert_rel_close(P.project_text(g), model.encode_text(tokens))
    return P


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """One intra-op thread for this module: on the shared 2-core machine, two OpenMP threads
    competing with other jobs made these forward passes ~10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_sockets_are_blocked() -> None:
    """conftest's autouse fixture blocks outbound sockets: no test here can reach a model hub."""
    with pytest.raises(RuntimeError) as exc:
        socket.create_connection(("huggingface.co", 443), timeout=1)
    assert type(exc.value).__name__ == "NetworkAccessError"
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(RuntimeError) as exc:
            s.connect(("1.1.1.1", 443))
        assert type(exc.value).__name__ == "NetworkAccessError"
    finally:
        s.close()


# (model name, image size, class, image tower, (d, d_i, d_t), image bias, text bias). The dims
# are those of the paper's backbones (open_clip model configs of the models in the IsoCLIP
# scripts). Big ViTs run at a reduced input size (``force_image_size``: same modules, fewer
# patches) to keep CPU time low.
REAL = [
    pytest.param("ViT-B-32", 64, "CLIP", "VisionTransformer", (512, 768, 512), False, False),
    pytest.param("ViT-B-16", 64, "CLIP", "VisionTransformer", (512, 768, 512), False, False),
    pytest.param("ViT-L-14", 56, "CLIP", "VisionTransformer", (768, 1024, 768), False, False,
                 marks=pytest.mark.slow),
    pytest.param("RN50", 64, "CLIP", "ModifiedResNet", (1024, 2048, 512), True, False),
    # timm trunk + open_clip head.proj (nn.Linear)
    pytest.param("convnext_tiny", 64, "CLIP", "TimmModel", (1024, 768, 512), False, False),
    # timm Eva trunk (MAP pool with MLP) whose classifier is the projection; text Parameter
    pytest.param("PE-Core-T-16-384", 64, "CustomTextCLIP", "TimmModel", (512, 192, 512), True,
                 False),
    pytest.param("PE-Core-B-16", 64, "CustomTextCLIP", "TimmModel", (1024, 768, 1024), True,
                 False, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,size,cls,tower,dims,has_b_i,has_b_t", REAL)
def test_exact_on_real_architectures(name: str, size: int, cls: str, tower: str,
                                     dims: tuple[int, int, int], has_b_i: bool,
                                     has_b_t: bool) -> None:
    model = make(name, force_image_size=size)
    assert (type(model).__name__, type(model.visual).__name__) == (cls, tower)
    P = check_exact(model)
    assert (P.d, P.d_i, P.d_t) == dims
    assert (P.b_i is not None, P.b_t is not None) == (has_b_i, has_b_t)
    assert P.dtype == torch.float32


def test_resnet_projector_is_attnpool_c_proj() -> None:
    model = make("RN50", force_image_size=64)
    P = get_projectors(model)
    c_proj = model.visual.attnpool.c_proj
    assert torch.equal(P.W_i, c_proj.weight) and torch.equal(P.b_i, c_proj.bias)
    # a copy, not a view of the live parameter
    assert P.W_i.data_ptr() != c_proj.weight.data_ptr()


def tiny_timm(timm_name: str, embed_dim: int = 64, **cfg: object) -> nn.Module:
    """Our tiny text tower with one of timm's small test ViTs (160 px) as the image trunk."""
    return make(TINY, embed_dim=embed_dim,
                vision_cfg=dict(timm_model_name=timm_name, image_size=160, **cfg))


@pytest.mark.parametrize("timm_name,cfg,head", [
    ("test_vit2", {"timm_pool": "avg", "timm_proj": "linear", "timm_proj_bias": True}, "head.proj"),
    ("test_vit", {"timm_proj": None}, "trunk classifier"),  # the PE / EVA02 arrangement
])
def test_exact_timm_linear_heads(timm_name: str, cfg: dict, head: str) -> None:
    model = tiny_timm(timm_name, **cfg)
    P = check_exact(model)
    lin = model.visual.head.proj if head == "head.proj" else model.visual.trunk.get_classifier()
    assert torch.equal(P.W_i, lin.weight) and torch.equal(P.b_i, lin.bias)


TINY_VARIANTS = {
    "plain": {},
    # avg pooling with the LayerNorm after pooling; text pooled at the last token
    "avg-final-ln": {"vision_cfg": {"image_size": 32, "layers": 2, "width": 96, "head_width": 32,
                                    "patch_size": 8, "pool_type": "avg",
                                    "final_ln_after_pool": True},
                     "text_cfg": {"context_length": 20, "vocab_size": 1000, "width": 64,
                                  "heads": 4, "layers": 2, "pool_type": "last"}},
    # CoCa-style attentional pooler inside a CLIP ViT
    "attn-pool": {"vision_cfg": {"image_size": 32, "layers": 2, "width": 96, "head_width": 32,
                                 "patch_size": 8, "attentional_pool": True,
                                 "attn_pooler_queries": 4, "attn_pooler_heads": 4}},
    # QuickGELU, no pre-LN, layer scale
    "quickgelu": {"quick_gelu": True,
                  "vision_cfg": {"image_size": 32, "layers": 2, "width": 96, "head_width": 32,
                                 "patch_size": 8, "no_ln_pre": True, "ls_init_value": 0.1}},
}


@pytest.mark.parametrize("variant", list(TINY_VARIANTS))
def test_exact_on_tiny_variants(variant: str) -> None:
    check_exact(make(TINY, **TINY_VARIANTS[variant]))


@pytest.mark.parametrize("text_cfg", [
    # nn.Linear projection with bias, bidirectional attention, last-token pooling (SigLIP text)
    {"context_length": 20, "vocab_size": 1000, "width": 64, "heads": 4, "layers": 2,
     "proj_bias": True, "no_causal_mask": True, "pool_type": "last"},
    # appended CLS token (CoCa-style): pad mask + LN after pooling
    {"context_length": 20, "vocab_size": 1000, "width": 64, "heads": 4, "layers": 2,
     "proj_bias": True, "embed_cls": True},
    # tokenizer-specific EOS pooling, Parameter projection
    {"context_length": 20, "vocab_size": 1000, "width": 64, "heads": 4, "layers": 2,
     "pool_type": "eos", "eos_id": 7},
])
def test_exact_custom_text_clip(text_cfg: dict) -> None:
    model = make(TINY, force_custom_text=True, text_cfg=text_cfg)
    assert type(model).__name__ == "CustomTextCLIP"
    P = check_exact(model)
    if text_cfg.get("proj_bias"):
        assert isinstance(model.text.text_projection, nn.Linear) and P.b_t is not None
    if text_cfg.get("pool_type") == "eos":  # make sure an EOS is present to pool at
        _, tokens = inputs(model)
        tokens[:, 5] = 7
        with torch.no_grad():
            assert_rel_close(P.project_text(encode_text_preproj(model, tokens)),
                             model.encode_text(tokens))


def test_train_mode_patch_dropout_mirrors_forward() -> None:
    """In train mode the pre-projection path draws the same patch-dropout RNG as the forward."""
    model = make(TINY, force_patch_dropout=0.5).train()
    images, _ = inputs(model, n=3)
    P = get_projectors(model)
    with torch.no_grad():
        torch.manual_seed(5)
        ours = P.project_image(encode_image_preproj(model, images))
        torch.manual_seed(5)
        ref = model.encode_image(images)
        torch.manual_seed(6)
        other = model.encode_image(images)
    assert_rel_close(ours, ref)
    assert not torch.allclose(ref, other)  # dropout really is active


def test_unsupported_families_raise() -> None:
    with pytest.raises(NotImplementedError, match="Sequential"):
        get_projectors(nn.Sequential())
    model = tiny_timm("test_vit2", timm_pool="avg", timm_proj="mlp")
    images, _ = inputs(model)
    for call in (lambda: get_projectors(model), lambda: encode_image_preproj(model, images)):
        with pytest.raises(NotImplementedError, match="Mlp"):
            call()


def test_augmented_projectors() -> None:
    gen = torch.Generator().manual_seed(0)
    P = Projectors(torch.randn(5, 7, generator=gen), torch.randn(5, 6, generator=gen),
                   b_i=torch.randn(5, generator=gen), b_t=None)
    f, g = torch.randn(4, 7, generator=gen), torch.randn(4, 6, generator=gen)
    A = P.augmented()
    assert (A.d_i, A.d_t, A.b_i, A.b_t) == (8, 7, None, None)
    torch.testing.assert_close(A.project_image(augment_features(f)), P.project_image(f))
    torch.testing.assert_close(A.project_text(augment_features(g)), P.project_text(g))
    with pytest.raises(ValueError, match="embedding dimension"):
        Projectors(torch.randn(5, 7), torch.randn(4, 6))


# ------------------------------------------------------------------ SigLIP MAP head (linearized)

def _head_on_normalized_input(pool: AttentionPoolLatent, eps: float,
                              n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs on which the LayerNorm normalisation is the identity, and the true head output."""
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(n, pool.out_features, generator=gen, dtype=torch.float64)
    h = h - h.mean(dim=1, keepdim=True)
    h = h / h.pow(2).mean(dim=1, keepdim=True).sqrt() * (1 - eps) ** 0.5  # biased var = 1 - eps
    with torch.no_grad():
        return h, h + pool.mlp(pool.norm(h))


def test_map_head_linearization_is_first_order_and_correctly_oriented() -> None:
    """Shrinking the MLP pre-activation by eps (LN affine and fc1 bias scaled by eps): the
    linearization error is O(eps^2) in the paper orientation, while the official code's
    transposed orientation leaves an O(eps) error."""
    torch.manual_seed(0)
    base = AttentionPoolLatent(32, num_heads=4, mlp_ratio=4.0, norm_layer=nn.LayerNorm,
                               act_layer=nn.GELU).double()
    with torch.no_grad():  # non-trivial LN affine and biases
        base.norm.weight.uniform_(0.5, 1.5)
        base.norm.bias.normal_(0, 0.5)
        base.mlp.fc1.bias.normal_(0, 0.5)
        base.mlp.fc2.bias.normal_(0, 0.5)
        base.mlp.fc1.weight.normal_(0, 32 ** -0.5)
        base.mlp.fc2.weight.normal_(0, 128 ** -0.5)
    errs, errs_T = [], []
    scales = [1.0, 0.1, 0.01, 0.001]
    for s in scales:
        pool = copy.deepcopy(base)
        with torch.no_grad():
            for p in (pool.norm.weight, pool.norm.bias, pool.mlp.fc1.bias):
                p.mul_(s)
        h, out = _head_on_normalized_input(pool, pool.norm.eps)
        W, b = linearize_map_head(pool)
        errs.append(((h @ W.T + b) - out).norm().item() / out.norm().item())
        errs_T.append(((h @ W + b) - out).norm().item() / out.norm().item())
    print("\nMAP-head linearization, relative error vs pre-activation scale:")
    for s, e, eT in zip(scales, errs, errs_T):
        print(f"  scale {s:g}: paper orientation {e:.3e}   transposed (official quirk) {eT:.3e}")
    assert all(b < a for a, b in itertools.pairwise(errs))
    for k in range(2, len(scales)):  # quadratic decay: x10 smaller scale -> ~x100 smaller error
        assert 0.005 < errs[k] / errs[k - 1] < 0.02
    assert errs[-1] < 1e-6
    for k in range(2, len(scales)):  # transposed: only linear decay, O(eps) not O(eps^2)
        assert 0.05 < errs_T[k] / errs_T[k - 1] < 0.2
    assert errs_T[-1] > 100 * errs[-1]


def test_map_head_linearization_formula() -> None:
    """The official formula (IsoCLIP ``src/encode_no_projection.py``; notation page,
    eq-map-linearization): W_eff = I + 0.5 W2 W1 diag(gamma),
    b_eff = 0.5 W2 (W1 beta + b1) + b2, for GELU and tanh-GELU."""
    for act in (nn.GELU, lambda: nn.GELU(approximate="tanh")):
        torch.manual_seed(1)
        pool = AttentionPoolLatent(16, num_heads=2, norm_layer=nn.LayerNorm, act_layer=act)
        with torch.no_grad():
            pool.norm.weight.uniform_(0.5, 1.5)
            pool.norm.bias.normal_()
        W1, b1 = pool.mlp.fc1.weight.detach(), pool.mlp.fc1.bias.detach()
        W2, b2 = pool.mlp.fc2.weight.detach(), pool.mlp.fc2.bias.detach()
        gamma, beta = pool.norm.weight.detach(), pool.norm.bias.detach()
        W, b = linearize_map_head(pool)
        torch.testing.assert_close(W, torch.eye(16) + 0.5 * W2 @ W1 @ torch.diag(gamma))
        torch.testing.assert_close(b, 0.5 * W2 @ (W1 @ beta + b1) + b2)


def test_map_head_tower_mirrors_forward() -> None:
    """SigLIP arrangement on timm's small MAP-pooled test ViT (timm_proj='none'): the features
    are the MAP attention output, and the true head is exactly their MLP residual."""
    model = tiny_timm("test_vit3", timm_pool="map", timm_proj="none", embed_dim=96)
    pool = model.visual.trunk.attn_pool
    assert isinstance(pool, AttentionPoolLatent)
    P = get_projectors(model)
    W, b = linearize_map_head(pool)
    assert P.image_linearized and torch.equal(P.W_i, W) and torch.equal(P.b_i, b)
    images, _ = inputs(model, n=3)
    with torch.no_grad():
        h = encode_image_preproj(model, images)
        assert_rel_close(h + pool.mlp(pool.norm(h)), model.encode_image(images))


@pytest.mark.slow
def test_siglip2_real_architecture() -> None:
    """ViT-B-16-SigLIP2 (timm ViT + MAP head, Identity classifier; text nn.Linear with bias):
    the pre-MLP features mirror the forward exactly, the text head is exact, and the
    linearization error at realistic scale is reported."""
    model = make("ViT-B-16-SigLIP2")
    images, tokens = inputs(model, n=4)
    P = get_projectors(model)
    assert P.image_linearized and P.b_i is not None and P.b_t is not None
    assert (P.d, P.d_i, P.d_t) == (768, 768, 768)
    assert (P.augmented().d_i, P.augmented().d_t) == (769, 769)  # official 769 x 769 Psi
    pool = model.visual.trunk.attn_pool
    with torch.no_grad():
        h = encode_image_preproj(model, images)
        true = model.encode_image(images)
        assert_rel_close(h + pool.mlp(pool.norm(h)), true)  # exact up to the MLP residual
        assert_rel_close(P.project_text(encode_text_preproj(model, tokens)),
                         model.encode_text(tokens))
        lin = P.project_image(h)
        lin_T = h @ P.W_i + P.b_i
    rel = ((lin - true).norm(dim=1) / true.norm(dim=1)).mean().item()
    rel_T = ((lin_T - true).norm(dim=1) / true.norm(dim=1)).mean().item()
    cos = torch.nn.functional.cosine_similarity(lin, true).mean().item()
    print(f"\nSigLIP2 random init, realistic inputs: relative error of the linearized head "
          f"{rel:.3f} (transposed: {rel_T:.3f}); cos(linearized, true) = {cos:.3f}")
    assert torch.isfinite(lin).all() and rel < rel_T
