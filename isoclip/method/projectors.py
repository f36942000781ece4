"""The two CLIP projectors W_i, W_t and the pre-projection features f, g they act on.

Paper orientation (IsoCLIP, Magistri et al., CVPR 2026, and its poster; book notation page,
eq-embeddings): ``W_i`` has shape [d, d_i], ``W_t`` has shape [d, d_t], and the embedding of a
pre-projection image feature f is ``W_i f + b_i`` (column vectors). With features stored as rows
``F`` [N, d_i] this is ``F @ W_i.T + b_i``; :meth:`Projectors.project_image` does exactly that.

Pre-projection features are computed by calling the model's own submodules in the order of
its forward pass (open_clip 3.3.0, timm 1.0.31), stopping just before the final linear map.
Nothing is patched or hooked, and the model's mode is left alone: in ``train()`` mode
dropout / patch dropout act exactly as in ``model.encode_image`` (same RNG draws), so call
``model.eval()`` for deterministic features.

Supported families (anything else raises :class:`NotImplementedError` naming the class):

=============================================  ===========================================
image tower                                    image projector
=============================================  ===========================================
``VisionTransformer`` (OpenAI/OpenCLIP ViT)    ``visual.proj`` [d_i, d] (no bias), exact
``ModifiedResNet`` (RN50, ...)                 ``attnpool.c_proj`` (with bias), exact; f is
                                               the attention-pool output of the mean-token
                                               query with the heads concatenated, before
                                               ``c_proj`` (the attention's out-projection)
``TimmModel`` + ``head.proj`` nn.Linear        ``head.proj`` (bias if configured), exact;
  (``timm_proj='linear'``: ConvNeXt, ...)      f = ``trunk(x)``
``TimmModel`` + linear trunk classifier        ``trunk.head`` (with bias), exact;
  (``timm_proj`` null/none: PE-Core, EVA02)    f = ``trunk.forward_head(.., pre_logits=True)``
``TimmModel`` + timm ``VisionTransformer``     residual MLP of the MAP head, *linearized*
  MAP head, no classifier (SigLIP/SigLIP2)     (see :func:`linearize_map_head`); f = MAP
                                               attention output before the MLP residual
=============================================  ===========================================

=============================================  ===========================================
text tower                                     text projector
=============================================  ===========================================
``CLIP`` built-in text transformer             ``text_projection`` Parameter [d_t, d], or
                                               nn.Linear (with bias)
``CustomTextCLIP`` with ``TextTransformer``    same (SigLIP: nn.Linear with bias)
=============================================  ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CustomTextCLIP
from open_clip.modified_resnet import ModifiedResNet
from open_clip.timm_model import TimmModel
from open_clip.transformer import TextTransformer, VisionTransformer, text_global_pool
from timm.layers.attention_pool import AttentionPoolLatent
from timm.layers.mlp import Mlp
from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
from torch import Tensor, nn

__all__ = [
    "Projectors",
    "augment_features",
    "encode_image_preproj",
    "encode_text_preproj",
    "get_projectors",
    "linearize_map_head",
]


def augment_features(x: Tensor) -> Tensor:
    """Append a constant-1 coordinate: [N, k] -> [N, k + 1] (see :meth:`Projectors.augmented`)."""
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


@dataclass(frozen=True, eq=False)
class Projectors:
    """The image and text projectors of a CLIP-like model, in the paper's orientation.

    Attributes:
        W_i: [d, d_i] image projector; projected image = ``W_i f + b_i``.
        W_t: [d, d_t] text projector; projected text = ``W_t g + b_t``.
        b_i: [d] image bias, or None when the head has none.
        b_t: [d] text bias, or None.
        image_linearized: True when ``W_i, b_i`` are a first-order linearization of a
            nonlinear head (SigLIP MAP head) rather than the exact final layer.

    ``get_projectors`` returns detached copies in the model's dtype (float32 for the usual
    fp32 model), so that ``encode_image_preproj(m, x) @ W_i.T + b_i`` reproduces
    ``m.encode_image(x)`` in that dtype. :mod:`isoclip.method.operator` and :mod:`isoclip.method.bands`
    compute in float64 internally; :meth:`double` converts.
    """

    W_i: Tensor
    W_t: Tensor
    b_i: Tensor | None = None
    b_t: Tensor | None = None
    image_linearized: bool = False

    def __post_init__(self) -> None:
        for name in ("W_i", "W_t", "b_i", "b_t"):
            t = getattr(self, name)
            if t is not None and not (isinstance(t, Tensor) and t.is_floating_point()):
                got = t.dtype if isinstance(t, Tensor) else type(t).__name__
                raise TypeError(f"Projectors.{name}: expected a floating-point tensor, got {got} "
                                "(integer weights would be truncated when results are cast back "
                                "to their dtype; convert with .float() or .double())")
        if self.W_i.ndim != 2 or self.W_t.ndim != 2:
            raise ValueError(f"W_i and W_t must be 2-D, got shapes {tuple(self.W_i.shape)} "
                             f"and {tuple(self.W_t.shape)}")
        if self.W_i.shape[0] != self.W_t.shape[0]:
            raise ValueError(f"W_i {tuple(self.W_i.shape)} and W_t {tuple(self.W_t.shape)} must "
                             "share the embedding dimension d (first axis)")
        for name, b in (("b_i", self.b_i), ("b_t", self.b_t)):
            if b is not None and tuple(b.shape) != (self.d,):
                raise ValueError(f"{name} must have shape ({self.d},), got {tuple(b.shape)}")

    @property
    def d(self) -> int:
        """Shared embedding dimension."""
        return int(self.W_i.shape[0])

    @property
    def d_i(self) -> int:
        """Image pre-projection dimension."""
        return int(self.W_i.shape[1])

    @property
    def d_t(self) -> int:
        """Text pre-projection dimension."""
        return int(self.W_t.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.W_i.dtype

    def project_image(self, f: Tensor) -> Tensor:
        """[N, d_i] pre-projection image features -> [N, d] embeddings ``f @ W_i.T + b_i``."""
        out = f @ self.W_i.T
        return out if self.b_i is None else out + self.b_i

    def project_text(self, g: Tensor) -> Tensor:
        """[N, d_t] pre-projection text features -> [N, d] embeddings ``g @ W_t.T + b_t``."""
        out = g @ self.W_t.T
        return out if self.b_t is None else out + self.b_t

    def to(self, dtype: torch.dtype) -> Projectors:
        """A copy with every tensor cast to ``dtype``."""
        def cast(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(dtype)
        return Projectors(self.W_i.to(dtype), self.W_t.to(dtype), cast(self.b_i), cast(self.b_t),
                          self.image_linearized)

    def double(self) -> Projectors:
        return self.to(torch.float64)

    def augmented(self) -> Projectors:
        """Fold the biases into the matrices: ``[W_i | b_i]`` [d, d_i+1], ``[W_t | b_t]``.

        Pair with features passed through :func:`augment_features` (a ones column appended):
        ``augmented().project_image(augment_features(f)) == project_image(f)``. This is the
        official code's treatment of SigLIP 2 (IsoCLIP ``src/retrieval.py``, ones column appended
        to the features; notation page, eq-augmented): Psi of the augmented projectors is
        (d_i+1) x (d_t+1), and a band selection then filters the bias together with W. A
        missing bias becomes a zero column, so both sides are always augmented.
        """
        def aug(W: Tensor, b: Tensor | None) -> Tensor:
            col = W.new_zeros(W.shape[0]) if b is None else b
            return torch.cat([W, col[:, None]], dim=1)
        return Projectors(aug(self.W_i, self.b_i), aug(self.W_t, self.b_t), None, None,
                          self.image_linearized)


# ---------------------------------------------------------------------------------------------
# family detection

def _check_model(model: nn.Module) -> None:
    if not isinstance(model, (CLIP, CustomTextCLIP)):
        raise NotImplementedError(
            f"unsupported model class {type(model).__name__}: isoclip supports open_clip CLIP "
            "and CustomTextCLIP models")


def _timm_linear_classifier(visual: TimmModel) -> nn.Linear | None:
    """The trunk's classifier when it is the CLIP projection (``timm_proj`` null/none)."""
    head = visual.trunk.get_classifier()
    return head if isinstance(head, nn.Linear) else None


