"""Modality inversion (Cross the Gap, Mistretta et al., ICLR 2025): OTI and OVI.

Both methods map a feature of one modality to a feature *produced by the other encoder*, by
optimising a few free input embeddings of that encoder with everything else frozen
(Cross the Gap, OTI and OVI; official code ``miccunifi/Cross-the-Gap`` at f513b38; book notation
page, eq-oti, eq-ovi):

* **OTI** (image -> text, ``src/oti.py`` ``oti``, l.101-139): R pseudo-token embeddings
  ``v* [B, R, e]`` replace R placeholder tokens of a template (default ``"a photo of {}"``);
  the text encoder runs normally (causal mask, EOT pooling, ``text_projection``).
* **OVI** (text -> image, ``src/ovi.py`` ``ovi``, l.130-161): P pseudo-patches ``w* [B, P, c]``
  are nearest-interpolated (repeated) to every patch position *after* the patch embedding
  ``conv1`` (which they bypass) and before the class token and the positional embedding;
  the image encoder then runs normally (``encode_with_pseudo_tokens.py``
  ``encode_image_with_pseudo_tokens_openclip``, l.184-218).

Shared protocol (official configs ``configs/oti/*.yaml``, ``configs/ovi/*.yaml``):
loss ``nn.CosineEmbeddingLoss`` with target 1, i.e. the batch mean of ``1 - cos(inverted,
target)``; AdamW, lr 2e-2, weight decay 0.01; init N(0, 0.02^2); 150 OTI / 1000 OVI steps;
R = 1 for every OTI config; P = 1 for CLIP B/32 (see :data:`OVI_NUM_PSEUDO_PATCHES`); seed 42.
A batch is inverted jointly with independent pseudo-tokens per item (the loss is a mean over
items that share no parameters).

Deviations from the official code, all forced by running on CPU:

* The official loop runs under ``torch.cuda.amp.autocast`` with a ``GradScaler``; here
  everything runs in the model's dtype (float32 for :func:`isoclip.models.loading.load_model`).
* Determinism: the official scripts seed the global RNG and set
  ``torch.use_deterministic_algorithms(True)``; here the initial pseudo-tokens come from a
  private ``torch.Generator`` seeded with ``seed`` and global state is left alone, so the
  same call on the same device and thread count gives bitwise identical results.
* Gradients are taken with ``torch.autograd.grad`` with respect to the pseudo-tokens only, so
  the frozen model's parameters never receive a ``.grad`` (the official code relies on the
  optimiser only holding the pseudo-tokens).

The models are never modified or patched: the forward passes below call the model's own
submodules in the order of ``CLIP.encode_text`` / ``VisionTransformer.forward`` (open_clip
3.3.0), replacing only the input embeddings. With the real token embeddings (or the real
patch embeddings, P = number of patches) they reproduce ``encode_text`` / ``encode_image``
exactly (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import VisionTransformer, text_global_pool
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = [
    "INIT_STD",
    "LEARNING_RATE",
    "OTI_NUM_PSEUDO_TOKENS",
    "OTI_STEPS",
    "OTI_TEMPLATE",
    "OVI_NUM_PSEUDO_PATCHES",
    "OVI_STEPS",
    "PLACEHOLDER",
    "SEED",
    "WEIGHT_DECAY",
    "InversionResult",
    "encode_image_with_pseudo_patches",
    "encode_text_with_pseudo_tokens",
    "expand_pseudo_patches",
    "oti",
    "ovi",
    "placeholder_positions",
]

#: OTI template (``configs/oti/*.yaml`` ``template_sentence``; ``oti_template_prompt``).
OTI_TEMPLATE = "a photo of {}"
#: R, pseudo-tokens per image: 1 in every official OTI config.
OTI_NUM_PSEUDO_TOKENS = 1
#: OTI optimisation steps (``configs/oti/*.yaml`` ``oti_steps``).
OTI_STEPS = 150
#: P, pseudo-patches per text: 1 for CLIP/OpenCLIP B/32 and SLIP B/16 (2 for OpenCLIP L/14,
#: 4 for CLIP L/14 and SigLIP B/16; ``configs/ovi/*.yaml`` ``num_pseudo_tokens``).
OVI_NUM_PSEUDO_PATCHES = 1
#: OVI optimisation steps (``configs/ovi/*.yaml`` ``ovi_steps``).
OVI_STEPS = 1000
#: AdamW learning rate, both methods (``learning_rate: 2e-2``).
LEARNING_RATE = 2e-2
#: AdamW weight decay, both methods (``weight_decay: 0.01``).
WEIGHT_DECAY = 0.01
#: Std of the normal initialisation of the pseudo-tokens (``nn.init.normal_(.., std=0.02)``).
INIT_STD = 0.02
#: Seed of the official configs (``seed: 42``).
SEED = 42
#: The placeholder character of the official template (``get_special_token_idx``, "£").
PLACEHOLDER = "£"


@dataclass(frozen=True, eq=False)
class InversionResult:
    """Output of :func:`oti` / :func:`ovi` for a batch of B targets.

    Attributes:
        features: [B, d] inverted features after the last step, *projected* (shared embedding
            space, like ``encode_text`` / ``encode_image``) and unnormalised.
        preproj: [B, d_t] (OTI) or [B, d_i] (OVI): the same features before the final
            projection (``features = preproj @ projection``).
        pseudo: the learned embeddings, [B, R, e] pseudo-tokens (OTI) or [B, P, c]
            pseudo-patches (OVI).
        losses: [steps] batch-mean loss ``mean_b(1 - cos)`` at each step, computed before that
            step's update (the official ``iteration_losses``).
        final_loss: [B] per-item ``1 - cos(features, target)`` after the last update.
        snapshots: step k -> [B, d] projected features after k updates, for the requested
            ``snapshot_steps`` (``k = steps`` is ``features``).
    """

    features: Tensor
    preproj: Tensor
    pseudo: Tensor
    losses: Tensor
    final_loss: Tensor
    snapshots: dict[int, Tensor] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# argument checks

def _check_clip_text(model: nn.Module) -> CLIP:
    if not isinstance(model, CLIP):
        raise NotImplementedError(
            f"OTI needs an open_clip CLIP with the built-in text transformer; got "
            f"{type(model).__name__} (CustomTextCLIP / HF text towers are not supported)")
    if model.text_projection is None:
        raise NotImplementedError("OTI: the CLIP text tower has no `text_projection`")
    return model


def _text_embed_dim(model: CLIP) -> int:
    proj = model.text_projection
    return proj.out_features if isinstance(proj, nn.Linear) else int(proj.shape[1])


def _check_vit(model: nn.Module) -> VisionTransformer:
    visual = getattr(model, "visual", None)
    if not isinstance(visual, VisionTransformer):
        raise NotImplementedError(
            f"OVI needs an open_clip VisionTransformer image tower; got "
            f"{type(visual).__name__} (model class {type(model).__name__})")
    if visual.proj is None:
        raise NotImplementedError("OVI: the VisionTransformer has no `proj` (no projection)")
    return visual


def _check_eval(model: nn.Module) -> None:
    if model.training:
        raise ValueError("model: is in training mode (dropout / patch dropout would make the "
                         "inversion stochastic); call model.eval() first")


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")


def _check_hparams(steps: int, lr: float, weight_decay: float, init_std: float,
                   snapshot_steps: Sequence[int]) -> None:
    _check_positive_int("steps", steps, minimum=0)
    if not lr > 0:
        raise ValueError(f"lr: expected > 0, got {lr!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay: expected >= 0, got {weight_decay!r}")
    if not init_std > 0:
        raise ValueError(f"init_std: expected > 0, got {init_std!r}")
    bad = [k for k in snapshot_steps if not (isinstance(k, int) and 0 <= k <= steps)]
    if bad:
        raise ValueError(f"snapshot_steps: entries must be ints in [0, steps={steps}], got {bad}")


def _check_targets(name: str, targets: Tensor, dim: int) -> None:
    if not isinstance(targets, Tensor) or targets.ndim != 2 or targets.shape[0] == 0 \
            or targets.shape[1] != dim:
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"{name}: expected a tensor [B >= 1, {dim}] (the model's embedding "
                         f"dimension), got {shape}")


# ---------------------------------------------------------------------------------------------
# text side

def _placeholder_id(tokenizer: Callable[[list[str]], Tensor], placeholder: str) -> int:
    """Token id of ``placeholder``: the one token that tokenising it adds to the empty string.

    Tokenizer-agnostic version of the official ``get_special_token_idx`` (which reads
    ``tokenizer("£")[0][1]``, i.e. the token after SOT).
    """
    with_ph, empty = tokenizer([placeholder])[0], tokenizer([""])[0]
    diff = (with_ph != empty).nonzero()
    if diff.numel() == 0:
        raise ValueError(f"placeholder: {placeholder!r} tokenises to nothing")
    i = int(diff[0])
    if not torch.equal(with_ph[i + 1:], empty[i:-1]):
        raise ValueError(f"placeholder: {placeholder!r} is not a single token for this tokenizer "
                         f"(tokens {with_ph[: i + 4].tolist()}...); choose a character that is")
    return int(with_ph[i])


def placeholder_positions(
    tokenizer: Callable[[list[str]], Tensor],
    template: str = OTI_TEMPLATE,
    num_pseudo_tokens: int = OTI_NUM_PSEUDO_TOKENS,
    placeholder: str = PLACEHOLDER,
) -> tuple[Tensor, Tensor]:
    """Tokenise the OTI template and locate its placeholder tokens.

    ``"{}"`` is replaced by ``" £ " * R`` exactly as in the official code (``oti.py`` l.120):
    the surrounding spaces keep the placeholder a separate token even next to punctuation
    (``"£."`` is a different BPE token).

    Args:
        tokenizer: list of N strings -> LongTensor [N, L] (e.g. ``ModelBundle.tokenizer``).
        template: text with exactly one ``"{}"``, anywhere.
        num_pseudo_tokens: R, the number of placeholder tokens.
        placeholder: a string that is a single token of ``tokenizer``.

    Returns:
        ``(tokens [1, L], positions [R])``: the tokenised template and the 0-based positions of
        its R placeholder tokens, in order.

    Raises:
        ValueError: bad template (not exactly one ``"{}"``, contains the placeholder, or
            truncated by the context length so that fewer than R placeholders survive), or a
            placeholder that is not a single token.
    """
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"template: expected a string with exactly one '{{}}', got {template!r}")
    _check_positive_int("num_pseudo_tokens", num_pseudo_tokens)
    if placeholder in template:
        raise ValueError(f"template: {template!r} already contains the placeholder "
                         f"{placeholder!r}; pass another `placeholder`")
    ph_id = _placeholder_id(tokenizer, placeholder)
    tokens = tokenizer([template.replace("{}", f" {placeholder} " * num_pseudo_tokens)])
    positions = (tokens[0] == ph_id).nonzero().flatten()
    if positions.numel() != num_pseudo_tokens:
        raise ValueError(
            f"template: {template!r} with {num_pseudo_tokens} placeholder(s) keeps "
            f"{positions.numel()} placeholder token(s) after tokenisation (context length "
            f"{tokens.shape[1]}); shorten the template or lower num_pseudo_tokens")
    return tokens, positions


def encode_text_with_pseudo_tokens(model: nn.Module, tokens: Tensor, positions: Tensor,
                                   pseudo_tokens: Tensor) -> tuple[Tensor, Tensor]:
    """``CLIP.encode_text`` with the token embeddings at ``positions`` replaced.

    Same operations as open_clip 3.3.0 ``CLIP.encode_text`` (and the official
    ``encode_with_pseudo_tokens_openclip``): token embedding, overwrite, positional
    embedding, transformer with the causal mask, ``ln_final``, pooling at the EOT token of
    ``tokens`` (``text_pool_type``), ``text_projection``.

    Args:
        model: open_clip ``CLIP`` (built-in text tower).
        tokens: LongTensor [B, L] (or [1, L], broadcast to the batch of ``pseudo_tokens``).
        positions: LongTensor [R], positions in the sequence to overwrite.
        pseudo_tokens: [B, R, e] embeddings written at ``positions`` (e = token width).

    Returns:
        ``(preproj [B, d_t], projected [B, d])``, differentiable w.r.t. ``pseudo_tokens``.
    """
    clip = _check_clip_text(model)
    if pseudo_tokens.ndim != 3 or pseudo_tokens.shape[1] != positions.numel():
        raise ValueError(f"pseudo_tokens: expected [B, R={positions.numel()}, e], got "
                         f"{tuple(pseudo_tokens.shape)}")
    batch = pseudo_tokens.shape[0]
    if tokens.shape[0] not in (1, batch):
        raise ValueError(f"tokens: expected [1 or B={batch}, L], got {tuple(tokens.shape)}")
    tokens = tokens.expand(batch, -1)
    cast_dtype = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(tokens).to(cast_dtype)  # [B, L, e]
    x = x.clone()
    x[:, positions] = pseudo_tokens.to(cast_dtype)
    x = x + clip.positional_embedding.to(cast_dtype)
    x = clip.transformer(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)
    pooled = text_global_pool(x, tokens, clip.text_pool_type,
                              eos_token_id=getattr(clip, "text_eos_id", None))
    proj = clip.text_projection
    projected = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
    return pooled, projected


# ---------------------------------------------------------------------------------------------
# image side

def expand_pseudo_patches(pseudo_patches: Tensor, num_patches: int) -> Tensor:
    """Nearest-interpolate P pseudo-patches to ``num_patches`` positions: [B, P, c] -> [B, N, c].

    Position n receives pseudo-patch ``floor(n * P / N)`` (the official
    ``F.interpolate(.., mode='nearest')``): P = 1 repeats one token everywhere, P = N is the
    identity, otherwise each pseudo-patch fills a contiguous run of positions.
    """
    if pseudo_patches.ndim != 3:
        raise ValueError(f"pseudo_patches: expected [B, P, c], got {tuple(pseudo_patches.shape)}")
    _check_positive_int("num_patches", num_patches)
    x = F.interpolate(pseudo_patches.transpose(1, 2), size=num_patches, mode="nearest")
    return x.transpose(1, 2)


def encode_image_with_pseudo_patches(model: nn.Module,
                                     pseudo_patches: Tensor) -> tuple[Tensor, Tensor]:
    """Image encoder run on pseudo-patches instead of ``conv1(image)``.

    Same operations as open_clip 3.3.0 ``VisionTransformer.forward`` after ``conv1``: class
    token prepended, positional embedding, patch dropout, ``ln_pre``, transformer, ``_pool``
    (``ln_post`` and token/avg pooling), ``proj``.

    Args:
        model: open_clip model with a ``VisionTransformer`` image tower.
        pseudo_patches: [B, P, c] (c = visual width); expanded to the N patch positions by
            :func:`expand_pseudo_patches`.

    Returns:
        ``(preproj [B, d_i], projected [B, d])``, differentiable w.r.t. ``pseudo_patches``.
    """
    visual = _check_vit(model)
    width = visual.class_embedding.shape[0]
    if pseudo_patches.ndim != 3 or pseudo_patches.shape[2] != width:
        raise ValueError(f"pseudo_patches: expected [B, P, c={width}], got "
                         f"{tuple(pseudo_patches.shape)}")
    num_patches = visual.grid_size[0] * visual.grid_size[1]
    x = expand_pseudo_patches(pseudo_patches, num_patches)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, width).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.patch_dropout(x)
    x = visual.ln_pre(x)
    x = visual.transformer(x)
    pooled, _ = visual._pool(x)
    if pooled.ndim != 2:
        raise NotImplementedError(f"OVI: VisionTransformer pooling gives shape "
                                  f"{tuple(pooled.shape)}; only [B, d_i] pooled features are "
                                  "supported")
    return pooled, pooled @ visual.proj


# ---------------------------------------------------------------------------------------------
# the optimisation loop shared by OTI and OVI

def _invert(encode: Callable[[Tensor], tuple[Tensor, Tensor]], targets: Tensor,
            shape: tuple[int, int, int], dtype: torch.dtype, *, steps: int, lr: float,
            weight_decay: float, init_std: float, seed: int, snapshot_steps: Sequence[int],
            progress: bool, desc: str) -> InversionResult:
    device = targets.device
    generator = torch.Generator(device=device).manual_seed(seed)
    pseudo = torch.randn(shape, generator=generator, device=device, dtype=dtype) * init_std
    pseudo.requires_grad_(True)
    optimizer = torch.optim.AdamW([pseudo], lr=lr, weight_decay=weight_decay)
    target = F.normalize(targets.detach().to(dtype), dim=-1)
    ones = target.new_ones(target.shape[0])
    wanted = set(snapshot_steps)
    snapshots: dict[int, Tensor] = {}
    losses: list[Tensor] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    with torch.enable_grad():  # also inside a caller's no_grad block
        for step in bar:
            _, features = encode(pseudo)
            # nn.CosineEmbeddingLoss(target=1) on L2-normalised features (oti.py / ovi.py)
            loss = F.cosine_embedding_loss(F.normalize(features, dim=-1), target, ones)
            if step in wanted:
                snapshots[step] = features.detach().clone()
            (grad,) = torch.autograd.grad(loss, pseudo)
            pseudo.grad = grad
            optimizer.step()
            losses.append(loss.detach())
            if progress:
                bar.set_postfix(loss=f"{loss.item():.4f}")
    with torch.no_grad():
        preproj, features = encode(pseudo)
        final_loss = F.cosine_embedding_loss(F.normalize(features, dim=-1), target, ones,
                                             reduction="none")
    if steps in wanted:
        snapshots[steps] = features
    history = torch.stack(losses) if losses else target.new_zeros(0)
    return InversionResult(features=features, preproj=preproj, pseudo=pseudo.detach(),
                           losses=history, final_loss=final_loss, snapshots=snapshots)


def oti(
    model: nn.Module,
    tokenizer: Callable[[list[str]], Tensor],
    image_features: Tensor,
    *,
    template: str = OTI_TEMPLATE,
    num_pseudo_tokens: int = OTI_NUM_PSEUDO_TOKENS,
    steps: int = OTI_STEPS,
    lr: float = LEARNING_RATE,
    weight_decay: float = WEIGHT_DECAY,
    init_std: float = INIT_STD,
    seed: int = SEED,
    placeholder: str = PLACEHOLDER,
    snapshot_steps: Sequence[int] = (),
    progress: bool = True,
) -> InversionResult:
    """Optimisation-based Textual Inversion of a batch of image features.

    Minimises ``mean_b(1 - cos(text(template with v*_b), image_features_b))`` over R
    pseudo-token embeddings per image (Cross the Gap, official ``src/oti.py`` ``oti``; notation
    page, eq-oti).

    Args:
        model: open_clip ``CLIP`` in eval mode (frozen; never modified).
        tokenizer: the model's tokenizer (``ModelBundle.tokenizer``).
        image_features: [B, d] target image embeddings (``model.encode_image``; normalisation
            does not matter). Their device is the device of the optimisation.
        template: text with one ``"{}"`` where the pseudo-tokens go.
        num_pseudo_tokens: R.
        steps: AdamW steps (0 returns the encoding of the initial tokens).
        lr, weight_decay: AdamW hyper-parameters.
        init_std: std of the N(0, init_std^2) initialisation.
        seed: seed of the initialisation.
        placeholder: single-token string marking the pseudo-token positions.
        snapshot_steps: steps k at which to keep the features after k updates.
        progress: show a tqdm bar.

    Returns:
        :class:`InversionResult` with ``pseudo`` [B, R, e], ``features`` [B, d] (text encoder,
        projected, unnormalised) and ``preproj`` [B, d_t].

    Raises:
        ValueError: bad argument (named in the message). NotImplementedError: not a CLIP
            with the built-in text tower.
    """
    clip = _check_clip_text(model)
    _check_eval(model)
    _check_hparams(steps, lr, weight_decay, init_std, snapshot_steps)
    tokens, positions = placeholder_positions(tokenizer, template, num_pseudo_tokens, placeholder)
    _check_targets("image_features", image_features, _text_embed_dim(clip))
    tokens = tokens.to(image_features.device)
    positions = positions.to(image_features.device)
    width = clip.token_embedding.embedding_dim
    shape = (image_features.shape[0], num_pseudo_tokens, width)

    def encode(pseudo: Tensor) -> tuple[Tensor, Tensor]:
        return encode_text_with_pseudo_tokens(model, tokens, positions, pseudo)

    return _invert(encode, image_features, shape, clip.token_embedding.weight.dtype,
                   steps=steps, lr=lr, weight_decay=weight_decay, init_std=init_std, seed=seed,
                   snapshot_steps=snapshot_steps, progress=progress, desc="OTI")


def ovi(
    model: nn.Module,
    text_features: Tensor,
    *,
    num_pseudo_patches: int = OVI_NUM_PSEUDO_PATCHES,
    steps: int = OVI_STEPS,
    lr: float = LEARNING_RATE,
    weight_decay: float = WEIGHT_DECAY,
    init_std: float = INIT_STD,
    seed: int = SEED,
    snapshot_steps: Sequence[int] = (),
    progress: bool = True,
) -> InversionResult:
    """Optimisation-based Visual Inversion of a batch of text features.

    Minimises ``mean_b(1 - cos(image(w*_b), text_features_b))`` over P pseudo-patches per
    text, repeated over every patch position (Cross the Gap, official ``src/ovi.py`` ``ovi``;
    notation page, eq-ovi). The text is
    encoded by the caller: the official code uses the raw text (``"{}"``) for caption
    datasets and ``"a photo of {classname}"`` for class names.

    Args:
        model: open_clip model with a ``VisionTransformer`` image tower, in eval mode.
        text_features: [B, d] target text embeddings (``model.encode_text``). Their device is
            the device of the optimisation.
        num_pseudo_patches: P (must not exceed the number of patch positions).
        steps, lr, weight_decay, init_std, seed, snapshot_steps, progress: as in :func:`oti`.

    Returns:
        :class:`InversionResult` with ``pseudo`` [B, P, c], ``features`` [B, d] (image
        encoder, projected, unnormalised) and ``preproj`` [B, d_i].

    Raises:
        ValueError: bad argument (named in the message). NotImplementedError: image tower
            is not an open_clip ``VisionTransformer`` with a projection.
    """
    visual = _check_vit(model)
    _check_eval(model)
    _check_hparams(steps, lr, weight_decay, init_std, snapshot_steps)
    num_patches = visual.grid_size[0] * visual.grid_size[1]
    _check_positive_int("num_pseudo_patches", num_pseudo_patches)
    if num_pseudo_patches > num_patches:
        raise ValueError(f"num_pseudo_patches: {num_pseudo_patches} exceeds the {num_patches} "
                         "patch positions of the image tower")
    _check_targets("text_features", text_features, visual.proj.shape[1])
    width = visual.class_embedding.shape[0]
    shape = (text_features.shape[0], num_pseudo_patches, width)

    def encode(pseudo: Tensor) -> tuple[Tensor, Tensor]:
        return encode_image_with_pseudo_patches(model, pseudo)

    return _invert(encode, text_features, shape, visual.class_embedding.dtype, steps=steps,
                   lr=lr, weight_decay=weight_decay, init_std=init_std, seed=seed,
                   snapshot_steps=snapshot_steps, progress=progress, desc="OVI")