def _timm_head_proj(visual: TimmModel) -> nn.Linear | None:
    """open_clip's adapter ``head.proj`` when the adapter head is only dropout + Linear."""
    names = [n for n, _ in visual.head.named_children()]
    if names == ["drop", "proj"] and isinstance(visual.head.proj, nn.Linear):
        return visual.head.proj
    return None


def _siglip_map_pool(visual: TimmModel) -> AttentionPoolLatent:
    """The MAP head of a timm ViT trunk used as the (nonlinear) projection, else raise."""
    trunk = visual.trunk
    pool = getattr(trunk, "attn_pool", None)
    if (isinstance(trunk, TimmVisionTransformer) and isinstance(pool, AttentionPoolLatent)
            and pool.pool in ("token", "avg") and isinstance(trunk.fc_norm, nn.Identity)
            and isinstance(trunk.get_classifier(), nn.Identity) and len(visual.head) == 0):
        return pool
    heads = [type(m).__name__ for m in visual.head.children()]
    raise NotImplementedError(
        f"unsupported timm image tower {type(trunk).__name__} "
        f"(trunk classifier {type(trunk.get_classifier()).__name__}, "
        f"attn_pool {type(pool).__name__}, open_clip head {heads or 'empty'}): isoclip "
        "supports a Linear projection (open_clip head.proj or the trunk classifier) or a "
        "timm VisionTransformer MAP head with an Identity classifier (SigLIP)")


# ---------------------------------------------------------------------------------------------
# projectors

def linearize_map_head(pool: AttentionPoolLatent) -> tuple[Tensor, Tensor]:
    """First-order linearization of a MAP head's residual MLP block, ``h -> h + mlp(norm(h))``.

    Implements the official SigLIP2 projector (IsoCLIP ``src/encode_no_projection.py`` l.248-275;
    notation page, eq-map-linearization) in the paper's orientation. With LayerNorm affine
    ``gamma, beta`` (its mean/variance normalisation is ignored, as in the official code),
    ``fc1 = (W1, b1)``, ``fc2 = (W2, b2)`` and the activation replaced by its tangent at 0,
    ``act(z) ~ act(0) + c z`` (``c = act'(0) = 0.5`` for every GELU variant)::

        W1~ = W1 diag(gamma),  b1~ = W1 beta + b1
        W_eff = I + c W2 W1~                        [C, C]
        b_eff = c W2 b1~ + W2 act(0) + b2           [C]

    so that ``h + mlp(norm(h)) ~ W_eff h + b_eff``. The approximation is first order in the
    MLP pre-activation ``z = W1~ h + b1~`` for inputs on which the LayerNorm normalisation is
    the identity (zero mean, variance 1 - eps). The official code feeds ``W_eff`` and fc
    weights as ``x @ W`` (rows = inputs), i.e. transposed; here ``W_eff`` acts on column
    vectors like ``nn.Linear.weight``.

    Args:
        pool: timm ``AttentionPoolLatent`` with an ``Mlp`` (fc1, act, fc2; norm Identity).

    Returns:
        ``(W_eff [C, C], b_eff [C])`` in the dtype of the weights.

    Raises:
        NotImplementedError: the MLP is not ``fc1 -> act -> fc2`` with Linear layers, or the
            norm is neither Identity nor an affine LayerNorm.
    """
    mlp, norm = pool.mlp, pool.norm
    if not (isinstance(mlp, Mlp) and isinstance(mlp.fc1, nn.Linear)
            and isinstance(mlp.fc2, nn.Linear) and isinstance(mlp.norm, nn.Identity)):
        raise NotImplementedError(f"MAP-head MLP {mlp!r} is not fc1 -> act -> fc2")
    W1, b1 = mlp.fc1.weight, mlp.fc1.bias
    W2, b2 = mlp.fc2.weight, mlp.fc2.bias
    C = W2.shape[0]
    if isinstance(norm, nn.Identity):
        gamma, beta = W1.new_ones(W1.shape[1]), W1.new_zeros(W1.shape[1])
    elif isinstance(norm, nn.LayerNorm) and norm.weight is not None and norm.bias is not None:
        gamma, beta = norm.weight, norm.bias
    else:
        raise NotImplementedError(f"MAP-head norm {type(norm).__name__} is not linearizable here")
    zero = W1.new_zeros(1, requires_grad=True)
    with torch.enable_grad():
        act0 = mlp.act(zero)
        (slope,) = torch.autograd.grad(act0.sum(), zero)
    c, a0 = slope.item(), act0.item()
    with torch.no_grad():
        b1 = W1.new_zeros(W1.shape[0]) if b1 is None else b1
        b2 = W2.new_zeros(C) if b2 is None else b2
        W1t = W1 * gamma[None, :]
        b1t = W1 @ beta + b1
        W_eff = torch.eye(C, dtype=W1.dtype, device=W1.device) + c * (W2 @ W1t)
        b_eff = c * (W2 @ b1t) + a0 * W2.sum(dim=1) + b2
    return W_eff.detach().clone(), b_eff.detach().clone()


def _image_projector(visual: object) -> tuple[Tensor, Tensor | None, bool]:
    if isinstance(visual, VisionTransformer):
        if visual.proj is None:
            raise NotImplementedError("VisionTransformer without `proj`: no image projector")
        return visual.proj.detach().T.clone(), None, False
    if isinstance(visual, ModifiedResNet):
        c_proj = visual.attnpool.c_proj
        return c_proj.weight.detach().clone(), _clone(c_proj.bias), False
    if isinstance(visual, TimmModel):
        lin = _timm_head_proj(visual)
        if lin is None and len(visual.head) == 0:
            lin = _timm_linear_classifier(visual)
        if lin is not None:
            return lin.weight.detach().clone(), _clone(lin.bias), False
        W, b = linearize_map_head(_siglip_map_pool(visual))
        return W, b, True
    raise NotImplementedError(f"unsupported image tower class {type(visual).__name__}")


def _clone(b: Tensor | None) -> Tensor | None:
    return None if b is None else b.detach().clone()


def _text_projection(model: nn.Module) -> nn.Module | Tensor | None:
    proj: nn.Module | Tensor | None
    if isinstance(model, CLIP):
        proj = model.text_projection
        return proj
    text = model.text
    if not isinstance(text, TextTransformer):
        raise NotImplementedError(f"unsupported text tower class {type(text).__name__}")
    proj = text.text_projection
    return proj


def get_projectors(model: nn.Module) -> Projectors:
    """The projectors of an open_clip ``CLIP`` / ``CustomTextCLIP``, paper orientation.

    Returns detached copies in the model's dtype. For SigLIP-style towers the image projector
    is the linearized MAP-head MLP (:func:`linearize_map_head`; ``image_linearized=True``).

    Raises:
        NotImplementedError: unsupported model / tower / head class (named in the message).
    """
    _check_model(model)
    W_i, b_i, linearized = _image_projector(model.visual)
    proj = _text_projection(model)
    if isinstance(proj, nn.Linear):
        W_t, b_t = proj.weight.detach().clone(), _clone(proj.bias)
    elif isinstance(proj, Tensor):
        W_t, b_t = proj.detach().T.clone(), None
    else:
        raise NotImplementedError(
            f"text projection of type {type(proj).__name__} is not supported (need an "
            "nn.Parameter [d_t, d] or an nn.Linear)")
    return Projectors(W_i=W_i, W_t=W_t, b_i=b_i, b_t=b_t, image_linearized=linearized)


# ---------------------------------------------------------------------------------------------
# pre-projection features

def _vit_preproj(visual: VisionTransformer, images: Tensor) -> Tensor:
    # VisionTransformer.forward up to (excluding) `pooled @ self.proj`.
    x = visual._embeds(images)
    x = visual.transformer(x)
    pooled: Tensor
    pooled, _ = visual._pool(x)
    if pooled.ndim != 2:
        raise NotImplementedError(
            f"VisionTransformer pooling gives shape {tuple(pooled.shape)} (attentional pool "
            "without token selection); only [N, d_i] pooled features are supported")
    return pooled


def _resnet_preproj(visual: ModifiedResNet, images: Tensor) -> Tensor:
    # ModifiedResNet.forward, then AttentionPool2d.forward for the output token 0 (the mean
    # token, the only one returned) with the out-projection c_proj left out.
    x = visual.stem(images)
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
    pool = visual.attnpool
    x = x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3]).permute(2, 0, 1)  # (HW)NC
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # (HW+1)NC
    x = x + pool.positional_embedding[:, None, :].to(x.dtype)
    n_tok, batch, width = x.shape
    heads = pool.num_heads
    hd = width // heads
    q = F.linear(x[:1], pool.q_proj.weight, pool.q_proj.bias)  # 1,N,C
    k = F.linear(x, pool.k_proj.weight, pool.k_proj.bias)
    v = F.linear(x, pool.v_proj.weight, pool.v_proj.bias)
    q = q.reshape(1, batch * heads, hd).transpose(0, 1)  # (N*H),1,hd
    k = k.reshape(n_tok, batch * heads, hd).transpose(0, 1)  # (N*H),T,hd
    v = v.reshape(n_tok, batch * heads, hd).transpose(0, 1)
    attn = torch.softmax((q * hd ** -0.5) @ k.transpose(1, 2), dim=-1)
    out = (attn @ v).transpose(0, 1).reshape(batch, width)  # heads concatenated: [N, C]
    return out


def _map_preproj(visual: TimmModel, images: Tensor) -> Tensor:
    # timm VisionTransformer.forward_features + .pool, with AttentionPoolLatent.forward stopped
    # before its residual MLP (`x = x + mlp(norm(x))`); the token/avg pooling of the latent
    # queries commutes with the (affine) linearized MLP and is applied here.
    pool = _siglip_map_pool(visual)
    trunk = visual.trunk
    x: Tensor = trunk.forward_features(images)
    if not trunk.pool_include_prefix:
        x = x[:, trunk.num_prefix_tokens:]
    B, N, C = x.shape
    if pool.pos_embed is not None:
        x = x + pool.pos_embed.unsqueeze(0).to(x.dtype)
    q_latent = pool.latent.expand(B, -1, -1)
    q = pool.q(q_latent).reshape(B, pool.latent_len, pool.num_heads, pool.head_dim).transpose(1, 2)
    kv = pool.kv(x).reshape(B, N, 2, pool.num_heads, pool.head_dim).permute(2, 0, 3, 1, 4)
    k, v = kv.unbind(0)
    q, k = pool.q_norm(q), pool.k_norm(k)
    if pool.fused_attn:
        x = F.scaled_dot_product_attention(q, k, v)
    else:
        attn = ((q * pool.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = attn @ v
    x = x.transpose(1, 2).reshape(B, pool.latent_len, C)
    x = pool.proj_drop(pool.proj(x))
    return x[:, 0] if pool.pool == "token" else x.mean(1)


def _timm_preproj(visual: TimmModel, images: Tensor) -> Tensor:
    f: Tensor
    if _timm_head_proj(visual) is not None:
        f = visual.head.drop(visual.trunk(images))
        return f
    if len(visual.head) == 0 and _timm_linear_classifier(visual) is not None:
        trunk = visual.trunk
        f = trunk.forward_head(trunk.forward_features(images), pre_logits=True)
        return f
    return _map_preproj(visual, images)


def encode_image_preproj(model: nn.Module, images: Tensor) -> Tensor:
    """Image features just before the final projection.

    Args:
        model: open_clip ``CLIP`` / ``CustomTextCLIP`` (see the module table for towers).
        images: [N, 3, H, W], preprocessed like for ``model.encode_image``.

    Returns:
        [N, d_i] in the model's dtype, such that
        ``get_projectors(model).project_image(f) == model.encode_image(images)`` (exact
        heads; for the linearized SigLIP head this holds to first order).
    """
    _check_model(model)
    visual = model.visual
    if isinstance(visual, VisionTransformer):
        return _vit_preproj(visual, images)
    if isinstance(visual, ModifiedResNet):
        return _resnet_preproj(visual, images)
    if isinstance(visual, TimmModel):
        return _timm_preproj(visual, images)
    raise NotImplementedError(f"unsupported image tower class {type(visual).__name__}")


def encode_text_preproj(model: nn.Module, tokens: Tensor) -> Tensor:
    """Text features just before the final projection.

    Mirrors ``CLIP.encode_text`` (built-in tower: causal ``model.attn_mask``,
    ``text_pool_type``) or ``TextTransformer.forward`` (CustomTextCLIP: pad/CLS masks from
    ``_embeds``, appended-CLS pooling with ``ln_final`` after pooling, ``pool_type``).

    Args:
        model: open_clip ``CLIP`` / ``CustomTextCLIP`` with an open_clip ``TextTransformer``.
        tokens: LongTensor [N, L], as given to ``model.encode_text``.

    Returns:
        [N, d_t] in the model's dtype; ``get_projectors(model).project_text(g)`` equals
        ``model.encode_text(tokens)``.
    """
    _check_model(model)
    pooled: Tensor
    if isinstance(model, CLIP):
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(tokens).to(cast_dtype)
        x = x + model.positional_embedding.to(cast_dtype)
        x = model.transformer(x, attn_mask=model.attn_mask)
        x = model.ln_final(x)
        pooled = text_global_pool(x, tokens, model.text_pool_type,
                                  eos_token_id=getattr(model, "text_eos_id", None))
        return pooled
    text = model.text
    if not isinstance(text, TextTransformer):
        raise NotImplementedError(f"unsupported text tower class {type(text).__name__}")
    x, attn_mask = text._embeds(tokens)
    x = text.transformer(x, attn_mask=attn_mask)
    if text.cls_emb is not None:
        pooled = text.ln_final(text_global_pool(x, pool_type="last"))
        return pooled
    x = text.ln_final(x)
    pooled = text_global_pool(x, tokens, pool_type=text.pool_type,
                              eos_token_id=getattr(text, "eos_id", None))
    return pooled
